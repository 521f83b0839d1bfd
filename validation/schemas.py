"""One Pandera schema per frame boundary: raw usage, valid usage, rated lines, findings.

Pandera checks only the schema of a LazyFrame unless told otherwise, so every call here
runs under `full_depth()` (SCHEMA_AND_DATA).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandera.polars as pa
import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.engines import polars_engine as pe

from pricing_rules.rating import KIND_ORDER, LINE_SCHEMA
from pricing_rules.units import QUANTITY_SCALE

RAW_USAGE_COLUMNS = (
    "event_id",
    "account_id",
    "metric",
    "quantity",
    "unit",
    "timestamp",
    "destination",
    "direction",
)
PROVENANCE_COLUMNS = ("source_key", "source_row")


@contextmanager
def full_depth() -> Iterator[None]:
    with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        yield


class RawUsage(pa.DataFrameModel):
    """Usage as loaded from any file format: text columns plus where each row came from."""

    event_id: str = pa.Field(nullable=True)
    account_id: str = pa.Field(nullable=True)
    metric: str = pa.Field(nullable=True)
    quantity: str = pa.Field(nullable=True)
    unit: str = pa.Field(nullable=True)
    timestamp: str = pa.Field(nullable=True)
    destination: str = pa.Field(nullable=True)
    direction: str = pa.Field(nullable=True)
    source_key: str = pa.Field(nullable=False)
    source_row: pl.Int64 = pa.Field(nullable=False, ge=0)

    class Config:
        strict = False  # further text columns are event dimensions


def usage_schema(metrics: list[str]) -> pa.DataFrameSchema:
    """Row rules for parsed usage; `validation.usage` maps each failed check to a reason."""
    text = pa.Check.str_length(min_value=1)
    return pa.DataFrameSchema(
        {
            "event_id": pa.Column(pl.String, text, nullable=False),
            "account_id": pa.Column(pl.String, text, nullable=False),
            "metric": pa.Column(pl.String, pa.Check.isin(metrics), nullable=False),
            "quantity": pa.Column(
                pl.Decimal(38, QUANTITY_SCALE),
                pa.Check.ge(0),
                nullable=False,
            ),
            "unit_factor": pa.Column(pl.Decimal(38, QUANTITY_SCALE), nullable=False),
            "precise_enough": pa.Column(pl.Boolean, pa.Check.eq(True), nullable=False),
            "timestamp": pa.Column(pl.Datetime(time_unit="us", time_zone="UTC"), nullable=False),
            # -1 before the period, 1 after it, 0 inside it or owed to a neighbour's run.
            "period_position": pa.Column(pl.Int8, [pa.Check.ge(0), pa.Check.le(0)]),
        },
        strict=False,
        name="ParsedUsage",
    )


class ValidUsage(pa.DataFrameModel):
    """Usage ready to rate: canonical quantity, UTC time, one row per event id."""

    event_id: str = pa.Field(nullable=False, str_length={"min_value": 1})
    account_id: str = pa.Field(nullable=False, str_length={"min_value": 1})
    metric: str = pa.Field(nullable=False)
    quantity: pe.Decimal = pa.Field(
        nullable=False, ge=0, dtype_kwargs={"precision": 38, "scale": QUANTITY_SCALE}
    )
    unit: str = pa.Field(nullable=False)
    timestamp: pe.DateTime = pa.Field(
        nullable=False, dtype_kwargs={"time_unit": "us", "time_zone": "UTC"}
    )
    destination: str = pa.Field(nullable=True)
    direction: str = pa.Field(nullable=True)
    source_key: str = pa.Field(nullable=False)
    source_row: pl.Int64 = pa.Field(nullable=False)

    class Config:
        strict = False  # further text columns are event dimensions


class Quarantine(pa.DataFrameModel):
    """Rejected rows: the raw text as read, where it came from, and why it was rejected."""

    source_key: str = pa.Field(nullable=False)
    source_row: pl.Int64 = pa.Field(nullable=False)
    reason: str = pa.Field(nullable=False, str_length={"min_value": 1})
    reason_detail: str = pa.Field(nullable=False, str_length={"min_value": 1})

    class Config:
        strict = False


def rated_lines_schema() -> pa.DataFrameSchema:
    """Every line priced, rounded to a minor unit, explained; `line_id` is unique."""
    nullable = {
        "subscription_id",
        "plan_id",
        "metric",
        "unit_price",
        "proration_factor",
        "service_period",
    }
    columns = {
        name: pa.Column(dtype, nullable=name in nullable) for name, dtype in LINE_SCHEMA.items()
    }
    columns["line_id"] = pa.Column(pl.String, nullable=False, unique=True)
    columns["amount"] = pa.Column(LINE_SCHEMA["amount"], nullable=False)
    columns["charge_kind"] = pa.Column(pl.String, pa.Check.isin(list(KIND_ORDER)), nullable=False)
    columns["details"] = pa.Column(
        pl.String, pa.Check.str_startswith("[", name="details_json_list"), nullable=False
    )
    # Negative: discounts, prepaid credits, adjustments, credits for unused time (line ids
    # `<subscription>:<charge>:unused:...`, from `pricing_rules.lifecycle`), and the tax on
    # an invoice whose credits outweigh its charges (its quantity is that negative base).
    only_credits_are_negative = pa.Check(
        lambda data: data.lazyframe.select(
            (pl.col("amount") >= 0)
            | pl.col("charge_kind").is_in(["discount", "credit", "adjustment"])
            | pl.col("line_id").str.contains(":unused:", literal=True)
            | ((pl.col("charge_kind") == "tax") & (pl.col("quantity") < 0))
        ),
        name="only_discounts_and_credits_are_negative",
    )
    return pa.DataFrameSchema(
        columns, checks=[only_credits_are_negative], strict=True, name="RatedLines"
    )


SEVERITIES = ["low", "medium", "high", "critical"]


class Findings(pa.DataFrameModel):
    """Revenue-assurance findings: severity, amount at risk, evidence."""

    finding_id: str = pa.Field(nullable=False, unique=True)
    rule: str = pa.Field(nullable=False)
    severity: str = pa.Field(nullable=False, isin=SEVERITIES)
    account_id: str = pa.Field(nullable=False)
    subscription_id: str = pa.Field(nullable=True)
    metric: str = pa.Field(nullable=True)
    amount_at_risk: pe.Decimal = pa.Field(
        nullable=True, ge=0, dtype_kwargs={"precision": 38, "scale": 4}
    )
    currency: str = pa.Field(nullable=True)
    message: str = pa.Field(nullable=False)
    evidence: str = pa.Field(nullable=False)

    class Config:
        strict = True
