"""What every charge model shares: tiers, the priced result and its explanation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pricing_rules.money import MONEY_CONTEXT, plain


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
            return None if value is None else plain(value)

        return {
            "label": self.label,
            "quantity": plain(self.quantity),
            "unit_price": text(self.unit_price),
            "flat_fee": text(self.flat_fee),
            "amount": plain(self.amount),
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


class Allowance(BaseModel):
    """Units included before paid units: per plan; per seat, pooled across the
    subscription's seats; or per user, where each value of the event `dimension` (a user,
    a line) has its own units and one user's unused units do not cover another's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: Decimal
    per: Literal["plan", "seat", "user"] = "plan"
    dimension: str | None = None

    @model_validator(mode="after")
    def _dimension(self) -> Allowance:
        if self.per == "user" and not self.dimension:
            raise ValueError("an allowance per user names the event dimension of the user")
        if self.per != "user" and self.dimension:
            raise ValueError("dimension is for an allowance per user")
        return self

    @field_validator("units")
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        return value


class ChargeBase(BaseModel):
    """Fields every charge has. `kind` says whether the charge is recurring or usage;
    `level` whether it prices a period total (`aggregate`) or each event (`event`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    metric: str | None = None
    price_unit: str | None = None
    filters: dict[str, str] = Field(default_factory=dict)
    free_units: Allowance | None = None
    minimum_amount: Decimal | None = None
    maximum_amount: Decimal | None = None

    kind: ClassVar[Literal["recurring", "usage"]] = "usage"
    level: ClassVar[Literal["aggregate", "event"]] = "aggregate"

    @model_validator(mode="after")
    def _limits(self) -> ChargeBase:
        low, high = self.minimum_amount, self.maximum_amount
        if low is not None and low < 0:
            raise ValueError("minimum_amount must not be negative")
        if high is not None and high < 0:
            raise ValueError("maximum_amount must not be negative")
        if low is not None and high is not None and low > high:
            raise ValueError(f"minimum_amount {low} is above maximum_amount {high}")
        return self

    def price(self, quantity: Decimal) -> PricedCharge:
        raise NotImplementedError


def price_charge(
    charge: ChargeBase, quantity: Decimal, seats: int = 1, allowance: Decimal | None = None
) -> PricedCharge:
    """Price a quantity with the charge's allowance and its minimum and maximum.

    Free units are consumed first; the minimum tops the amount up and the maximum caps
    it, each as its own explanation row, so the rows still add up to the amount. An
    allowance per user is given as `allowance`: what the users' own units cover of
    their usage (`user_allowance`).

    # 1,500 units, 1,000 free, then 0.01 each, minimum 10.00:
    # 500 x 0.01 = 5.00, topped up by 5.00 to the minimum => 10.00
    >>> from pricing_rules.charges.base import Allowance, price_charge
    >>> from pricing_rules.charges.per_unit import PerUnitCharge
    >>> charge = PerUnitCharge(id="x", name="X", model="per_unit", metric="m",
    ...     unit_price=Decimal("0.01"), free_units=Allowance(units=Decimal(1000)),
    ...     minimum_amount=Decimal("10.00"))
    >>> priced = price_charge(charge, Decimal(1500))
    >>> priced.amount, [d.label for d in priced.details]
    (Decimal('10.00'), ['included allowance', 'X', 'minimum charge top-up'])
    """
    details: list[ChargeDetail] = []
    billable = quantity
    if charge.free_units is not None:
        if charge.free_units.per == "user":
            if allowance is None:
                raise ValueError(f"charge {charge.id!r} has an allowance per user: give it")
        else:
            allowance = charge.free_units.units * (seats if charge.free_units.per == "seat" else 1)
        used = min(quantity, allowance)
        billable = MONEY_CONTEXT.subtract(quantity, used)
        details.append(
            ChargeDetail(
                label="included allowance",
                quantity=used,
                unit_price=Decimal(0),
                amount=Decimal(0),
                tier_to=allowance,
            )
        )
    priced = charge.price(billable)
    details.extend(priced.details)
    amount = priced.amount
    if charge.minimum_amount is not None and amount < charge.minimum_amount:
        details.append(
            ChargeDetail(
                label="minimum charge top-up",
                quantity=Decimal(1),
                amount=MONEY_CONTEXT.subtract(charge.minimum_amount, amount),
            )
        )
        amount = charge.minimum_amount
    if charge.maximum_amount is not None and amount > charge.maximum_amount:
        details.append(
            ChargeDetail(
                label="maximum charge cap",
                quantity=Decimal(1),
                amount=MONEY_CONTEXT.subtract(charge.maximum_amount, amount),
            )
        )
        amount = charge.maximum_amount
    return PricedCharge(
        quantity=quantity, amount=amount, unit_price=priced.unit_price, details=tuple(details)
    )


Quantity = TypeVar("Quantity", Decimal, Fraction)


def user_allowance(units: Quantity, per_user: Iterable[Quantity]) -> Quantity:
    """What an allowance of `units` per user covers of the users' quantities: each user's
    own units, never another's (a user whose corrections net below zero uses none).

    # 1,000 min each: 400 + 1,000 (of 1,500) + 1,000 (of 1,000) = 2,400 min covered
    >>> user_allowance(Decimal(1000), [Decimal(400), Decimal(1500), Decimal(1000)])
    Decimal('2400')
    """
    zero = units * 0
    return sum((min(max(q, zero), units) for q in per_user), zero)
