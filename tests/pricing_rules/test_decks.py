"""pricing_rules.decks: call rating from rate decks (prefixes, increments, bands, rounding)."""

from __future__ import annotations

import dataclasses
import decimal
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pricing_rules.decks import (
    EXACT_DTYPE,
    OUTPUT_COLUMNS,
    RATE_DTYPE,
    SUMMARY_KEYS,
    DeckError,
    Increments,
    RateDeck,
    TimeBands,
    _round,
    match_prefixes,
    parse_deck,
    rate_calls,
    summarize_calls,
)
from pricing_rules.money import RoundingMode

DECK_PATH = Path(__file__).resolve().parents[2] / "catalog" / "decks" / "intl-voice.csv"
HEADER = "prefix,destination,band,rate_per_minute\n"
FRIDAY_NOON = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)  # Friday 07:00 in New York (EST)

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Exact reference arithmetic for the tests: 60 significant digits, far beyond any amount.
REFERENCE = decimal.Context(prec=60)


def deck_of(rows: str, *, increments: str = "60/60", **rules: Any) -> RateDeck:
    return parse_deck("test-deck", HEADER + rows, currency="USD", increments=increments, **rules)


def calls_of(
    *calls: tuple[str | None, int | None] | tuple[str | None, int | None, datetime, str | None],
) -> pl.LazyFrame:
    """(destination, duration[, timestamp, timezone]) rows; event ids e0, e1, ..."""
    rows = [c if len(c) == 4 else (*c, FRIDAY_NOON, "UTC") for c in calls]
    return pl.LazyFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "account_id": ["acct-1"] * len(rows),
            "destination": [r[0] for r in rows],
            "duration": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "timezone": [r[3] for r in rows],
        },
        schema={
            "event_id": pl.String,
            "account_id": pl.String,
            "destination": pl.String,
            "duration": pl.Int64,
            "timestamp": pl.Datetime("us", "UTC"),
            "timezone": pl.String,
        },
    )


def rated(deck: RateDeck, *calls: Any) -> list[dict[str, Any]]:
    """rate_calls' rows, back in event order."""
    out = rate_calls(calls_of(*calls), deck).collect()
    return out.sort(pl.col("event_id").str.slice(1).cast(pl.Int64)).to_dicts()


AMOUNTS = ("usage_amount", "connect_fee", "minimum_adjustment", "amount")


def amounts(row: dict[str, Any]) -> tuple[str | None, ...]:
    return tuple(None if row[k] is None else str(row[k]) for k in AMOUNTS)


UK = "+442071234567"


# ---------------------------------------------------------------------------------------
# Billing increments
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "duration", "billed"),
    [
        ("60/60", 0, 0),  # an unanswered call bills nothing
        ("60/60", 1, 60),  # any answered call bills the first increment
        ("60/60", 60, 60),
        ("60/60", 61, 120),  # 60 + ceil(1 / 60) x 60 = 120
        ("60/10", 61, 70),  # 60 + ceil(1 / 10) x 10 = 70
        ("60/10", 125, 130),  # 60 + ceil(65 / 10) x 10 = 130
        ("30/6", 10, 30),
        ("30/6", 31, 36),  # 30 + ceil(1 / 6) x 6 = 36
        ("30/6", 45, 48),  # 30 + ceil(15 / 6) x 6 = 48
        ("1/1", 61, 61),
        ("6/30", 7, 36),  # the first increment may be the shorter one
    ],
)
def test_billed_seconds(text: str, duration: int, billed: int) -> None:
    assert Increments.parse(text).billed_seconds(duration) == billed


@pytest.mark.parametrize("text", ["60", "0/60", "60/0", "-1/1", "a/b", "60/60/60", "", "1.5/1"])
def test_bad_increments(text: str) -> None:
    with pytest.raises(ValueError, match="increments"):
        Increments.parse(text)


# ---------------------------------------------------------------------------------------
# Golden call amounts (rates in USD per minute, rounded per call to 4 decimals, half up)
# ---------------------------------------------------------------------------------------


def test_60_60() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n", increments="60/60")
    one, sixty, sixty_one = rated(deck, (UK, 1), (UK, 60), (UK, 61))
    assert (one["billed_seconds"], one["increments"]) == (60, 1)
    assert amounts(one) == ("0.0100", "0.0000", "0.0000", "0.0100")  # 0.0100 x 60 / 60
    assert amounts(sixty) == ("0.0100", "0.0000", "0.0000", "0.0100")
    # 61 s bills 120 s, 2 increments: 0.0100 x 120 / 60 = 0.0200
    assert (sixty_one["billed_seconds"], sixty_one["increments"]) == (120, 2)
    assert amounts(sixty_one) == ("0.0200", "0.0000", "0.0000", "0.0200")


def test_60_10() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n", increments="60/10")
    (row,) = rated(deck, (UK, 61))
    # 61 s bills 60 + 10 = 70 s: 0.0100 x 70 / 60 = 0.011666.. => 0.0117
    assert (row["billed_seconds"], row["increments"]) == (70, 2)
    assert amounts(row) == ("0.0117", "0.0000", "0.0000", "0.0117")


