"""pricing_rules.event_rating: calls priced one by one from a rate deck inside `rate`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing_rules.catalog import Catalog, CatalogError, parse_catalog
from pricing_rules.decks import rate_calls
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import CALL_SCHEMA

OCT = BillingPeriod.parse("2026-10")
DECK = """prefix,destination,band,rate_per_minute
44,United Kingdom,all,0.0100
447,United Kingdom - Mobile,all,0.0500
1,United States,peak,0.0200
1,United States,offpeak,0.0100
1,United States,weekend,0.0050
"""
CATALOG = """
version: test
metrics:
  voice: {name: Voice, unit: s, aggregation: sum, dimensions: [direction]}
decks:
  intl:
    file: intl.csv
    currency: USD
    increments: "60/60"
    connect_fee: "0.0100"
    minimum_charge: "0"
    rounding: per_call
    rounding_decimals: 4
plans:
  usd:
    name: USD
    currency: USD
    charges:
      - {id: calls, name: Outbound calls, model: call_deck, metric: voice, deck: intl,
         filters: {direction: outbound}}
"""


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG, deck_texts={"intl.csv": DECK})


def calls(rows: list[tuple[str, str, int, datetime]]) -> pl.LazyFrame:
    return pl.DataFrame(
        [
            {
                "event_id": f"c{i}",
                "account_id": "A",
                "metric": "voice",
                "quantity": Decimal(seconds),
                "timestamp": at,
                "destination": number,
                "direction": direction,
            }
            for i, (number, direction, seconds, at) in enumerate(rows)
        ],
        schema={**CALL_SCHEMA, "direction": pl.String()},
    ).lazy()


SUBS = subscription_frame(
    [
        {
            "subscription_id": "S",
            "account_id": "A",
            "plan_id": "usd",
            "start_date": date(2026, 1, 1),
            "end_date": None,
        }
    ]
)
ACCOUNTS = pl.DataFrame(
    {"account_id": ["A"], "currency": ["USD"], "country": ["US"], "timezone": ["America/New_York"]}
)


def test_calls_are_priced_per_call_and_summed_into_one_line(catalog: Catalog) -> None:
    wednesday_noon_utc = datetime(2026, 10, 7, 16, 0, tzinfo=UTC)  # 12:00 in New York
    usage = calls(
        [
            # 61 s to a UK landline: 60/60 bills 120 s; 0.0100 x 2 = 0.0200 + connect 0.0100
            ("+442071234567", "outbound", 61, wednesday_noon_utc),
            # 30 s to a UK mobile (longest prefix 447): 60 s x 0.0500 = 0.0500 + 0.0100
            ("+447700900123", "outbound", 30, wednesday_noon_utc),
            # 120 s to the US at peak (12:00 local): 0.0200 x 2 = 0.0400 + 0.0100
            ("+12125550100", "outbound", 120, wednesday_noon_utc),
            # inbound calls are not this charge's: filtered out, and no other charge takes them
            ("+12125550100", "inbound", 300, wednesday_noon_utc),
        ]
    )
    result = rate(usage, SUBS, catalog, OCT, accounts=ACCOUNTS)

    (line,) = result.lines.iter_rows(named=True)
    # 0.0300 + 0.0600 + 0.0500 = 0.1400 => 14 cents
    assert Decimal(line["precise_amount"]) == Decimal("0.1400")
    assert line["amount_minor"] == 14
    assert line["events"] == 3
    details = json.loads(line["details"])
    assert sum(Decimal(d["amount"]) for d in details) == Decimal("0.1400")
    assert {d["prefix"] for d in details} == {"44", "447", "1"}
    assert {d["band"] for d in details} == {"all", "peak"}
    assert result.unrated["reason"].to_list() == ["no_matching_charge"]
    assert result.rated_events == 3
    assert result.unrated_events == 1


def test_a_destination_without_a_rate_is_unrated_never_zero(catalog: Catalog) -> None:
    at = datetime(2026, 10, 7, 16, 0, tzinfo=UTC)
    usage = calls(
        [
            ("+442071234567", "outbound", 60, at),  # 0.0100 + 0.0100 = 0.0200
            ("+81312345678", "outbound", 600, at),  # Japan: not in the deck
            ("not-a-number", "outbound", 60, at),
        ]
    )
    result = rate(usage, SUBS, catalog, OCT, accounts=ACCOUNTS)

    assert result.lines["amount_minor"].to_list() == [2]
    unrated = result.unrated.filter(pl.col("reason") == "no_rate_for_destination")
    assert unrated["events"].sum() == 2
    assert result.rated_events + result.unrated_events == 3


def test_weekend_band_uses_the_account_time_zone(catalog: Catalog) -> None:
    # Saturday 2026-10-10 02:00 UTC is Friday 22:00 in New York: offpeak, not weekend.
    friday_night = datetime(2026, 10, 10, 2, 0, tzinfo=UTC)
    # 60 s at offpeak 0.0100 + connect 0.0100 = 0.0200
    result = rate(
        calls([("+12125550100", "outbound", 60, friday_night)]),
        SUBS,
        catalog,
        OCT,
        accounts=ACCOUNTS,
    )
    details = json.loads(result.lines["details"][0])
    assert [d["band"] for d in details] == ["offpeak"]
    assert result.lines["amount_minor"].to_list() == [2]


def test_a_deck_in_another_currency_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match=r"plans\.usd\.charges\[0\]\.deck"):
        parse_catalog(
            CATALOG.replace("currency: USD\n    increments", "currency: EUR\n    increments"),
            deck_texts={"intl.csv": DECK},
        )


def test_a_missing_deck_file_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match=r"decks\.intl\.file"):
        parse_catalog(CATALOG, deck_texts={})


NUMBERS = ["+442071234567", "+447700900123", "+4479", "+44", "+12125550100", "+81312345678", "x"]
ZONES = {"A": "America/New_York", "B": "Europe/London", "C": "UTC"}


@settings(max_examples=60, deadline=None, database=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(sorted(ZONES)),
            st.sampled_from(NUMBERS),
            st.integers(0, 400),
            st.integers(0, 30 * 24 * 60 - 1),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_call_lines_list_what_each_call_was_priced(rows: list[tuple[str, str, int, int]]) -> None:
    """Each line's rows are its calls, priced one by one by `rate_calls`, summed per
    (prefix, band), listed by destination, prefix and band; unpriced calls are unrated."""
    catalog = parse_catalog(CATALOG, deck_texts={"intl.csv": DECK})
    start = datetime(2026, 10, 1, 12, tzinfo=UTC)
    usage = pl.DataFrame(
        [
            {
                "event_id": f"c{i}",
                "account_id": account,
                "metric": "voice",
                "quantity": Decimal(seconds),
                "timestamp": start + timedelta(minutes=minute),
                "destination": number,
                "direction": "outbound",
            }
            for i, (account, number, seconds, minute) in enumerate(rows)
        ],
        schema=calls([]).collect_schema(),
    )
    subs = subscription_frame(
        [
            {
                "subscription_id": f"S{account}",
                "account_id": account,
                "plan_id": "usd",
                "start_date": date(2026, 1, 1),
                "end_date": None,
            }
            for account in sorted(ZONES)
        ]
    )
    accounts = pl.DataFrame({"account_id": list(ZONES), "timezone": list(ZONES.values())})
    result = rate(usage.lazy(), subs, catalog, OCT, accounts=accounts)

    priced = rate_calls(
        usage.lazy().select(
            "account_id",
            "destination",
            "timestamp",
            pl.col("quantity").cast(pl.Int64).alias("duration"),
            pl.col("account_id").replace_strict(ZONES).alias("timezone"),
        ),
        catalog.rate_deck("intl"),
    ).collect()
    expected: dict[str, dict[tuple[str, str, str], list[Any]]] = {}
    for call in priced.filter(pl.col("unrated_reason").is_null()).iter_rows(named=True):
        key = (call["deck_destination"], call["prefix"], call["band"])
        row = expected.setdefault(f"S{call['account_id']}", {}).setdefault(key, [0, 0, 0, None])
        row[0] += 1
        row[1] += call["billed_seconds"]
        row[2] += call["amount"]
        row[3] = call["rate_per_minute"]
    got = {
        line["subscription_id"]: [
            (d["prefix"], d["band"], d["calls"], d["billed_seconds"], Decimal(d["amount"]))
            for d in json.loads(line["details"])
        ]
        for line in result.lines.iter_rows(named=True)
    }
    assert got == {
        sub: [(k[1], k[2], v[0], v[1], v[2]) for k, v in sorted(rows_by_key.items())]
        for sub, rows_by_key in expected.items()
    }
    for line in result.lines.iter_rows(named=True):
        for d in json.loads(line["details"]):
            rate_of = expected[line["subscription_id"]]
            ((destination, *_), (*_, per_minute)) = next(
                (k, v) for k, v in rate_of.items() if k[1:] == (d["prefix"], d["band"])
            )
            assert d["label"].startswith(f"{destination} (+{d['prefix']}, {d['band']})")
            assert Decimal(d["unit_price"]) == per_minute
    assert result.unrated["events"].sum() == priced["unrated_reason"].is_not_null().sum()


@pytest.mark.parametrize("split", [False, True])
def test_every_call_counted_rated_is_on_a_line(catalog: Catalog, split: bool) -> None:
    # A Tokyo account whose subscription is exactly October. 2026-09-30 20:00 UTC is
    # October 1 in Tokyo and 2026-11-01 05:00 UTC is November 1 there. The account's one
    # subscription covers the period, so all its usage is its subscription's, as the
    # partials say (validation keeps days outside the month out of a real run); split by
    # day (a second subscription from October 20), the November call has no
    # subscription. Either way, each call is billed or unrated, never counted and lost.
    usage = calls(
        [
            ("+442071234567", "outbound", 60, datetime(2026, 10, 3, 12, tzinfo=UTC)),
            ("+442071234567", "outbound", 60, datetime(2026, 9, 30, 20, tzinfo=UTC)),
            ("+442071234567", "outbound", 60, datetime(2026, 11, 1, 5, tzinfo=UTC)),
        ]
    )
    rows = [
        {
            "subscription_id": "S",
            "account_id": "A",
            "plan_id": "usd",
            "start_date": date(2026, 10, 1),
            "end_date": date(2026, 10, 20) if split else date(2026, 11, 1),
        }
    ]
    if split:
        rows.append({**rows[0], "subscription_id": "T", "start_date": date(2026, 10, 20)})
        rows[1]["end_date"] = date(2026, 11, 1)
    tokyo = pl.DataFrame({"account_id": ["A"], "timezone": ["Asia/Tokyo"]})
    result = rate(usage, subscription_frame(rows), catalog, OCT, accounts=tokyo)

    billed = int(result.lines.filter(pl.col("charge_kind") == "usage")["events"].sum())
    assert billed == result.rated_events
    assert (billed, result.unrated_events) == ((2, 1) if split else (3, 0))
    if split:
        assert result.unrated.select("reason", "first_day").rows() == [
            ("no_subscription", date(2026, 11, 1))
        ]
