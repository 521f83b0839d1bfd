"""pricing_rules.charges.call_deck: calls priced one by one from a deck, then the charge's
minimum and maximum on their sum. The per-call arithmetic is in test_decks.py; rating
whole months of calls is in test_event_rating.py."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing_rules.catalog import CatalogError, parse_catalog
from pricing_rules.charges import CallDeckCharge
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import CALL_SCHEMA

OCT = BillingPeriod.parse("2026-10")
DECK = "prefix,destination,rate_per_minute\n44,United Kingdom,0.0100\n"


def catalog_with(limits: str, deck_rules: str = "") -> Any:
    return parse_catalog(
        f"""
version: test
metrics:
  voice: {{name: Voice, unit: s, aggregation: sum}}
decks:
  uk:
    file: uk.csv
    currency: USD
    increments: "60/60"
    rounding: per_call
    rounding_decimals: 4{deck_rules}
plans:
  usd:
    name: USD
    currency: USD
    charges:
      - {{id: calls, name: Calls, model: call_deck, metric: voice, deck: uk{limits}}}
""",
        deck_texts={"uk.csv": DECK},
    )


def calls(account: str, seconds: list[int]) -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "event_id": [f"{account}-{i}" for i in range(len(seconds))],
            "account_id": [account] * len(seconds),
            "metric": ["voice"] * len(seconds),
            "quantity": [Decimal(s) for s in seconds],
            "timestamp": [datetime(2026, 10, 5, 12, tzinfo=UTC)] * len(seconds),
            "destination": ["+442071234567"] * len(seconds),
        },
        schema=CALL_SCHEMA,
    ).lazy()


def subscriptions(*accounts: str) -> pl.DataFrame:
    return subscription_frame(
        [
            {
                "subscription_id": f"S-{a}",
                "account_id": a,
                "plan_id": "usd",
                "start_date": date(2026, 1, 1),
                "end_date": None,
            }
            for a in accounts
        ]
    )


def call_line(limits: str, seconds: list[int], account: str = "A") -> dict[str, Any]:
    result = rate(calls(account, seconds), subscriptions(account), catalog_with(limits), OCT)
    lines = result.lines.filter(pl.col("charge_id") == "calls")
    assert lines.height == 1
    return lines.row(0, named=True)


def test_a_call_deck_charge_is_not_priced_as_a_total() -> None:
    charge = CallDeckCharge(id="v", name="Calls", model="call_deck", metric="voice", deck="d")
    with pytest.raises(TypeError, match="price each call"):
        charge.price(Decimal(60))


def test_included_minutes_are_refused_with_their_path() -> None:
    with pytest.raises(CatalogError) as error:
        catalog_with(", free_units: {units: '600'}")
    assert "plans.usd.charges[0]" in str(error.value)
    assert "takes no free_units" in str(error.value)


def test_each_row_explains_its_calls_billed_seconds_and_increments() -> None:
    # 60/60 increments: 600 s bills 10 increments of 60 s; 61 s bills 2 (60 + 60 = 120 s).
    # 720 s = 12 min x 0.0100 = 0.1200
    line = call_line("", [600, 61])
    (row,) = json.loads(line["details"])
    assert (
        row["label"]
        == "United Kingdom (+44, all): 2 call(s), 720 s billed in 12 increment(s) of 60/60"
    )
    assert (row["calls"], row["billed_seconds"], row["increments"]) == (2, 720, 12)
    assert Decimal(row["amount"]) == Decimal("0.1200") == Decimal(line["precise_amount"])
    assert (
        "rated per call from deck uk (60/60 s increments; 1 destination/band rows)"
        in (line["description"])
    )


def test_a_row_says_how_much_of_it_is_connect_fees_and_minimum_top_ups() -> None:
    # 0.0100/min, 60/60, connect fee 0.0100, minimum 0.0500 a call:
    # 61 s bills 120 s = 0.0200 + 0.0100 = 0.0300, topped up by 0.0200 to 0.0500;
    # 6 s bills 60 s = 0.0100 + 0.0100 = 0.0200, topped up by 0.0300 to 0.0500.
    # Row: 180 s in 3 increments, 0.0300 of time + 0.0200 connect + 0.0500 top-ups = 0.1000
    rules = "\n    connect_fee: '0.0100'\n    minimum_charge: '0.0500'"
    result = rate(calls("A", [61, 6]), subscriptions("A"), catalog_with("", rules), OCT)
    (row,) = json.loads(result.lines["details"][0])
    assert row["label"] == (
        "United Kingdom (+44, all): 2 call(s), 180 s billed in 3 increment(s) of 60/60, "
        "connect fees 0.0200, minimum charge top-ups 0.0500"
    )
    assert (row["connect_fees"], row["minimum_top_ups"], row["amount"]) == (
        "0.0200",
        "0.0500",
        "0.1000",
    )


def test_a_price_override_of_a_call_charge_is_not_applied_and_says_so() -> None:
    from pricing_rules.terms import AccountTerms

    # calls take their rates from the deck: 10 min x 0.0100 = 0.1000 stays, with a notice
    terms = AccountTerms.model_validate(
        {
            "account_id": "A",
            "overrides": [{"plan_id": "usd", "charge_id": "calls", "unit_price": "0.001"}],
        }
    )
    result = rate(calls("A", [600]), subscriptions("A"), catalog_with(""), OCT, terms={"A": terms})
    assert result.lines["precise_amount"].to_list() == ["0.1"]
    notices = result.notices.filter(pl.col("kind") == "override_invalid")["message"].to_list()
    assert len(notices) == 1 and "calls are priced from deck 'uk'" in notices[0]


def test_the_minimum_tops_up_the_sum_of_the_calls() -> None:
    # 3 calls of 10 minutes at 0.0100/min: 3 x 0.1000 = 0.3000; minimum 5.00 => top-up 4.70
    line = call_line(", minimum_amount: '5.00'", [600, 600, 600])
    assert line["amount"] == Decimal("5.00")
    rows = json.loads(line["details"])
    assert rows[-1]["label"] == "minimum charge top-up"
    assert Decimal(rows[-1]["amount"]) == Decimal("4.70")
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(line["precise_amount"])
    assert "topped up by 4.7 to the minimum charge" in line["description"]


def test_the_maximum_caps_the_sum_of_the_calls() -> None:
    # 2 calls of 100 minutes at 0.0100/min: 2 x 1.0000 = 2.0000; maximum 1.50 => cap -0.50
    line = call_line(", maximum_amount: '1.50'", [6000, 6000])
    assert line["amount"] == Decimal("1.50")
    rows = json.loads(line["details"])
    assert rows[-1]["label"] == "maximum charge cap"
    assert Decimal(rows[-1]["amount"]) == Decimal("-0.50")
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(line["precise_amount"])


def test_a_minimum_is_owed_without_a_single_call() -> None:
    # B made no call at all, and has no other usage: its line is the 5.00 minimum
    catalog = catalog_with(", minimum_amount: '5.00'")
    result = rate(calls("A", [60]), subscriptions("A", "B"), catalog, OCT)
    line = result.lines.filter(pl.col("account_id") == "B").row(0, named=True)
    assert (line["amount"], line["events"], line["quantity"]) == (Decimal("5.00"), 0, 0)
    assert [r["label"] for r in json.loads(line["details"])] == ["minimum charge top-up"]


def test_a_minimum_is_owed_when_nobody_on_the_plan_made_a_call() -> None:
    # no usage at all, not even a destination column: the calls are not read; 5.00 minimum
    from tests.pricing_rules.frames import usage_frame

    result = rate(
        usage_frame([]), subscriptions("A"), catalog_with(", minimum_amount: '5.00'"), OCT
    )
    assert result.lines.select("account_id", "amount", "events").rows() == [
        ("A", Decimal("5.00"), 0)
    ]


def test_the_minimum_of_a_subscription_started_in_the_period_is_prorated() -> None:
    # From October 17: 15 of 31 days, minimum 5.00 x 15/31 = 2.419354...; A made one
    # 1-minute call (0.0100) and B none: both are topped up to it => 2.42 each
    catalog = catalog_with(", minimum_amount: '5.00'")
    subs = subscriptions("A", "B").with_columns(pl.lit(date(2026, 10, 17)).alias("start_date"))
    later = calls("A", [60]).with_columns(
        pl.lit(datetime(2026, 10, 20, 12, tzinfo=UTC)).alias("timestamp")
    )
    result = rate(later, subs, catalog, OCT)
    lines = result.lines.sort("account_id")
    assert lines.select("account_id", "amount", "events").rows() == [
        ("A", Decimal("2.42"), 1),
        ("B", Decimal("2.42"), 0),
    ]
    for line in lines.iter_rows(named=True):
        assert "to the minimum charge for 15 of 31 days" in line["description"]
        rows = json.loads(line["details"])
        assert sum(Decimal(r["amount"]) for r in rows) == Decimal(line["precise_amount"])


def test_without_a_minimum_an_account_with_no_calls_has_no_call_line() -> None:
    result = rate(calls("A", [60]), subscriptions("A", "B"), catalog_with(""), OCT)
    assert result.lines["account_id"].to_list() == ["A"]


@settings(max_examples=30, deadline=None, database=None)
@given(
    seconds=st.lists(st.integers(0, 7200), max_size=6),
    low=st.sampled_from([None, "0.50", "2.00"]),
    high=st.sampled_from([None, "1.00", "3.00"]),
)
def test_limits_bound_the_line_and_its_rows_add_up(
    seconds: list[int], low: str | None, high: str | None
) -> None:
    if low is not None and high is not None and Decimal(low) > Decimal(high):
        return
    limits = "".join(
        f", {name}: '{value}'"
        for name, value in (("minimum_amount", low), ("maximum_amount", high))
        if value is not None
    )
    result = rate(calls("A", seconds), subscriptions("A"), catalog_with(limits), OCT)
    lines = result.lines.filter(pl.col("charge_id") == "calls")
    if lines.is_empty():  # no calls and no minimum: nothing to bill
        assert not seconds and low is None
        return
    line = lines.row(0, named=True)
    # each call is billed whole minutes at 0.0100/min, before the limits
    calls_total = sum(Decimal(-(-s // 60)) * Decimal("0.0100") for s in seconds)
    expected = max(calls_total, Decimal(low or 0))
    expected = min(expected, Decimal(high)) if high is not None else expected
    assert Decimal(line["precise_amount"]) == expected
    rows = json.loads(line["details"])
    assert sum(Decimal(r["amount"]) for r in rows) == expected