def test_30_6_with_minimum_charge() -> None:
    deck = deck_of("44,United Kingdom,all,0.0300\n", increments="30/6", minimum_charge="0.0200")
    short, longer, unanswered = rated(deck, (UK, 10), (UK, 45), (UK, 0))
    # 10 s bills 30 s: 0.0300 x 30 / 60 = 0.0150, topped up by 0.0050 to the minimum 0.0200
    assert (short["billed_seconds"], short["increments"]) == (30, 1)
    assert amounts(short) == ("0.0150", "0.0000", "0.0050", "0.0200")
    # 45 s bills 30 + ceil(15 / 6) x 6 = 48 s: 0.0300 x 48 / 60 = 0.0240, above the minimum
    assert (longer["billed_seconds"], longer["increments"]) == (48, 4)
    assert amounts(longer) == ("0.0240", "0.0000", "0.0000", "0.0240")
    # A zero-second call is billed 0: no minimum charge either
    assert (unanswered["billed_seconds"], unanswered["increments"]) == (0, 0)
    assert amounts(unanswered) == ("0.0000", "0.0000", "0.0000", "0.0000")


def test_1_1() -> None:
    deck = deck_of("44,United Kingdom,all,0.0600\n", increments="1/1")
    (row,) = rated(deck, (UK, 61))
    # 61 s bills 61 s: 0.0600 x 61 / 60 = 0.0610
    assert (row["billed_seconds"], row["increments"]) == (61, 61)
    assert amounts(row) == ("0.0610", "0.0000", "0.0000", "0.0610")


def test_connect_fee_only_on_answered_calls() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n", connect_fee="0.0150")
    answered, unanswered = rated(deck, (UK, 30), (UK, 0))
    # 30 s bills 60 s: 0.0100 + connect fee 0.0150 = 0.0250
    assert amounts(answered) == ("0.0100", "0.0150", "0.0000", "0.0250")
    assert amounts(unanswered) == ("0.0000", "0.0000", "0.0000", "0.0000")


def test_minimum_counts_the_connect_fee() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n", connect_fee="0.0050", minimum_charge="0.0200")
    (row,) = rated(deck, (UK, 30))
    # 0.0100 + 0.0050 = 0.0150, topped up by 0.0050 to 0.0200
    assert amounts(row) == ("0.0100", "0.0050", "0.0050", "0.0200")


def test_per_call_and_per_increment_rounding_differ() -> None:
    rows = "44,United Kingdom,all,0.0133\n"
    per_call = deck_of(rows, increments="6/6", rounding="per_call")
    per_increment = deck_of(rows, increments="6/6", rounding="per_increment")
    # per call: 60 s x 0.0133 / 60 = 0.0133
    (call,) = rated(per_call, (UK, 60))
    assert call["amount"] == Decimal("0.0133")
    # per increment: one 6 s increment is 0.0133 x 6 / 60 = 0.00133 => 0.0013; x 10 = 0.0130
    (inc,) = rated(per_increment, (UK, 60))
    assert (inc["increments"], inc["amount"]) == (10, Decimal("0.0130"))


def test_per_increment_prices_the_first_increment_apart() -> None:
    deck = deck_of("44,United Kingdom,all,0.0133\n", increments="30/6", rounding="per_increment")
    (row,) = rated(deck, (UK, 45))
    # first 30 s: 0.0133 x 30 / 60 = 0.00665 => 0.0067 (half up)
    # then 6 s:   0.0133 x 6 / 60 = 0.00133 => 0.0013; 45 s = 30 + 3 x 6 => 0.0067 + 3 x 0.0013
    assert (row["billed_seconds"], row["increments"]) == (48, 4)
    assert row["amount"] == Decimal("0.0106")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("half_up", "0.0003"),
        ("half_even", "0.0002"),
        ("half_down", "0.0002"),
        ("up", "0.0003"),
        ("down", "0.0002"),
        ("ceiling", "0.0003"),
        ("floor", "0.0002"),
    ],
)
def test_rounding_modes_on_a_tie(mode: str, expected: str) -> None:
    deck = deck_of("44,United Kingdom,all,0.0001\n", increments="1/1", rounding_mode=mode)
    (row,) = rated(deck, (UK, 150))
    # 0.0001 x 150 / 60 = 0.00025, exactly halfway between 0.0002 and 0.0003
    assert row["amount"] == Decimal(expected)


def test_two_decimal_rounding() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n", increments="60/10", rounding_decimals=2)
    (row,) = rated(deck, (UK, 61))
    # 0.0100 x 70 / 60 = 0.011666.. => 0.01
    assert row["amount"] == Decimal("0.01")
    assert rate_calls(calls_of((UK, 61)), deck).collect_schema()["amount"] == pl.Decimal(38, 2)


def test_output_columns_and_types() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n")
    schema = rate_calls(calls_of((UK, 61)), deck).collect().schema
    money = pl.Decimal(38, 4)
    assert list(schema)[-len(OUTPUT_COLUMNS) :] == list(OUTPUT_COLUMNS)
    assert dict(list(schema.items())[-len(OUTPUT_COLUMNS) :]) == {
        "prefix": pl.String,
        "deck_destination": pl.String,
        "band": pl.String,
        "rate_per_minute": RATE_DTYPE,
        "billed_seconds": pl.Int64,
        "increments": pl.Int64,
        "usage_amount": money,
        "connect_fee": money,
        "minimum_adjustment": money,
        "amount": money,
        "unrated_reason": pl.String,
    }


