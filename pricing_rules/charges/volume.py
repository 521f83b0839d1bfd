"""Volume tiers: the whole quantity is priced at the one tier the total falls in."""

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


class VolumeCharge(ChargeBase):
    model: Literal["volume"]
    tiers: list[Tier]

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, tiers: list[Tier]) -> list[Tier]:
        return check_tiers(tiers)

    def tier_index(self, quantity: Decimal) -> int:
        """Index of the tier whose (lower, upper] band holds the quantity; zero uses tier 0."""
        for index, (_lower, upper) in enumerate(tier_bounds(self.tiers)):
            if upper is None or quantity <= upper:
                return index
        raise AssertionError("tiers always end open-ended")  # pragma: no cover

    def price(self, quantity: Decimal) -> PricedCharge:
        """Quantity x the price of the single tier it reaches, plus that tier's flat fee.

        # 150 GB falls in (100, 1000] at 0.18: 150 x 0.18 = 27.00
        >>> charge = VolumeCharge(id="s", name="Storage", model="volume", metric="storage",
        ...     tiers=[Tier(up_to=Decimal(100), unit_price=Decimal("0.25")),
        ...            Tier(up_to=None, unit_price=Decimal("0.18"))])
        >>> charge.price(Decimal(150)).amount
        Decimal('27.00')
        """
        index = self.tier_index(quantity)
        tier = self.tiers[index]
        lower, upper = tier_bounds(self.tiers)[index]
        flat_fee = tier.flat_fee if quantity > 0 else Decimal(0)
        amount = MONEY_CONTEXT.add(multiply(quantity, tier.unit_price), flat_fee)
        detail = ChargeDetail(
            label=f"tier {index + 1} (all units)",
            quantity=quantity,
            unit_price=tier.unit_price,
            flat_fee=flat_fee or None,
            amount=amount,
            tier=index + 1,
            tier_from=lower,
            tier_to=upper,
        )
        return PricedCharge(
            quantity=quantity, amount=amount, unit_price=tier.unit_price, details=(detail,)
        )
