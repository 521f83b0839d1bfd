"""Usage validation: parse, check every row with Pandera, quarantine with reasons, dedupe,
and place each event in its account's local billing month.

A run reads its own month's partitions (`dt=YYYY-MM-DD` in the month) and the two edge
days of its neighbours (see `BillingPeriod.edge_days`). Conservation is exact and checked
here: `read + borrowed = valid + quarantined + duplicates + deferred`, where `read` counts
the own partitions' rows, `deferred` the events of those partitions that belong to a
neighbouring month (its run reads them as edge rows), and `borrowed` the edge rows that
belong to this month.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandera.polars as pa
import polars as pl

from pricing_rules.periods import BillingPeriod
from pricing_rules.units import QUANTITY_SCALE, conversion_factor, convertible_units, exact_decimal
from validation.schemas import (
    PROVENANCE_COLUMNS,
    RAW_USAGE_COLUMNS,
    Quarantine,
    RawUsage,
    ValidUsage,
    full_depth,
    usage_schema,
)

QUANTITY = pl.Decimal(38, QUANTITY_SCALE)
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%S%.f%:z")

# (column, check name without its arguments) from Pandera failure cases -> reason code
# and a sentence for finance.
_REASONS: dict[tuple[str, str], tuple[str, str]] = {
    ("event_id", "not_nullable"): ("missing_event_id", "the event has no event_id"),
    ("event_id", "str_length"): ("missing_event_id", "the event has an empty event_id"),
    ("account_id", "not_nullable"): ("missing_account_id", "the event has no account_id"),
    ("account_id", "str_length"): ("missing_account_id", "the event has an empty account_id"),
    ("metric", "not_nullable"): ("missing_metric", "the event has no metric"),
    ("metric", "isin"): ("unknown_metric", "metric {metric!r} is not in the catalog"),
    ("quantity", "not_nullable"): (
        "non_numeric_quantity",
        "quantity {quantity!r} is not a number",
    ),
    ("quantity", "greater_than_or_equal_to"): (
        "negative_quantity",
        "quantity {quantity} is negative",
    ),
    ("precise_enough", "equal_to"): (
        "quantity_too_precise",
        "quantity {quantity} {unit} needs more than 12 decimal places in the metric's unit",
    ),
    ("unit_factor", "not_nullable"): (
        "unknown_unit",
        "unit {unit!r} does not convert exactly to the metric's unit (it is unknown, of "
        "another kind, or its factor has no exact decimal, as s to min: record such a metric "
        "in s and price it per min with price_unit)",
    ),
    ("timestamp", "not_nullable"): (
        "bad_timestamp",
        "timestamp {timestamp!r} is not ISO 8601 with a UTC offset",
    ),
    ("period_position", "greater_than_or_equal_to"): (
        "outside_period",
        "timestamp {timestamp} is before the billing period",
    ),
    ("period_position", "less_than_or_equal_to"): (
        "outside_period",
        "timestamp {timestamp} is after the billing period",
    ),
}
_PARTITION_DAY = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")


class ConservationError(RuntimeError):
    """Events were lost or double-counted between reading and validation."""


@dataclass(frozen=True)
class UsageCounts:
    read: int
    valid: int
    quarantined: int
    duplicates: int
    deferred: int = 0
    borrowed: int = 0
    edge_read: int = 0  # rows of the neighbours' edge days, looked at for `borrowed`

    def check(self) -> None:
        if self.read + self.borrowed != (
            self.valid + self.quarantined + self.duplicates + self.deferred
        ):
            raise ConservationError(
                f"read {self.read} + borrowed {self.borrowed} != valid {self.valid} "
                f"+ quarantined {self.quarantined} + duplicates {self.duplicates} "
                f"+ deferred {self.deferred}"
            )


def check_loaded(loaded: int, counts: Mapping[str, int]) -> None:
    """Every row loaded was validated: this month's own rows plus the edge days' rows."""
    if counts["read"] + counts["edge_read"] != loaded:
        raise ConservationError(
            f"loaded {loaded} rows but validation read {counts['read']} "
            f"+ {counts['edge_read']} on edge days"
        )


@dataclass(frozen=True)
class UsageValidation:
    valid: pl.DataFrame
    quarantine: pl.DataFrame
    duplicates: pl.DataFrame
    counts: UsageCounts
    deferred: pl.DataFrame  # event_id, account_id, source_key, source_row, period


def partition_day(key: str) -> date | None:
    """The day of a `dt=YYYY-MM-DD` partition a usage key sits in, if it names one.

    >>> partition_day("usage/dt=2026-10-31/part-0001.parquet")
    datetime.date(2026, 10, 31)
    """
    match = _PARTITION_DAY.search(key)
    return date.fromisoformat(match.group(1)) if match else None


def _placement(
    parsed: pl.DataFrame,
    period: BillingPeriod,
    zones: Mapping[str, str],
    shared: tuple[bool, bool] = (True, True),
) -> pl.DataFrame:
    """Add `own` (the row's partition is in this month, or names no day), `local_offset`
    (-1, 0 or 1: the account's local month before, equal to or after this one; null
    further away) and `period_position` for the schema's period check.

    An own row of a neighbouring month is owed to that month's run when its partition is
    an edge day the neighbour reads; otherwise it is outside the period. An edge row is
    judged as its own month's run judges it, so one that run quarantines is no first
    copy here. `shared` says whether the month before and the month after share edge
    days with this one; where one does not (it was billed in UTC months), this month
    starts or ends at its UTC bound.
    """
    before, after = period.previous(), period.next()
    share_before, share_after = shared

    def bounds(zone: str) -> tuple[datetime, datetime, datetime, datetime]:
        """From (the month before's start), start, end, to (the month after's end)."""
        start, end = period.local_bounds(zone)
        start = start if share_before else period.start_at
        end = end if share_after else period.end_at
        return (
            before.local_bounds(zone)[0] if share_before else start,
            start,
            end,
            after.local_bounds(zone)[1] if share_after else end,
        )

    accounts = parsed["account_id"].drop_nulls().unique().to_list()
    by_zone = {zone: bounds(zone) for zone in {zones.get(a) or "UTC" for a in accounts}}
    instant = pl.Datetime("us", "UTC")
    frame = pl.DataFrame(
        [(account, *by_zone[zones.get(account) or "UTC"]) for account in accounts],
        schema={
            "account_id": pl.String,
            "_from": instant,
            "_start": instant,
            "_end": instant,
            "_to": instant,
        },
        orient="row",
    )
    first_edge, last_edge = period.edge_days
    edges = {d for d, ok in ((first_edge, share_before), (last_edge, share_after)) if ok}
    days = {key: partition_day(key) for key in parsed["source_key"].unique().to_list()}
    stray = sorted(
        key
        for key, day in days.items()
        if day is not None and f"{day:%Y-%m}" != period.label and day not in edges
    )
    if stray:
        raise ValueError(
            f"usage object {stray[0]} is neither in {period.label} nor on an edge day it "
            f"shares with a neighbouring month ({len(stray)} such object(s))"
        )
    part = pl.col("source_key").replace_strict(days, default=None, return_dtype=pl.Date)
    ts = pl.col("timestamp")
    offset = (
        pl.when((ts >= pl.col("_start")) & (ts < pl.col("_end")))
        .then(0)
        .when((ts >= pl.col("_from")) & (ts < pl.col("_start")))
        .then(-1)
        .when((ts >= pl.col("_end")) & (ts < pl.col("_to")))
        .then(1)
        .cast(pl.Int8)
    )
    here = pl.col("local_offset")
    day = pl.col("_part")
    fits = (
        pl.when(pl.col("own"))
        # owed to the neighbour whose run reads this edge day, or this month's own
        .then(
            (here == 0)
            | ((here == -1) & (day == period.start))
            | ((here == 1) & (day == period.end - timedelta(days=1)))
        )
        # an edge day's row, as its own month's run sees it: that month's or this one's
        .when(day == first_edge)
        .then(here.is_in([-1, 0]))
        .otherwise(here.is_in([0, 1]))
        .fill_null(False)
    )
    position = (
        pl.when(ts.is_null() | fits)
        .then(0)
        .when(ts < pl.col("_start"))
        .then(-1)
        .otherwise(1)
        .cast(pl.Int8)
    )
    return (
        parsed.join(frame, on="account_id", how="left", maintain_order="left")
        .with_columns(
            *(
                pl.col(name).fill_null(value)
                # a row without an account is quarantined anyway: UTC's bounds
                for name, value in zip(
                    ("_from", "_start", "_end", "_to"), bounds("UTC"), strict=True
                )
            ),
            part.alias("_part"),
        )
        .with_columns(
            offset.alias("local_offset"),
            (
                pl.col("_part").is_null() | (pl.col("_part").dt.strftime("%Y-%m") == period.label)
            ).alias("own"),
        )
        .with_columns(position.alias("period_position"))
        .drop("_from", "_start", "_end", "_to", "_part")
    )


def conform_raw(frame: pl.DataFrame) -> pl.DataFrame:
    """Any file's rows as `RawUsage`: every usage column as text, absent ones null.

    Datetime columns (Parquet) become ISO 8601 text in UTC so every format parses alike.
    Required columns that are missing entirely make the file unreadable, not quarantined.
    """
    missing = [
        c
        for c in ("event_id", "account_id", "metric", "quantity", "timestamp")
        if c not in frame.columns
    ]
    if missing:
        raise ValueError(f"usage is missing required column(s): {', '.join(missing)}")
    columns = []
    for name in RAW_USAGE_COLUMNS:
        if name not in frame.columns:
            columns.append(pl.lit(None, pl.String).alias(name))
            continue
        dtype = frame.schema[name]
        if isinstance(dtype, pl.Datetime):
            column = pl.col(name)
            if dtype.time_zone is not None:
                column = column.dt.convert_time_zone("UTC")
                columns.append(column.dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ").alias(name))
            else:
                columns.append(column.dt.strftime("%Y-%m-%dT%H:%M:%S%.f").alias(name))
        else:
            columns.append(pl.col(name).cast(pl.String).alias(name))
    provenance = [pl.col("source_key").cast(pl.String), pl.col("source_row").cast(pl.Int64)]
    # Any other column is an event dimension (region, call_type...) that charges may filter on.
    known = {*RAW_USAGE_COLUMNS, "source_key", "source_row"}
    extra = [pl.col(c).cast(pl.String) for c in frame.columns if c not in known]
    conformed = frame.select(*columns, *provenance, *extra)
    with full_depth():
        RawUsage.validate(conformed, lazy=True)
    return conformed


def unit_factors(metric_units: dict[str, str]) -> pl.DataFrame:
    """Every (metric, unit) pair accepted, with the exact factor to the metric's unit."""
    rows = []
    for metric, canonical in metric_units.items():
        for unit in convertible_units(canonical):
            factor = exact_decimal(conversion_factor(unit, canonical))
            assert factor is not None
            places = max(-int(factor.as_tuple().exponent), 0)
            rows.append(
                {"metric": metric, "unit": unit, "unit_factor": factor, "factor_places": places}
            )
    return pl.DataFrame(
        rows,
        schema={
            "metric": pl.String,
            "unit": pl.String,
            "unit_factor": QUANTITY,
            "factor_places": pl.Int64,
        },
    )


def _decimal_places(text: pl.Expr) -> pl.Expr:
    """Decimal places a numeric text needs (`1.50` -> 1, `2.5e-3` -> 4, `12` -> 0)."""
    number = text.str.strip_chars()
    fraction = number.str.extract(r"^[+-]?\d*\.(\d*?)0*(?:[eE][+-]?\d+)?$").str.len_chars()
    exponent = number.str.extract(r"[eE]([+-]?\d+)$").cast(pl.Int64, strict=False)
    return (fraction.fill_null(0) - exponent.fill_null(0)).clip(lower_bound=0)


def parse_usage(raw: pl.DataFrame, metric_units: dict[str, str]) -> pl.DataFrame:
    """Typed columns beside the raw text; a value that does not parse becomes null."""
    timestamp = pl.coalesce(
        [
            pl.col("timestamp").str.to_datetime(fmt, time_zone="UTC", time_unit="us", strict=False)
            for fmt in _TIME_FORMATS
        ]
    )
    parsed = raw.with_columns(
        pl.col("event_id").str.strip_chars(),
        pl.col("account_id").str.strip_chars(),
        pl.col("metric").str.strip_chars(),
        pl.col("unit").str.strip_chars(),
        pl.col("quantity").alias("raw_quantity"),
        pl.col("timestamp").alias("raw_timestamp"),
    ).with_columns(
        pl.col("quantity").str.strip_chars().cast(QUANTITY, strict=False),
        timestamp.alias("timestamp"),
    )
    joined = parsed.join(
        unit_factors(metric_units), on=["metric", "unit"], how="left", maintain_order="left"
    )
    # A quantity is kept to 12 places after conversion; more would be rounded away silently.
    places = _decimal_places(pl.col("raw_quantity")) + pl.col("factor_places")
    return joined.with_columns(
        (places <= QUANTITY_SCALE).fill_null(True).alias("precise_enough")
    ).drop("factor_places")


def _failures(parsed: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """(row, column, check) for every failed row check; a frame-level failure raises."""
    try:
        with full_depth():
            schema.validate(parsed, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases: pl.DataFrame = errors.failure_cases
        frame_level = cases.filter(pl.col("index").is_null())
        if frame_level.height:
            raise ValueError(f"usage frame does not match its schema:\n{frame_level}") from errors
        return cases.select(pl.col("index").cast(pl.Int64).alias("row"), "column", "check").unique(
            maintain_order=True
        )
    return pl.DataFrame(schema={"row": pl.Int64, "column": pl.String, "check": pl.String})


def _reason_rows(parsed: pl.DataFrame, failures: pl.DataFrame) -> pl.DataFrame:
    """One reason code and one sentence per failing row (several failures are joined)."""
    if failures.height == 0:
        return pl.DataFrame(
            schema={"row": pl.Int64, "reason": pl.String, "reason_detail": pl.String}
        )
    values = parsed.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        "metric",
        pl.col("raw_quantity").alias("quantity"),
        "unit",
        pl.col("raw_timestamp").alias("timestamp"),
    )
    rows = failures.join(values, on="row", how="left").sort("row")
    codes: list[str] = []
    details: list[str] = []
    for case in rows.iter_rows(named=True):
        check = case["check"].split("(", 1)[0]
        code, template = _REASONS.get(
            (case["column"], check),
            (f"{case['column']}_{case['check']}", f"{case['column']} failed {case['check']}"),
        )
        codes.append(code)
        details.append(template.format(**case))
    reasons = rows.select("row").with_columns(
        pl.Series("reason", codes), pl.Series("reason_detail", details)
    )
    # An unknown or missing metric makes every unit unknown; report only the metric.
    metric_wrong = pl.col("reason").is_in(["unknown_metric", "missing_metric"]).any().over("row")
    reasons = reasons.filter(~(metric_wrong & (pl.col("reason") == "unknown_unit")))
    return reasons.group_by("row", maintain_order=True).agg(
        pl.col("reason").unique(maintain_order=True).str.join(";"),
        pl.col("reason_detail").str.join("; "),
    )


def validate_usage(
    raw: pl.DataFrame,
    metric_units: dict[str, str],
    period: BillingPeriod,
    zones: Mapping[str, str] | None = None,
    shared: tuple[bool, bool] = (True, True),
) -> UsageValidation:
    """Split raw usage into valid rows, quarantined rows (with reasons), duplicates and
    rows owed to a neighbouring month.

    An event belongs to the month its timestamp falls in in its account's time zone
    (`zones`, account id -> IANA name; UTC for any account not in it). Rows are taken in
    the order given (file by file); the first copy of an event id is kept and later
    copies are dropped as duplicates. `shared`: whether the month before and the month
    after share edge days with this one (see `_placement`).
    """
    raw = conform_raw(raw)
    parsed = _placement(parse_usage(raw, metric_units), period, zones or {}, shared)
    schema = usage_schema(sorted(metric_units))
    reasons = _reason_rows(parsed, _failures(parsed, schema))
    indexed = parsed.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    own = pl.col("own")
    bad = indexed.join(reasons, on="row", how="inner").filter(own)
    quarantine = bad.select(
        *RAW_USAGE_COLUMNS[:3],
        pl.col("raw_quantity").alias("quantity"),
        "unit",
        pl.col("raw_timestamp").alias("timestamp"),
        *RAW_USAGE_COLUMNS[6:],
        "source_key",
        "source_row",
        *(c for c in raw.columns if c not in (*RAW_USAGE_COLUMNS, *PROVENANCE_COLUMNS)),
        "reason",
        "reason_detail",
    )
    good = indexed.join(reasons, on="row", how="anti").with_columns(
        (pl.col("quantity") * pl.col("unit_factor")).cast(QUANTITY).alias("quantity"),
        pl.col("metric").replace_strict(metric_units, return_dtype=pl.String).alias("unit"),
    )
    first_copy = pl.col("row") == pl.col("row").min().over("event_id")
    here = pl.col("local_offset") == 0
    dimensions = [c for c in raw.columns if c not in (*RAW_USAGE_COLUMNS, *PROVENANCE_COLUMNS)]
    kept = good.filter(first_copy & here)
    valid = kept.select(*ValidUsage.to_schema().columns, *dimensions)
    duplicates = good.filter(~first_copy & own).select(
        "event_id", "account_id", "source_key", "source_row"
    )
    neighbours = {-1: period.previous().label, 1: period.next().label}
    deferred = good.filter(first_copy & ~here & own).select(
        "event_id",
        "account_id",
        "source_key",
        "source_row",
        pl.col("local_offset").replace_strict(neighbours, return_dtype=pl.String).alias("period"),
    )
    with full_depth():
        ValidUsage.validate(valid, lazy=True)
        Quarantine.validate(quarantine, lazy=True)
    own_rows = int(parsed["own"].sum())
    counts = UsageCounts(
        read=own_rows,
        valid=valid.height,
        quarantined=quarantine.height,
        duplicates=duplicates.height,
        deferred=deferred.height,
        borrowed=int((~kept["own"]).sum()),
        edge_read=parsed.height - own_rows,
    )
    counts.check()
    if valid["event_id"].n_unique() != valid.height:
        raise ConservationError("valid usage still holds duplicate event ids")
    return UsageValidation(valid, quarantine, duplicates, counts, deferred)