# ---------------------------------------------------------------------------------------
# Time bands: local wall clock of the account
# ---------------------------------------------------------------------------------------

BANDED = "44,United Kingdom,peak,0.0200\n44,United Kingdom,offpeak,0.0100\n" + (
    "44,United Kingdom,weekend,0.0050\n"
)


def band_at(instant: datetime, zone: str, deck: RateDeck | None = None) -> tuple[str, Decimal]:
    (row,) = rated(deck or deck_of(BANDED), (UK, 60, instant, zone))
    assert row["unrated_reason"] is None
    return row["band"], row["amount"]


@pytest.mark.parametrize(
    ("instant", "zone", "band"),
    [
        # Friday 2026-03-06, New York on EST (UTC-5): 17:59 is peak, 18:00 is off-peak
        (datetime(2026, 3, 6, 22, 59, tzinfo=UTC), "America/New_York", "peak"),
        (datetime(2026, 3, 6, 23, 0, tzinfo=UTC), "America/New_York", "offpeak"),
        # Friday 2026-07-10, New York on EDT (UTC-4)
        (datetime(2026, 7, 10, 21, 59, tzinfo=UTC), "America/New_York", "peak"),
        (datetime(2026, 7, 10, 22, 0, tzinfo=UTC), "America/New_York", "offpeak"),
        (datetime(2026, 7, 10, 11, 59, tzinfo=UTC), "America/New_York", "offpeak"),  # 07:59
        (datetime(2026, 7, 10, 12, 0, tzinfo=UTC), "America/New_York", "peak"),  # 08:00
        # Tokyo (UTC+9, no DST): 17:59 and 18:00 on Friday
        (datetime(2026, 3, 6, 8, 59, tzinfo=UTC), "Asia/Tokyo", "peak"),
        (datetime(2026, 3, 6, 9, 0, tzinfo=UTC), "Asia/Tokyo", "offpeak"),
        # Friday 20:00 UTC is already Saturday 05:00 in Tokyo
        (datetime(2026, 3, 6, 20, 0, tzinfo=UTC), "Asia/Tokyo", "weekend"),
        # Saturday noon in New York; and Friday 23:30 UTC is still Friday 18:30 there
        (datetime(2026, 3, 7, 17, 0, tzinfo=UTC), "America/New_York", "weekend"),
        (datetime(2026, 3, 6, 23, 30, tzinfo=UTC), "America/New_York", "offpeak"),
    ],
)
def test_time_band_by_local_time(instant: datetime, zone: str, band: str) -> None:
    assert band_at(instant, zone)[0] == band


def test_band_rates() -> None:
    deck = deck_of(BANDED)
    # 60 s at peak 0.0200, off-peak 0.0100, weekend 0.0050
    assert band_at(datetime(2026, 3, 6, 12, tzinfo=UTC), "UTC", deck) == ("peak", Decimal("0.02"))
    assert band_at(datetime(2026, 3, 6, 20, tzinfo=UTC), "UTC", deck) == (
        "offpeak",
        Decimal("0.01"),
    )
    weekend = band_at(datetime(2026, 3, 7, 12, tzinfo=UTC), "UTC", deck)
    assert weekend == ("weekend", Decimal("0.005"))


@pytest.mark.parametrize(
    ("instant", "band"),
    [
        # Sat 2026-03-07 12:30 UTC = 07:30 EST; Sun 2026-03-08 (clocks go forward at 02:00)
        # 12:30 UTC = 08:30 EDT: the same UTC time of day is peak only after the change
        (datetime(2026, 3, 7, 12, 30, tzinfo=UTC), "offpeak"),
        (datetime(2026, 3, 8, 6, 30, tzinfo=UTC), "offpeak"),  # 01:30 EST, before the change
        (datetime(2026, 3, 8, 12, 30, tzinfo=UTC), "peak"),
        (datetime(2026, 3, 8, 21, 59, tzinfo=UTC), "peak"),  # 17:59 EDT
        (datetime(2026, 3, 8, 22, 0, tzinfo=UTC), "offpeak"),  # 18:00 EDT
        # Sun 2026-11-01, clocks go back at 02:00: 12:30 UTC = 07:30 EST (08:30 a day before)
        (datetime(2026, 10, 31, 12, 30, tzinfo=UTC), "peak"),
        (datetime(2026, 11, 1, 12, 30, tzinfo=UTC), "offpeak"),
        (datetime(2026, 11, 1, 13, 0, tzinfo=UTC), "peak"),
    ],
)
def test_dst_change_days(instant: datetime, band: str) -> None:
    # Peak every day of the week, so the DST Sundays have a peak window
    every_day = {"peak_days": [1, 2, 3, 4, 5, 6, 7], "weekend_days": []}
    deck = deck_of(BANDED, time_bands=every_day)
    assert band_at(instant, "America/New_York", deck)[0] == band


