"""Per seat / licence: a recurring price times the subscription's seat count, prorated."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import field_validator

from pricing_rules.charges.base import ChargeBase, ChargeDetail, PricedCharge, multiply


class PerSeatCharge(ChargeBase):
    model: Literal["per_seat"]
    unit_price: Decimal
    timing: Literal["advance", "arrears"] = "advance"

    kind: ClassVar[Literal["recurring", "usage"]] = "recurring"

    @field_validator("unit_price")
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    def price(self, quantity: Decimal) -> PricedCharge:
        """`quantity` is seats x proration factor (seat-periods).

        # 25 seats for a full period at 14.50: 25 x 14.50 = 362.50
        >>> PerSeatCharge(id="s", name="Seats", model="per_seat", unit_price=Decimal("14.50")
        ...     ).price(Decimal(25)).amount
        Decimal('362.50')
        """
        amount = multiply(quantity, self.unit_price)
        detail = ChargeDetail(
            label=f"{self.name} ({self.timing})",
            quantity=quantity,
            unit_price=self.unit_price,
            amount=amount,
        )
        return PricedCharge(
            quantity=quantity, amount=amount, unit_price=self.unit_price, details=(detail,)
        )
