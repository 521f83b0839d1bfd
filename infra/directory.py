"""Accounts, subscriptions and account terms from CSV or YAML files, checked before they
reach the ledger. Every problem is reported with the file and row."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import polars as pl
import yaml
from pydantic import ValidationError

from pricing_rules import yamltext
from pricing_rules.lifecycle import History
from pricing_rules.terms import AccountTerms

ACCOUNT_SCHEMA: dict[str, type[pl.DataType]] = {
    "account_id": pl.String,
    "name": pl.String,
    "currency": pl.String,
    "country": pl.String,
    "timezone": pl.String,
    "billing_email": pl.String,
}
SUBSCRIPTION_SCHEMA: dict[str, type[pl.DataType]] = {
    "subscription_id": pl.String,
    "account_id": pl.String,
    "plan_id": pl.String,
    "start_date": pl.Date,
    "end_date": pl.Date,
    "quantity": pl.Int64,
    "add_ons": pl.String,
}
OPTIONAL = {"country", "timezone", "billing_email", "end_date", "quantity", "add_ons"}


class DirectoryError(ValueError):
    pass


def _records(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise DirectoryError(f"{path} does not exist")
    if path.suffix in (".yaml", ".yml"):
        rows = _yaml_text(path)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DirectoryError(f"{path}: expected a list of records")
        texts = [{k: None if v is None else str(v) for k, v in r.items()} for r in rows]
        columns = list(dict.fromkeys(k for r in texts for k in r))
        return pl.DataFrame(texts, schema=dict.fromkeys(columns, pl.String))
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    raise DirectoryError(f"{path}: use .csv, .yaml or .yml")


def _yaml_text(path: Path) -> object:
    """YAML with every scalar kept as written: `NO` stays Norway, `0012` stays `0012`.
    (YAML 1.1 would read them as a boolean and an octal number.)"""
    try:
        loaded = yamltext.load_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path}: not valid YAML: {exc}") from exc
    return _nulls(loaded) or []


def _nulls(node: object) -> object:
    if isinstance(node, dict):
        return {k: _nulls(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_nulls(v) for v in node]
    return None if node in ("null", "~", "Null", "NULL") else node


def _duplicates(frame: pl.DataFrame, column: str) -> str:
    """`ACC-1 in row 1, row 3`: each duplicated value and the data rows it is on."""
    rows = frame.with_row_index("row").filter(pl.col(column).is_duplicated())
    named = rows.group_by(column, maintain_order=True).agg(pl.col("row") + 1)
    return "; ".join(
        f"{value} in {', '.join(f'row {r}' for r in at)}" for value, at in named.iter_rows()
    )


def _read(path: Path, schema: Mapping[str, type[pl.DataType]]) -> pl.DataFrame:
    frame = _records(path)
    required = [c for c in schema if c not in frame.columns and c not in OPTIONAL]
    if required:
        raise DirectoryError(f"{path}: missing column(s) {', '.join(required)}")
    frame = frame.with_columns(
        pl.lit(None, pl.String).alias(c) for c in schema if c not in frame.columns
    )
    typed = frame.select(
        pl.col(name).str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        if dtype is pl.Date
        else pl.col(name).str.strip_chars().cast(dtype, strict=False)
        for name, dtype in schema.items()
    )
    problems = []
    for name, dtype in schema.items():
        if dtype is pl.String:
            continue
        bad = typed.with_row_index("row").filter(
            pl.col(name).is_null()
            & frame[name].is_not_null()
            & (frame[name].str.strip_chars() != "")
        )
        for row in bad.iter_rows(named=True):
            kind = "a date YYYY-MM-DD" if dtype is pl.Date else "a whole number"
            problems.append(
                f"row {row['row'] + 1}: {name} {frame[name][row['row']]!r} is not {kind}"
            )
    if problems:
        raise DirectoryError(f"{path}:\n  " + "\n  ".join(problems))
    return typed


def read_accounts(path: Path) -> pl.DataFrame:
    frame = _read(path, ACCOUNT_SCHEMA).with_columns(pl.col("timezone").fill_null("UTC"))
    missing = frame.filter(pl.col("account_id").is_null() | pl.col("currency").is_null())
    if missing.height:
        raise DirectoryError(f"{path}: {missing.height} account(s) lack an id or currency")
    if frame["account_id"].is_duplicated().any():
        raise DirectoryError(f"{path}: duplicate account_id {_duplicates(frame, 'account_id')}")
    return frame


def read_subscriptions(path: Path) -> pl.DataFrame:
    frame = _read(path, SUBSCRIPTION_SCHEMA).with_columns(pl.col("quantity").fill_null(1))
    problems = frame.filter(
        pl.col("subscription_id").is_null()
        | pl.col("account_id").is_null()
        | pl.col("plan_id").is_null()
        | pl.col("start_date").is_null()
        | (pl.col("end_date").is_not_null() & (pl.col("end_date") <= pl.col("start_date")))
        | (pl.col("quantity") < 0)
    )
    if problems.height:
        raise DirectoryError(
            f"{path}: {problems.height} subscription(s) lack an id, account, plan or start "
            f"date, end on or before they start, or have negative seats, e.g. "
            f"{problems.row(0, named=True)}"
        )
    if frame["subscription_id"].is_duplicated().any():
        duplicated = _duplicates(frame, "subscription_id")
        raise DirectoryError(f"{path}: duplicate subscription_id {duplicated}")
    return frame


def read_terms(path: Path) -> list[AccountTerms]:
    """A YAML list of account terms (overrides, discounts, credits, tax jurisdiction)."""
    if not path.is_file():
        raise DirectoryError(f"{path} does not exist")
    rows = _yaml_text(path)
    if not isinstance(rows, list):
        raise DirectoryError(f"{path}: expected a list of account terms")
    terms, problems = [], []
    for index, row in enumerate(rows):
        try:
            terms.append(AccountTerms.model_validate(row))
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"])
                problems.append(f"[{index}].{where}: {error['msg']}")
            continue
        for number, credit in enumerate(terms[-1].credits):
            why = credit.finer_than_currency()
            if why:
                problems.append(f"[{index}].credits.{number}: {why}")
    if problems:
        raise DirectoryError(f"{path}:\n  " + "\n  ".join(problems))
    return terms


def read_histories(path: Path) -> pl.DataFrame:
    """A YAML list of subscription histories, as subscription rows that keep the history.

    Each entry has `subscription_id`, `account_id` and `changes` (see
    `pricing_rules.lifecycle.History`). The row's start is the history's start, its plan
    and seats the first ones (rating uses those in force each period), and its end the
    cancellation: the cancel day, or with `timing: period_end` (the default) the end of
    that calendar month. A plan on a longer cycle serves on to its period's end: rating
    bills its fixed fees until then, while the row decides where usage goes.
    """
    if not path.is_file():
        raise DirectoryError(f"{path} does not exist")
    entries = _yaml_text(path)
    if not isinstance(entries, list):
        raise DirectoryError(f"{path}: expected a list of subscription histories")
    rows, problems = [], []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("account_id"):
            problems.append(f"[{index}]: needs account_id, subscription_id and changes")
            continue
        account_id = entry["account_id"]
        try:
            history = History.model_validate({k: v for k, v in entry.items() if k != "account_id"})
        except ValidationError as exc:
            for error in exc.errors():
                where = "".join(f".{p}" for p in error["loc"])
                problems.append(f"[{index}]{where}: {error['msg']}")
            continue
        first = history.changes[0]
        last = history.changes[-1]
        end = None
        if last.action == "cancel":
            end = last.day if last.timing == "immediate" else _next_month(last.day)
        rows.append(
            {
                "subscription_id": history.subscription_id,
                "account_id": account_id,
                "plan_id": first.plan,
                "start_date": first.day,
                "end_date": end,
                "quantity": first.seats or 1,
                "history": history.model_dump_json(),
            }
        )
    if problems:
        raise DirectoryError(f"{path}:\n  " + "\n  ".join(problems))
    frame = pl.DataFrame(rows, schema={**SUBSCRIPTION_SCHEMA, "history": pl.String}).drop("add_ons")
    if frame["subscription_id"].is_duplicated().any():
        raise DirectoryError(
            f"{path}: duplicate subscription_id {_duplicates(frame, 'subscription_id')}"
        )
    return frame


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
