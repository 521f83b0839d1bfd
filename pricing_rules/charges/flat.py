"""Flat recurring fee, charged in advance or in arrears, prorated by the engine."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import field_validator

from pricing_rules.charges.base import ChargeBase, ChargeDetail, PricedCharge, multiply


class FlatCharge(ChargeBase):
    model: Literal["flat"]
    amount: Decimal
    timing: Literal["advance", "arrears"] = "advance"

    @field_validator("amount")
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    kind: ClassVar[Literal["recurring", "usage"]] = "recurring"

    def price(self, quantity: Decimal) -> PricedCharge:
        """Price `quantity` periods of the fee (a proration factor for partial periods).

        >>> FlatCharge(id="p", name="Platform", model="flat", amount=Decimal("199")).price(
        ...     Decimal("0.5")).amount
        Decimal('99.5')
        """
        amount = multiply(quantity, self.amount)
        detail = ChargeDetail(
            label=f"{self.name} ({self.timing})",
            quantity=quantity,
            unit_price=self.amount,
            amount=amount,
        )
        return PricedCharge(
            quantity=quantity, amount=amount, unit_price=self.amount, details=(detail,)
        )
