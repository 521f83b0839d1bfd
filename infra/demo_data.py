"""Deterministic generator of a realistic UCaaS billing month, as in-memory files.

``generate_demo_month`` builds the accounts, their subscriptions and one month of usage events
for them, split into day-partitioned files (``usage/dt=YYYY-MM-DD/part-NNNN.<ext>``) in four
formats: Parquet, CSV, JSON Lines and gzip JSON Lines. It does no IO: every file is returned as
bytes, ready to be put in an object store.

On top of the ordinary usage it plants the problems that the pipeline must catch, and reports
each of them with exact counts in ``DemoMonth.planted``:

* an orphan account that has usage but no subscription;
* duplicate copies of existing events (same ``event_id``, same payload) in another day's file;
* malformed rows (negative quantity, unknown unit, missing account id, unparseable timestamp,
  non-numeric quantity), only in CSV and JSON Lines files so that Parquet keeps proper types;
* events of a metric that no plan prices (``video``);
* a subscription whose plan is not in the catalog (``ucaas-legacy-2019``), with normal usage.

Everything random comes from ``random.Random(seed)``: the same arguments give the same bytes
(with the same Polars version, which writes the Parquet files).

Unit conventions in the data: ``1 min = 60 s``, ``1 GB = 1000 MB``, ``1 Mbps = 1000 kbps``.
"""

from __future__ import annotations

import calendar
import gzip
import io
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import phonenumbers
import polars as pl
import pyarrow as pa
from phonenumbers import PhoneNumberType

__all__ = [
    "MALFORMED_REASONS",
    "PLAN_BY_CURRENCY",
    "PLAN_METRICS",
    "UNKNOWN_PLAN_ID",
    "UNPRICED_METRIC",
    "USAGE_COLUMNS",
    "DemoMonth",
    "DemoUsageFile",
    "PlantedProblems",
    "generate_demo_month",
]

# --------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUsageFile:
    """One usage file, ready to be put in an object store under ``key``."""

    key: str  # e.g. "usage/dt=2026-10-07/part-0003.parquet"
    body: bytes


@dataclass(frozen=True)
class PlantedProblems:
    """The problems planted in the month, with exact counts."""

    orphan_account_id: str  # has usage events, no subscription at all
    orphan_events: int
    # extra copies of existing events (same event_id, same payload), each in a different file
    # (another day's file) than its original
    duplicate_copies: int
    malformed_by_reason: dict[str, int]
    unpriced_metric: str  # "video"
    unpriced_events: int
    unknown_plan_subscription_id: str  # its plan_id ("ucaas-legacy-2019") is not in the catalog
    unknown_plan_account_id: str


@dataclass(frozen=True)
class DemoMonth:
    """A generated billing month."""

    period: str  # "2026-10"
    # account_id, name, currency, country (ISO 3166 alpha-2), timezone (IANA), billing_email
    accounts: pl.DataFrame
    # subscription_id, account_id, plan_id, start_date (Date), end_date (Date, nullable,
    # exclusive end)
    subscriptions: pl.DataFrame
    files: list[DemoUsageFile]
    planted: PlantedProblems
    events_written: int  # total data rows across all files, with duplicates and malformed rows


# --------------------------------------------------------------------------------------------
# Catalog facts (mirrors catalog/catalog.yaml; kept here so that the generator does no IO.
# tests/infra/test_demo_data.py checks that they still match the catalog.)
# --------------------------------------------------------------------------------------------

PLAN_METRICS: dict[str, tuple[str, ...]] = {
    "ucaas-business-usd": ("voice", "sms", "storage", "bandwidth", "seats"),
    "ucaas-business-eur": ("voice", "sms", "storage", "seats"),
    "ucaas-starter-jpy": ("voice", "sms", "seats"),
}
PLAN_BY_CURRENCY: dict[str, str] = {
    "USD": "ucaas-business-usd",
    "EUR": "ucaas-business-eur",
    "JPY": "ucaas-starter-jpy",
}
UNKNOWN_PLAN_ID = "ucaas-legacy-2019"
UNPRICED_METRIC = "video"
SNAPSHOT_METRICS: tuple[str, ...] = ("storage", "bandwidth", "seats")

USAGE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "account_id",
    "metric",
    "quantity",
    "unit",
    "timestamp",
    "destination",
    "direction",
)

MALFORMED_REASONS: tuple[str, ...] = (
    "negative_quantity",
    "unknown_unit",
    "missing_account_id",
    "bad_timestamp",
    "non_numeric_quantity",
)

_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TEXT_EXTS: tuple[str, ...] = ("csv", "jsonl", "jsonl.gz")
_ALL_EXTS: tuple[str, ...] = ("parquet", "csv", "jsonl", "jsonl.gz")
_ROWS_PER_FILE = 10_000

