"""pricing_rules.charges.base.price_charge: allowance first, then the model, then the
minimum top-up and the maximum cap, each its own explanation row."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from pricing_rules.catalog import Catalog, parse_catalog
from pricing_rules.charges import (
    Allowance,
    ChargeBase,
    GraduatedCharge,
    PackageCharge,
    PerUnitCharge,
    Tier,
    VolumeCharge,
    price_charge,
    user_allowance,
)
from pricing_rules.money import MONEY_CONTEXT, RoundingMode, round_money, to_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import FAST_PROPERTY, at, usage_frame

D = Decimal
OCT = BillingPeriod.parse("2026-10")


def per_unit(
    unit_price: str,
    *,
    free: str | None = None,
    per: str = "plan",
    dimension: str | None = None,
    minimum: str | None = None,
    maximum: str | None = None,
) -> PerUnitCharge:
    return PerUnitCharge.model_validate(
        {
            "id": "x",
            "name": "X",
            "model": "per_unit",
            "metric": "m",
            "unit_price": unit_price,
            "free_units": None
            if free is None
            else {"units": free, "per": per, "dimension": dimension},
            "minimum_amount": minimum,
            "maximum_amount": maximum,
        }
    )


def cents(amount: Decimal) -> int:
    return to_minor_units(round_money(amount, "USD", RoundingMode.HALF_UP), "USD")


def total(amounts: list[Decimal]) -> Decimal:
    result = D(0)
    for amount in amounts:
        result = MONEY_CONTEXT.add(result, amount)
    return result


def explained(charge: ChargeBase, quantity: str, seats: int = 1) -> list[tuple[str, D, D]]:
    priced = price_charge(charge, D(quantity), seats)
    assert total([d.amount for d in priced.details]) == priced.amount
    return [(d.label, d.quantity, d.amount) for d in priced.details]


# --- allowance -------------------------------------------------------------------------


def test_allowance_per_plan() -> None:
    # 1,500 units, 1,000 free: 500 x 0.01 = 5.00 => 500 cents
    charge = per_unit("0.01", free="1000")
    assert explained(charge, "1500") == [
        ("included allowance", D(1000), D(0)),
        ("X", D(500), D("5.00")),
    ]
    assert cents(price_charge(charge, D(1500)).amount) == 500


def test_allowance_per_plan_ignores_seats() -> None:
    # 1,500 units, 1,000 free whatever the seats: 500 x 0.01 = 5.00
    assert price_charge(per_unit("0.01", free="1000"), D(1500), seats=7).amount == D("5.00")


def test_allowance_per_seat_is_pooled_across_seats() -> None:
    # 100 free per seat x 3 seats = 300 pooled; 400 - 300 = 100 x 0.01 = 1.00
    charge = per_unit("0.01", free="100", per="seat")
    rows = explained(charge, "400", seats=3)
    assert rows == [("included allowance", D(300), D(0)), ("X", D(100), D("1.00"))]
    detail = price_charge(charge, D(400), seats=3).details[0]
    assert detail.tier_to == D(300)  # the pooled allowance, shown on the row


def test_allowance_per_user_is_what_each_users_own_units_cover() -> None:
    # 1,000 free per user; users at 400, 1,500 and 1,000: 400 + 1,000 + 1,000 = 2,400
    # covered of 2,900; 500 x 0.01 = 5.00. Pooled over 3 seats, 3,000 would cover it all.
    charge = per_unit("0.01", free="1000", per="user", dimension="user")
    covered = user_allowance(D(1000), [D(400), D(1500), D(1000)])
    assert price_charge(charge, D(2900), seats=3, allowance=covered).amount == D("5.00")
    assert price_charge(per_unit("0.01", free="1000", per="seat"), D(2900), seats=3).amount == 0
    with pytest.raises(ValueError, match="allowance per user: give it"):
        price_charge(charge, D(2900))


@pytest.mark.parametrize(
    ("allowance", "message"),
    [
        ({"units": "1", "per": "user"}, "names the event dimension of the user"),
        (
            {"units": "1", "per": "seat", "dimension": "user"},
            "dimension is for an allowance per user",
        ),
    ],
)
def test_an_allowance_per_user_and_its_dimension_come_together(
    allowance: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Allowance.model_validate(allowance)


@given(
    units=st.integers(0, 2000),
    users=st.lists(st.integers(-50, 5000), max_size=6),
)
def test_a_users_allowance_never_covers_another_user(units: int, users: list[int]) -> None:
    # never more than the units x users, nor than the usage; a user inside their units is
    # covered whole; adding a user never lowers it
    covered = user_allowance(D(units), [D(q) for q in users])
    assert 0 <= covered <= units * len(users)
    assert covered <= sum(max(q, 0) for q in users)
    assert user_allowance(D(units), [D(q) for q in [*users, 7]]) >= covered
    inside = [q for q in users if 0 <= q <= units]
    assert user_allowance(D(units), [D(q) for q in inside]) == sum(inside)


def test_allowance_larger_than_usage_uses_only_the_usage() -> None:
    # 120 units, 300 free: 120 used of the allowance, 0 billable => 0.00
    assert explained(per_unit("0.01", free="100", per="seat"), "120", seats=3) == [
        ("included allowance", D(120), D(0)),
        ("X", D(0), D("0.00")),
    ]


def test_allowance_before_graduated_tiers() -> None:
    # 250 units, 100 free -> 150 billable through (0, 100] at 1 and (100, inf) at 0.5:
    # 100 x 1 + 50 x 0.5 = 125 => 12500 cents
    charge = GraduatedCharge.model_validate(
        {
            "id": "g",
            "name": "G",
            "model": "graduated",
            "metric": "m",
            "free_units": {"units": "100"},
            "tiers": [{"up_to": "100", "unit_price": "1"}, {"up_to": None, "unit_price": "0.5"}],
        }
    )
    assert cents(price_charge(charge, D(250)).amount) == 12500


def test_negative_allowance_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        Allowance(units=D(-1))


# --- minimum and maximum ---------------------------------------------------------------


def test_minimum_top_up_row() -> None:
    # 150 units, 100 free: 50 x 0.01 = 0.50, topped up by 0.50 to the 1.00 minimum
    assert explained(per_unit("0.01", free="100", minimum="1.00"), "150") == [
        ("included allowance", D(100), D(0)),
        ("X", D(50), D("0.50")),
        ("minimum charge top-up", D(1), D("0.50")),
    ]


def test_minimum_applies_to_zero_usage() -> None:
    # 0 units: 0.00, topped up by 25.00 to the minimum => 2500 cents
    priced = price_charge(per_unit("0.01", minimum="25.00"), D(0))
    assert cents(priced.amount) == 2500
    assert [d.label for d in priced.details] == ["X", "minimum charge top-up"]


def test_maximum_cap_row() -> None:
    # 1,000 units - 100 free = 900 x 0.01 = 9.00, capped at 3.00 by a -6.00 row
    assert explained(per_unit("0.01", free="100", minimum="1", maximum="3.00"), "1000") == [
        ("included allowance", D(100), D(0)),
        ("X", D(900), D("9.00")),
        ("maximum charge cap", D(1), D("-6.00")),
    ]


def test_amount_between_the_limits_has_no_limit_row() -> None:
    # 300 units x 0.01 = 3.00, within [1.00, 5.00]
    assert explained(per_unit("0.01", minimum="1.00", maximum="5.00"), "300") == [
        ("X", D(300), D("3.00"))
    ]


@pytest.mark.parametrize(
    ("minimum", "maximum", "message"),
    [
        ("-1", None, "minimum_amount must not be negative"),
        (None, "-1", "maximum_amount must not be negative"),
        ("10", "5", "minimum_amount 10 is above maximum_amount 5"),
    ],
)
def test_invalid_limits_are_rejected(
    minimum: str | None, maximum: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        per_unit("0.01", minimum=minimum, maximum=maximum)


# --- tiers with a flat fee -------------------------------------------------------------


def graduated(*tiers: tuple[str | None, str, str]) -> GraduatedCharge:
    return GraduatedCharge(
        id="g",
        name="Fonts",
        model="graduated",
        metric="m",
        tiers=[
            Tier(up_to=None if t[0] is None else D(t[0]), unit_price=D(t[1]), flat_fee=D(t[2]))
            for t in tiers
        ],
    )


# Stripe docs, "Set up tiered pricing" (Typographic): 1-5 fonts at 7 USD, 6-10 at 6.5 USD,
# 11+ at 6 USD. Stripe's API reference defines a tier's `flat_amount` as "the flat billing
# amount for an entire tier, regardless of the number of units in the tier"; the flat fees
# here (10 USD on the first tier, 5 USD on the second) are ours, added to Stripe's tiers.
STRIPE_FLAT = graduated(("5", "7", "10"), ("10", "6.5", "5"), (None, "6", "0"))


@pytest.mark.parametrize(
    ("fonts", "expected_cents"),
    [
        (3, 3100),  # 3 x 7 + 10 = 31.00 => 3100 cents
        (5, 4500),  # 5 x 7 + 10 = 45.00 => 4500 cents
        (8, 6950),  # (5 x 7 + 10) + (3 x 6.5 + 5) = 45 + 24.5 = 69.50 => 6950 cents
        (20, 14250),  # 45 + (5 x 6.5 + 5) + 10 x 6 = 45 + 37.5 + 60 = 142.50 => 14250 cents
    ],
)
def test_stripe_graduated_with_a_flat_fee_per_tier(fonts: int, expected_cents: int) -> None:
    priced = price_charge(STRIPE_FLAT, D(fonts))
    assert cents(priced.amount) == expected_cents
    assert total([d.amount for d in priced.details]) == priced.amount


def test_graduated_flat_fee_rows_name_the_fee() -> None:
    # 8 fonts: tier 1 5 x 7 + flat 10 = 45; tier 2 3 x 6.5 + flat 5 = 24.5
    rows = [(d.tier, d.quantity, d.flat_fee, d.amount) for d in STRIPE_FLAT.price(D(8)).details]
    assert rows == [(1, D(5), D(10), D(45)), (2, D(3), D(5), D("24.5"))]


# Lago docs, "Volume" charge model: (0, 10,000] at 0.0010, (10,000, 50,000] at 0.0008,
# (50,000, 100,000] at 0.0006 and above at 0.0004, every tier with a 10 USD flat fee;
# 65,000 API calls cost 65,000 x 0.0006 + 10 = 49 USD.
LAGO_CATALOG = """
version: "volume-flat"
metrics:
  api: {name: API calls, unit: call, aggregation: count}
