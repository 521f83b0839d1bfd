"""validation.schemas: data checks really run on a LazyFrame under `full_depth()`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pandera.polars as pa
import polars as pl
import pytest
from pandera.config import ValidationDepth, config_context

from validation.schemas import RawUsage, ValidUsage, full_depth, rated_lines_schema

VALID_USAGE_SCHEMA = {
    "event_id": pl.String,
    "account_id": pl.String,
    "metric": pl.String,
    "quantity": pl.Decimal(38, 12),
    "unit": pl.String,
    "timestamp": pl.Datetime("us", "UTC"),
    "destination": pl.String,
    "direction": pl.String,
    "source_key": pl.String,
    "source_row": pl.Int64,
}


def valid_usage(quantities: list[str], event_ids: list[str] | None = None) -> pl.LazyFrame:
    n = len(quantities)
    return pl.DataFrame(
        {
            "event_id": event_ids or [f"e{i}" for i in range(n)],
            "account_id": ["A"] * n,
            "metric": ["voice"] * n,
            "quantity": [Decimal(q) for q in quantities],
            "unit": ["s"] * n,
            "timestamp": [datetime(2026, 10, 5, tzinfo=UTC)] * n,
            "destination": [None] * n,
            "direction": [None] * n,
            "source_key": ["k"] * n,
            "source_row": list(range(n)),
        },
        schema=VALID_USAGE_SCHEMA,
    ).lazy()


def test_good_lazy_usage_passes_full_depth() -> None:
    with full_depth():
        ValidUsage.validate(valid_usage(["60", "1.5"]), lazy=True)


def test_bad_data_in_a_lazyframe_fails_under_full_depth() -> None:
    bad = valid_usage(["60", "-5"], event_ids=["e1", ""])
    with full_depth(), pytest.raises(pa.errors.SchemaErrors) as raised:
        ValidUsage.validate(bad, lazy=True)
    cases = raised.value.failure_cases.sort("column")
    assert cases.select("column", "index").rows() == [("event_id", 1), ("quantity", 1)]
    assert cases["check"].to_list() == ["str_length(1, None)", "greater_than_or_equal_to(0)"]


def test_schema_only_depth_would_skip_the_same_data_checks() -> None:
    # why full_depth() exists: at SCHEMA_ONLY a LazyFrame's data is never looked at
    bad = valid_usage(["-5"])
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        ValidUsage.validate(bad, lazy=True)
    with full_depth(), pytest.raises(pa.errors.SchemaErrors, match="greater_than_or_equal_to"):
        ValidUsage.validate(bad, lazy=True)


def test_valid_usage_keeps_extra_dimension_columns_but_requires_its_own() -> None:
    # Extra text columns are event dimensions (region, call_type...) charges filter on.
    extra = valid_usage(["1"]).with_columns(pl.lit("EU").alias("region"))
    with full_depth():
        checked = ValidUsage.validate(extra, lazy=True)
        assert checked.collect()["region"].to_list() == ["EU"]
    with full_depth(), pytest.raises(pa.errors.SchemaErrors, match="source_key"):
        ValidUsage.validate(extra.drop("source_key"), lazy=True)


def test_raw_usage_rejects_a_negative_source_row() -> None:
    raw = pl.DataFrame(
        {
            name: ["x"]
            for name in (
                "event_id",
                "account_id",
                "metric",
                "quantity",
                "unit",
                "timestamp",
                "destination",
                "direction",
                "source_key",
            )
        }
        | {"source_row": [-1]},
        schema_overrides={"source_row": pl.Int64},
    ).lazy()
    with full_depth(), pytest.raises(pa.errors.SchemaErrors, match="greater_than_or_equal_to"):
        RawUsage.validate(raw, lazy=True)


def test_rated_lines_schema_requires_unique_line_ids() -> None:
    schema = rated_lines_schema()
    assert schema.columns["line_id"].unique
    assert not schema.columns["amount"].nullable
    assert schema.columns["unit_price"].nullable
