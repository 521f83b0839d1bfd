"""Graduated tiers: each unit is priced by the tier it falls in."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import field_validator

from pricing_rules.charges.base import (
    ChargeBase,
    ChargeDetail,
    PricedCharge,
    Tier,
    check_tiers,
    multiply,
    tier_bounds,
)
from pricing_rules.money import MONEY_CONTEXT


class GraduatedCharge(ChargeBase):
    model: Literal["graduated"]
    tiers: list[Tier]

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, tiers: list[Tier]) -> list[Tier]:
        return check_tiers(tiers)

    def price(self, quantity: Decimal) -> PricedCharge:
        """Sum over tiers of (units in tier x tier price), plus the flat fee of each tier used.

        # 1,500 units: 1,000 x 0.00 + 500 x 0.012 = 6.000
        >>> charge = GraduatedCharge(id="v", name="Voice", model="graduated", metric="voice",
        ...     tiers=[Tier(up_to=Decimal(1000), unit_price=Decimal("0")),
        ...            Tier(up_to=None, unit_price=Decimal("0.012"))])
        >>> charge.price(Decimal(1500)).amount
        Decimal('6.000')
        """
        details: list[ChargeDetail] = []
        total = Decimal(0)
        for index, (tier, (lower, upper)) in enumerate(
            zip(self.tiers, tier_bounds(self.tiers), strict=True)
        ):
            if quantity <= lower:
                break
            top = quantity if upper is None else min(quantity, upper)
            units = MONEY_CONTEXT.subtract(top, lower)
            amount = MONEY_CONTEXT.add(multiply(units, tier.unit_price), tier.flat_fee)
            total = MONEY_CONTEXT.add(total, amount)
            details.append(
                ChargeDetail(
                    label=f"tier {index + 1}",
                    quantity=units,
                    unit_price=tier.unit_price,
                    flat_fee=tier.flat_fee or None,
                    amount=amount,
                    tier=index + 1,
                    tier_from=lower,
                    tier_to=upper,
                )
            )
        return PricedCharge(
            quantity=quantity, amount=total, unit_price=None, details=tuple(details)
        )