def test_custom_peak_window() -> None:
    bands = {"peak_from": "09:30", "peak_to": "17:00", "peak_days": [1, 2, 3, 4]}
    deck = deck_of(BANDED, time_bands=bands)
    assert deck.time_bands == TimeBands(frozenset({1, 2, 3, 4}), time(9, 30), time(17))
    thursday = datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
    assert band_at(thursday, "UTC", deck)[0] == "peak"
    assert band_at(thursday.replace(hour=17, minute=0), "UTC", deck)[0] == "offpeak"
    assert band_at(thursday.replace(day=6), "UTC", deck)[0] == "offpeak"  # Friday


def test_band_rows_and_all_rows_mix_across_prefixes() -> None:
    deck = deck_of(BANDED + "447,United Kingdom - Mobile,all,0.0300\n")
    mobile, fixed = rated(
        deck,
        ("+447700900123", 60, datetime(2026, 3, 7, 12, tzinfo=UTC), "Europe/London"),
        (UK, 60, datetime(2026, 3, 7, 12, tzinfo=UTC), "Europe/London"),
    )
    assert (mobile["band"], mobile["amount"]) == ("all", Decimal("0.0300"))
    assert (fixed["band"], fixed["amount"]) == ("weekend", Decimal("0.0050"))


# ---------------------------------------------------------------------------------------
# Unrated calls: a reason and null amounts, never a zero
# ---------------------------------------------------------------------------------------

NULL_AMOUNTS = (None, None, None, None)


def test_unknown_prefix_is_unrated() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n")
    (row,) = rated(deck, ("+33142868200", 60))
    assert row["unrated_reason"] == "no_rate_for_destination"
    assert (row["prefix"], row["deck_destination"], row["rate_per_minute"]) == (None, None, None)
    assert amounts(row) == NULL_AMOUNTS
    assert row["billed_seconds"] == 60  # the duration is still billable, only unpriced


def test_zero_second_call_to_an_unknown_prefix_is_still_unrated() -> None:
    (row,) = rated(deck_of("44,United Kingdom,all,0.0100\n"), ("+33142868200", 0))
    assert (row["unrated_reason"], row["amount"]) == ("no_rate_for_destination", None)


def test_a_prefix_must_rate_every_band_its_calls_can_fall_in() -> None:
    two_bands = "44,United Kingdom,peak,0.0200\n44,United Kingdom,offpeak,0.0100\n"
    with pytest.raises(DeckError) as caught:
        deck_of("33,France,all,0.0100\n" + two_bands + "49,Germany,weekend,0.0100\n")
    assert caught.value.issues == [
        "test-deck row 3: prefix 44 has band rates but none for weekend; give every band a "
        "rate, or one 'all' rate",
        "test-deck row 5: prefix 49 has band rates but none for peak, offpeak; give every "
        "band a rate, or one 'all' rate",
    ]
    # With no weekend days, a Saturday is off-peak, and two bands are all there are.
    deck = deck_of(two_bands, time_bands={"weekend_days": []})
    assert deck.time_bands.reachable() == ("peak", "offpeak")
    assert band_at(datetime(2026, 3, 7, 12, tzinfo=UTC), "UTC", deck) == (
        "offpeak",
        Decimal("0.0100"),
    )


def test_a_band_row_in_error_is_not_also_reported_missing() -> None:
    with pytest.raises(DeckError) as caught:
        deck_of(
            "44,United Kingdom,peak,0.0200\n44,United Kingdom,offpeak,0.0100\n"
            "44,United Kingdom,weekend,-1\n"
        )
    assert caught.value.issues == ["test-deck row 4: rate_per_minute -1 is negative"]


def test_missing_band_rate_is_unrated() -> None:
    # Loading refuses such a deck; rating still guards a deck whose bands changed after.
    loaded = deck_of(
        "44,United Kingdom,peak,0.0200\n44,United Kingdom,offpeak,0.0100\n",
        time_bands={"weekend_days": []},
    )
    deck = dataclasses.replace(loaded, time_bands=TimeBands())
    saturday = datetime(2026, 3, 7, 12, tzinfo=UTC)
    (row,) = rated(deck, (UK, 60, saturday, "Europe/London"))
    assert (row["unrated_reason"], row["band"], row["prefix"]) == (
        "no_rate_for_band",
        "weekend",
        "44",
    )
    assert amounts(row) == NULL_AMOUNTS


@pytest.mark.parametrize("zone", [None, "", "Mars/Olympus"])
def test_unusable_time_zone(zone: str | None) -> None:
    deck = deck_of(BANDED + "33,France,all,0.0100\n")
    banded, flat = rated(deck, (UK, 60, FRIDAY_NOON, zone), ("+33142868200", 60, FRIDAY_NOON, zone))
    assert (banded["unrated_reason"], banded["band"], banded["amount"]) == (
        "no_local_time",
        None,
        None,
    )
    # an "all" rate does not depend on the local time
    assert (flat["unrated_reason"], flat["amount"]) == (None, Decimal("0.0100"))


@pytest.mark.parametrize("duration", [None, -1])
def test_invalid_duration(duration: int | None) -> None:
    (row,) = rated(deck_of("44,United Kingdom,all,0.0100\n"), (UK, duration))
    assert row["unrated_reason"] == "invalid_duration"
    assert (row["billed_seconds"], row["increments"]) == (None, None)
    assert amounts(row) == NULL_AMOUNTS