# (country, IANA time zone, weight) by billing currency
_LOCALES: dict[str, list[tuple[str, str, int]]] = {
    "USD": [
        ("US", "America/New_York", 30),
        ("US", "America/Chicago", 20),
        ("US", "America/Denver", 7),
        ("US", "America/Phoenix", 4),
        ("US", "America/Los_Angeles", 24),
        ("CA", "America/Toronto", 9),
        ("CA", "America/Vancouver", 6),
    ],
    "EUR": [
        ("DE", "Europe/Berlin", 24),
        ("FR", "Europe/Paris", 18),
        ("ES", "Europe/Madrid", 12),
        ("IT", "Europe/Rome", 12),
        ("NL", "Europe/Amsterdam", 10),
        ("IE", "Europe/Dublin", 8),
        ("BE", "Europe/Brussels", 5),
        ("AT", "Europe/Vienna", 5),
        ("PT", "Europe/Lisbon", 3),
        ("FI", "Europe/Helsinki", 3),
    ],
    "JPY": [("JP", "Asia/Tokyo", 1)],
}

# Voice destination regions, with their weight among international calls.
_DESTINATION_REGIONS: tuple[tuple[str, int], ...] = (
    ("US", 20), ("CA", 6), ("MX", 6), ("BR", 3), ("AR", 1), ("CL", 1), ("CO", 2), ("PE", 1),
    ("GB", 12), ("IE", 3), ("FR", 6), ("DE", 8), ("ES", 4), ("IT", 4), ("NL", 3), ("BE", 2),
    ("CH", 2), ("AT", 2), ("SE", 2), ("NO", 1), ("DK", 1), ("FI", 1), ("PL", 3), ("PT", 1),
    ("CZ", 1), ("GR", 1), ("JP", 4), ("KR", 2), ("SG", 2), ("HK", 2), ("IN", 8), ("AU", 3),
    ("NZ", 1), ("ZA", 1), ("AE", 2), ("IL", 1), ("PH", 3), ("TR", 1),
)  # fmt: skip
_NUMBERS_PER_TYPE = 48
_DOMESTIC_SHARE = 0.8

# Relative call volume by local hour of day, and on Saturday and Sunday.
_HOUR_WEIGHTS: tuple[float, ...] = (
    0.04, 0.03, 0.02, 0.02, 0.03, 0.05, 0.12, 0.35, 0.80, 1.00, 1.00, 0.95,
    0.75, 0.90, 1.00, 0.95, 0.85, 0.60, 0.35, 0.22, 0.16, 0.12, 0.08, 0.06,
)  # fmt: skip
_WEEKEND_WEIGHT = 0.15

_NAME_FIRST: tuple[str, ...] = (
    "Northwind", "Blue Harbor", "Cedar Ridge", "Ironwood", "Silver Lake", "Redstone", "Brightpath",
    "Summit", "Harborview", "Oakline", "Granite Peak", "Lakeshore", "Meridian", "Pinecrest",
    "Riverbend", "Stonebridge", "Westfield", "Clearwater", "Foxglove", "Kestrel", "Larkspur",
    "Maplewood", "Nordlicht", "Sakura", "Alpenrose", "Azure Coast", "Bellhaven", "Copperleaf",
    "Driftwood", "Evergreen", "Fairmont", "Goldcrest",
)  # fmt: skip
_NAME_SECOND: tuple[str, ...] = (
    "Logistics", "Health", "Legal", "Realty", "Dental Group", "Insurance", "Consulting",
    "Manufacturing", "Hospitality", "Architects", "Accounting", "Clinics", "Media", "Retail",
    "Engineering", "Travel", "Foods", "Energy", "Capital", "Labs",
)  # fmt: skip

_PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


# --------------------------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------------------------