plans:
  api:
    name: API
    currency: USD
    charges:
      - id: calls
        name: API calls
        model: volume
        metric: api
        tiers:
          - {up_to: "10000", unit_price: "0.0010", flat_fee: "10"}
          - {up_to: "50000", unit_price: "0.0008", flat_fee: "10"}
          - {up_to: "100000", unit_price: "0.0006", flat_fee: "10"}
          - {up_to: null, unit_price: "0.0004", flat_fee: "10"}
"""


@pytest.fixture(scope="module")
def lago_catalog() -> Catalog:
    return parse_catalog(LAGO_CATALOG)


def test_lago_volume_with_flat_amount_from_the_catalog(lago_catalog: Catalog) -> None:
    # 65,000 calls in (50,000, 100,000]: 65,000 x 0.0006 + 10 = 39 + 10 = 49.00 => 4900 cents
    charge = lago_catalog.plans["api"].charge_list[0]
    priced = price_charge(charge, D(65_000))
    assert cents(priced.amount) == 4900
    (detail,) = priced.details
    assert (detail.tier, detail.unit_price, detail.flat_fee) == (3, D("0.0006"), D(10))


def test_lago_volume_flat_fee_through_rate(lago_catalog: Catalog) -> None:
    # 12,000 counted calls in (10,000, 50,000]: 12,000 x 0.0008 + 10 = 9.60 + 10 = 19.60
    # => 1960 cents; the description shows the flat fee
    usage = usage_frame([("A", "api", 1, at(1 + i % 28, hour=i % 24)) for i in range(12_000)])
    subs = subscription_frame(
        [
            {
                "subscription_id": "S",
                "account_id": "A",
                "plan_id": "api",
                "start_date": date(2026, 1, 1),
                "end_date": None,
            }
        ]
    )
    line = rate(usage, subs, lago_catalog, OCT).lines.row(0, named=True)
    assert (line["quantity"], line["events"], line["amount_minor"]) == (D(12_000), 12_000, 1960)
    assert line["description"] == (
        "API calls: 12,000 call — all 12,000 call at the up to 50,000 call price 0.0008 + 10 flat"
    )
    assert json.loads(line["details"])[0]["flat_fee"] == "10"


# --- through rate: allowance per seat and the minimum line -----------------------------

SEAT_CATALOG = """
version: "allowance"
metrics:
  voice: {name: Voice, unit: s, aggregation: sum}