def test_rate_calls_rejects_bad_frames() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n")
    frame = calls_of((UK, 60))
    with pytest.raises(ValueError, match="already have column"):
        rate_calls(frame.with_columns(pl.lit(1).alias("amount")), deck)
    with pytest.raises(ValueError, match="time-zone aware"):
        rate_calls(frame.with_columns(pl.col("timestamp").dt.replace_time_zone(None)), deck)
    with pytest.raises(ValueError, match="lack column"):
        rate_calls(frame.drop("timezone"), deck)
    rated_frame = rate_calls(frame.rename({"timezone": "tz"}), deck, timezone_column="tz")
    assert rated_frame.collect()["amount"].to_list() == [Decimal("0.0100")]


# ---------------------------------------------------------------------------------------
# Longest-prefix match
# ---------------------------------------------------------------------------------------

NESTED = deck_of(
    "44,United Kingdom,all,0.0100\n"
    "447,United Kingdom - Mobile,all,0.0200\n"
    "4479,United Kingdom - Mobile (Jersey),all,0.1500\n"
    "440,United Kingdom - Test,all,0.5000\n"
)


def matched(deck: RateDeck, numbers: Sequence[str | None]) -> list[tuple[str | None, str | None]]:
    frame = pl.LazyFrame({"destination": list(numbers)}, schema={"destination": pl.String})
    out = match_prefixes(frame, deck).collect()
    found = dict(
        zip(
            out["destination"],
            zip(out["prefix"], out["deck_destination"], strict=True),
            strict=True,
        )
    )
    return [found[n] for n in numbers]


def test_nested_prefixes_use_the_longest_match() -> None:
    numbers = ["+442071234567", "+447700900123", "+447924123456", "+4479", "+447", "+44"]
    assert [p for p, _ in matched(NESTED, numbers)] == ["44", "447", "4479", "4479", "447", "44"]
    assert matched(NESTED, ["+447924123456"]) == [("4479", "United Kingdom - Mobile (Jersey)")]


def test_a_number_shorter_than_a_prefix_does_not_match_it() -> None:
    # "44" pads to the same 15 digits as "440", but does not start with "440"
    assert matched(NESTED, ["+44", "+440", "+4400"]) == [
        ("44", "United Kingdom"),
        ("440", "United Kingdom - Test"),
        ("440", "United Kingdom - Test"),
    ]


def test_plus_handling_and_malformed_numbers() -> None:
    good = ["+447700900123", "447700900123"]
    bad = ["++447700900123", "+44 7700 900123", "+44-77", "0044770090012", "", "+", None]
    too_long = "+4477009001231234"  # 16 digits: not E.164
    # Past Int64 and past UInt64: refused, not an error.
    huge = ["+9999999999999999999", "+447700900123123456789012"]
    found = [p for p, _ in matched(NESTED, [*good, *bad, too_long, *huge])]
    assert found == ["447", "447"] + [None] * 10


def test_match_prefixes_keeps_other_columns() -> None:
    frame = pl.LazyFrame({"destination": ["+447700900123"], "n": [1]})
    out = match_prefixes(frame, NESTED).collect()
    assert out.columns == ["destination", "n", "prefix", "deck_destination"]


def test_ranges_are_disjoint_and_sorted() -> None:
    ranges = NESTED._prefix_ranges
    starts, ends = ranges["__deck_range_start"], ranges["__deck_range_end"]
    assert (starts <= ends).all()
    assert (starts.slice(1) > ends.slice(0, len(ends) - 1)).all()


# ---------------------------------------------------------------------------------------
# Explanation rows
# ---------------------------------------------------------------------------------------


def test_summarize_calls() -> None:
    deck = deck_of(BANDED + "447,United Kingdom - Mobile,all,0.0300\n", connect_fee="0.0010")
    saturday = datetime(2026, 3, 7, 12, tzinfo=UTC)
    calls = calls_of(
        (UK, 61, FRIDAY_NOON, "UTC"),  # peak: 120 s x 0.0200 / 60 + 0.0010 = 0.0410
        (UK, 30, FRIDAY_NOON, "UTC"),  # peak: 60 s => 0.0200 + 0.0010 = 0.0210
        (UK, 60, saturday, "UTC"),  # weekend: 0.0050 + 0.0010 = 0.0060
        ("+447700900123", 0, saturday, "UTC"),  # unanswered: 0
    )
    summary = summarize_calls(rate_calls(calls, deck).collect())
    # account, prefix, destination, band, rate, calls, billed s, usage, connect, minimum, amount
    rows = [
        "acct-1|44|United Kingdom|peak|0.02|2|180|0.0600|0.0020|0|0.0620",
        "acct-1|44|United Kingdom|weekend|0.005|1|60|0.0050|0.0010|0|0.0060",
        "acct-1|447|United Kingdom - Mobile|all|0.03|1|0|0|0|0|0",
    ]
    money = pl.Decimal(38, 4)
    expected = pl.DataFrame(
        [row.split("|") for row in rows],
        schema=[*SUMMARY_KEYS, "calls", "billed_seconds", *AMOUNTS],
        orient="row",
    ).cast(
        {"rate_per_minute": RATE_DTYPE, "calls": pl.Int64, "billed_seconds": pl.Int64}
        | {name: money for name in AMOUNTS}
    )
    assert_frame_equal(summary, expected)


