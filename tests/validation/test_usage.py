"""validation.usage: parse, check, quarantine with reasons, dedupe; nothing is lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pricing_rules.periods import BillingPeriod
from validation.schemas import RAW_USAGE_COLUMNS
from validation.usage import (
    ConservationError,
    UsageCounts,
    conform_raw,
    unit_factors,
    validate_usage,
)

OCT = BillingPeriod.parse("2026-10")
METRIC_UNITS = {"voice": "s", "sms": "message", "storage": "GB", "bandwidth": "Mbps"}
GOOD = ("e1", "A", "voice", "60", "s", "2026-10-05T10:00:00Z")
COLUMNS = ["event_id", "account_id", "metric", "quantity", "unit", "timestamp"]


def raw(
    rows: list[tuple[str | None, ...]], source_key: str = "usage/2026-10-05.csv"
) -> pl.DataFrame:
    """Rows as a text file reads them: every column a string, plus provenance."""
    return pl.DataFrame(rows, schema=dict.fromkeys(COLUMNS, pl.String), orient="row").with_columns(
        pl.lit(source_key).alias("source_key"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
    )


def validate(rows: list[tuple[str | None, ...]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    result = validate_usage(raw(rows), METRIC_UNITS, OCT)
    return result.valid, result.quarantine.sort("source_row")


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        (
            (None, "A", "voice", "1", "s", "2026-10-05T10:00:00Z"),
            "missing_event_id",
            "the event has no event_id",
        ),
        (
            ("  ", "A", "voice", "1", "s", "2026-10-05T10:00:00Z"),
            "missing_event_id",
            "the event has an empty event_id",
        ),
        (
            ("e2", None, "voice", "1", "s", "2026-10-05T10:00:00Z"),
            "missing_account_id",
            "the event has no account_id",
        ),
        (
            ("e2", "", "voice", "1", "s", "2026-10-05T10:00:00Z"),
            "missing_account_id",
            "the event has an empty account_id",
        ),
        (
            ("e2", "A", "voice", "abc", "s", "2026-10-05T10:00:00Z"),
            "non_numeric_quantity",
            "quantity 'abc' is not a number",
        ),
        (
            ("e2", "A", "voice", None, "s", "2026-10-05T10:00:00Z"),
            "non_numeric_quantity",
            "quantity None is not a number",
        ),
        (
            ("e2", "A", "voice", "-5", "s", "2026-10-05T10:00:00Z"),
            "negative_quantity",
            "quantity -5 is negative",
        ),
        (
            ("e2", "A", "voice", "5", "GB", "2026-10-05T10:00:00Z"),
            "unknown_unit",
            "unit 'GB' does not convert exactly to the metric's unit (it is unknown, of "
            "another kind, or its factor has no exact decimal, as s to min: record such a "
            "metric in s and price it per min with price_unit)",
        ),
        (
            ("e2", "A", "voice", "5", None, "2026-10-05T10:00:00Z"),
            "unknown_unit",
            "unit None does not convert exactly to the metric's unit (it is unknown, of "
            "another kind, or its factor has no exact decimal, as s to min: record such a "
            "metric in s and price it per min with price_unit)",
        ),
        (
            ("e2", "A", "voice", "5", "s", "2026-10-05 10:00"),
            "bad_timestamp",
            "timestamp '2026-10-05 10:00' is not ISO 8601 with a UTC offset",
        ),
        # no offset: local time of an unknown zone is not accepted
        (
            ("e2", "A", "voice", "5", "s", "2026-10-05T10:00:00"),
            "bad_timestamp",
            "timestamp '2026-10-05T10:00:00' is not ISO 8601 with a UTC offset",
        ),
        (
            ("e2", "A", "voice", "5", "s", "2026-09-30T23:59:59Z"),
            "outside_period",
            "timestamp 2026-09-30T23:59:59Z is before the billing period",
        ),
        # the period is [2026-10-01, 2026-11-01): midnight on the 1st of November is outside
        (
            ("e2", "A", "voice", "5", "s", "2026-11-01T00:00:00Z"),
            "outside_period",
            "timestamp 2026-11-01T00:00:00Z is after the billing period",
        ),
        # 01:00 at +02:00 on 1 October is 23:00 UTC on 30 September
        (
            ("e2", "A", "voice", "5", "s", "2026-10-01T01:00:00+02:00"),
            "outside_period",
            "timestamp 2026-10-01T01:00:00+02:00 is before the billing period",
        ),
    ],
)
def test_each_quarantine_reason(row: tuple[str | None, ...], reason: str, detail: str) -> None:
    valid, quarantine = validate([GOOD, row])
    assert valid["event_id"].to_list() == ["e1"]
    assert quarantine.select("source_row", "reason", "reason_detail").rows() == [
        (1, reason, detail)
    ]


def test_unknown_metric() -> None:
    _, quarantine = validate([GOOD, ("e2", "A", "fax", "1", "page", "2026-10-05T10:00:00Z")])
    (row,) = quarantine.iter_rows(named=True)
    # an unknown metric has no units either, so its unit is reported as well
    assert row["reason"].split(";")[0] == "unknown_metric"
    assert row["reason_detail"].startswith("metric 'fax' is not in the catalog")


def test_several_problems_in_one_row_are_all_reported() -> None:
    _, quarantine = validate([(None, "", "voice", "-1", "s", "2026-12-01T00:00:00Z")])
    (row,) = quarantine.iter_rows(named=True)
    assert set(row["reason"].split(";")) == {
        "missing_event_id",
        "missing_account_id",
        "negative_quantity",
        "outside_period",
    }
    assert "quantity -1 is negative" in row["reason_detail"]


def test_quarantine_keeps_the_raw_text_and_provenance() -> None:
    _, quarantine = validate([GOOD, ("e2", "A", "voice", " 1,5 ", "s", "yesterday")])
    assert quarantine.columns == [
        *RAW_USAGE_COLUMNS,
        "source_key",
        "source_row",
        "reason",
        "reason_detail",
    ]
    row = quarantine.row(0, named=True)
    assert (row["quantity"], row["timestamp"]) == (" 1,5 ", "yesterday")
    assert (row["source_key"], row["source_row"]) == ("usage/2026-10-05.csv", 1)
    assert row["reason"] == "non_numeric_quantity;bad_timestamp"


def test_duplicates_keep_the_first_copy_in_input_order() -> None:
    result = validate_usage(
        raw(
            [
                ("e1", "A", "voice", "60", "s", "2026-10-05T10:00:00Z"),
                ("e2", "A", "sms", "1", "message", "2026-10-05T10:00:00Z"),
                ("e1", "B", "voice", "999", "s", "2026-10-06T10:00:00Z"),  # later copy of e1
                (" e2 ", "A", "sms", "1", "message", "2026-10-05T10:00:00Z"),  # same id, padded
                ("e1", "A", "voice", "60", "s", "2026-10-05T10:00:00Z"),
            ]
        ),
        METRIC_UNITS,
        OCT,
    )
    assert result.valid.select("event_id", "account_id", "quantity", "source_row").rows() == [
        ("e1", "A", Decimal(60), 0),
        ("e2", "A", Decimal(1), 1),
    ]
    assert_frame_equal(
        result.duplicates.sort("source_row"),
        pl.DataFrame(
            {
                "event_id": ["e1", "e2", "e1"],
                "account_id": ["B", "A", "A"],
                "source_key": ["usage/2026-10-05.csv"] * 3,
                "source_row": [2, 3, 4],
            },
            schema={
                "event_id": pl.String,
                "account_id": pl.String,
                "source_key": pl.String,
                "source_row": pl.Int64,
            },
        ),
    )
    assert result.counts == UsageCounts(read=5, valid=2, quarantined=0, duplicates=3)


def test_duplicates_across_files_keep_the_earlier_file() -> None:
    first = raw([("e1", "A", "voice", "60", "s", "2026-10-05T10:00:00Z")], "usage/a.csv")
    second = raw([("e1", "A", "voice", "60", "s", "2026-10-05T10:00:00Z")], "usage/b.csv")
    result = validate_usage(pl.concat([first, second]), METRIC_UNITS, OCT)
    assert result.valid["source_key"].to_list() == ["usage/a.csv"]
    assert result.duplicates["source_key"].to_list() == ["usage/b.csv"]


@pytest.mark.parametrize(
    ("metric", "quantity", "unit", "canonical", "canonical_unit"),
    [
        ("voice", "1.5", "min", "90", "s"),  # 1.5 min x 60 = 90 s
        ("voice", "2", "h", "7200", "s"),  # 2 h x 3600 = 7200 s
        ("voice", "61.25", "s", "61.25", "s"),
        ("storage", "1500", "MB", "1.5", "GB"),  # 1500 MB / 1000 = 1.5 GB
        ("storage", "1.234567", "MB", "0.001234567", "GB"),  # 1.234567 / 1000
        ("storage", "1", "GiB", "1.073741824", "GB"),  # 2^30 B / 10^9
        ("storage", "1", "KiB", "0.000001024", "GB"),  # 1024 B / 10^9
        ("bandwidth", "2500", "kbps", "2.5", "Mbps"),  # 2500 kbps / 1000 = 2.5 Mbps
        ("bandwidth", "0.3", "Gbps", "300", "Mbps"),
        ("sms", "3", "message", "3", "message"),
    ],
)
def test_unit_conversion_is_exact(
    metric: str, quantity: str, unit: str, canonical: str, canonical_unit: str
) -> None:
    valid, quarantine = validate([("e1", "A", metric, quantity, unit, "2026-10-05T10:00:00Z")])
    assert quarantine.height == 0
    row = valid.row(0, named=True)
    assert row["quantity"] == Decimal(canonical)
    assert row["unit"] == canonical_unit


def test_seconds_cannot_be_reported_for_a_per_minute_metric() -> None:
    # s -> min is x 1/60, which does not terminate: s is not an accepted unit for min
    result = validate_usage(
        raw([("e1", "A", "calls", "30", "s", "2026-10-05T10:00:00Z")]), {"calls": "min"}, OCT
    )
    assert result.quarantine["reason"].to_list() == ["unknown_unit"]


def test_unit_factors_table() -> None:
    factors = unit_factors({"voice": "s"})
    assert_frame_equal(
        factors,
        pl.DataFrame(
            {
                "metric": ["voice"] * 3,
                "unit": ["h", "min", "s"],
                "unit_factor": [Decimal(3600), Decimal(60), Decimal(1)],
                "factor_places": [0, 0, 0],
            },
            schema={
                "metric": pl.String,
                "unit": pl.String,
                "unit_factor": pl.Decimal(38, 12),
                "factor_places": pl.Int64,
            },
        ),
    )


def test_text_is_trimmed_and_timestamps_become_utc() -> None:
    valid, _ = validate(
        [
            (" e1 ", " A ", " voice ", " 7 ", " s ", "2026-10-05T12:30:00+02:00"),
            ("e2", "A", "voice", "1", "s", "2026-10-31T23:59:59.999999Z"),
        ]
    )
    assert valid.select("event_id", "account_id", "metric", "quantity", "unit").rows()[0] == (
        "e1",
        "A",
        "voice",
        Decimal(7),
        "s",
    )
    assert valid["timestamp"].to_list() == [
        datetime(2026, 10, 5, 10, 30, tzinfo=UTC),
        datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    assert valid.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert valid.schema["quantity"] == pl.Decimal(38, 12)


def parquet_frame(timestamps: list[datetime], dtype: pl.DataType) -> pl.DataFrame:
    """What `pl.read_parquet` gives for typed columns: floats and Datetime."""
    n = len(timestamps)
    return pl.DataFrame(
        {
            "event_id": [f"p{i}" for i in range(n)],
            "account_id": ["A"] * n,
            "metric": ["voice"] * n,
            "quantity": [1.5] * n,
            "unit": ["min"] * n,
            "timestamp": pl.Series(timestamps, dtype=dtype),
            "source_key": ["usage/p.parquet"] * n,
            "source_row": list(range(n)),
        }
    )


def test_conform_raw_turns_parquet_datetimes_into_utc_text() -> None:
    berlin = pl.Datetime("ns", "Europe/Berlin")
    frame = parquet_frame(
        [
            datetime(2026, 10, 5, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 10, 5, 12, 0, 0, 250000, tzinfo=UTC),
        ],
        pl.Datetime("us", "UTC"),
    ).with_columns(pl.col("timestamp").cast(berlin))
    conformed = conform_raw(frame)
    assert conformed.columns == [*RAW_USAGE_COLUMNS, "source_key", "source_row"]
    assert all(
        dtype == pl.String for name, dtype in conformed.schema.items() if name != "source_row"
    )
    assert conformed["timestamp"].to_list() == [
        "2026-10-05T10:00:00Z",  # 12:00 at +02:00
        "2026-10-05T12:00:00.250Z",
    ]
    assert conformed["quantity"].to_list() == ["1.5", "1.5"]
    assert conformed["destination"].to_list() == [None, None]  # absent optional columns
    result = validate_usage(frame, METRIC_UNITS, OCT)
    assert result.valid["timestamp"].to_list() == [
        datetime(2026, 10, 5, 10, 0, tzinfo=UTC),
        datetime(2026, 10, 5, 12, 0, 0, 250000, tzinfo=UTC),
    ]
    # 1.5 min x 60 = 90 s
    assert result.valid["quantity"].to_list() == [Decimal(90), Decimal(90)]


def test_naive_parquet_datetimes_are_quarantined() -> None:
    frame = parquet_frame([datetime(2026, 10, 5, 12, 0)], pl.Datetime("us"))
    assert conform_raw(frame)["timestamp"].to_list() == ["2026-10-05T12:00:00"]
    result = validate_usage(frame, METRIC_UNITS, OCT)
    assert result.quarantine["reason"].to_list() == ["bad_timestamp"]


def test_missing_required_column_is_an_error() -> None:
    frame = raw([GOOD]).drop("timestamp", "metric")
    with pytest.raises(
        ValueError,
        match=r"usage is missing required column\(s\): metric, "
        "timestamp",
    ):
        conform_raw(frame)
    with pytest.raises(ValueError, match="missing required column"):
        validate_usage(frame, METRIC_UNITS, OCT)


def test_optional_columns_may_be_absent() -> None:
    frame = raw([GOOD]).drop("unit")
    conformed = conform_raw(frame)
    assert conformed["unit"].to_list() == [None]


def test_counts_check() -> None:
    UsageCounts(read=5, valid=3, quarantined=1, duplicates=1).check()
    # 5 own rows + 2 borrowed = 4 valid + 1 quarantined + 0 duplicates + 2 deferred
    UsageCounts(read=5, valid=4, quarantined=1, duplicates=0, deferred=2, borrowed=2).check()
    with pytest.raises(
        ConservationError,
        match=r"read 5 \+ borrowed 0 != valid 3 \+ quarantined 1 \+ duplicates 0 \+ deferred 0",
    ):
        UsageCounts(read=5, valid=3, quarantined=1, duplicates=0).check()


def test_empty_usage() -> None:
    result = validate_usage(raw([]), METRIC_UNITS, OCT)
    assert result.counts == UsageCounts(read=0, valid=0, quarantined=0, duplicates=0)
    assert result.valid.height == 0


# Each kind of bad row, with the reason it must get.
BAD_ROWS: list[tuple[tuple[str | None, ...], str]] = [
    ((None, "A", "voice", "1", "s", "2026-10-05T10:00:00Z"), "missing_event_id"),
    (("{id}", None, "voice", "1", "s", "2026-10-05T10:00:00Z"), "missing_account_id"),
    (("{id}", "A", "voice", "x", "s", "2026-10-05T10:00:00Z"), "non_numeric_quantity"),
    (("{id}", "A", "voice", "-1", "s", "2026-10-05T10:00:00Z"), "negative_quantity"),
    (("{id}", "A", "voice", "1", "GB", "2026-10-05T10:00:00Z"), "unknown_unit"),
    (("{id}", "A", "voice", "1", "s", "05/10/2026"), "bad_timestamp"),
    (("{id}", "A", "voice", "1", "s", "2026-09-01T00:00:00Z"), "outside_period"),
]

kinds = st.lists(
    st.one_of(
        st.just(("good", 0)),
        st.tuples(st.just("bad"), st.integers(0, len(BAD_ROWS) - 1)),
        st.tuples(st.just("dup"), st.integers(0, 50)),
    ),
    max_size=30,
)


@settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(kinds)
def test_conservation_over_random_mixes(mix: list[tuple[str, int]]) -> None:
    rows: list[tuple[str | None, ...]] = []
    good_ids: list[str] = []
    expected = {"good": 0, "bad": 0, "dup": 0}
    expected_reasons: list[str] = []
    for number, (kind, pick) in enumerate(mix):
        if kind == "dup" and not good_ids:
            kind = "good"
        event_id = f"ev-{number}"
        if kind == "good":
            rows.append((event_id, "A", "sms", str(number), "message", "2026-10-05T10:00:00Z"))
            good_ids.append(event_id)
        elif kind == "bad":
            template, reason = BAD_ROWS[pick]
            rows.append(tuple(None if v is None else v.format(id=event_id) for v in template))
            expected_reasons.append(reason)
        else:  # a second copy of an earlier good event
            copy = good_ids[pick % len(good_ids)]
            rows.append((copy, "A", "sms", "1", "message", "2026-10-06T10:00:00Z"))
        expected[kind] += 1

    result = validate_usage(raw(rows), METRIC_UNITS, OCT)
    counts = result.counts
    assert counts.read == len(rows)
    assert counts.read == counts.valid + counts.quarantined + counts.duplicates
    assert (counts.valid, counts.quarantined, counts.duplicates) == (
        expected["good"],
        expected["bad"],
        expected["dup"],
    )
    assert (result.valid.height, result.quarantine.height, result.duplicates.height) == (
        counts.valid,
        counts.quarantined,
        counts.duplicates,
    )
    assert result.quarantine.sort("source_row")["reason"].to_list() == expected_reasons
    assert sorted(result.valid["event_id"].to_list()) == sorted(good_ids)
    # every input row is accounted for exactly once
    seen = sorted(
        result.valid["source_row"].to_list()
        + result.quarantine["source_row"].to_list()
        + result.duplicates["source_row"].to_list()
    )
    assert seen == list(range(len(rows)))


# --- Local months: an event belongs to the month of its account's time zone ------------

NOV = BillingPeriod.parse("2026-11")
ZONES = {
    "UTC": "UTC",
    "BER": "Europe/Berlin",  # UTC+1 in November
    "LAX": "America/Los_Angeles",  # UTC-7 on Oct 31, UTC-8 from Nov 1 (DST ends)
    "KOL": "Asia/Kolkata",  # UTC+5:30
    "KIR": "Pacific/Kiritimati",  # UTC+14
    "PPG": "Pacific/Pago_Pago",  # UTC-11
}


def part(day: str) -> str:
    return f"usage/dt={day}/part-0000.csv"


def files(rows: dict[str, list[tuple[str, str, str]]]) -> pl.DataFrame:
    """{partition day: [(event id, account, timestamp)]} as one raw frame, file by file."""
    frames = [
        raw([(e, a, "sms", "1", "message", t) for e, a, t in events], source_key=part(day))
        for day, events in sorted(rows.items())
    ]
    return pl.concat(frames)


def test_an_account_ahead_of_utc_starts_its_month_the_evening_before() -> None:
    # Berlin is UTC+1 in November: local Nov 1 00:00 is Oct 31 23:00 UTC.
    usage = {
        "2026-10-31": [
            ("early", "BER", "2026-10-31T22:59:59Z"),
            ("late", "BER", "2026-10-31T23:00:00Z"),
        ],
        "2026-11-01": [("nov", "BER", "2026-11-01T10:00:00Z")],
    }
    october = validate_usage(files(usage), METRIC_UNITS, OCT, ZONES)
    november = validate_usage(files(usage), METRIC_UNITS, NOV, ZONES)
    assert october.valid["event_id"].to_list() == ["early"]
    assert october.deferred.select("event_id", "period").rows() == [("late", "2026-11")]
    assert october.counts == UsageCounts(
        read=2, valid=1, quarantined=0, duplicates=0, deferred=1, borrowed=0, edge_read=1
    )
    assert sorted(november.valid["event_id"].to_list()) == ["late", "nov"]
    assert november.counts == UsageCounts(
        read=1, valid=2, quarantined=0, duplicates=0, deferred=0, borrowed=1, edge_read=2
    )


def test_an_account_behind_utc_keeps_its_month_into_the_next_utc_day() -> None:
    # Los Angeles is UTC-7 on Oct 31 (PDT): local Nov 1 00:00 is Nov 1 07:00 UTC.
    usage = {
        "2026-11-01": [
            ("oct", "LAX", "2026-11-01T06:59:59Z"),
            ("nov", "LAX", "2026-11-01T07:00:00Z"),
        ]
    }
    october = validate_usage(files(usage), METRIC_UNITS, OCT, ZONES)
    november = validate_usage(files(usage), METRIC_UNITS, NOV, ZONES)
    assert october.valid["event_id"].to_list() == ["oct"]
    assert october.counts.borrowed == 1 and october.counts.read == 0
    assert november.valid["event_id"].to_list() == ["nov"]
    assert november.deferred.select("event_id", "period").rows() == [("oct", "2026-10")]


def test_an_account_without_a_zone_is_billed_in_utc() -> None:
    usage = {"2026-10-31": [("e", "nobody", "2026-10-31T23:30:00Z")]}
    assert validate_usage(files(usage), METRIC_UNITS, OCT, ZONES).counts.valid == 1


def test_a_neighbours_month_outside_an_edge_day_is_quarantined() -> None:
    # Kiritimati (UTC+14): Oct 30 20:00 UTC is Oct 31 10:00 local, still October; but
    # Oct 31 11:00 UTC is Nov 1 01:00 local, and Oct 30's partition is not read by the
    # November run, so it cannot be owed to it.
    usage = {
        "2026-10-30": [
            ("ok", "KIR", "2026-10-30T20:00:00Z"),
            ("stray", "KIR", "2026-10-31T11:00:00Z"),
        ]
    }
    result = validate_usage(files(usage), METRIC_UNITS, OCT, ZONES)
    assert result.valid["event_id"].to_list() == ["ok"]
    assert result.quarantine.select("event_id", "reason").rows() == [("stray", "outside_period")]
    assert "after the billing period" in result.quarantine["reason_detail"][0]


def test_a_bad_edge_row_is_left_to_its_own_months_run() -> None:
    usage = {"2026-11-01": [("bad", "LAX", "not a time"), ("oct", "LAX", "2026-11-01T01:00:00Z")]}
    october = validate_usage(files(usage), METRIC_UNITS, OCT, ZONES)
    november = validate_usage(files(usage), METRIC_UNITS, NOV, ZONES)
    assert october.quarantine.height == 0 and october.counts.edge_read == 2
    assert november.quarantine["event_id"].to_list() == ["bad"]


_DAYS = ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(ZONES)),
            st.integers(0, 4 * 24 * 60 - 1),  # minute since Oct 30 00:00 UTC
            st.integers(-1, 1),  # partition: the UTC day, or the one before or after
            st.booleans(),  # a second copy in the next file
            st.integers(-2 * 24 * 60, 2 * 24 * 60),  # ... this many minutes off
        ),
        max_size=40,
    )
)
def test_neighbouring_runs_bill_each_event_once_in_its_local_month(
    events: list[tuple[str, int, int, bool, int]],
) -> None:
    from zoneinfo import ZoneInfo

    origin = datetime(2026, 10, 30, tzinfo=UTC)
    usage: dict[str, list[tuple[str, str, str]]] = {day: [] for day in _DAYS}
    # Per event, what each of its rows should become, in file order: the run of the
    # row's local month, or "quarantine". The first row that is not quarantined is billed.
    fates: dict[str, list[str]] = {}
    for number, (account, minute, shift, copied, skew) in enumerate(events):
        first = min(max(minute // 1440 + shift, 0), len(_DAYS) - 1)
        event_id = f"e{number}"
        copies = [(first, minute)]
        if copied and first + 1 < len(_DAYS):
            copies.append((first + 1, minute + skew))  # a re-delivery, its time changed
        for index, at_minute in copies:
            at = origin + timedelta(minutes=at_minute)
            local = f"{at.astimezone(ZoneInfo(ZONES[account])):%Y-%m}"
            day = _DAYS[index]
            usage[day].append((event_id, account, f"{at:%Y-%m-%dT%H:%M:%SZ}"))
            read_by_local_run = (local == "2026-11" and day == "2026-10-31") or (
                local == "2026-10" and day == "2026-11-01"
            )
            fate = local if local == day[:7] or read_by_local_run else "quarantine"
            fates.setdefault(event_id, []).append(fate)
        # Copies of one event id that belong to two different months are duplicates no
        # single run can see (docs/decisions/0023); they are out of this test's scope.
        assume(len({fate for fate in fates[event_id] if fate != "quarantine"}) <= 1)
    runs = {}
    for period in (OCT, NOV):  # each run reads its month's partitions and its edge days
        days = {f"{d}" for d in period.edge_days} | {d for d in _DAYS if d[:7] == period.label}
        read = {d: rows for d, rows in usage.items() if rows and d in days}
        frame = files(read) if read else raw([])
        runs[period.label] = validate_usage(frame, METRIC_UNITS, period, ZONES)
    billed: dict[str, list[str]] = {}
    for label, result in runs.items():
        result.counts.check()
        for event_id in result.valid["event_id"].to_list():
            billed.setdefault(event_id, []).append(label)
    quarantined = {e for r in runs.values() for e in r.quarantine["event_id"].to_list()}
    for event_id, rows in fates.items():
        if "quarantine" in rows:
            assert event_id in quarantined
        where = next((fate for fate in rows if fate != "quarantine"), None)
        assert billed.get(event_id, []) == ([where] if where else []), (event_id, rows)
    # every deferral is picked up by the run it names
    for result in runs.values():
        for event_id, target in result.deferred.select("event_id", "period").rows():
            assert billed[event_id] == [target]


def test_a_partition_a_run_does_not_read_is_an_error() -> None:
    usage = {"2026-11-02": [("e", "UTC", "2026-11-02T10:00:00Z")]}
    with pytest.raises(ValueError, match=r"dt=2026-11-02.* neither in 2026-10 nor on an edge day"):
        validate_usage(files(usage), METRIC_UNITS, OCT, ZONES)


def test_an_edge_copy_its_own_run_quarantines_does_not_hide_a_valid_copy() -> None:
    # E sits in October 31's file with a September time (October's run quarantines it)
    # and again in November 3's file with a good time: November bills the good copy.
    usage = {
        "2026-10-31": [("E", "UTC", "2026-09-15T10:00:00Z")],
        "2026-11-03": [("E", "UTC", "2026-11-03T10:00:00Z")],
    }
    october = validate_usage(files({"2026-10-31": usage["2026-10-31"]}), METRIC_UNITS, OCT)
    assert october.quarantine["event_id"].to_list() == ["E"]
    november = validate_usage(files(usage), METRIC_UNITS, NOV, ZONES)
    assert november.valid["event_id"].to_list() == ["E"]
    assert november.duplicates.height == 0


def test_a_month_after_utc_billed_months_starts_at_its_utc_bound() -> None:
    # October was billed in UTC months: Tokyo's 2026-10-31T20:00Z event was on October's
    # invoice. November, the first local month, does not borrow it, and a Los Angeles
    # event of November 1, 03:00 UTC (still October 31 in LA) stays November's, because
    # October's run did not read November 1.
    tokyo = {**ZONES, "TYO": "Asia/Tokyo"}
    usage = {
        "2026-11-01": [("la", "LAX", "2026-11-01T03:00:00Z")],
        "2026-11-15": [("mid", "TYO", "2026-11-15T03:00:00Z")],
    }
    november = validate_usage(files(usage), METRIC_UNITS, NOV, tokyo, shared=(False, True))
    assert sorted(november.valid["event_id"].to_list()) == ["la", "mid"]
    assert november.deferred.height == 0
    edge = {"2026-10-31": [("t", "TYO", "2026-10-31T20:00:00Z")]}
    with pytest.raises(ValueError, match="edge day"):
        validate_usage(files(edge), METRIC_UNITS, NOV, tokyo, shared=(False, True))


def test_every_loaded_row_must_reach_validation() -> None:
    from validation.usage import check_loaded

    check_loaded(7, {"read": 5, "edge_read": 2})
    with pytest.raises(ConservationError, match=r"loaded 8 rows but validation read 5 \+ 2"):
        check_loaded(8, {"read": 5, "edge_read": 2})
