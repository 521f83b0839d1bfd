"""Invariants of pricing, checked with hypothesis.

- more usage never costs less under graduated pricing;
- volume pricing applies exactly one tier;
- the explanation rows of every charge add up to its amount;
- rounding to the minor unit moves an amount by at most half a minor unit (half_* modes)
  or by less than one (the others);
- rated lines add up to the invoice totals.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import polars as pl
from hypothesis import example, given
from hypothesis import strategies as st

from pricing_rules.catalog import parse_catalog
from pricing_rules.charges import (
    Allowance,
    ChargeBase,
    FlatCharge,
    GraduatedCharge,
    PackageCharge,
    PerSeatCharge,
    PerUnitCharge,
    Tier,
    VolumeCharge,
    price_charge,
)
from pricing_rules.charges.base import tier_bounds
from pricing_rules.invoicing import assemble_invoices
from pricing_rules.money import (
    RoundingMode,
    from_minor_units,
    minor_unit_exponent,
    round_money,
    to_minor_units,
)
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import price_quantity, rate, subscription_frame
from tests.pricing_rules.frames import (
    CATALOG_YAML,
    FAST_PROPERTY,
    FRAME_PROPERTY,
    at,
    usage_frame,
)


def money(max_value: int, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=0, max_value=max_value, places=places, allow_nan=False, allow_infinity=False
    )


quantities = money(1_000_000, 6)
unit_prices = money(100, 4)
flat_fees = st.one_of(st.just(Decimal(0)), money(50, 2))


@st.composite
def tier_lists(draw: st.DrawFn) -> list[Tier]:
    bounds = sorted(draw(st.sets(money(100_000, 2).filter(lambda b: b > 0), max_size=3)))
    uppers: list[Decimal | None] = [*bounds, None]
    return [
        Tier(up_to=up_to, unit_price=draw(unit_prices), flat_fee=draw(flat_fees))
        for up_to in uppers
    ]


graduated_charges = tier_lists().map(
    lambda tiers: GraduatedCharge(id="g", name="G", model="graduated", metric="m", tiers=tiers)
)
volume_charges = tier_lists().map(
    lambda tiers: VolumeCharge(id="v", name="V", model="volume", metric="m", tiers=tiers)
)
per_unit_charges = unit_prices.map(
    lambda price: PerUnitCharge(id="p", name="P", model="per_unit", metric="m", unit_price=price)
)
flat_charges = money(10_000, 2).map(
    lambda amount: FlatCharge(id="f", name="F", model="flat", amount=amount)
)


def exact_sum(values: list[Decimal]) -> Fraction:
    return sum((Fraction(v) for v in values), Fraction(0))


@FAST_PROPERTY
@given(graduated_charges, quantities, quantities)
def test_graduated_more_usage_never_costs_less(
    charge: GraduatedCharge, a: Decimal, b: Decimal
) -> None:
    low, high = min(a, b), max(a, b)
    assert charge.price(low).amount <= charge.price(high).amount


@FAST_PROPERTY
@given(graduated_charges, quantities)
def test_graduated_matches_a_tier_by_tier_reference(charge: GraduatedCharge, q: Decimal) -> None:
    # sum over the tiers reached of (units in tier x price + flat fee), in exact fractions
    expected = Fraction(0)
    for tier, (lower, upper) in zip(charge.tiers, tier_bounds(charge.tiers), strict=True):
        if q > lower:
            top = q if upper is None else min(q, upper)
            expected += Fraction(top - lower) * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
    assert Fraction(charge.price(q).amount) == expected


@FAST_PROPERTY
@given(volume_charges, quantities)
def test_volume_applies_exactly_one_tier(charge: VolumeCharge, q: Decimal) -> None:
    priced = charge.price(q)
    assert len(priced.details) == 1
    (detail,) = priced.details
    index = charge.tier_index(q)
    lower, upper = tier_bounds(charge.tiers)[index]
    # the tier's band (lower, upper] holds the quantity; zero uses the first tier
    assert (q > lower or (q == 0 and index == 0)) and (upper is None or q <= upper)
    assert (detail.tier, detail.tier_from, detail.tier_to) == (index + 1, lower, upper)
    tier = charge.tiers[index]
    assert detail.quantity == q
    assert detail.unit_price == priced.unit_price == tier.unit_price
    flat = tier.flat_fee if q > 0 else 0
    assert Fraction(priced.amount) == Fraction(q) * Fraction(tier.unit_price) + Fraction(flat)


per_seat_charges = unit_prices.map(
    lambda price: PerSeatCharge(id="s", name="S", model="per_seat", unit_price=price)
)
package_charges = st.builds(
    lambda size, price, free: PackageCharge(
        id="k",
        name="K",
        model="package",
        metric="m",
        block_size=size,
        block_price=price,
        free_blocks=free,
    ),
    money(10_000, 2).filter(lambda size: size > 0),
    money(500, 2),
    st.integers(0, 3),
)
charges_of_every_model = st.one_of(
    flat_charges,
    per_seat_charges,
    per_unit_charges,
    graduated_charges,
    volume_charges,
    package_charges,
)
# frame-scale quantities: Decimal(38, 12)
frame_quantities = st.decimals(
    min_value=0, max_value=10**9, places=12, allow_nan=False, allow_infinity=False
)
priced_quantities = st.one_of(quantities, frame_quantities)


@FAST_PROPERTY
@given(charges_of_every_model, priced_quantities)
def test_details_add_up_to_the_charge_for_every_model(charge: ChargeBase, q: Decimal) -> None:
    priced = charge.price(q)
    assert exact_sum([d.amount for d in priced.details]) == Fraction(priced.amount)
    assert priced.quantity == q
    if isinstance(charge, GraduatedCharge):
        assert exact_sum([d.quantity for d in priced.details]) == Fraction(q)


CATALOG_VOICE = GraduatedCharge(
    id="voice",
    name="Outbound voice",
    model="graduated",
    metric="voice",
    price_unit="min",
    tiers=[
        Tier(up_to=Decimal(1000), unit_price=Decimal("0.00")),
        Tier(up_to=Decimal(20000), unit_price=Decimal("0.0120")),
        Tier(up_to=None, unit_price=Decimal("0.0085")),
    ],
)


@FAST_PROPERTY
@given(charges_of_every_model, st.integers(0, 10**8))
# 1,260,031 s / 60 = 21,000.516666666667 min: 0 + 228 + 1,000.516666666667 x 0.0085
@example(CATALOG_VOICE, 1_260_031)
def test_details_add_up_for_seconds_priced_per_minute(charge: ChargeBase, seconds: int) -> None:
    _, _, priced = price_quantity(
        charge.model_copy(update={"price_unit": "min"}), Decimal(seconds), "s"
    )
    assert exact_sum([d.amount for d in priced.details]) == Fraction(priced.amount)


limits = st.tuples(
    st.one_of(st.none(), money(1_000, 2).map(lambda units: Allowance(units=units))),
    st.one_of(st.none(), money(500, 2)),
    st.one_of(st.none(), money(5_000, 2)),
).filter(lambda t: t[1] is None or t[2] is None or t[1] <= t[2])


@FAST_PROPERTY
@given(
    st.one_of(per_unit_charges, graduated_charges, volume_charges, package_charges),
    limits,
    priced_quantities,
)
def test_details_add_up_with_allowance_minimum_and_maximum(
    charge: ChargeBase,
    limit: tuple[Allowance | None, Decimal | None, Decimal | None],
    q: Decimal,
) -> None:
    allowance, minimum, maximum = limit
    charge = charge.model_copy(
        update={"free_units": allowance, "minimum_amount": minimum, "maximum_amount": maximum}
    )
    priced = price_charge(charge, q)
    assert exact_sum([d.amount for d in priced.details]) == Fraction(priced.amount)
    if minimum is not None:
        assert priced.amount >= minimum
    if maximum is not None:
        assert priced.amount <= maximum


rounding_modes = st.sampled_from(list(RoundingMode))
currencies = st.sampled_from(["USD", "JPY", "BHD"])
amounts = st.decimals(
    min_value=-(10**9), max_value=10**9, places=8, allow_nan=False, allow_infinity=False
)


@FAST_PROPERTY
@given(amounts, currencies, rounding_modes)
def test_round_money_moves_an_amount_by_less_than_a_minor_unit(
    amount: Decimal, currency: str, mode: RoundingMode
) -> None:
    rounded = round_money(amount, currency, mode)
    minor_unit = Fraction(1, 10 ** minor_unit_exponent(currency))
    moved = abs(Fraction(rounded) - Fraction(amount))
    if mode.value.startswith("half_"):
        assert moved <= minor_unit / 2
    else:
        assert moved < minor_unit
    # the result is a whole number of minor units, and round-trips through them
    assert from_minor_units(to_minor_units(rounded, currency), currency) == rounded
    # directed modes move the right way
    if mode is RoundingMode.CEILING:
        assert rounded >= amount
    if mode is RoundingMode.FLOOR:
        assert rounded <= amount
    if mode is RoundingMode.UP:
        assert abs(rounded) >= abs(amount)
    if mode is RoundingMode.DOWN:
        assert abs(rounded) <= abs(amount)


OCT = BillingPeriod.parse("2026-10")
CATALOG = parse_catalog(CATALOG_YAML)

usage_rows = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C", "D"]),
        st.sampled_from(["voice", "sms", "storage", "video"]),
        money(100_000, 3),
        st.integers(1, 31),
    ),
    max_size=25,
)
# each account: no subscription, or one on a plan (possibly one the catalog lacks),
# starting and ending anywhere in or around the period
subscriptions = st.tuples(
    st.sampled_from([None, "usd", "jpy", "retired-plan"]),
    st.integers(-5, 31),
    st.one_of(st.none(), st.integers(1, 40)),
)


@FRAME_PROPERTY
@given(usage_rows, st.lists(subscriptions, min_size=4, max_size=4))
def test_rated_lines_add_up_to_invoice_totals(
    rows: list[tuple[str, str, Decimal, int]],
    subs: list[tuple[str | None, int, int | None]],
) -> None:
    sub_rows = []
    for account, (plan, start, length) in zip("ABCD", subs, strict=True):
        if plan is None:
            continue
        start_date = date(2026, 10, 1).fromordinal(date(2026, 10, 1).toordinal() + start)
        end_date = (
            None if length is None else start_date.fromordinal(start_date.toordinal() + length)
        )
        sub_rows.append(
            {
                "subscription_id": f"S-{account}",
                "account_id": account,
                "plan_id": plan,
                "start_date": start_date,
                "end_date": end_date,
            }
        )
    usage = usage_frame([(a, m, q, at(day)) for a, m, q, day in rows])
    result = rate(usage, subscription_frame(sub_rows), CATALOG, OCT)

    # every event is either rated or unrated, never lost or counted twice
    assert result.rated_events + result.unrated_events == len(rows)
    # ... and each rated event sits on exactly one usage line (no charge bills it twice)
    usage_lines = result.lines.filter(pl.col("charge_kind") == "usage")
    assert int(usage_lines["events"].sum()) == result.rated_events

    lines = result.lines
    for line in lines.iter_rows(named=True):
        # rounded once, where the line is built, in the plan's currency and mode
        rounded = round_money(
            Decimal(line["precise_amount"]), line["currency"], RoundingMode(line["rounding"])
        )
        assert line["amount_minor"] == to_minor_units(rounded, line["currency"])
        assert line["amount"] == rounded
        assert line["amount_minor"] >= 0

    invoices = assemble_invoices(lines, {}, OCT, CATALOG.version, CATALOG.content_hash)
    expected = {}
    for line in lines.iter_rows(named=True):
        key = (line["account_id"], line["currency"])
        expected[key] = expected.get(key, 0) + line["amount_minor"]
    assert {(i.account_id, i.currency): i.total_minor for i in invoices} == expected
    # each invoice is within half a minor unit per line of the sum of precise amounts
    for invoice in invoices:
        precise = sum((Decimal(line.precise_amount) for line in invoice.lines), Decimal(0))
        half = Decimal(1).scaleb(-minor_unit_exponent(invoice.currency)) / 2
        assert abs(invoice.total - precise) <= half * len(invoice.lines)
    assert sum(len(i.lines) for i in invoices) == lines.height