def test_summarize_calls_refuses_unrated_calls() -> None:
    deck = deck_of("44,United Kingdom,all,0.0100\n")
    out = rate_calls(calls_of((UK, 60), ("+33142868200", 60)), deck).collect()
    with pytest.raises(ValueError, match="1 unrated call"):
        summarize_calls(out)


# ---------------------------------------------------------------------------------------
# Deck validation: every problem at once, each with its row
# ---------------------------------------------------------------------------------------


def test_deck_validation_reports_every_problem() -> None:
    text = (
        "prefix,destination,band,rate_per_minute\n"  # row 1
        "44,United Kingdom,all,0.0100\n"  # row 2
        "+33,France,all,0.0100\n"  # row 3
        ",Nowhere,all,0.0100\n"  # row 4
        "44,United Kingdom,all,0.0200\n"  # row 5: duplicate of row 2
        "44,United Kingdom,peak,0.0200\n"  # row 6: 'all' and a band
        "49,Germany,all,-0.0100\n"  # row 7
        "39,Italy,all,abc\n"  # row 8
        "34,Spain,night,0.0100\n"  # row 9
        "31,Netherlands,all,0.0000001\n"  # row 10
        "447,UK Mobile,peak,0.0250\n"  # row 11
        "447,United Kingdom - Mobile,offpeak,0.0200\n"  # row 12: another destination name
        "32,Belgium,all\n"  # row 13
        "0044,United Kingdom,all,0.0100\n"  # row 14: national dialling prefix
    )
    with pytest.raises(DeckError) as caught:
        parse_deck("intl-voice.csv", text, currency="XYZ", increments="60/0", connect_fee="0.00001")
    assert caught.value.issues == [
        "intl-voice.csv: unknown ISO 4217 currency 'XYZ'",
        "intl-voice.csv: increments must be positive seconds, got 60/0",
        "intl-voice.csv: connect_fee 0.00001 has more decimal places than rounding_decimals (4)",
        "intl-voice.csv row 3: prefix '+33' must be 1 to 15 digits (no '+', spaces or dashes)",
        "intl-voice.csv row 4: prefix '' must be 1 to 15 digits (no '+', spaces or dashes)",
        "intl-voice.csv row 5: duplicate prefix 44 band all (first on row 2)",
        "intl-voice.csv row 6: prefix 44 has a 'peak' rate and an 'all' rate (row 2); give "
        "either one 'all' rate or rates per band",
        "intl-voice.csv row 7: rate_per_minute -0.0100 is negative",
        "intl-voice.csv row 8: rate_per_minute 'abc' is not a number",
        "intl-voice.csv row 9: band 'night' is not one of all, peak, offpeak, weekend",
        "intl-voice.csv row 10: rate_per_minute 0.0000001 has more than 6 decimal places",
        "intl-voice.csv row 12: prefix 447 is 'United Kingdom - Mobile' here but 'UK Mobile' "
        "on row 11",
        "intl-voice.csv row 13: has 3 field(s), the header has 4",
        "intl-voice.csv row 14: prefix 0044 starts with 0, which no E.164 number does "
        "(country codes start 1-9): write 44",
        "intl-voice.csv row 11: prefix 447 has band rates but none for weekend; give every "
        "band a rate, or one 'all' rate",
    ]
    assert "15 problem(s)" in str(caught.value)


def test_nested_prefixes_are_not_errors() -> None:
    assert NESTED.rates["prefix"].to_list() == ["44", "440", "447", "4479"]


def test_band_column_is_optional() -> None:
    deck = parse_deck(
        "d", "prefix,destination,rate_per_minute\n44,UK,0.01\n", currency="USD", increments="1/1"
    )
    assert deck.rates.rows() == [("44", "UK", "all", Decimal("0.01"))]


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ("", "d: the deck is empty (expected a header row)"),
        (HEADER, "d: the deck has no rates"),
        ("prefix,rate\n44,0.01\n", "d row 1: missing column(s) destination, rate_per_minute"),
        (HEADER.strip() + ",effective_date\n", "d row 1: unknown column(s) effective_date"),
    ],
)
def test_deck_shape_problems(text: str, issue: str) -> None:
    with pytest.raises(DeckError) as caught:
        parse_deck("d", text, currency="USD", increments="60/60")
    assert caught.value.issues[0].startswith(issue)


@pytest.mark.parametrize(
    ("rules", "issue"),
    [
        ({"rounding": "per_minute"}, "d: rounding 'per_minute' is not one of per_call"),
        ({"rounding_mode": "bankers"}, "d: rounding_mode 'bankers' is not one of half_up"),
        ({"rounding_decimals": 13}, "d: rounding_decimals 13 must be 0 to 12"),
        ({"minimum_charge": "-1"}, "d: minimum_charge -1 is negative"),
        ({"connect_fee": "free"}, "d: connect_fee 'free' is not a number"),
        ({"time_bands": {"peak_to": 1080}}, "d: time_bands.peak_to must be a quoted time"),
        ({"time_bands": {"peak_from": "8am"}}, "d: time_bands.peak_from '8am' is not a time"),
        ({"time_bands": {"night": "22:00"}}, "d: time_bands has an unknown key 'night'"),
        ({"time_bands": {"peak_days": [5, 6]}}, "d: time_bands: day(s) [6] are in both"),
        ({"time_bands": {"peak_days": [0, 8]}}, "d: time_bands: peak_days must be ISO weekdays"),
        ({"time_bands": {"peak_from": "18:00"}}, "d: time_bands: peak_from 18:00:00 is not"),
    ],
)
def test_deck_rule_problems(rules: dict[str, Any], issue: str) -> None:
    with pytest.raises(DeckError) as caught:
        parse_deck("d", HEADER + "44,UK,all,0.01\n", currency="USD", increments="60/60", **rules)
    assert len(caught.value.issues) == 1
    assert caught.value.issues[0].startswith(issue)


