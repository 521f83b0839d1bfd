"""Usage validation: parse, check every row with Pandera, quarantine with reasons, dedupe.

Conservation is exact and checked here: `read = valid + quarantined + duplicates`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        "unit {unit!r} cannot be converted to the metric's unit",
    ),
    ("timestamp", "not_nullable"): (
        "bad_timestamp",
        "timestamp {timestamp!r} is not ISO 8601 with a UTC offset",
    ),
    ("timestamp", "greater_than_or_equal_to"): (
        "outside_period",
        "timestamp {timestamp} is before the billing period",
    ),
    ("timestamp", "less_than"): (
        "outside_period",
        "timestamp {timestamp} is after the billing period",
    ),
}


class ConservationError(RuntimeError):
    """Events were lost or double-counted between reading and validation."""


@dataclass(frozen=True)
class UsageCounts:
    read: int
    valid: int
    quarantined: int
    duplicates: int

    def check(self) -> None:
        if self.read != self.valid + self.quarantined + self.duplicates:
            raise ConservationError(
                f"read {self.read} != valid {self.valid} + quarantined {self.quarantined} "
                f"+ duplicates {self.duplicates}"
            )


@dataclass(frozen=True)
class UsageValidation:
    valid: pl.DataFrame
    quarantine: pl.DataFrame
    duplicates: pl.DataFrame
    counts: UsageCounts


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
    raw: pl.DataFrame, metric_units: dict[str, str], period: BillingPeriod
) -> UsageValidation:
    """Split raw usage into valid rows, quarantined rows (with reasons) and duplicates.

    Rows are taken in the order given (file by file); the first copy of an event id is
    kept and later copies are dropped as duplicates.
    """
    raw = conform_raw(raw)
    read = raw.height
    parsed = parse_usage(raw, metric_units)
    schema = usage_schema(sorted(metric_units), period.start_at, period.end_at)
    reasons = _reason_rows(parsed, _failures(parsed, schema))
    indexed = parsed.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    bad = indexed.join(reasons, on="row", how="inner")
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
    dimensions = [c for c in raw.columns if c not in (*RAW_USAGE_COLUMNS, *PROVENANCE_COLUMNS)]
    valid = good.filter(first_copy).select(*ValidUsage.to_schema().columns, *dimensions)
    duplicates = good.filter(~first_copy).select(
        "event_id", "account_id", "source_key", "source_row"
    )
    with full_depth():
        ValidUsage.validate(valid, lazy=True)
        Quarantine.validate(quarantine, lazy=True)
    counts = UsageCounts(read, valid.height, quarantine.height, duplicates.height)
    counts.check()
    if valid["event_id"].n_unique() != valid.height:
        raise ConservationError("valid usage still holds duplicate event ids")
    return UsageValidation(valid, quarantine, duplicates, counts)
