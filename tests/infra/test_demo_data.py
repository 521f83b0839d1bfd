"""Tests of the demo month generator: every file is parsed back and checked."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import polars as pl
import pytest
import yaml

from infra.demo_data import (
    PLAN_BY_CURRENCY,
    PLAN_METRICS,
    UNKNOWN_PLAN_ID,
    USAGE_COLUMNS,
    DemoMonth,
    generate_demo_month,
)
from pricing_rules.localtime import with_local_day
from pricing_rules.periods import BillingPeriod

CATALOG = Path(__file__).resolve().parents[2] / "catalog" / "catalog.yaml"
OCTOBER = BillingPeriod.parse("2026-10")
KEY_RE = re.compile(r"^usage/dt=(\d{4}-\d{2}-\d{2})/part-(\d{4})\.(parquet|csv|jsonl|jsonl\.gz)$")
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
KNOWN_UNITS = {"s", "min", "message", "GB", "MB", "Mbps", "kbps", "seat"}
ACCOUNTS = 20
EVENTS = 20_000
SEED = 7
TEXT_SCHEMA = dict.fromkeys(USAGE_COLUMNS, pl.String)


def parse_file(key: str, body: bytes) -> pl.DataFrame:
    """One file as all-text columns, the way the pipeline would see it, plus its key."""
    if key.endswith(".parquet"):
        frame = pl.read_parquet(io.BytesIO(body))
        assert frame.schema["quantity"] == pl.Float64
        assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
        frame = frame.with_columns(
            pl.col("quantity").cast(pl.String), pl.col("timestamp").dt.strftime(TS_FORMAT)
        )
    elif key.endswith(".csv"):
        frame = pl.read_csv(io.BytesIO(body), infer_schema=False)
    else:
        raw = gzip.decompress(body) if key.endswith(".gz") else body
        frame = pl.read_ndjson(io.BytesIO(raw), schema=TEXT_SCHEMA)
    assert tuple(frame.columns) == USAGE_COLUMNS, key
    return frame.with_columns(pl.lit(key).alias("key"))


@pytest.fixture(scope="module")
def month() -> DemoMonth:
    return generate_demo_month("2026-10", ACCOUNTS, EVENTS, SEED)


@pytest.fixture(scope="module")
def rows(month: DemoMonth) -> pl.DataFrame:
    frame = pl.concat([parse_file(f.key, f.body) for f in month.files], how="vertical")
    return frame.with_columns(
        pl.col("quantity").cast(pl.Float64, strict=False).alias("qty"),
        pl.col("timestamp").str.to_datetime(TS_FORMAT, time_zone="UTC", strict=False).alias("ts"),
    )


@pytest.fixture(scope="module")
def catalog() -> dict[str, Any]:
    with CATALOG.open() as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


def plan_metrics(catalog: dict[str, Any]) -> dict[str, set[str]]:
    """Metrics each plan prices, its bundled add-ons included."""
    add_ons = catalog.get("add_ons", {})
    return {
        plan_id: {
            c["metric"]
            for c in [
                *plan["charges"],
                *(c for a in plan.get("add_ons", []) for c in add_ons[a]["charges"]),
            ]
            if "metric" in c
        }
        for plan_id, plan in catalog["plans"].items()
    }


def well_formed(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.filter(
        pl.col("account_id").is_not_null()
        & pl.col("qty").is_not_null()
        & (pl.col("qty") >= 0)
        & pl.col("ts").is_not_null()
        & pl.col("unit").is_in(sorted(KNOWN_UNITS))
    )


def test_catalog_facts_match_the_catalog(catalog: dict[str, Any]) -> None:
    assert {k: set(v) for k, v in PLAN_METRICS.items()} == plan_metrics(catalog)
    for currency, plan_id in PLAN_BY_CURRENCY.items():
        assert catalog["plans"][plan_id]["currency"] == currency
    assert UNKNOWN_PLAN_ID not in catalog["plans"]
    assert all("video" not in metrics for metrics in plan_metrics(catalog).values()), (
        "the planted unpriced metric must stay unpriced"
    )


def test_keys_are_day_partitions_in_the_period(month: DemoMonth) -> None:
    keys = [f.key for f in month.files]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    days = set()
    formats = set()
    for key in keys:
        match = KEY_RE.match(key)
        assert match is not None, key
        day = date.fromisoformat(match.group(1))
        # accounts away from UTC start or end their local October on a neighbour's day
        assert day.strftime("%Y-%m") == month.period or day in OCTOBER.edge_days
        days.add(day)
        formats.add(match.group(3))
    assert len({d for d in days if d.month == 10}) == 31, "every day of October has files"
    assert days >= set(OCTOBER.edge_days), "the demo has accounts on both sides of UTC"
    assert formats == {"parquet", "csv", "jsonl", "jsonl.gz"}


def test_row_count_matches_events_written(month: DemoMonth, rows: pl.DataFrame) -> None:
    assert rows.height == month.events_written
    planted = month.planted
    extras = (
        planted.orphan_events
        + planted.unpriced_events
        + planted.duplicate_copies
        + sum(planted.malformed_by_reason.values())
    )
    assert month.events_written == EVENTS + extras


def test_text_formats_carry_quantity_as_text(month: DemoMonth) -> None:
    for f in month.files:
        if f.key.endswith(".jsonl"):
            first = json.loads(f.body.splitlines()[0])
            assert isinstance(first["quantity"], str)
            assert first["timestamp"] is None or str(first["timestamp"]).endswith("Z")
            break
    else:
        pytest.fail("no JSON Lines file")


def test_duplicates_are_exact_copies_in_another_file(month: DemoMonth, rows: pl.DataFrame) -> None:
    groups = (
        rows.group_by("event_id")
        .agg(
            pl.len().alias("copies"),
            pl.col("key").n_unique().alias("files"),
            pl.col("key").str.slice(9, 10).n_unique().alias("days"),
            *(
                pl.col(c).n_unique().alias(f"distinct_{c}")
                for c in (
                    "account_id",
                    "metric",
                    "qty",
                    "unit",
                    "timestamp",
                    "destination",
                    "direction",
                )
            ),
        )
        .filter(pl.col("copies") > 1)
    )
    assert int((groups["copies"] - 1).sum()) == month.planted.duplicate_copies
    assert (groups["files"] == groups["copies"]).all(), "a copy shares a file with its original"
    assert (groups["days"] == groups["copies"]).all(), "a copy is in another day's file"
    for column in groups.columns:
        if column.startswith("distinct_"):
            assert (groups[column] == 1).all(), f"copies differ in {column}"


def test_malformed_rows_match_the_report(month: DemoMonth, rows: pl.DataFrame) -> None:
    quantity_text = pl.col("quantity")
    found = {
        "negative_quantity": rows.filter(pl.col("qty") < 0),
        "unknown_unit": rows.filter(~pl.col("unit").is_in(sorted(KNOWN_UNITS))),
        "missing_account_id": rows.filter(pl.col("account_id").is_null()),
        "bad_timestamp": rows.filter(pl.col("ts").is_null()),
        "non_numeric_quantity": rows.filter(quantity_text.is_not_null() & pl.col("qty").is_null()),
    }
    counts = {reason: frame.height for reason, frame in found.items()}
    assert counts == month.planted.malformed_by_reason
    assert all(count > 0 for count in counts.values())
    malformed_keys = pl.concat(list(found.values()))["key"]
    assert not malformed_keys.str.ends_with(".parquet").any(), "malformed rows in Parquet"
    assert rows.height - well_formed(rows).height == sum(counts.values())
    assert set(found["unknown_unit"]["unit"].to_list()) == {"parsecs"}


def test_event_ids(month: DemoMonth, rows: pl.DataFrame) -> None:
    assert rows["event_id"].str.contains(r"^evt-2026-10-\d{9}$").all()
    assert rows["event_id"].n_unique() == rows.height - month.planted.duplicate_copies


def test_timestamps_inside_each_accounts_local_month(month: DemoMonth, rows: pl.DataFrame) -> None:
    ok = well_formed(rows)
    assert ok["timestamp"].str.ends_with("Z").all()
    zones = dict(month.accounts.select("account_id", "timezone").iter_rows())
    window = OCTOBER.previous().start_at, OCTOBER.next().end_at
    local = with_local_day(ok.lazy().with_columns(timestamp="ts"), zones, *window).collect()
    assert (local["local_day"].dt.strftime("%Y-%m") == "2026-10").all()
    assert (ok["ts"].dt.strftime("%Y-%m") != "2026-10").any(), "some fall outside UTC October"


def test_metric_mix_and_units(rows: pl.DataFrame) -> None:
    ok = well_formed(rows)
    share = ok["metric"].value_counts(normalize=True)
    shares = dict(zip(share["metric"].to_list(), share["proportion"].to_list(), strict=True))
    assert 0.5 < shares["voice"] < 0.7
    assert 0.22 < shares["sms"] < 0.38
    units = ok.group_by("metric").agg(pl.col("unit").unique().sort()).sort("metric")
    by_metric = dict(zip(units["metric"].to_list(), units["unit"].to_list(), strict=True))
    assert by_metric == {
        "bandwidth": ["Mbps", "kbps"],
        "seats": ["seat"],
        "sms": ["message"],
        "storage": ["GB", "MB"],
        "video": ["s"],
        "voice": ["min", "s"],
    }
    voice = ok.filter(pl.col("metric") == "voice")
    minutes = voice.filter(pl.col("unit") == "min")
    assert 0.05 < minutes.height / voice.height < 0.15
    assert minutes["quantity"].str.contains(r"\.\d").any(), "minutes come with decimals"
    seconds = voice.filter(pl.col("unit") == "s")["qty"]
    assert (seconds < 10).sum() <= 0.1 * seconds.len(), "mostly 10 s or more"
    assert (seconds > 600).sum() <= 0.2 * seconds.len(), "mostly 600 s or less"
    assert (seconds > 1800).any(), "some long calls"
    assert (ok.filter(pl.col("metric") == "sms")["qty"] == 1).all()
    seats = ok.filter(pl.col("metric") == "seats")["qty"]
    assert (seats == seats.round(0)).all()


def test_voice_destinations_are_e164_from_many_countries(rows: pl.DataFrame) -> None:
    ok = well_formed(rows)
    voice = ok.filter(pl.col("metric") == "voice")
    assert voice["destination"].is_not_null().all()
    assert ok.filter(pl.col("metric") != "voice")["destination"].is_null().all()
    assert voice["destination"].str.contains(r"^\+[1-9]\d{6,14}$").all()
    regions: set[str] = set()
    for number in voice["destination"].unique().to_list():
        parsed = phonenumbers.parse(number)
        assert phonenumbers.is_valid_number(parsed), number
        regions.add(str(phonenumbers.region_code_for_number(parsed)))
    assert len(regions) >= 30, sorted(regions)


def test_direction(rows: pl.DataFrame) -> None:
    ok = well_formed(rows)
    talk = ok.filter(pl.col("metric").is_in(["voice", "sms"]))
    assert set(talk["direction"].unique().to_list()) == {"outbound", "inbound"}
    assert ok.filter(~pl.col("metric").is_in(["voice", "sms"]))["direction"].is_null().all()


def test_accounts(month: DemoMonth) -> None:
    accounts = month.accounts
    assert accounts.columns == [
        "account_id", "name", "currency", "country", "timezone", "billing_email",
    ]  # fmt: skip
    assert accounts.height == ACCOUNTS + 1  # with the orphan
    assert accounts["account_id"].n_unique() == accounts.height
    assert accounts["account_id"].str.contains(r"^ACC-\d{4}$").all()
    assert set(accounts["currency"].to_list()) == {"USD", "EUR", "JPY"}
    currencies = accounts["currency"].value_counts().sort("count", descending=True)
    assert currencies["currency"][0] == "USD"
    for row in accounts.iter_rows(named=True):
        assert phonenumbers.country_code_for_region(row["country"]) != 0, row
        ZoneInfo(row["timezone"])
        assert re.match(r"^[^@\s]+@[^@\s]+\.[a-z]+$", row["billing_email"])
    jpy = accounts.filter(pl.col("currency") == "JPY")
    assert (jpy["country"] == "JP").all()


def test_subscriptions(month: DemoMonth, catalog: dict[str, Any]) -> None:
    subs = month.subscriptions
    assert subs.schema["start_date"] == pl.Date
    assert subs.schema["end_date"] == pl.Date
    assert subs["account_id"].n_unique() == subs.height == ACCOUNTS
    ended = subs.filter(pl.col("end_date").is_not_null())
    assert (ended["end_date"] > ended["start_date"]).all()
    first, after = date(2026, 10, 1), date(2026, 11, 1)
    assert 2 <= ended.filter(pl.col("end_date").is_between(first, after)).height <= 3
    starters = subs.filter((pl.col("start_date") > first) & (pl.col("start_date") < after))
    assert starters.height >= 1
    unknown = subs.filter(~pl.col("plan_id").is_in(list(catalog["plans"])))
    assert unknown["subscription_id"].to_list() == [month.planted.unknown_plan_subscription_id]
    assert unknown["account_id"].to_list() == [month.planted.unknown_plan_account_id]
    assert unknown["plan_id"].to_list() == [UNKNOWN_PLAN_ID]
    currency = dict(month.accounts.select("account_id", "currency").iter_rows())
    for row in subs.filter(pl.col("plan_id").is_in(list(catalog["plans"]))).iter_rows(named=True):
        assert catalog["plans"][row["plan_id"]]["currency"] == currency[row["account_id"]]


def test_orphan_account(month: DemoMonth, rows: pl.DataFrame) -> None:
    orphan = month.planted.orphan_account_id
    assert orphan in month.accounts["account_id"].to_list()
    assert orphan not in month.subscriptions["account_id"].to_list()
    assert rows.filter(pl.col("account_id") == orphan).height == month.planted.orphan_events


def test_usage_only_while_subscribed_and_only_priced_metrics(
    month: DemoMonth, rows: pl.DataFrame, catalog: dict[str, Any]
) -> None:
    priced = plan_metrics(catalog)
    priced[UNKNOWN_PLAN_ID] = priced["ucaas-business-usd"]
    zones = dict(month.accounts.select("account_id", "timezone").iter_rows())
    ok = (
        with_local_day(
            well_formed(rows).lazy().with_columns(timestamp="ts"),
            zones,
            OCTOBER.previous().start_at,
            OCTOBER.next().end_at,
        )
        .collect()
        .join(month.subscriptions, on="account_id", how="inner")
    )
    day = pl.col("local_day")
    outside = ok.filter(
        (day < pl.col("start_date"))
        | (pl.col("end_date").is_not_null() & (day >= pl.col("end_date")))
    )
    assert outside.height == 0
    used = ok.group_by("plan_id", "metric").len()
    unpriced = used.filter(
        ~pl.struct("plan_id", "metric").map_elements(
            lambda r: r["metric"] in priced[r["plan_id"]], return_dtype=pl.Boolean
        )
    )
    assert unpriced["metric"].unique().to_list() == [month.planted.unpriced_metric]
    assert int(unpriced["len"].sum()) == month.planted.unpriced_events
    video_accounts = ok.filter(pl.col("metric") == "video")["account_id"].n_unique()
    assert 2 <= video_accounts <= 5
    legacy = ok.filter(pl.col("account_id") == month.planted.unknown_plan_account_id)
    assert set(legacy["metric"].unique().to_list()) >= {"voice", "sms", "seats"}


def test_same_seed_same_bytes_other_seed_other_bytes(month: DemoMonth) -> None:
    again = generate_demo_month("2026-10", ACCOUNTS, EVENTS, SEED)
    assert [(f.key, f.body) for f in again.files] == [(f.key, f.body) for f in month.files]
    assert again.accounts.equals(month.accounts)
    assert again.subscriptions.equals(month.subscriptions)
    assert again.planted == month.planted
    assert again.events_written == month.events_written

    other = generate_demo_month("2026-10", ACCOUNTS, EVENTS, SEED + 1)
    bodies = {f.body for f in month.files}
    assert not any(f.body in bodies for f in other.files)


def test_february_has_28_days_of_files() -> None:
    short = generate_demo_month(period="2027-02", accounts=12, events=6_000, seed=1)
    days = {KEY_RE.match(f.key).group(1) for f in short.files}  # type: ignore[union-attr]
    february = {d for d in days if d.startswith("2027-02")}
    assert len(february) == 28
    assert min(february) == "2027-02-01"
    assert max(february) == "2027-02-28"
    assert days - february <= {"2027-01-31", "2027-03-01"}
    total = sum(parse_file(f.key, f.body).height for f in short.files)
    assert total == short.events_written


@pytest.mark.parametrize(
    "kwargs",
    [{"period": "2026-13"}, {"period": "202610"}, {"accounts": 5}, {"events": 100}],
)
def test_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        generate_demo_month(**kwargs)