def test_shipped_deck() -> None:
    deck = parse_deck("intl-voice", DECK_PATH.read_text(), currency="USD", increments="60/60")
    rates = deck.rates
    assert rates.height >= 300
    countries = rates["destination"].str.split(" - ").list.first().n_unique()
    assert countries >= 40
    assert set(rates["band"]) == {"all", "peak", "offpeak", "weekend"}
    numbers = {
        "+447700900123": "447",  # UK mobile
        "+447797123456": "447797",  # UK mobile, Jersey
        "+442079460000": "4420",  # London
        "+12125550100": "1212",  # New York City
        "+18085550100": "1808",  # Hawaii
        "+8613800138000": "8613",  # China mobile
        "+6421234567": "642",  # New Zealand mobile
        "+999123": None,
    }
    assert [p for p, _ in matched(deck, list(numbers))] == list(numbers.values())


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

# Few digits, so random prefixes nest often. A prefix starts like a country code (1-9).
digits = st.builds(str.__add__, st.sampled_from("127"), st.text(alphabet="0127", max_size=5))


@PROPERTY
@given(
    prefixes=st.sets(digits, min_size=1, max_size=25),
    numbers=st.lists(
        st.one_of(
            st.text(alphabet="0127", min_size=0, max_size=9),
            st.text(alphabet="0127", min_size=14, max_size=17),
            # Signs, separators and non-ASCII digits are not E.164 digits.
            st.text(alphabet="0127+ x-_\u0663", max_size=8),
        ),
        min_size=1,
        max_size=40,
    ),
    plus=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_longest_prefix_match_agrees_with_brute_force(
    prefixes: set[str], numbers: list[str], plus: list[bool]
) -> None:
    deck = deck_of("".join(f"{p},Dest {p},all,0.01\n" for p in sorted(prefixes)))
    texts = sorted({("+" if flag else "") + n for n, flag in zip(numbers, plus, strict=False)})

    def brute_force(text: str) -> str | None:
        number = text.removeprefix("+")
        if not (number and set(number) <= set("0123456789") and len(number) <= 15):
            return None
        return max((p for p in prefixes if number.startswith(p)), key=len, default=None)

    found = matched(deck, texts)
    assert [p for p, _ in found] == [brute_force(t) for t in texts]
    assert [d for _, d in found] == [None if p is None else f"Dest {p}" for p, _ in found]


@PROPERTY
@given(
    prefixes=st.sets(
        st.builds(str.__add__, st.just("1"), st.text(alphabet="01", max_size=9)),
        min_size=1,
        max_size=25,
    ),
    data=st.data(),
)
def test_longest_prefix_match_past_the_head_table_agrees_with_brute_force(
    prefixes: set[str], data: st.DataObject
) -> None:
    """Prefixes longer than the 6-digit head table: numbers under their heads are
    searched, the others looked up; both must find the longest prefix."""
    deck = deck_of("".join(f"{p},Dest {p},all,0.01\n" for p in sorted(prefixes)))
    texts = sorted(
        {
            data.draw(st.sampled_from(sorted(prefixes)))
            + data.draw(st.text(alphabet="0129", max_size=8))
            for _ in range(30)
        }
        | set(data.draw(st.lists(st.text(alphabet="019", min_size=1, max_size=15), max_size=10)))
    )
    width, heads = deck._head_rows
    assert width == min(6, max(len(p) for p in prefixes))
    # A prefix past the table's width leaves its head to the search.
    assert (heads == -2).any() == any(len(p) > 6 for p in prefixes)

    def brute_force(number: str) -> str | None:
        if len(number) > 15:
            return None
        return max((p for p in prefixes if number.startswith(p)), key=len, default=None)

    assert [p for p, _ in matched(deck, texts)] == [brute_force(t) for t in texts]


increments_text = st.tuples(
    st.sampled_from([1, 6, 10, 30, 60, 90]), st.sampled_from([1, 6, 10, 30, 60])
).map(lambda pair: f"{pair[0]}/{pair[1]}")


@PROPERTY
@given(text=increments_text, durations=st.lists(st.integers(0, 100_000), min_size=1, max_size=30))
def test_billed_seconds_bounds(text: str, durations: list[int]) -> None:
    inc = Increments.parse(text)
    deck = deck_of("44,UK,all,0.01\n", increments=text)
    rows = rated(deck, *((UK, d) for d in durations))
    for duration, row in zip(durations, rows, strict=True):
        billed = inc.billed_seconds(duration)
        assert row["billed_seconds"] == billed  # vector form == scalar form
        assert billed >= duration
        assert billed - duration < max(inc.first, inc.then)
        assert billed == 0 or (billed - inc.first) % inc.then == 0


deck_rules = st.fixed_dictionaries(
    {
        "increments": increments_text,
        "rounding": st.sampled_from(["per_call", "per_increment"]),
        "rounding_decimals": st.integers(0, 6),
        "rounding_mode": st.sampled_from([m.value for m in RoundingMode]),
        "connect_fee": st.sampled_from(["0", "0.01", "0.0025"]),
        "minimum_charge": st.sampled_from(["0", "0.02", "0.5"]),
    }
).filter(
    lambda r: (
        Decimal(r["connect_fee"]) == round(Decimal(r["connect_fee"]), r["rounding_decimals"])
        and Decimal(r["minimum_charge"])
        == round(Decimal(r["minimum_charge"]), r["rounding_decimals"])
    )
)
# Rates in millionths, small enough that ties at the rounding digit are common.
rate_text = st.integers(0, 400_000).map(lambda micro: str(Decimal(micro).scaleb(-6)))


def reference_amount(deck: RateDeck, rate: Decimal, duration: int) -> Decimal:
    """The amount from the documented rules, in plain Python Decimal."""
    quantum = Decimal(1).scaleb(-deck.rounding_decimals)
    mode = deck.rounding_mode.decimal_rounding

    def priced(seconds: int) -> Decimal:
        return REFERENCE.divide(rate * seconds, 60).quantize(quantum, rounding=mode)

    inc = deck.increments
    billed = inc.billed_seconds(duration)
    if billed == 0:
        return Decimal(0)
    if deck.rounding == "per_call":
        usage = priced(billed)
    else:
        usage = priced(inc.first) + priced(inc.then) * ((billed - inc.first) // inc.then)
    return max(usage + deck.connect_fee, deck.minimum_charge)


@PROPERTY
@given(
    rules=deck_rules,
    rate=rate_text,
    durations=st.lists(st.integers(0, 7_200), min_size=1, max_size=25),
)
def test_amounts_match_the_reference_and_grow_with_duration(
    rules: dict[str, Any], rate: str, durations: list[int]
) -> None:
    deck = deck_of(f"44,UK,all,{rate}\n", **rules)
    durations = sorted(durations)
    rows = rated(deck, *((UK, d) for d in durations))
    got = [row["amount"] for row in rows]
    assert got == [reference_amount(deck, Decimal(rate), d) for d in durations]
    assert all(a <= b for a, b in itertools.pairwise(got))  # never less for longer
    for row in rows:
        parts = row["usage_amount"] + row["connect_fee"] + row["minimum_adjustment"]
        assert parts == row["amount"]
        assert row["minimum_adjustment"] >= 0


@PROPERTY
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["+442071234567", "+447700900123", "+33142868200", "+4930123"]),
            st.integers(0, 4_000),
            st.integers(0, 14 * 86_400),
            st.sampled_from(["UTC", "America/New_York", "Asia/Tokyo"]),
            st.sampled_from(["acct-1", "acct-2"]),
        ),
        min_size=1,
        max_size=40,
    ),
    rules=deck_rules,
)
def test_summary_rows_add_up_to_the_calls(
    calls: list[tuple[str, int, int, str, str]], rules: dict[str, Any]
) -> None:
    deck = deck_of(BANDED + "447,UK - Mobile,all,0.0312\n33,France,all,0.013\n", **rules)
    start = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    frame = calls_of(
        *((n, d, datetime.fromtimestamp(start + s, UTC), z) for n, d, s, z, _ in calls)
    ).with_columns(pl.Series("account_id", [c[4] for c in calls]))
    out = rate_calls(frame, deck).collect()
    priced = out.filter(pl.col("unrated_reason").is_null())
    assert set(out["unrated_reason"].drop_nulls()) <= {"no_rate_for_destination"}
    summary = summarize_calls(priced)
    assert summary["calls"].sum() == priced.height
    assert summary["billed_seconds"].sum() == priced["billed_seconds"].sum()
    assert summary["amount"].sum() == priced["amount"].sum()
    for account in ("acct-1", "acct-2"):
        mine = summary.filter(pl.col("account_id") == account)["amount"]
        calls_amount = priced.filter(pl.col("account_id") == account)["amount"]
        assert sum(mine.to_list(), Decimal(0)) == sum(calls_amount.to_list(), Decimal(0))


@pytest.mark.parametrize("mode", list(RoundingMode))
@pytest.mark.parametrize("decimals", [0, 2, 4])
def test_vector_rounding_is_exact(mode: RoundingMode, decimals: int) -> None:
    step = Decimal(1).scaleb(-decimals)
    values = [
        Decimal(sign) * (base * step + offset)
        for sign in (1, -1)
        for base in (Decimal(0), Decimal(1), Decimal(2), Decimal(12345))
        for offset in (
            Decimal(0),
            step / 2,  # a tie
            step / 2 - Decimal("1e-18"),
            step / 2 + Decimal("1e-18"),
            Decimal("1e-18"),
            step - Decimal("1e-18"),
        )
    ]
    frame = pl.DataFrame({"x": values}, schema={"x": EXACT_DTYPE})
    got = frame.select(_round(pl.col("x"), decimals, mode))["x"].to_list()
    expected = [v.quantize(step, rounding=mode.decimal_rounding, context=REFERENCE) for v in values]
    assert got == expected