def _uniforms(rng: random.Random, n: int, names: Sequence[str]) -> pl.DataFrame:
    """``n`` rows of independent uniform [0, 1) floats, one column per name.

    The bits come from ``rng`` (Mersenne Twister) in bulk, so this is fast and deterministic.
    """
    columns: list[pl.Series] = []
    for name in names:
        raw = rng.randbytes(8 * n)
        bits = pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(raw)])
        series = pl.Series(name, bits, dtype=pl.UInt64)
        columns.append(((series // 2048).cast(pl.Float64) * 2.0**-53).alias(name))
    return pl.DataFrame(columns)


def _normal(u1: pl.Expr, u2: pl.Expr) -> pl.Expr:
    """A standard normal variate from two uniforms (Box-Muller)."""
    return (-2.0 * (1.0 - u1).log()).sqrt() * (2.0 * math.pi * u2).cos()


def _weighted_choice(rng: random.Random, items: Sequence[tuple[str, str, int]]) -> tuple[str, str]:
    country, tz, _ = rng.choices(items, weights=[w for _, _, w in items], k=1)[0]
    return country, tz


# --------------------------------------------------------------------------------------------
# Accounts and subscriptions
# --------------------------------------------------------------------------------------------


@dataclass
class _Account:
    index: int
    account_id: str
    name: str
    currency: str
    country: str
    timezone: str
    email: str
    plan_id: str | None  # None: no subscription (the orphan)
    metrics: tuple[str, ...]
    start_date: date
    end_date: date | None
    active_from_hour: int  # hours since the period start, inclusive
    active_to_hour: int  # exclusive
    size: float
    voice_affinity: float
    sms_affinity: float
    seats: int
    seat_growth: float
    storage_gb: float
    storage_growth: float
    bandwidth_mbps: float


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _company_names(rng: random.Random, count: int) -> list[str]:
    combos = [f"{a} {b}" for a in _NAME_FIRST for b in _NAME_SECOND]
    rng.shuffle(combos)
    names = combos[:count]
    while len(names) < count:
        names.append(f"{combos[len(names) % len(combos)]} {len(names) // len(combos) + 1}")
    return names


def _build_accounts(
    rng: random.Random,
    count: int,
    period_start: datetime,
    days: int,
) -> tuple[list[_Account], int, int]:
    """Subscribed accounts plus the orphan (last). Returns (accounts, unknown_plan, orphan)."""
    n_jpy = max(1, round(count * 0.05))
    n_eur = max(1, round(count * 0.17))
    currencies = ["JPY"] * n_jpy + ["EUR"] * n_eur + ["USD"] * (count - n_jpy - n_eur)
    rng.shuffle(currencies)
    names = _company_names(rng, count + 1)
    first_day = period_start.date()

    usd_indexes = [i for i, c in enumerate(currencies) if c == "USD"]
    unknown_plan = rng.choice(usd_indexes)
    others = [i for i in range(count) if i != unknown_plan]
    n_start = max(1, round(count / 12))
    n_end = 3 if count >= 60 else 2
    picked = rng.sample(others, n_start + n_end)
    starters = set(picked[:n_start])
    enders = set(picked[n_start:])

    accounts: list[_Account] = []
    for i in range(count + 1):
        orphan = i == count
        currency = "USD" if orphan else currencies[i]
        country, tz = _weighted_choice(rng, _LOCALES[currency])
        if orphan:
            account_id = f"ACC-{max(9001, count + 1001):04d}"
            plan_id: str | None = None
        else:
            account_id = f"ACC-{i + 1:04d}"
            plan_id = UNKNOWN_PLAN_ID if i == unknown_plan else PLAN_BY_CURRENCY[currency]
        # the orphan and the unknown plan's account use what a USD business customer uses
        metrics = PLAN_METRICS.get(plan_id or "", PLAN_METRICS["ucaas-business-usd"])
        if i in starters:
            start = first_day + timedelta(days=rng.randint(1, days - 4))
        elif i == unknown_plan:
            start = date(2019, 1, 1) + timedelta(days=rng.randint(0, 360))
        else:
            start = first_day - timedelta(days=rng.randint(30, 6 * 365))
        end = first_day + timedelta(days=rng.randint(4, days - 2)) if i in enders else None
        active_from = max(0, (start - first_day).days) * 24
        active_to = (days if end is None else (end - first_day).days) * 24
        size = rng.lognormvariate(0.0, 1.0)
        seats = max(3, min(2000, round(22 * size * rng.lognormvariate(0.0, 0.3))))
        name = names[i]
        accounts.append(
            _Account(
                index=i,
                account_id=account_id,
                name=name,
                currency=currency,
                country=country,
                timezone=tz,
                email=f"billing@{_slug(name)}.example",
                plan_id=plan_id,
                metrics=metrics,
                start_date=start,
                end_date=end,
                active_from_hour=active_from,
                active_to_hour=active_to,
                size=size,
                voice_affinity=rng.lognormvariate(0.0, 0.3),
                sms_affinity=rng.lognormvariate(0.0, 0.6),
                seats=seats,
                seat_growth=rng.uniform(0.0, 0.06),
                storage_gb=round(seats * rng.uniform(0.4, 3.5), 2),
                storage_growth=rng.uniform(0.03, 0.2),
                bandwidth_mbps=round(seats * rng.uniform(0.08, 0.35), 1) + 2.0,
            )
        )
    return accounts, unknown_plan, count


def _accounts_frame(accounts: Sequence[_Account]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": [a.account_id for a in accounts],
            "name": [a.name for a in accounts],
            "currency": [a.currency for a in accounts],
            "country": [a.country for a in accounts],
            "timezone": [a.timezone for a in accounts],
            "billing_email": [a.email for a in accounts],
        },
        schema={
            "account_id": pl.String,
            "name": pl.String,
            "currency": pl.String,
            "country": pl.String,
            "timezone": pl.String,
            "billing_email": pl.String,
        },
    )


def _subscriptions_frame(accounts: Sequence[_Account]) -> pl.DataFrame:
    subscribed = [a for a in accounts if a.plan_id is not None]
    return pl.DataFrame(
        {
            "subscription_id": [f"SUB-{a.index + 1:04d}" for a in subscribed],
            "account_id": [a.account_id for a in subscribed],
            "plan_id": [a.plan_id for a in subscribed],
            "start_date": [a.start_date for a in subscribed],
            "end_date": [a.end_date for a in subscribed],
        },
        schema={
            "subscription_id": pl.String,
            "account_id": pl.String,
            "plan_id": pl.String,
            "start_date": pl.Date,
            "end_date": pl.Date,
        },
    )


# --------------------------------------------------------------------------------------------
# Phone numbers
# --------------------------------------------------------------------------------------------


def _number_pool(rng: random.Random) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Valid E.164 numbers for every destination region.

    Returns the flat pool and, per region, (offset, count) into it.
    """
    pool: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    for region, _ in _DESTINATION_REGIONS:
        start = len(pool)
        seen: set[str] = set()
        for number_type in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            national = phonenumbers.national_significant_number(example)
            vary = max(1, min(6, len(national) - 3))
            prefix = f"+{example.country_code}{national[:-vary]}"
            found = 0
            for _ in range(_NUMBERS_PER_TYPE * 4):
                if found == _NUMBERS_PER_TYPE:
                    break
                candidate = f"{prefix}{rng.randrange(10**vary):0{vary}d}"
                parsed = phonenumbers.parse(candidate)
                if (
                    candidate in seen
                    or not phonenumbers.is_valid_number(parsed)
                    or phonenumbers.region_code_for_number(parsed) != region
                ):
                    continue
                e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                seen.add(candidate)
                pool.append(e164)
                found += 1
            if found == 0:  # never expected; the example number itself is valid
                pool.append(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                )
        spans[region] = (start, len(pool) - start)
    return pool, spans


# --------------------------------------------------------------------------------------------
# Event generation
# --------------------------------------------------------------------------------------------


def _slot_table(
    accounts: Sequence[_Account],
    weights: Sequence[float],
    start_weekday: int,
) -> pl.DataFrame:
    """One row per (account, local hour of the month) while the account is active,
    weighted for sampling by the account's weight, the hour of day and the day of week.
    """
    base = pl.DataFrame(
        {
            "acct": [a.index for a in accounts],
            "h0": [a.active_from_hour for a in accounts],
            "h1": [a.active_to_hour for a in accounts],
            "w": list(weights),
        },
        schema={
            "acct": pl.Int32,
            "h0": pl.Int64,
            "h1": pl.Int64,
            "w": pl.Float64,
        },
    )
    hour_weights = pl.Series("hw", _HOUR_WEIGHTS, dtype=pl.Float64)
    # hours count local wall-clock time from the start of the month (see _onto_local_months)
    slots = (
        base.with_columns(pl.int_ranges("h0", "h1").alias("hour"))
        .explode("hour")
        .drop_nulls("hour")
        .with_columns(
            (pl.col("hour") % 24).alias("local_hour"),
            ((pl.col("hour") // 24 + start_weekday) % 7).alias("weekday"),
        )
        .with_columns(
            (
                pl.col("w")
                * pl.lit(hour_weights).gather(pl.col("local_hour"))
                * pl.when(pl.col("weekday") >= 5).then(_WEEKEND_WEIGHT).otherwise(1.0)
            ).alias("weight")
        )
        .select("acct", "hour", "weight")
    )
    return slots.with_columns((pl.col("weight").cum_sum() - pl.col("weight")).alias("cum_start"))


def _sample_times(
    rng: random.Random, slots: pl.DataFrame, n: int, period_start: datetime
) -> pl.DataFrame:
    """``n`` events drawn from the slot weights: columns ``acct`` and ``ts`` (wall-clock
    time, moved onto each account's zone by ``_onto_local_months``)."""
    total = float(slots["weight"].sum())
    draws = (
        _uniforms(rng, n, ("p", "s"))
        .with_columns((pl.col("p") * total).alias("pos"))
        .sort("pos", maintain_order=True)
    )
    joined = draws.join_asof(
        slots.select("cum_start", "acct", "hour"),
        left_on="pos",
        right_on="cum_start",
        strategy="backward",
    )
    seconds = pl.col("hour") * 3600 + (pl.col("s") * 3600).floor().cast(pl.Int64)
    return joined.select(
        "acct",
        (pl.lit(period_start, dtype=pl.Datetime("us", "UTC")) + pl.duration(seconds=seconds)).alias(
            "ts"
        ),
    )


def _account_lookup(accounts: Sequence[_Account]) -> pl.Series:
    return pl.Series("account_id", [a.account_id for a in accounts], dtype=pl.String)


def _empty_string() -> pl.Expr:
    return pl.lit(None, dtype=pl.String)


def _voice_events(
    rng: random.Random,
    accounts: Sequence[_Account],
    chosen: Sequence[_Account],
    n: int,
    period_start: datetime,
    start_weekday: int,
    pool: pl.Series,
    spans: dict[str, tuple[int, int]],
) -> pl.DataFrame:
    slots = _slot_table(chosen, [a.size * a.voice_affinity for a in chosen], start_weekday)
    events = _sample_times(rng, slots, n, period_start)
    u = _uniforms(rng, n, ("z1", "z2", "unit", "dir", "dom", "intl", "num"))
    events = pl.concat([events, u], how="horizontal")

    regions = [r for r, _ in _DESTINATION_REGIONS]
    region_index = {r: i for i, r in enumerate(regions)}
    home = pl.Series([region_index[a.country] for a in accounts], dtype=pl.Int64)
    intl_choices = pl.Series(
        [region_index[r] for r, w in _DESTINATION_REGIONS for _ in range(w)], dtype=pl.Int64
    )
    offsets = pl.Series([spans[r][0] for r in regions], dtype=pl.Int64)
    counts = pl.Series([spans[r][1] for r in regions], dtype=pl.Int64)

    seconds = (
        (math.log(110.0) + 1.15 * _normal(pl.col("z1"), pl.col("z2")))
        .exp()
        .clip(1.0, 14_400.0)
        .round(0)
        .cast(pl.Int64)
    )
    region = (
        pl.when(pl.col("dom") < _DOMESTIC_SHARE)
        .then(pl.lit(home).gather(pl.col("acct")))
        .otherwise(
            pl.lit(intl_choices).gather((pl.col("intl") * len(intl_choices)).floor().cast(pl.Int64))
        )
    )
    events = events.with_columns(seconds.alias("secs"), region.alias("region"))
    number_index = pl.lit(offsets).gather(pl.col("region")) + (
        pl.col("num") * pl.lit(counts).gather(pl.col("region"))
    ).floor().cast(pl.Int64)
    in_minutes = pl.col("unit") < 0.1
    return events.select(
        pl.lit(_account_lookup(accounts)).gather(pl.col("acct")).alias("account_id"),
        pl.lit("voice").alias("metric"),
        pl.when(in_minutes)
        .then((pl.col("secs") / 60.0).round(2).cast(pl.String))
        .otherwise(pl.col("secs").cast(pl.String))
        .alias("quantity"),
        pl.when(in_minutes).then(pl.lit("min")).otherwise(pl.lit("s")).alias("unit"),
        "ts",
        pl.lit(pool).gather(number_index).alias("destination"),
        pl.when(pl.col("dir") < 0.7)
        .then(pl.lit("outbound"))
        .otherwise(pl.lit("inbound"))
        .alias("direction"),
    )


def _sms_events(
    rng: random.Random,
    accounts: Sequence[_Account],
    chosen: Sequence[_Account],
    n: int,
    period_start: datetime,
    start_weekday: int,
) -> pl.DataFrame:
    slots = _slot_table(chosen, [a.size * a.sms_affinity for a in chosen], start_weekday)
    events = pl.concat(
        [_sample_times(rng, slots, n, period_start), _uniforms(rng, n, ("dir",))],
        how="horizontal",
    )
    return events.select(
        pl.lit(_account_lookup(accounts)).gather(pl.col("acct")).alias("account_id"),
        pl.lit("sms").alias("metric"),
        pl.lit("1").alias("quantity"),
        pl.lit("message").alias("unit"),
        "ts",
        _empty_string().alias("destination"),
        pl.when(pl.col("dir") < 0.75)
        .then(pl.lit("outbound"))
        .otherwise(pl.lit("inbound"))
        .alias("direction"),
    )


def _video_events(
    rng: random.Random,
    accounts: Sequence[_Account],
    chosen: Sequence[_Account],
    n: int,
    period_start: datetime,
    start_weekday: int,
) -> pl.DataFrame:
    slots = _slot_table(chosen, [a.size for a in chosen], start_weekday)
    events = pl.concat(
        [_sample_times(rng, slots, n, period_start), _uniforms(rng, n, ("z1", "z2"))],
        how="horizontal",
    )
    seconds = (
        (math.log(1800.0) + 0.6 * _normal(pl.col("z1"), pl.col("z2")))
        .exp()
        .clip(60.0, 14_400.0)
        .round(0)
        .cast(pl.Int64)
    )
    return events.select(
        pl.lit(_account_lookup(accounts)).gather(pl.col("acct")).alias("account_id"),
        pl.lit(UNPRICED_METRIC).alias("metric"),
        seconds.cast(pl.String).alias("quantity"),
        pl.lit("s").alias("unit"),
        "ts",
        _empty_string().alias("destination"),
        _empty_string().alias("direction"),
    )


def _onto_local_months(events: pl.DataFrame, accounts: Sequence[_Account]) -> pl.DataFrame:
    """Read each account's generated UTC times as its local wall-clock times, so its usage
    fills the local month it is billed for: an account in Tokyo starts October at 15:00
    UTC on September 30, so its first events land in that day's partition. Malformed
    rows stay where they are.
    """
    zones = {a.account_id: a.timezone for a in accounts}
    frame = events.with_row_index("_row").with_columns(
        pl.when(pl.col("kind") == "malformed")
        .then(None)
        .otherwise(pl.col("account_id").replace_strict(zones, default=None))
        .alias("_zone")
    )
    parts = []
    for (zone,), part in frame.partition_by("_zone", as_dict=True).items():
        if zone is not None:
            wall = pl.col("ts").dt.replace_time_zone(None)

            def localize(w: pl.Expr, zone: str = str(zone)) -> pl.Expr:
                return w.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")

            # A wall time in a spring-forward gap moves an hour on.
            local = localize(wall).fill_null(localize(wall + pl.duration(hours=1)))
            part = part.with_columns(local.dt.convert_time_zone("UTC").alias("ts"))
        parts.append(part)
    return pl.concat(parts).sort("_row").drop("_row", "_zone")


def _snapshots_per_day(target: int, account_metric_days: int) -> int:
    """The largest divisor of 24 not above target / account_metric_days, at least 1."""
    wanted = target / max(1, account_metric_days)
    best = 1
    for k in (1, 2, 3, 4, 6, 8, 12, 24):
        if k <= wanted:
            best = k
    return best


def _snapshot_events(
    rng: random.Random,
    accounts: Sequence[_Account],
    per_day: int,
    period_start: datetime,
    days: int,
) -> pl.DataFrame:
    """Periodic peak readings of storage, bandwidth and seats for the metrics each plan prices."""
    interval = 86_400 // per_day
    rows: dict[str, list[object]] = {"acct": [], "metric": [], "s0": [], "s1": []}
    for a in accounts:
        if a.plan_id is None:
            continue
        for metric in SNAPSHOT_METRICS:
            if metric in a.metrics:
                rows["acct"].append(a.index)
                rows["metric"].append(metric)
                rows["s0"].append(a.active_from_hour * 3600)
                rows["s1"].append(a.active_to_hour * 3600)
    base = pl.DataFrame(
        rows, schema={"acct": pl.Int32, "metric": pl.String, "s0": pl.Int64, "s1": pl.Int64}
    )
    frame = (
        base.with_columns(pl.int_ranges("s0", "s1", interval).alias("t0"))
        .explode("t0")
        .drop_nulls("t0")
        .select("acct", "metric", "t0")
    )
    n = frame.height
    frame = pl.concat([frame, _uniforms(rng, n, ("jit", "noise", "unit"))], how="horizontal")
    lookups = {
        "seats": pl.Series([float(a.seats) for a in accounts], dtype=pl.Float64),
        "seat_growth": pl.Series([a.seat_growth for a in accounts], dtype=pl.Float64),
        "storage": pl.Series([a.storage_gb for a in accounts], dtype=pl.Float64),
        "storage_growth": pl.Series([a.storage_growth for a in accounts], dtype=pl.Float64),
        "bandwidth": pl.Series([a.bandwidth_mbps for a in accounts], dtype=pl.Float64),
    }

    def of(name: str) -> pl.Expr:
        return pl.lit(lookups[name]).gather(pl.col("acct"))

    jitter = (pl.col("jit") * min(interval - 1, 900)).floor().cast(pl.Int64)
    t = pl.col("t0") + jitter
    month_fraction = t.cast(pl.Float64) / float(days * 86_400)
    seats = (of("seats") * (1.0 + of("seat_growth") * month_fraction)).floor()
    storage_gb = (
        of("storage")
        * (1.0 + of("storage_growth") * month_fraction)
        * (0.995 + 0.01 * pl.col("noise"))
    )
    bandwidth = of("bandwidth") * (0.55 + 0.45 * pl.col("noise"))
    metric_col = pl.col("metric")
    small_unit = pl.col("unit") < 0.25
    quantity = (
        pl.when(metric_col == "seats")
        .then(seats.cast(pl.Int64).cast(pl.String))
        .when((metric_col == "storage") & small_unit)
        .then((storage_gb * 1000.0).round(1).cast(pl.String))
        .when(metric_col == "storage")
        .then(storage_gb.round(3).cast(pl.String))
        .when(small_unit)
        .then((bandwidth * 1000.0).round(0).cast(pl.Int64).cast(pl.String))
        .otherwise(bandwidth.round(2).cast(pl.String))
    )
    unit = (
        pl.when(metric_col == "seats")
        .then(pl.lit("seat"))
        .when(metric_col == "storage")
        .then(pl.when(small_unit).then(pl.lit("MB")).otherwise(pl.lit("GB")))
        .otherwise(pl.when(small_unit).then(pl.lit("kbps")).otherwise(pl.lit("Mbps")))
    )
    return frame.select(
        pl.lit(_account_lookup(accounts)).gather(pl.col("acct")).alias("account_id"),
        "metric",
        quantity.alias("quantity"),
        unit.alias("unit"),
        (pl.lit(period_start, dtype=pl.Datetime("us", "UTC")) + pl.duration(seconds=t)).alias("ts"),
        _empty_string().alias("destination"),
        _empty_string().alias("direction"),
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _file_ext(day: int, part: int) -> str:
    """Part 0 of every day is a text format (it takes the malformed rows), part 1 Parquet."""
    if part == 0:
        return _TEXT_EXTS[day % len(_TEXT_EXTS)]
    if part == 1:
        return "parquet"
    return _ALL_EXTS[(day + part) % len(_ALL_EXTS)]


def _encode(frame: pl.DataFrame, ext: str) -> bytes:
    if ext == "parquet":
        parquet = frame.select(
            "event_id",
            "account_id",
            "metric",
            pl.col("quantity").cast(pl.Float64),
            "unit",
            pl.col("ts").alias("timestamp"),
            "destination",
            "direction",
        )
        buffer = io.BytesIO()
        parquet.write_parquet(buffer, compression="zstd", statistics=True)
        return buffer.getvalue()
    text = frame.select(USAGE_COLUMNS)
    if ext == "csv":
        return text.write_csv().encode("utf-8")
    body = text.write_ndjson().encode("utf-8")
    if ext == "jsonl.gz":
        return gzip.compress(body, compresslevel=6, mtime=0)
    return body


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _parse_period(period: str) -> tuple[datetime, int]:
    match = _PERIOD_RE.match(period)
    if match is None:
        raise ValueError(f"period must look like YYYY-MM, got {period!r}")
    year, month = int(match.group(1)), int(match.group(2))
    return datetime(year, month, 1, tzinfo=UTC), calendar.monthrange(year, month)[1]


def generate_demo_month(
    period: str = "2026-10",
    accounts: int = 120,
    events: int = 1_000_000,
    seed: int = 20261026,
) -> DemoMonth:
    """Generate a month of UCaaS usage for ``accounts`` accounts, with planted problems.

    ``events`` is the number of ordinary events (voice, sms and the periodic storage,
    bandwidth and seat readings); the planted orphan, video, malformed and duplicate rows come on
    top and are counted exactly in ``DemoMonth.planted`` and ``DemoMonth.events_written``.
    """
    if accounts < 10:
        raise ValueError("accounts must be at least 10")
    if events < 5_000:
        raise ValueError("events must be at least 5000")
    period_start, days = _parse_period(period)
    start_weekday = period_start.weekday()
    rng = random.Random(seed)

    # planted problem sizes
    orphan_events = min(300, events // 50)
    video_events = min(1_000, events // 20)
    duplicate_copies = min(500, events // 40)
    per_reason = min(40, events // 500)
    malformed_total = per_reason * len(MALFORMED_REASONS)

    all_accounts, unknown_plan, orphan = _build_accounts(rng, accounts, period_start, days)
    subscribed = all_accounts[:accounts]
    pool_list, spans = _number_pool(rng)
    pool = pl.Series("destination", pool_list, dtype=pl.String)

    # volumes: ~10% periodic readings, the rest voice:sms 2:1
    account_metric_days = sum(
        (a.active_to_hour - a.active_from_hour)
        // 24
        * sum(1 for m in SNAPSHOT_METRICS if m in a.metrics)
        for a in subscribed
    )
    per_day = _snapshots_per_day(events // 10, account_metric_days)
    snapshots = _snapshot_events(rng, all_accounts, per_day, period_start, days)
    if snapshots.height * 2 > events:
        raise ValueError(f"events={events} is too small for {accounts} accounts")
    n_voice = round((events - snapshots.height) * 2 / 3)
    n_sms = events - snapshots.height - n_voice

    voice = _voice_events(
        rng,
        all_accounts,
        subscribed,
        n_voice + malformed_total,
        period_start,
        start_weekday,
        pool,
        spans,
    )
    sms = _sms_events(rng, all_accounts, subscribed, n_sms, period_start, start_weekday)
    orphan_acct = [all_accounts[orphan]]
    orphan_voice = round(orphan_events * 0.7)
    orphan_frame = pl.concat(
        [
            _voice_events(
                rng,
                all_accounts,
                orphan_acct,
                orphan_voice,
                period_start,
                start_weekday,
                pool,
                spans,
            ),
            _sms_events(
                rng,
                all_accounts,
                orphan_acct,
                orphan_events - orphan_voice,
                period_start,
                start_weekday,
            ),
        ]
    )
    full_month = [a for a in subscribed if a.active_to_hour - a.active_from_hour == days * 24]
    video_accounts = rng.sample([a for a in full_month if a.index != unknown_plan], 3)
    video = _video_events(
        rng, all_accounts, video_accounts, video_events, period_start, start_weekday
    )

    # malformed rows are drawn from the extra voice rows, chosen at random
    malformed_rows = rng.sample(range(voice.height), malformed_total)
    reasons = [r for r in MALFORMED_REASONS for _ in range(per_reason)]
    rng.shuffle(reasons)
    reason_by_row = pl.DataFrame(
        {"row": malformed_rows, "reason": reasons},
        schema={"row": pl.Int64, "reason": pl.String},
    )
    voice = (
        voice.with_row_index("row")
        .with_columns(pl.col("row").cast(pl.Int64))
        .join(reason_by_row, on="row", how="left", maintain_order="left")
        .drop("row")
    )

    def kind(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        if "reason" not in frame.columns:
            frame = frame.with_columns(_empty_string().alias("reason"))
        return frame.with_columns(pl.lit(name).alias("kind"))

    everything = pl.concat(
        [
            kind(voice, "ordinary"),
            kind(sms, "ordinary"),
            kind(snapshots, "ordinary"),
            kind(orphan_frame, "orphan"),
            kind(video, "video"),
        ],
        how="vertical",
    )
    everything = everything.with_columns(
        pl.when(pl.col("reason").is_not_null())
        .then(pl.lit("malformed"))
        .otherwise(pl.col("kind"))
        .alias("kind")
    )
    everything = _onto_local_months(everything, all_accounts).sort(
        ["ts", "account_id", "metric", "quantity", "unit"], maintain_order=True
    )

    total = everything.height
    avg_per_day = total / days
    parts_per_day = max(2, math.ceil(avg_per_day / _ROWS_PER_FILE))
    u = _uniforms(rng, total, ("part",))
    everything = pl.concat([everything, u], how="horizontal").with_columns(
        (
            pl.lit(f"evt-{period}-")
            + pl.int_range(pl.len(), dtype=pl.Int64).cast(pl.String).str.zfill(9)
        ).alias("event_id"),
        pl.col("ts").dt.strftime(_TS_FORMAT).alias("timestamp"),
        (pl.col("ts").dt.date() - pl.lit(period_start.date())).dt.total_days().alias("day"),
        pl.when(pl.col("kind") == "malformed")
        .then(pl.lit(0, dtype=pl.Int64))
        .otherwise((pl.col("part") * parts_per_day).floor().cast(pl.Int64))
        .alias("part"),
        pl.int_range(pl.len(), dtype=pl.Int64).cast(pl.Float64).alias("order"),
    )

    # break the malformed rows
    reason = pl.col("reason")
    everything = everything.with_columns(
        pl.when(reason == "negative_quantity")
        .then(pl.lit("-") + pl.col("quantity"))
        .when(reason == "non_numeric_quantity")
        .then(pl.lit("lots"))
        .otherwise(pl.col("quantity"))
        .alias("quantity"),
        pl.when(reason == "unknown_unit")
        .then(pl.lit("parsecs"))
        .otherwise(pl.col("unit"))
        .alias("unit"),
        pl.when(reason == "missing_account_id")
        .then(_empty_string())
        .otherwise(pl.col("account_id"))
        .alias("account_id"),
        pl.when(reason == "bad_timestamp")
        .then(pl.lit("not-a-time"))
        .otherwise(pl.col("timestamp"))
        .alias("timestamp"),
    )

    # duplicates: copies of ordinary voice and sms events, re-delivered in the next day's
    # files (the last day's go to the day before)
    candidates = everything.with_row_index("row").filter(
        (pl.col("kind") == "ordinary")
        & pl.col("metric").is_in(["voice", "sms"])
        & pl.col("day").is_between(0, days - 1)  # not on the neighbours' edge days
    )["row"]
    picked = sorted(rng.sample(range(candidates.len()), duplicate_copies))
    dup_rows = candidates.gather(picked)
    u = _uniforms(rng, duplicate_copies, ("dpart", "dorder"))
    duplicates = (
        pl.concat([everything[dup_rows], u], how="horizontal")
        .with_columns(
            pl.when(pl.col("day") == days - 1)
            .then(pl.col("day") - 1)
            .otherwise(pl.col("day") + 1)
            .alias("day"),
            (pl.col("dpart") * parts_per_day).floor().cast(pl.Int64).alias("part"),
            (pl.col("dorder") * total).alias("order"),
            pl.lit("duplicate").alias("kind"),
        )
        .drop("dpart", "dorder")
    )

    rows = pl.concat([everything, duplicates], how="vertical").sort(
        ["day", "part", "order"], maintain_order=True
    )
    files: list[DemoUsageFile] = []
    first_day = period_start.date()
    for (day, part), frame in sorted(
        rows.partition_by(["day", "part"], as_dict=True, maintain_order=True).items()
    ):
        day_i, part_i = int(day), int(part)
        ext = _file_ext(day_i, part_i)
        if ext == "parquet" and frame.filter(pl.col("kind") == "malformed").height:
            raise AssertionError("malformed rows must not reach a Parquet file")
        day_iso = (first_day + timedelta(days=day_i)).isoformat()
        files.append(
            DemoUsageFile(
                key=f"usage/dt={day_iso}/part-{part_i:04d}.{ext}",
                body=_encode(frame, ext),
            )
        )

    unknown = all_accounts[unknown_plan]
    planted = PlantedProblems(
        orphan_account_id=all_accounts[orphan].account_id,
        orphan_events=orphan_events,
        duplicate_copies=duplicate_copies,
        malformed_by_reason={r: per_reason for r in MALFORMED_REASONS},
        unpriced_metric=UNPRICED_METRIC,
        unpriced_events=video_events,
        unknown_plan_subscription_id=f"SUB-{unknown.index + 1:04d}",
        unknown_plan_account_id=unknown.account_id,
    )
    return DemoMonth(
        period=period,
        accounts=_accounts_frame(all_accounts),
        subscriptions=_subscriptions_frame(all_accounts),
        files=files,
        planted=planted,
        events_written=rows.height,
    )
