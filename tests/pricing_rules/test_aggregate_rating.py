"""Usage charges priced as a frame (`pricing_rules.aggregate_rating`) give, line for line,
the fields pricing one quantity at a time gives (`rating.usage_fields`), text for text."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pricing_rules.aggregate_rating import (
    fixed_frame_ready,
    frame_ready,
    price_fixed_lines,
    price_usage_lines,
)
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
)
from pricing_rules.money import RoundingMode, plain, round_money, to_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import fixed_fields, rate, subscription_frame, usage_fields
from pricing_rules.terms import AccountTerms
from tests.pricing_rules.frames import at, usage_frame

QUANTITY = pl.Decimal(38, 12)
EQUIVALENCE = settings(max_examples=150, deadline=None, database=None)


def decimals(max_value: int, places: int) -> st.SearchStrategy[Decimal]:
    return st.integers(0, places).flatmap(
        lambda p: st.decimals(
            min_value=0, max_value=max_value, places=p, allow_nan=False, allow_infinity=False
        )
    )


prices = decimals(50, 6)
amounts = decimals(500, 4)
usage_quantities = st.one_of(
    st.integers(0, 5000).map(Decimal),
    decimals(100_000, 12),
    st.sampled_from([Decimal(0), Decimal("1E-12"), Decimal("999.99995"), Decimal(10**9)]),
)


@st.composite
def tiers(draw: st.DrawFn) -> list[Tier]:
    bounds = sorted(draw(st.sets(decimals(10_000, 3).filter(lambda d: d > 0), max_size=3)))
    ups: list[Decimal | None] = [*bounds, None]
    return [
        Tier(up_to=up, unit_price=draw(prices), flat_fee=draw(st.sampled_from([0, 0, 5])))
        for up in ups
    ]


@st.composite
def charges(draw: st.DrawFn) -> ChargeBase:
    common: dict[str, object] = {"id": "c", "name": "Use", "metric": "m"}
    if draw(st.booleans()):
        common["free_units"] = Allowance(
            units=draw(decimals(2000, 12)), per=draw(st.sampled_from(["plan", "seat"]))
        )
    low = draw(st.none() | amounts)
    high = draw(st.none() | amounts)
    if low is not None and high is not None and low > high:
        low, high = high, low
    common |= {"minimum_amount": low, "maximum_amount": high}
    model = draw(st.sampled_from(["per_unit", "graduated", "volume", "package"]))
    if model == "per_unit":
        return PerUnitCharge(model="per_unit", unit_price=draw(prices), **common)  # type: ignore[arg-type]
    if model == "package":
        return PackageCharge(
            model="package",
            block_size=draw(decimals(2000, 3).filter(lambda d: d > 0)),
            block_price=draw(prices.filter(lambda d: d > 0)),
            free_blocks=draw(st.integers(0, 3)),
            **common,  # type: ignore[arg-type]
        )
    cls = GraduatedCharge if model == "graduated" else VolumeCharge
    return cls(model=model, tiers=draw(tiers()), **common)  # type: ignore[arg-type]


def assert_same_as_one_by_one(
    charge: ChargeBase,
    quantities: list[Decimal],
    seats: list[int],
    currency: str,
    served: int | None = None,
) -> None:
    """`served`: the days of a 31-day period the subscriptions were billed for."""
    frame = pl.DataFrame(
        {
            "quantity": quantities,
            "seats": seats,
            "served_days": [31 if served is None else served] * len(seats),
        },
        schema={"quantity": QUANTITY, "seats": pl.Int64, "served_days": pl.Int64},
    )
    mode = RoundingMode.HALF_UP
    priced = price_usage_lines(
        charge,
        frame,
        metric_unit="event",
        currency=currency,
        rounding=mode,
        period_days=None if served is None else 31,
    )
    for row in priced.iter_rows(named=True):
        days = None if served is None else (served, 31)
        one = usage_fields(charge, row["quantity"], "event", row["seats"], served=days)
        assert row["description"] == one["description"]
        assert row["details"] == json.dumps(one["details"], default=str)
        assert row["precise_amount"] == plain(one["precise"])
        assert Decimal(row["precise_amount"]) == one["precise"]
        assert row["unit"] == one["unit"]
        expected_price = None if one["unit_price"] is None else one["unit_price"]
        assert row["unit_price"] == expected_price
        rounded = round_money(one["precise"], currency, mode)
        assert row["amount"] == rounded
        assert row["amount_minor"] == to_minor_units(rounded, currency)


@EQUIVALENCE
@given(
    charge=charges(),
    quantities=st.lists(usage_quantities, min_size=1, max_size=6),
    seats=st.integers(0, 40),
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
)
@example(  # 2,350 messages in blocks of 1,000, one free: 3 started, 2 paid x 7.50 = 15.00
    charge=PackageCharge(
        id="c",
        name="SMS",
        metric="m",
        model="package",
        block_size=Decimal(1000),
        block_price=Decimal("7.50"),
        free_blocks=1,
    ),
    quantities=[Decimal(2350), Decimal("1000.000000000001"), Decimal(0)],
    seats=1,
    currency="USD",
)
def test_a_frame_of_quantities_is_priced_as_each_quantity_alone(
    charge: ChargeBase, quantities: list[Decimal], seats: int, currency: str
) -> None:
    assert frame_ready(charge, "event")
    assert_same_as_one_by_one(charge, quantities, [seats] * len(quantities), currency)


@EQUIVALENCE
@given(
    charge=charges().filter(lambda c: c.minimum_amount is not None),
    quantities=st.lists(usage_quantities, min_size=1, max_size=4),
    served=st.integers(0, 31),
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_a_minimum_prorated_in_a_frame_is_as_prorated_alone(
    charge: ChargeBase, quantities: list[Decimal], served: int, currency: str
) -> None:
    assert_same_as_one_by_one(charge, quantities, [1] * len(quantities), currency, served)


@st.composite
def fixed_fees(draw: st.DrawFn) -> ChargeBase:
    common = {"id": "f", "name": "Fee", "timing": draw(st.sampled_from(["advance", "arrears"]))}
    if draw(st.booleans()):
        return PerSeatCharge(model="per_seat", unit_price=draw(prices), **common)  # type: ignore[arg-type]
    return FlatCharge(model="flat", amount=draw(prices), **common)  # type: ignore[arg-type]


@EQUIVALENCE
@given(
    charge=fixed_fees(),
    seats=st.lists(st.integers(0, 5000), min_size=1, max_size=5),
    days=st.sampled_from([28, 29, 30, 31, 90, 92, 365]),
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_a_frame_of_whole_period_fees_is_priced_as_each_fee_alone(
    charge: ChargeBase, seats: list[int], days: int, currency: str
) -> None:
    assert fixed_frame_ready(charge)
    mode = RoundingMode.HALF_EVEN
    priced = price_fixed_lines(
        charge, pl.DataFrame({"seats": seats}), days=days, currency=currency, rounding=mode
    )
    for row in priced.iter_rows(named=True):
        one = fixed_fields(charge, row["seats"], days, days)
        assert row["description"] == one["description"]
        assert row["details"] == json.dumps(one["details"], default=str)
        assert row["precise_amount"] == plain(one["precise"])
        assert (row["quantity"], row["unit_price"]) == (one["quantity"], one["unit_price"])
        assert row["proration_factor"] == one["proration_factor"] == 1
        assert row["amount"] == round_money(one["precise"], currency, mode)


def test_graduated_golden_line_with_allowance_tiers_and_flat_fee() -> None:
    # 60 GB, 5 GB free: 55 GB billable
    # tier 1 (0, 50]: 50 x 0.10 = 5.00 ; tier 2 (50, ∞): 5 x 0.08 = 0.40 + 2.00 flat
    # total 5.00 + 2.40 = 7.40
    charge = GraduatedCharge(
        id="data",
        name="Data",
        metric="m",
        model="graduated",
        free_units=Allowance(units=Decimal(5)),
        tiers=[
            Tier(up_to=Decimal(50), unit_price=Decimal("0.10")),
            Tier(up_to=None, unit_price=Decimal("0.08"), flat_fee=Decimal("2.00")),
        ],
    )
    frame = pl.DataFrame(
        {"quantity": [Decimal(60)], "seats": [1]}, schema={"quantity": QUANTITY, "seats": pl.Int64}
    )
    line = price_usage_lines(
        charge, frame, metric_unit="GB", currency="USD", rounding=RoundingMode.HALF_UP
    ).row(0, named=True)
    assert line["amount"] == Decimal("7.40")
    assert line["description"] == (
        "Data: 60 GB — 5 GB included, first 50 GB at 0.10, next 5 GB at 0.08 + 2.00 flat"
    )
    rows = json.loads(line["details"])
    assert [r["amount"] for r in rows] == ["0", "5", "2.4"]
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("7.40")


def test_charges_the_frame_form_leaves_to_one_by_one_pricing() -> None:
    flat = FlatCharge(id="f", name="Fee", model="flat", amount=Decimal(10))
    assert not frame_ready(flat, "event")
    converted = PerUnitCharge(
        id="v",
        name="Voice",
        metric="m",
        model="per_unit",
        unit_price=Decimal("0.01"),
        price_unit="min",
    )
    assert not frame_ready(converted, "s")
    fine_price = PerUnitCharge(
        id="v", name="Voice", metric="m", model="per_unit", unit_price=Decimal("0.0000001")
    )
    assert not frame_ready(fine_price, "event")
    capped_fee = FlatCharge(
        id="f", name="Fee", model="flat", amount=Decimal(10), maximum_amount=Decimal(5)
    )
    assert not fixed_frame_ready(capped_fee)
    fine_fee = FlatCharge(
        id="f", name="Fee", model="flat", amount=Decimal("10.0000000000000000001")
    )
    assert not fixed_frame_ready(fine_fee)
    free_package = PackageCharge(
        id="p",
        name="P",
        metric="m",
        model="package",
        block_size=Decimal(10),
        block_price=Decimal(0),
    )
    assert not frame_ready(free_package, "event")
    with pytest.raises(ValueError, match="one by one"):
        price_usage_lines(
            flat,
            pl.DataFrame(schema={"quantity": QUANTITY, "seats": pl.Int64}),
            metric_unit="event",
            currency="USD",
            rounding=RoundingMode.HALF_UP,
        )


# --- inside `rate`: frame lines beside lines priced one by one ---------------------------

MIXED_CATALOG = """
version: "t"
metrics:
  sms: {name: SMS, unit: message, aggregation: sum}
