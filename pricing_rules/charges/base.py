"""What every charge model shares: tiers, the priced result and its explanation."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from pricing_rules.money import MONEY_CONTEXT


@dataclass(frozen=True)
class ChargeDetail:
    """One row of a charge's explanation; the rows of a charge add up to its amount."""

    label: str
    quantity: Decimal
    amount: Decimal
    unit_price: Decimal | None = None
    flat_fee: Decimal | None = None
    tier: int | None = None
    tier_from: Decimal | None = None
    tier_to: Decimal | None = None

    def as_json(self) -> dict[str, str | int | None]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "label": self.label,
            "quantity": str(self.quantity),
            "unit_price": text(self.unit_price),
            "flat_fee": text(self.flat_fee),
            "amount": str(self.amount),
            "tier": self.tier,
            "tier_from": text(self.tier_from),
            "tier_to": text(self.tier_to),
        }


@dataclass(frozen=True)
class PricedCharge:
    """The precise (unrounded) price of a quantity, with the rows that explain it."""

    quantity: Decimal
    amount: Decimal
    unit_price: Decimal | None
    details: tuple[ChargeDetail, ...] = field(default_factory=tuple)


class Tier(BaseModel):
    """A price band. `up_to` is inclusive; `None` means open-ended (last tier only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


def check_tiers(tiers: list[Tier]) -> list[Tier]:
    """Tiers start at zero, rise strictly, only the last is open-ended, no price is negative."""
    problems: list[str] = []
    if not tiers:
        problems.append("at least one tier is required")
    previous = Decimal(0)
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if tier.unit_price < 0:
            problems.append(f"tier {index} unit_price {tier.unit_price} is negative")
        if tier.flat_fee < 0:
            problems.append(f"tier {index} flat_fee {tier.flat_fee} is negative")
        if tier.up_to is None and not last:
            problems.append(f"tier {index} is open-ended but is not the last tier")
        elif tier.up_to is not None:
            if tier.up_to <= previous:
                problems.append(
                    f"tier {index} ends at {tier.up_to}, not above the previous bound {previous}"
                )
            previous = tier.up_to
        if last and tier.up_to is not None:
            problems.append(f"the last tier (tier {index}) must be open-ended (up_to: null)")
    if problems:
        raise ValueError("; ".join(problems))
    return tiers


def tier_bounds(tiers: list[Tier]) -> list[tuple[Decimal, Decimal | None]]:
    """(exclusive lower, inclusive upper) for each tier; tiers are contiguous from zero."""
    bounds: list[tuple[Decimal, Decimal | None]] = []
    lower = Decimal(0)
    for tier in tiers:
        bounds.append((lower, tier.up_to))
        if tier.up_to is not None:
            lower = tier.up_to
    return bounds


def multiply(a: Decimal, b: Decimal) -> Decimal:
    return MONEY_CONTEXT.multiply(a, b)


class ChargeBase(BaseModel):
    """Fields every charge has. `kind` says whether the charge is recurring or usage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    metric: str | None = None
    price_unit: str | None = None

    kind: ClassVar[Literal["recurring", "usage"]] = "usage"

    def price(self, quantity: Decimal) -> PricedCharge:
        raise NotImplementedError
