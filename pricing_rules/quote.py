"""Quotes: price given usage for a plan and period without touching any ledger."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from pricing_rules.catalog import Catalog
from pricing_rules.lifecycle import History, Proration, timeline
from pricing_rules.money import from_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import RatingResult, rate, subscription_frame
from pricing_rules.terms import AccountTerms
from pricing_rules.units import UNITS

_QUANTITY = re.compile(
    r"^(?P<metric>[A-Za-z0-9_.-]+)(?:\[(?P<dims>[^\]]*)\])?=(?P<value>[0-9.]+)\s*(?P<unit>[A-Za-z]*)$"
)


class QuoteError(ValueError):
    pass


@dataclass(frozen=True)
class InlineQuantity:
    metric: str
    quantity: str
    unit: str | None
    dimensions: tuple[tuple[str, str], ...] = ()


def parse_quantity(text: str) -> InlineQuantity:
    """`voice=90000s`, `storage=150GB`, `voice[direction=inbound]=1500min`.

    >>> parse_quantity("voice[direction=inbound]=1500min").dimensions
    (('direction', 'inbound'),)
    """
    match = _QUANTITY.match(text.strip())
    if not match:
        raise QuoteError(
            f"usage {text!r} must look like metric=quantity[unit] or "
            "metric[dimension=value,...]=quantity[unit], e.g. voice[direction=inbound]=1500min"
        )
    dimensions: list[tuple[str, str]] = []
    for pair in filter(None, (match["dims"] or "").split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise QuoteError(f"usage {text!r}: dimension {pair!r} must look like key=value")
        dimensions.append((key.strip(), value.strip()))
    try:
        Decimal(match["value"])
    except InvalidOperation as exc:
        raise QuoteError(f"usage {text!r}: {match['value']!r} is not a number") from exc
    unit = match["unit"] or None
    if unit is not None and unit not in UNITS:
        raise QuoteError(f"usage {text!r}: unknown unit {unit!r}")
    return InlineQuantity(match["metric"], match["value"], unit, tuple(dimensions))


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or a QuoteError that says it is unknown.

    >>> time_zone("Asia/Tokyo").key
    'Asia/Tokyo'
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise QuoteError(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin"
        ) from exc


def inline_usage(
    quantities: list[InlineQuantity],
    catalog: Catalog,
    period: BillingPeriod,
    start: date,
    timezone: str = "UTC",
) -> pl.DataFrame:
    """Raw usage rows (text, like a file) for inline quantities, one event each, at the
    first instant of the start day in `timezone` (so a time-weighted reading covers the
    day whole, and the event falls in the account's local month)."""
    local = datetime.combine(max(start, period.start), time(0), tzinfo=time_zone(timezone))
    at = local.astimezone(UTC)
    rows = []
    for index, item in enumerate(quantities):
        if item.metric not in catalog.metrics:
            raise QuoteError(
                f"metric {item.metric!r} is not in the catalog "
                f"(known: {', '.join(sorted(catalog.metrics))})"
            )
        rows.append(
            {
                "event_id": f"quote-{index}",
                "account_id": "QUOTE",
                "metric": item.metric,
                "quantity": item.quantity,
                "unit": item.unit or catalog.metrics[item.metric].unit,
                "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source_key": "inline",
                "source_row": index,
                **dict(item.dimensions),
            }
        )
    base = ["event_id", "account_id", "metric", "quantity", "unit", "timestamp", "source_key"]
    columns = list(dict.fromkeys([*base, "source_row", *(k for row in rows for k in row)]))
    schema = {c: pl.Int64 if c == "source_row" else pl.String for c in columns}
    return pl.DataFrame(rows, schema=schema)


def quote(
    valid_usage: pl.DataFrame,
    catalog: Catalog,
    plan_id: str,
    period: BillingPeriod,
    *,
    account_id: str = "QUOTE",
    start: date | None = None,
    end: date | None = None,
    seats: int = 1,
    add_ons: list[str] | None = None,
    terms: AccountTerms | None = None,
    country: str | None = None,
    timezone: str = "UTC",
    history: History | None = None,
    proration: Proration = "day",
) -> RatingResult:
    """Rate one subscription for one period; nothing is read or written elsewhere.

    With a `history` (start, changes, seats, cancel), the fixed fees follow it, with
    proration and credits, and usage is priced on the plan in force at the end of the
    period (see `pricing_rules.lifecycle`); `plan_id`, `start`, `end` and `seats` then
    come from the history.
    """
    time_zone(timezone)
    if history is not None:
        plan_id, start, end, seats = from_history(history, catalog, period)
    if plan_id not in catalog.plans:
        raise QuoteError(
            f"plan {plan_id!r} is not in the catalog (known: {', '.join(sorted(catalog.plans))})"
        )
    unknown = [a for a in (add_ons or []) if a not in catalog.add_ons]
    if unknown:
        raise QuoteError(f"add-on(s) {', '.join(unknown)} not in the catalog")
    subscription_id = f"QUOTE-{uuid.uuid5(uuid.NAMESPACE_URL, plan_id).hex[:8]}"
    if history is not None:
        subscription_id = history.subscription_id
    subscription = subscription_frame(
        [
            {
                "subscription_id": subscription_id,
                "account_id": account_id,
                "plan_id": plan_id,
                "start_date": start or period.start,
                "end_date": end,
                "quantity": seats,
                "add_ons": ",".join(add_ons or []) or None,
            }
        ]
    )
    accounts = pl.DataFrame(
        [
            {
                "account_id": account_id,
                "currency": catalog.plans[plan_id].currency,
                "country": country,
                "timezone": timezone,
            }
        ],
        schema={
            "account_id": pl.String,
            "currency": pl.String,
            "country": pl.String,
            "timezone": pl.String,
        },
    )
    usage = valid_usage.with_columns(pl.lit(account_id).alias("account_id"))
    return rate(
        usage.lazy(),
        subscription,
        catalog,
        period,
        accounts=accounts,
        terms={account_id: terms} if terms else None,
        histories={subscription_id: history} if history is not None else None,
        proration=proration,
    )


def from_history(
    history: History, catalog: Catalog, period: BillingPeriod
) -> tuple[str, date, date | None, int]:
    """(plan, start, end, seats) of the subscription row a history quote rates usage on:
    the state in force at the end of the period, or the first one if it starts later."""
    from pricing_rules.cycles import BillingCycle
    from pricing_rules.lifecycle import LifecycleError

    try:
        segments = timeline(history, catalog, BillingCycle())
    except LifecycleError as exc:
        raise QuoteError(str(exc)) from exc
    if not segments:
        raise QuoteError(f"history {history.subscription_id} is never active")
    current = [s for s in segments if s.start < period.end] or segments[:1]
    state = current[-1].state
    return state.plan, segments[0].start, segments[-1].end, state.seats


def quote_document(result: RatingResult, period: BillingPeriod, plan_id: str) -> dict[str, Any]:
    """Lines with amounts and details, and the total per currency, as plain JSON values."""
    lines = []
    for row in result.lines.iter_rows(named=True):
        lines.append(
            {
                "line_id": row["line_id"],
                "charge": row["charge_name"],
                "kind": row["charge_kind"],
                "model": row["charge_model"],
                "quantity": f"{row['quantity'].normalize():f}",
                "unit": row["unit"],
                "unit_price": None
                if row["unit_price"] is None
                else f"{row['unit_price'].normalize():f}",
                "proration_factor": None
                if row["proration_factor"] is None
                else f"{row['proration_factor'].normalize():f}",
                "precise_amount": row["precise_amount"],
                "amount": str(from_minor_units(row["amount_minor"], row["currency"])),
                "currency": row["currency"],
                "description": row["description"],
                "details": json.loads(row["details"]),
            }
        )
    totals = result.lines.group_by("currency").agg(pl.col("amount_minor").sum()).sort("currency")
    return {
        "period": period.label,
        "plan": plan_id,
        "lines": lines,
        "totals": {c: str(from_minor_units(int(m), c)) for c, m in totals.rows()},
        "unrated": [
            {
                **row,
                "quantity": f"{row['quantity'].normalize():f}",
                "first_day": str(row["first_day"]),
                "last_day": str(row["last_day"]),
            }
            for row in result.unrated.iter_rows(named=True)
        ],
    }
