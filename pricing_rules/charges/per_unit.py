"""Per-unit usage: every unit at one price."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import field_validator

from pricing_rules.charges.base import ChargeBase, ChargeDetail, PricedCharge, multiply


class PerUnitCharge(ChargeBase):
    model: Literal["per_unit"]
    unit_price: Decimal

    @field_validator("unit_price")
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    def price(self, quantity: Decimal) -> PricedCharge:
        """Quantity times the unit price.

        # 3,200 messages x 0.0079 = 25.28
        >>> PerUnitCharge(id="sms", name="SMS", model="per_unit", metric="sms",
        ...     unit_price=Decimal("0.0079")).price(Decimal("3200")).amount
        Decimal('25.2800')
        """
        amount = multiply(quantity, self.unit_price)
        detail = ChargeDetail(
            label=self.name, quantity=quantity, unit_price=self.unit_price, amount=amount
        )
        return PricedCharge(
            quantity=quantity, amount=amount, unit_price=self.unit_price, details=(detail,)
        )
