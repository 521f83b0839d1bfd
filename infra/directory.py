"""Accounts and subscriptions from CSV or YAML files, checked before they reach the ledger."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import polars as pl
import yaml

ACCOUNT_SCHEMA = {
    "account_id": pl.String,
    "name": pl.String,
    "currency": pl.String,
    "country": pl.String,
    "timezone": pl.String,
    "billing_email": pl.String,
}
SUBSCRIPTION_SCHEMA = {
    "subscription_id": pl.String,
    "account_id": pl.String,
    "plan_id": pl.String,
    "start_date": pl.Date,
    "end_date": pl.Date,
}


class DirectoryError(ValueError):
    pass


def _read(path: Path, schema: Mapping[str, type[pl.DataType]]) -> pl.DataFrame:
    if not path.is_file():
        raise DirectoryError(f"{path} does not exist")
    if path.suffix in (".yaml", ".yml"):
        rows = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        if not isinstance(rows, list):
            raise DirectoryError(f"{path}: expected a list of records")
        frame = pl.DataFrame(rows, infer_schema_length=None)
    elif path.suffix == ".csv":
        frame = pl.read_csv(path, infer_schema=False)
    else:
        raise DirectoryError(f"{path}: use .csv, .yaml or .yml")
    missing = [c for c in schema if c not in frame.columns]
    required = [c for c in missing if c not in ("country", "timezone", "billing_email", "end_date")]
    if required:
        raise DirectoryError(f"{path}: missing column(s) {', '.join(required)}")
    for column in missing:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    columns = []
    for name, dtype in schema.items():
        if dtype is pl.Date:
            columns.append(pl.col(name).cast(pl.String).str.to_date("%Y-%m-%d", strict=False))
        else:
            columns.append(pl.col(name).cast(pl.String))
    typed = frame.select(columns)
    for name, dtype in schema.items():
        bad = typed.filter(pl.col(name).is_null() & frame[name].cast(pl.String).is_not_null())
        if dtype is pl.Date and bad.height:
            raise DirectoryError(f"{path}: {name} must be YYYY-MM-DD ({bad.height} row(s))")
    return typed


def read_accounts(path: Path) -> pl.DataFrame:
    frame = _read(path, ACCOUNT_SCHEMA).with_columns(pl.col("timezone").fill_null("UTC"))
    if frame["account_id"].is_duplicated().any():
        raise DirectoryError(f"{path}: duplicate account_id values")
    return frame


def read_subscriptions(path: Path) -> pl.DataFrame:
    frame = _read(path, SUBSCRIPTION_SCHEMA)
    problems = frame.filter(
        pl.col("subscription_id").is_null()
        | pl.col("account_id").is_null()
        | pl.col("plan_id").is_null()
        | pl.col("start_date").is_null()
        | (pl.col("end_date").is_not_null() & (pl.col("end_date") <= pl.col("start_date")))
    )
    if problems.height:
        raise DirectoryError(
            f"{path}: {problems.height} subscription(s) lack an id, account, plan or start "
            f"date, or end on/before they start, e.g. {problems.row(0, named=True)}"
        )
    return frame


def today() -> date:
    return date.today()
