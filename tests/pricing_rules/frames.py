"""Small builders shared by the pure-module tests: the real catalog and usage frames."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, settings

CATALOG_PATH = Path(__file__).resolve().parents[2] / "catalog" / "catalog.yaml"

# Properties run few examples (the suite must stay fast) and write no example database.
FAST_PROPERTY = settings(max_examples=60, deadline=None, database=None)
FRAME_PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

USAGE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "metric": pl.String(),
    "quantity": pl.Decimal(38, 12),
    "timestamp": pl.Datetime("us", "UTC"),
}

# Calls as `rate` reads them: valid usage with an id and an E.164 destination.
CALL_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    **USAGE_SCHEMA,
    "destination": pl.String(),
}


def at(day: int, month: int = 10, year: int = 2026, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def usage_frame(rows: list[tuple[str, str, Decimal | int | str, datetime]]) -> pl.LazyFrame:
    """Valid usage as `rate` reads it: (account_id, metric, canonical quantity, timestamp)."""
    return pl.DataFrame(
        [(a, m, Decimal(q), t) for a, m, q, t in rows],
        schema=USAGE_SCHEMA,
        orient="row",
    ).lazy()


# A catalog small enough to read at a glance; prices follow catalog/catalog.yaml.
CATALOG_YAML = """
version: "test"
list_price_plan: usd
metrics:
  voice: {name: Voice, unit: s, aggregation: sum}
  sms: {name: SMS, unit: message, aggregation: sum}
  storage: {name: Storage, unit: GB, aggregation: max}
  video: {name: Video, unit: s, aggregation: sum}
plans:
  usd:
    name: Business USD
    currency: USD
    rounding: half_up
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "199.00"}
      - id: voice
        name: Outbound voice
        model: graduated
        metric: voice
        price_unit: min
        tiers:
          - {up_to: "1000", unit_price: "0.00"}
          - {up_to: "20000", unit_price: "0.0120"}
          - {up_to: null, unit_price: "0.0085"}
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.0079"}
      - id: storage
        name: Recording storage
        model: volume
        metric: storage
        tiers:
          - {up_to: "100", unit_price: "0.25"}
          - {up_to: "1000", unit_price: "0.18"}
          - {up_to: null, unit_price: "0.12"}
  jpy:
    name: Starter JPY
    currency: JPY
    rounding: half_up
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "9800"}
      - id: voice
        name: Outbound voice
        model: graduated
        metric: voice
        price_unit: min
        tiers:
          - {up_to: "500", unit_price: "0"}
          - {up_to: null, unit_price: "1.8"}
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "1.1"}
"""