plans:
  team:
    name: Team
    currency: USD
    charges:
      - id: voice
        name: Voice
        model: per_unit
        metric: voice
        price_unit: min
        unit_price: "0.02"
        free_units: {units: "100", per: seat}
        minimum_amount: "5.00"
"""


@pytest.mark.parametrize(
    ("seats", "minutes", "expected_cents", "labels"),
    [
        # 3 seats x 100 = 300 free; 1,000 - 300 = 700 min x 0.02 = 14.00 => 1400 cents
        (3, 1000, 1400, ["included allowance", "Voice"]),
        # 8 seats x 100 = 800 free; 200 x 0.02 = 4.00, topped up to 5.00 => 500 cents
        (8, 1000, 500, ["included allowance", "Voice", "minimum charge top-up"]),
        # no usage at all: a minimum still bills 5.00 => 500 cents
        (3, 0, 500, ["included allowance", "Voice", "minimum charge top-up"]),
    ],
)
def test_seat_allowance_and_minimum_through_rate(
    seats: int, minutes: int, expected_cents: int, labels: list[str]
) -> None:
    catalog = parse_catalog(SEAT_CATALOG)
    usage = usage_frame([("A", "voice", minutes * 60, at(3))] if minutes else [])
    subs = subscription_frame(
        [
            {
                "subscription_id": "S",
                "account_id": "A",
                "plan_id": "team",
                "start_date": date(2026, 1, 1),
                "end_date": None,
                "quantity": seats,
            }
        ]
    )
    line = rate(usage, subs, catalog, OCT).lines.row(0, named=True)
    details = json.loads(line["details"])
    assert line["amount_minor"] == expected_cents
    assert [d["label"] for d in details] == labels
    assert total([D(d["amount"]) for d in details]) == D(line["precise_amount"])


# --- property: limits hold and the rows add up -----------------------------------------

amounts = st.decimals(min_value=0, max_value=1_000, places=2)
prices = st.decimals(min_value=0, max_value=50, places=4)


@st.composite
def tier_list(draw: st.DrawFn) -> list[Tier]:
    bounds = sorted(
        draw(st.sets(st.decimals(min_value=1, max_value=10_000, places=0), min_size=0, max_size=3))
    )
    tiers = [Tier(up_to=b, unit_price=draw(prices), flat_fee=draw(amounts)) for b in bounds]
    return [*tiers, Tier(up_to=None, unit_price=draw(prices), flat_fee=draw(amounts))]


@st.composite
def limited_charges(draw: st.DrawFn) -> ChargeBase:
    limits = sorted(draw(st.lists(amounts, min_size=2, max_size=2)))
    common = {
        "id": "c",
        "name": "C",
        "metric": "m",
        "free_units": draw(
            st.none()
            | st.builds(
                Allowance,
                units=st.decimals(min_value=0, max_value=5_000, places=3),
                per=st.sampled_from(["plan", "seat"]),
            )
        ),
        "minimum_amount": draw(st.none() | st.just(limits[0])),
        "maximum_amount": draw(st.none() | st.just(limits[1])),
    }
    kind = draw(st.sampled_from(["per_unit", "graduated", "volume", "package"]))
    if kind == "per_unit":
        return PerUnitCharge(model="per_unit", unit_price=draw(prices), **common)
    if kind == "graduated":
        return GraduatedCharge(model="graduated", tiers=draw(tier_list()), **common)
    if kind == "volume":
        return VolumeCharge(model="volume", tiers=draw(tier_list()), **common)
    return PackageCharge(
        model="package",
        block_size=draw(st.decimals(min_value="0.5", max_value=1_000, places=1)),
        block_price=draw(amounts),
        free_blocks=draw(st.integers(min_value=0, max_value=5)),
        **common,
    )


@FAST_PROPERTY
@given(
    charge=limited_charges(),
    quantity=st.decimals(min_value=0, max_value=100_000, places=6),
    seats=st.integers(min_value=0, max_value=50),
)
@example(charge=per_unit("0.01", free="100", minimum="1", maximum="3"), quantity=D(0), seats=1)
@example(charge=per_unit("0.01", minimum="3", maximum="3"), quantity=D(10_000), seats=1)
def test_amount_within_limits_and_rows_add_up(
    charge: ChargeBase, quantity: Decimal, seats: int
) -> None:
    priced = price_charge(charge, quantity, seats)
    if charge.minimum_amount is not None:
        assert priced.amount >= charge.minimum_amount
    if charge.maximum_amount is not None:
        assert priced.amount <= charge.maximum_amount
    assert total([d.amount for d in priced.details]) == priced.amount
    assert priced.quantity == quantity