plans:
  up:
    name: Half up
    currency: USD
    rounding: half_up
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.005"}
  even:
    name: Half even
    currency: USD
    rounding: half_even
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.005"}
"""


def rate_mixed(
    subs: list[dict[str, object]],
    usage: list[tuple[str, str, int, datetime]],
    terms: list[AccountTerms] | None = None,
) -> pl.DataFrame:
    catalog = parse_catalog(MIXED_CATALOG)
    result = rate(
        usage_frame(usage),
        subscription_frame(subs),
        catalog,
        BillingPeriod.parse("2026-10"),
        terms={t.account_id: t for t in terms or []},
    )
    return result.lines.filter(pl.col("charge_kind") == "usage").sort("line_id")


def test_an_account_price_is_priced_one_by_one_beside_the_frame_lines() -> None:
    # A: list price 0.005 (frame): 901 x 0.005 = 4.505 -> 4.51 (half up)
    # B: own price 0.004 (one by one): 901 x 0.004 = 3.604 -> 3.60
    subs = [
        {
            "subscription_id": s,
            "account_id": a,
            "plan_id": "up",
            "start_date": date(2026, 1, 1),
            "end_date": None,
        }
        for s, a in (("SA", "A"), ("SB", "B"))
    ]
    usage = [(a, "sms", 901, at(5)) for a in ("A", "B")]
    own = AccountTerms.model_validate(
        {
            "account_id": "B",
            "overrides": [{"plan_id": "up", "charge_id": "sms", "unit_price": "0.004"}],
        }
    )
    lines = rate_mixed(subs, usage, [own])
    assert lines.select("line_id", "amount_minor", "precise_amount").rows() == [
        ("SA:sms", 451, "4.505"),
        ("SB:sms", 360, "3.604"),
    ]
    assert lines["description"].to_list() == [
        "SMS: 901 message — 901 message at 0.005",
        "SMS: 901 message — 901 message at 0.004 (account price)",
    ]


def test_a_frame_line_is_rounded_as_its_invoice_rounds() -> None:
    # The account's USD invoice starts under plan "up" (half up) on Oct 1; plan "even"
    # (half even) takes over on Oct 16. Its usage, 901 x 0.005 = 4.505, is a tie:
    # half up gives 4.51, half even 4.50. The invoice rounds half up, so both lines do.
    subs = [
        {
            "subscription_id": "S1",
            "account_id": "A",
            "plan_id": "up",
            "start_date": date(2026, 1, 1),
            "end_date": date(2026, 10, 16),
        },
        {
            "subscription_id": "S2",
            "account_id": "A",
            "plan_id": "even",
            "start_date": date(2026, 10, 16),
        },
    ]
    usage = [("A", "sms", 901, at(5)), ("A", "sms", 901, at(20))]
    lines = rate_mixed(subs, usage)
    assert lines.select("line_id", "amount_minor", "rounding").rows() == [
        ("S1:sms", 451, "half_up"),
        ("S2:sms", 451, "half_up"),
    ]


def test_a_frame_line_left_off_every_invoice_stops_the_rating() -> None:
    # Nothing priced may vanish: assembling without one of the priced lines is an error,
    # and so is a line priced twice.
    from pricing_rules.aggregate_rating import line_frame
    from pricing_rules.rating import RatingError, _FrameLines, _Invoice

    charge = FlatCharge(id="f", name="Fee", model="flat", amount=Decimal(10))
    subs = pl.DataFrame(
        {"subscription_id": ["S"], "account_id": ["A"], "plan_id": ["p"], "seats": [1]}
    )
    priced = price_fixed_lines(charge, subs, days=30, currency="USD", rounding=RoundingMode.HALF_UP)
    lines = line_frame(
        priced, key="f", charge=charge, currency="USD", rounding=RoundingMode.HALF_UP
    )
    frames = _FrameLines()
    frames.add(lines)
    assert frames.covered().rows() == [("S", "f")]
    plain = frames.split(pl.Series([], dtype=pl.String))
    assert plain.height == 0
    invoice = _Invoice("A", "USD", RoundingMode.HALF_UP, lines=[frames.refs[("S", "f")]])
    no_plain = plain.with_columns(pl.lit(0, pl.Int64).alias(c) for c in ("_inv", "_listed", "_pos"))
    assert frames.assemble([invoice], no_plain)["amount_minor"].to_list() == [1000]
    with pytest.raises(RatingError, match="1 lines were priced as refs, 0 invoiced"):
        frames.assemble([], no_plain)
    frames.add(lines)
    with pytest.raises(RatingError, match="line S:f was priced twice"):
        frames.covered()
