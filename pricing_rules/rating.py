"""Rating: attribute valid usage to subscriptions and price every charge, exactly.

Usage is reduced with Polars to partial aggregates per (account, metric, local day and
the dimensions charges filter on), attributed to the subscription active that day, and
combined per (subscription, charge) with the metric's aggregation. Each charge is priced
on those totals for all its subscriptions at once in Polars `Decimal`
(`aggregate_rating`), or one total at a time in Python `Decimal` where that form does not
apply (`usage_fields`, `fixed_fields`: the reference both are tested against). Calls
rated from a deck are priced per call in Polars `Decimal`. No amount passes through a
float.

Line order on an invoice: recurring, usage, commitment true-up, discounts, tax, credits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import polars as pl
from pydantic import ValidationError

from pricing_rules.aggregate_rating import (
    fixed_frame_ready,
    frame_ready,
    line_frame,
    per_user,
    price_fixed_lines,
    price_usage_lines,
)
from pricing_rules.catalog import Catalog, Metric, Plan, why
from pricing_rules.charges import (
    CallDeckCharge,
    ChargeBase,
    ChargeDetail,
    PackageCharge,
    PricedCharge,
    model_name,
    price_charge,
    user_allowance,
)
from pricing_rules.localtime import with_local_day
from pricing_rules.money import (
    MONEY_CONTEXT,
    RoundingMode,
    minor_unit_exponent,
    plain,
    round_money,
    show_quantity,
    to_minor_units,
)
from pricing_rules.periods import BillingPeriod, local_midnight, proration_ratio
from pricing_rules.terms import AccountTerms, Discount

if TYPE_CHECKING:
    from pricing_rules.lifecycle import History, Proration
from pricing_rules.units import QUANTITY_SCALE, conversion_factor

QUANTITY = pl.Decimal(38, QUANTITY_SCALE)
MONEY = pl.Decimal(38, 4)
_QUANTITY_QUANTUM = Decimal(1).scaleb(-QUANTITY_SCALE)
KIND_ORDER = ("recurring", "usage", "commitment", "discount", "tax", "credit", "adjustment")

LINE_SCHEMA = pl.Schema(
    {
        "line_id": pl.String(),
        "account_id": pl.String(),
        "subscription_id": pl.String(),
        "plan_id": pl.String(),
        "charge_id": pl.String(),
        "charge_name": pl.String(),
        "charge_model": pl.String(),
        "charge_kind": pl.String(),
        "metric": pl.String(),
        "quantity": QUANTITY,
        "unit": pl.String(),
        "unit_price": pl.Decimal(38, 12),
        "proration_factor": pl.Decimal(38, 12),
        "events": pl.Int64(),
        "precise_amount": pl.String(),
        "amount": MONEY,
        "amount_minor": pl.Int64(),
        "currency": pl.String(),
        "rounding": pl.String(),
        "description": pl.String(),
        "details": pl.String(),
        # The closed period an adjustment line serves; null on the period's own lines.
        "service_period": pl.String(),
    }
)

UNRATED_SCHEMA = pl.Schema(
    {
        "account_id": pl.String(),
        "subscription_id": pl.String(),
        "plan_id": pl.String(),
        "metric": pl.String(),
        "quantity": QUANTITY,
        "unit": pl.String(),
        "events": pl.Int64(),
        "first_day": pl.Date(),
        "last_day": pl.Date(),
        "reason": pl.String(),
    }
)

SUBSCRIPTION_SCHEMA = pl.Schema(
    {
        "subscription_id": pl.String(),
        "account_id": pl.String(),
        "plan_id": pl.String(),
        "start_date": pl.Date(),
        "end_date": pl.Date(),
        "quantity": pl.Int64(),
        "add_ons": pl.String(),
        "history": pl.String(),  # a `pricing_rules.lifecycle.History` as JSON, or null
    }
)

NOTICE_SCHEMA = pl.Schema(
    {
        "account_id": pl.String(),
        "kind": pl.String(),
        "message": pl.String(),
    }
)


class RatingError(ValueError):
    pass


@dataclass(frozen=True)
class RatingResult:
    lines: pl.DataFrame
    unrated: pl.DataFrame
    rated_events: int
    unrated_events: int
    notices: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=NOTICE_SCHEMA))

    @property
    def events(self) -> int:
        return self.rated_events + self.unrated_events


def conform_subscriptions(subscriptions: pl.DataFrame) -> pl.DataFrame:
    """Subscriptions with the optional `quantity` (seats, default 1), `add_ons` and
    `history` columns."""
    frame = subscriptions
    if "quantity" not in frame.columns:
        frame = frame.with_columns(pl.lit(1, pl.Int64).alias("quantity"))
    for optional in ("add_ons", "history"):
        if optional not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(optional))
    return (
        frame.select(list(SUBSCRIPTION_SCHEMA))
        .cast(SUBSCRIPTION_SCHEMA)
        .with_columns(pl.col("quantity").fill_null(1))
    )


def active_subscriptions(subscriptions: pl.DataFrame, period: BillingPeriod) -> pl.DataFrame:
    return (
        conform_subscriptions(subscriptions)
        .filter(
            (pl.col("start_date") < period.end)
            & (pl.col("end_date").is_null() | (pl.col("end_date") > period.start))
        )
        .sort("subscription_id")
    )


def used_dimensions(catalog: Catalog) -> list[str]:
    """Event dimensions any charge filters on or gives an allowance per value of, or any
    metric counts distinct values of."""
    dims: set[str] = {m.property for m in catalog.metrics.values() if m.property}
    charges = [c for plan_id in catalog.plans for _, c in catalog.plan_charges(plan_id)]
    charges += [c for add_on in catalog.add_ons.values() for c in add_on.charge_list]
    for charge in charges:
        dims.update(charge.filters)
        if charge.free_units is not None and charge.free_units.dimension:
            dims.add(charge.free_units.dimension)
    return sorted(dims)


def _property_value(catalog: Catalog) -> pl.Expr:
    expr: pl.Expr = pl.lit(None, pl.String)
    for name, metric in catalog.metrics.items():
        if metric.aggregation == "unique_count" and metric.property:
            expr = pl.when(pl.col("metric") == name).then(pl.col(metric.property)).otherwise(expr)
    return expr


_PARTIAL_AGGREGATES = (
    "first_day",
    "last_day",
    "quantity_sum",
    "quantity_max",
    "events",
    "latest_at",
    "latest_value",
    "values",
)


def partial_usage(
    usage: pl.LazyFrame,
    catalog: Catalog,
    by_day: Sequence[str] | None = None,
    *,
    spans: bool = True,
) -> pl.LazyFrame:
    """Partial aggregates per (account, metric, local day, filter dimensions).

    Sums, maxima, counts, the latest reading and the distinct property values combine
    exactly across days, files or workers; this is the unit of scale-out. Only the
    accounts in `by_day` (every account when it is None) are split by day; for the others
    `day` is null: an account whose one subscription covers the whole period needs no
    split, nor does usage no subscription covers.

    `first_day` and `last_day` are the row's first and last local day of usage. With
    `spans=False` they are the row's `day`, null where that is: reading every event's
    time costs, and only unrated rows report their days (`_with_spans`).
    """
    dims = used_dimensions(catalog)
    present = set(usage.collect_schema().names())
    frame = usage.with_columns(
        *(pl.lit(None, pl.String).alias(d) for d in dims if d not in present),
    ).with_columns(_property_value(catalog).alias("_property"))
    day: pl.Expr | None = pl.col("local_day")
    if by_day is not None:
        split = pl.Series(list(by_day), dtype=pl.String)
        # With no account to split, the day is no key at all: a key costs on every event.
        day = (
            pl.when(pl.col("account_id").is_in(split.implode())).then(day).otherwise(None)
            if len(split)
            else None
        )
    aggregations = {m.aggregation for m in catalog.metrics.values()}
    # The latest reading and the distinct values cost a sort and a set per group; a
    # catalog with no metric that needs them gets typed nulls.
    latest = "latest" in aggregations
    distinct = "unique_count" in aggregations
    keys = ["account_id", "metric", *([] if day is None else [day.alias("day")]), *dims]
    first_last = (
        [pl.col("local_day").min().alias("first_day"), pl.col("local_day").max().alias("last_day")]
        if spans
        else []
    )
    partials = frame.group_by(keys).agg(
        *first_last,
        pl.col("quantity").sum().alias("quantity_sum"),
        pl.col("quantity").max().alias("quantity_max"),
        pl.len().cast(pl.Int64).alias("events"),
        (pl.col("timestamp").max() if latest else pl.lit(None, pl.Datetime("us", "UTC"))).alias(
            "latest_at"
        ),
        (
            pl.col("quantity").sort_by("timestamp").last() if latest else pl.lit(None, QUANTITY)
        ).alias("latest_value"),
        (
            pl.col("_property").drop_nulls().unique()
            if distinct
            else pl.lit([], pl.List(pl.String))
        ).alias("values"),
    )
    if day is None:
        partials = partials.with_columns(pl.lit(None, pl.Date).alias("day"))
    if not spans:
        partials = partials.with_columns(
            pl.col("day").alias("first_day"), pl.col("day").alias("last_day")
        )
    key_names = ["account_id", "metric", "day", *dims]
    return partials.select(*key_names, *_PARTIAL_AGGREGATES)


def _combine(metric: Metric) -> pl.Expr:
    """Partial aggregates -> one quantity, by the metric's aggregation."""
    match metric.aggregation:
        case "sum" | "time_weighted_sum":
            return pl.col("quantity_sum").sum()
        case "count":
            return pl.col("events").sum().cast(QUANTITY)
        case "max":
            return pl.col("quantity_max").max()
        case "latest":
            return pl.col("latest_value").sort_by("latest_at").last()
        case "unique_count":
            return pl.col("values").explode().drop_nulls().n_unique().cast(QUANTITY)
    raise AssertionError(metric.aggregation)  # pragma: no cover


def attribute(partials: pl.DataFrame, subs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(partials covered by a subscription, partials no subscription covers).

    A day is covered when `start_date <= day < end_date`. Two subscriptions covering the
    same account on the same day would bill the usage twice, so that is an error.
    """
    indexed = partials.with_row_index("_row")
    matched = indexed.join(subs, on="account_id", how="inner").filter(
        pl.col("day").is_null()  # the account's one subscription covers the whole period
        | active_on("day")
    )
    overlap = matched.group_by("_row").len().filter(pl.col("len") > 1)
    if overlap.height:
        row = indexed.filter(pl.col("_row") == overlap["_row"][0]).row(0, named=True)
        raise RatingError(
            f"{overlap.height} partial usage rows are covered by more than one subscription, "
            f"e.g. account {row['account_id']} on {row['day']}"
        )
    orphan = indexed.join(matched.select("_row"), on="_row", how="anti")
    return matched, orphan


def _with_spans(
    frames: list[pl.DataFrame], usage: pl.LazyFrame, dims: list[str]
) -> list[pl.DataFrame]:
    """`frames` (rows of `partial_usage(..., spans=False)` with their `_row`) with the
    first and last local day of each row's usage filled in: one pass over the usage of
    the rows' accounts, and none when every row already has its day."""
    keys = ["account_id", "metric", *dims]
    open_rows = pl.concat(
        [f.filter(pl.col("first_day").is_null()).select("_row", *keys) for f in frames]
    ).unique("_row")
    if open_rows.height == 0:
        return frames
    found = (
        usage.filter(pl.col("account_id").is_in(open_rows["account_id"].unique().implode()))
        .join(open_rows.lazy(), on=keys, nulls_equal=True)
        .group_by("_row")
        .agg(pl.col("local_day").min().alias("_first"), pl.col("local_day").max().alias("_last"))
        .collect(engine="streaming")
    )
    return [
        f.join(found, on="_row", how="left")
        .with_columns(
            pl.coalesce("first_day", "_first").alias("first_day"),
            pl.coalesce("last_day", "_last").alias("last_day"),
        )
        .drop("_first", "_last")
        for f in frames
    ]


def _unrated_rows(
    frame: pl.DataFrame, keys: list[str], reason: str, catalog: Catalog
) -> pl.DataFrame:
    if frame.height == 0:
        return pl.DataFrame(schema=UNRATED_SCHEMA)
    parts = []
    for (metric_name,), group in frame.group_by(["metric"], maintain_order=True):
        metric = catalog.metrics[str(metric_name)]
        # Unbilled readings of a time-weighted metric are reported at their peak: the
        # readings have no subscription window to weigh them over.
        quantity = (
            pl.col("quantity_max").max()
            if metric.aggregation == "time_weighted_sum"
            else _combine(metric)
        )
        parts.append(
            group.group_by(keys)
            .agg(
                quantity.alias("quantity"),
                pl.col("events").sum(),
                pl.col("first_day").min(),
                pl.col("last_day").max(),
            )
            .with_columns(pl.lit(metric.unit).alias("unit"))
        )
    combined = pl.concat(parts, how="diagonal")
    for column in ("subscription_id", "plan_id"):
        if column not in combined.columns:
            combined = combined.with_columns(pl.lit(None, pl.String).alias(column))
    return (
        combined.with_columns(pl.lit(reason).alias("reason"))
        .select(list(UNRATED_SCHEMA))
        .cast(UNRATED_SCHEMA)
    )


def price_quantity(
    charge: ChargeBase,
    quantity: Decimal,
    metric_unit: str,
    seats: int = 1,
    allowance: Decimal | None = None,
) -> tuple[Decimal, str, PricedCharge]:
    """Convert a canonical quantity to the charge's price unit and price it (with its
    allowance, minimum and maximum; `allowance`: what an allowance per user covers, in
    the price unit)."""
    unit = charge.price_unit or metric_unit
    factor = conversion_factor(metric_unit, unit)
    converted = quantity if factor == 1 else _scale(quantity, factor)
    return converted, unit, price_charge(charge, converted, seats, allowance)


def usage_fields(
    charge: ChargeBase,
    quantity: Decimal,
    metric_unit: str,
    seats: int = 1,
    allowance: Decimal | None = None,
    held_per: str | None = None,
    served: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """What pricing puts on a usage line: `quantity` and `unit` (the price unit),
    `unit_price`, `precise` (the unrounded amount), `description` and `details` (the
    explanation rows). `pricing_rules.aggregate_rating` gives the same for a frame. A
    time-weighted quantity is units held per `held_per` (seat-days: `held_per="day"`).
    `served`: the days of the period the subscription was billed for, and the period's
    days; the charge's minimum is prorated by them (`prorated_minimum`).

    # 1,500 units, 1,000 free, then 0.01 each: 500 x 0.01 = 5.00
    >>> from pricing_rules.charges import Allowance, PerUnitCharge
    >>> charge = PerUnitCharge(id="api", name="API", model="per_unit", metric="api",
    ...     unit_price=Decimal("0.01"), free_units=Allowance(units=Decimal(1000)))
    >>> fields = usage_fields(charge, Decimal(1500), "event")
    >>> fields["precise"], fields["description"]
    (Decimal('5.00'), 'API: 1,500 event — 1,000 event included, 500 event at 0.01')
    """
    minimum = charge.minimum_amount
    if minimum is not None and served is not None and served[0] < served[1]:
        charge = charge.model_copy(update={"minimum_amount": prorated_minimum(minimum, *served)})
    else:
        served = None
    _, unit, priced = price_quantity(charge, quantity, metric_unit, seats, allowance)
    unit = f"{unit}-{held_per}" if held_per else unit
    return {
        "quantity": priced.quantity,
        "unit": unit,
        "unit_price": priced.unit_price,
        "precise": priced.amount,
        "description": _describe(charge, priced, unit, served),
        "details": [d.as_json() for d in priced.details],
    }


def fixed_fields(charge: ChargeBase, seats: int, active: int, days: int) -> dict[str, Any]:
    """What pricing puts on a fixed-fee line for `active` of the period's `days`: the
    `quantity` (periods, or seat-periods for a per-seat charge), `unit_price`,
    `proration_factor`, `precise`, `description` and `details`.
    `pricing_rules.aggregate_rating` gives the same for a frame of whole periods.

    # 25 seats at 14.50 for 15 of 30 days: 25 x 0.5 = 12.5 seat-periods x 14.50 = 181.25
    >>> from pricing_rules.charges import PerSeatCharge
    >>> seats = PerSeatCharge(id="s", name="Seats", model="per_seat",
    ...     unit_price=Decimal("14.50"))
    >>> fields = fixed_fields(seats, 25, 15, 30)
    >>> plain(fields["precise"]), fields["description"]
    ('181.25', 'Seats: 25 seat(s), 15 of 30 days at 14.50 per period')
    """
    factor = proration_ratio(active, days)
    per_seat = model_name(type(charge)) == "per_seat"
    priced = price_charge(charge, MONEY_CONTEXT.multiply(Decimal(seats if per_seat else 1), factor))
    who = f"{seats} seat(s), " if per_seat else ""
    return {
        "quantity": priced.quantity,
        "unit_price": priced.unit_price,
        "proration_factor": factor,
        "precise": priced.amount,
        "description": f"{charge.name}: {who}{active} of {days} days at {priced.unit_price} "
        "per period",
        "details": [d.as_json() | {"proration_factor": plain(factor)} for d in priced.details],
    }


def _scale(quantity: Decimal, factor: Fraction) -> Decimal:
    """The quantity in the price unit, at the frame scale (12 decimals).

    Seconds to minutes does not terminate (100 s = 1.666... min); the priced quantity is
    the one the line shows, so tier rows and their sum stay exact.
    """
    return _quantity_of(Fraction(quantity) * factor)


def _quantity_of(value: Fraction) -> Decimal:
    """An exact quantity at the frame scale (12 decimals), rounded once."""
    return MONEY_CONTEXT.divide(Decimal(value.numerator), Decimal(value.denominator)).quantize(
        Decimal(1).scaleb(-QUANTITY_SCALE), context=MONEY_CONTEXT
    )


def prorated_minimum(minimum: Decimal, served: int, days: int) -> Decimal:
    """A charge's minimum for a subscription billed `served` of the period's `days`, at
    the 18 decimals of frame amounts (`aggregate_rating.limited` computes the same).

    # 10.00 for 15 of 31 days: 4.838709677419354838709... -> 4.838709677419354839
    >>> prorated_minimum(Decimal("10.00"), 15, 31)
    Decimal('4.838709677419354839')
    """
    share = MONEY_CONTEXT.divide(MONEY_CONTEXT.multiply(minimum, Decimal(served)), Decimal(days))
    return share.quantize(Decimal(1).scaleb(-18), context=MONEY_CONTEXT)


def _describe(
    charge: ChargeBase, priced: PricedCharge, unit: str, served: tuple[int, int] | None = None
) -> str:
    """The line in plain words, e.g. `1,500 min: 1,000 min included, first 500 min at
    0.0040`. The explanation rows hold the exact figures."""
    model = model_name(type(charge))
    parts: list[str] = []
    paid_rows = [d for d in priced.details if d.tier is not None or d.label == charge.name]
    for detail in priced.details:
        if detail.label == "included allowance":
            parts.append(
                f"{show_quantity(detail.quantity)} {unit} included{per_user(charge, unit)}"
            )
        elif detail.label == "minimum charge top-up":
            days = f" for {served[0]} of {served[1]} days" if served else ""
            parts.append(f"topped up by {show_quantity(detail.amount)} to the minimum charge{days}")
        elif detail.label == "maximum charge cap":
            parts.append(f"capped at the maximum charge ({show_quantity(detail.amount)})")
    fee = ""
    if model == "graduated":
        for index, detail in enumerate(paid_rows):
            fee = "" if detail.flat_fee is None else f" + {detail.flat_fee} flat"
            word = "first" if index == 0 else "next"
            parts.append(
                f"{word} {show_quantity(detail.quantity)} {unit} at {detail.unit_price}{fee}"
            )
    elif model == "volume" and paid_rows:
        detail = paid_rows[0]
        band = (
            f"over {show_quantity(detail.tier_from or Decimal(0))}"
            if detail.tier_to is None
            else (f"up to {show_quantity(detail.tier_to)}")
        )
        fee = "" if detail.flat_fee is None else f" + {detail.flat_fee} flat"
        parts.append(
            f"all {show_quantity(detail.quantity)} {unit} at the {band} {unit} price "
            f"{detail.unit_price}{fee}"
        )
    elif model == "package" and isinstance(charge, PackageCharge):
        free = next(
            (
                d.quantity
                for d in priced.details
                if d.unit_price == 0
                and d.tier is None
                and d.label.startswith(tuple("0123456789"))
                and "free" in d.label
            ),
            Decimal(0),
        )
        paid = next(
            (
                d.quantity
                for d in priced.details
                if "free" not in d.label and d.unit_price == charge.block_price
            ),
            Decimal(0),
        )
        parts.append(
            f"blocks of {show_quantity(charge.block_size)} {unit}: {show_quantity(free + paid)} "
            f"started, {show_quantity(free)} free, {show_quantity(paid)} at {charge.block_price}"
        )
    else:
        for detail in paid_rows:
            price = "" if detail.unit_price is None else f" at {detail.unit_price}"
            parts.append(f"{show_quantity(detail.quantity)} {unit}{price}")
    return f"{charge.name}: {show_quantity(priced.quantity)} {unit} — " + ", ".join(parts)


@dataclass
class _Invoice:
    """The lines of one (account, currency) while they are built."""

    account_id: str
    currency: str
    rounding: RoundingMode
    lines: list[dict[str, Any]] = field(default_factory=list)
    # Sums by kind of the plain lines (`_FrameLines.split`), which are not in `lines`.
    plain: dict[str, Decimal] = field(default_factory=dict)
    # (applies_to, amount) of each discount given, in order
    discounted: list[tuple[str, Decimal]] = field(default_factory=list)

    def subtotal(self, kinds: Sequence[str]) -> Decimal:
        return sum(
            (line["amount"] for line in self.lines if line["charge_kind"] in kinds),
            sum((self.plain[kind] for kind in kinds if kind in self.plain), Decimal(0)),
        )


def _line(
    invoice: _Invoice,
    *,
    line_id: str,
    subscription_id: str | None,
    plan_id: str | None,
    charge_id: str,
    charge_name: str,
    charge_model: str,
    kind: str,
    metric: str | None,
    quantity: Decimal,
    unit: str,
    unit_price: Decimal | None,
    proration_factor: Decimal | None,
    events: int,
    precise: Decimal,
    description: str,
    details: list[dict[str, Any]] | str,
) -> dict[str, Any]:
    rounded = round_money(precise, invoice.currency, invoice.rounding)
    line = {
        "line_id": line_id,
        "account_id": invoice.account_id,
        "subscription_id": subscription_id,
        "plan_id": plan_id,
        "charge_id": charge_id,
        "charge_name": charge_name,
        "charge_model": charge_model,
        "charge_kind": kind,
        "metric": metric,
        "quantity": quantity.quantize(_QUANTITY_QUANTUM, context=MONEY_CONTEXT),
        "unit": unit,
        "unit_price": unit_price,
        "proration_factor": None
        if proration_factor is None
        else proration_factor.quantize(_QUANTITY_QUANTUM, context=MONEY_CONTEXT),
        "events": events,
        "precise_amount": plain(precise),
        "amount": rounded,
        "amount_minor": to_minor_units(rounded, invoice.currency),
        "currency": invoice.currency,
        "rounding": invoice.rounding.value,
        "description": description,
        "details": details if isinstance(details, str) else json.dumps(details, default=str),
    }
    invoice.lines.append(line)
    return line


def _price_pieces(
    charge: ChargeBase,
    key: str,
    plan_id: str,
    terms: AccountTerms | None,
    period: BillingPeriod,
    notices: list[dict[str, str]],
) -> list[tuple[ChargeBase, date, date, bool]]:
    """A fixed fee's prices over the period: (charge, first day, end day, overridden).

    Account price overrides are effective-dated: where one covers only part of the
    period, the period is split at its window, the list price before and after, each
    piece prorated on its own line. (Usage charges keep one price per period; see
    `_override`.)
    """
    mine = [
        o
        for o in (terms.effective_overrides() if terms else [])
        if o.plan_id == plan_id and o.charge_id == key and o.covered_days(period.start, period.end)
    ]
    partial = [o for o in mine if o.covered_days(period.start, period.end) < period.days]
    if not partial:
        charge, overridden = _override(charge, key, plan_id, terms, period, notices)
        return [(charge, period.start, period.end, overridden)]
    cuts = sorted(
        {period.start, period.end}
        | {
            d
            for o in mine
            for d in (o.valid_from, o.valid_to)
            if d and period.start < d < period.end
        }
    )
    pieces: list[tuple[ChargeBase, date, date, bool]] = []
    for first, end in pairwise(cuts):
        found = next((o for o in mine if o.covered_days(first, end) == (end - first).days), None)
        priced, overridden = charge, False
        if found is not None:
            try:
                priced = type(charge).model_validate({**charge.model_dump(), **found.changes()})
                overridden = True
            except ValueError as exc:
                notices.append(
                    {
                        "account_id": terms.account_id if terms else "",
                        "kind": "override_invalid",
                        "message": f"price override of {plan_id}/{key} does not fit a "
                        f"{model_name(type(charge))} charge ({why(exc)}); the list price "
                        "was used",
                    }
                )
        pieces.append((priced, first, end, overridden))
    return pieces


def _invoice_line(
    invoice: _Invoice,
    charge_id: str,
    *,
    name: str,
    kind: str,
    precise: Decimal,
    description: str,
    details: list[ChargeDetail],
    model: str | None = None,
    line_key: str | None = None,
    quantity: Decimal = Decimal(1),
    unit: str = "period",
    unit_price: Decimal | None = None,
    proration_factor: Decimal | None = None,
) -> None:
    """A line of the invoice as a whole (contract, discount, tax, credit): no
    subscription, plan or metric. Its id is `<account>:<currency>:<line_key or charge_id>`,
    and its model is `kind` unless given."""
    _line(
        invoice,
        line_id=f"{invoice.account_id}:{invoice.currency}:{line_key or charge_id}",
        subscription_id=None,
        plan_id=None,
        charge_id=charge_id,
        charge_name=name,
        charge_model=model or kind,
        kind=kind,
        metric=None,
        quantity=quantity,
        unit=unit,
        unit_price=unit_price,
        proration_factor=proration_factor,
        events=0,
        precise=precise,
        description=description,
        details=[d.as_json() for d in details],
    )


def _override(
    charge: ChargeBase,
    key: str,
    plan_id: str,
    terms: AccountTerms | None,
    period: BillingPeriod,
    notices: list[dict[str, str]],
) -> tuple[ChargeBase, bool]:
    """The account's price for a charge when an override covers the whole period.

    A usage charge keeps one price per period (its tiers and allowances are for the
    whole period): an override that starts or ends inside the period is not applied, the
    list price is used and a notice says so. Fixed fees are split instead
    (`_price_pieces`).
    """
    if terms is None:
        return charge, False
    for override in terms.effective_overrides():
        if override.plan_id != plan_id or override.charge_id != key:
            continue
        covered = override.covered_days(period.start, period.end)
        if covered == period.days:
            data = {**charge.model_dump(), **override.changes()}
            try:
                return type(charge).model_validate(data), True
            except ValueError as exc:
                notices.append(
                    {
                        "account_id": terms.account_id,
                        "kind": "override_invalid",
                        "message": f"price override of {plan_id}/{key} does not fit a "
                        f"{model_name(type(charge))} charge ({why(exc)}); the list price "
                        "was used",
                    }
                )
                return charge, False
        if covered:
            notices.append(
                {
                    "account_id": terms.account_id,
                    "kind": "override_partly_effective",
                    "message": f"price override of {plan_id}/{key} covers {covered} of "
                    f"{period.days} days of {period.label}; the list price was used",
                }
            )
    return charge, False


class _Rater:
    def __init__(
        self,
        catalog: Catalog,
        period: BillingPeriod,
        accounts: Mapping[str, Mapping[str, Any]],
        terms: Mapping[str, AccountTerms],
        credits_used: Mapping[tuple[str, str], Decimal],
        contract_spend: Mapping[tuple[str, str], Decimal] | None = None,
    ) -> None:
        self.catalog = catalog
        # (account, contract id) -> spend on earlier invoices of the current contract year
        self.contract_spend = contract_spend or {}
        self.period = period
        self.accounts = accounts
        self.terms = terms
        self.credits_used = credits_used
        self.invoices: dict[tuple[str, str], _Invoice] = {}
        self.notices: list[dict[str, str]] = []
        # fixed fees of this period that the previous invoice billed in advance
        self.billed_before: dict[str, Decimal] = {}
        self._currencies: tuple[int, dict[str, list[str]]] = (0, {})
        self._said: set[tuple[str, str, str]] = set()  # notices given once (`_once`)
        self._charges: dict[tuple[str, str | None], list[tuple[str, ChargeBase]]] = {}

    def charges(self, sub: Mapping[str, Any]) -> list[tuple[str, ChargeBase]]:
        """(line key, charge) of the subscription's plan and add-ons, looked up once per
        combination: thousands of subscriptions share a few."""
        combination = (sub["plan_id"], sub.get("add_ons"))
        if combination not in self._charges:
            self._charges[combination] = self.catalog.plan_charges(sub["plan_id"], _add_ons(sub))
        return self._charges[combination]

    def currencies(self, account_id: str) -> list[str]:
        """The currencies the account has invoices in (indexed once all are open)."""
        if self._currencies[0] != len(self.invoices):
            index: dict[str, list[str]] = {}
            for account, currency in sorted(self.invoices):
                index.setdefault(account, []).append(currency)
            self._currencies = (len(self.invoices), index)
        return self._currencies[1].get(account_id, [])

    def home_currency(self, account_id: str) -> str | None:
        """The account's own currency, or the one currency it is invoiced in."""
        known = self.accounts.get(account_id, {}).get("currency")
        currencies = self.currencies(account_id)
        return str(known) if known else (currencies[0] if len(currencies) == 1 else None)

    def _once(self, account_id: str, kind: str, message: str) -> None:
        if (account_id, kind, message) not in self._said:
            self._said.add((account_id, kind, message))
            self.notices.append({"account_id": account_id, "kind": kind, "message": message})

    def invoice(self, account_id: str, plan: Plan) -> _Invoice:
        key = (account_id, plan.currency)
        if key not in self.invoices:
            self.invoices[key] = _Invoice(account_id, plan.currency, plan.rounding)
        return self.invoices[key]

    def open_plain(self, subs: pl.DataFrame, lines: pl.DataFrame) -> None:
        """The invoices of the plain subscriptions (`_plain_subscriptions`, with their
        plan's currency and rounding), with the sums by kind of their plain lines."""
        sums = lines.group_by("account_id", "currency", "charge_kind").agg(
            pl.col("amount_minor").sum()
        )
        for account_id, currency, rounding in (
            subs.unique(["account_id", "currency"], keep="first", maintain_order=True)
            .select("account_id", "currency", "rounding")
            .iter_rows()
        ):
            key = (account_id, currency)
            self.invoices[key] = _Invoice(account_id, currency, RoundingMode(rounding))
        exponent = {c: minor_unit_exponent(c) for c in sums["currency"].unique().to_list()}
        for account_id, currency, kind, minor in sums.iter_rows():
            self.invoices[(account_id, currency)].plain[kind] = Decimal(minor).scaleb(
                -exponent[currency]
            )

    def recurring(self, sub: Mapping[str, Any], plan: Plan, frames: _FrameLines) -> None:
        terms = self.terms.get(sub["account_id"])
        invoice = self.invoice(sub["account_id"], plan)
        for key, listed in self.charges(sub):
            if listed.kind != "recurring":
                continue
            framed = frames.refs.get((sub["subscription_id"], key))
            if framed is not None:
                self.add_line(sub["account_id"], plan, framed, frames)
                continue
            pieces = _price_pieces(listed, key, sub["plan_id"], terms, self.period, self.notices)
            for charge, first, end, overridden in pieces:
                start = max(sub["start_date"], first)
                stop = end if sub["end_date"] is None else min(sub["end_date"], end)
                active = max((stop - start).days, 0)
                if active == 0 and len(pieces) > 1:
                    continue
                fields = fixed_fields(charge, int(sub["quantity"]), active, self.period.days)
                price = " (account price)" if overridden else ""
                if len(pieces) > 1:
                    last = stop - timedelta(days=1)
                    price = f" ({'account' if overridden else 'list'} price, {start} to {last})"
                _line(
                    invoice,
                    line_id=f"{sub['subscription_id']}:{key}"
                    + (f":{first}" if len(pieces) > 1 else ""),
                    subscription_id=sub["subscription_id"],
                    plan_id=sub["plan_id"],
                    charge_id=key,
                    charge_name=charge.name,
                    charge_model=model_name(type(charge)),
                    kind="recurring",
                    metric=None,
                    quantity=fields["quantity"],
                    unit="period",
                    unit_price=fields["unit_price"],
                    proration_factor=fields["proration_factor"],
                    events=0,
                    precise=fields["precise"],
                    description=fields["description"] + price,
                    details=fields["details"],
                )

    def lifecycle(self, sub: Mapping[str, Any], history: History, by: Proration) -> None:
        """Fixed fees from the subscription's history on its plan's cycle, in the account's
        time zone: prorated segments, credits for unused time and the periods starting
        in this run's month billed in advance (see `pricing_rules.lifecycle`)."""
        from pricing_rules.lifecycle import (
            Pricing,
            advance_lines,
            closing_lines,
            cycle_for,
            describe,
        )

        zone = str(self.accounts.get(sub["account_id"], {}).get("timezone") or "UTC")
        cycle = cycle_for(history, self.catalog, zone)
        terms = self.terms.get(sub["account_id"])

        def pieces(
            plan_id: str, key: str, charge: ChargeBase, first: date, end: date
        ) -> list[tuple[ChargeBase, date, date, bool]]:
            days = BillingPeriod(first, end)
            return _price_pieces(charge, key, plan_id, terms, days, self.notices)

        add_ons = tuple(_add_ons(sub))
        pricing = Pricing(add_ons, pieces) if terms else Pricing(add_ons)
        first, end = self.period.start, self.period.end
        if cycle.interval == "month" and cycle.alignment == "calendar":
            # This month's fees in advance were on the last invoice: they count toward
            # this month's commitment.
            month = cycle.period_of(cycle.start_of(first))
            self.billed_before[sub["subscription_id"]] = sum(
                (
                    round_money(line.amount, plan.currency, plan.rounding)
                    for line in advance_lines(
                        history, self.catalog, cycle, month, by=by, pricing=pricing
                    )
                    for plan in [self.catalog.plans[line.plan_id]]
                ),
                Decimal(0),
            )
        taken: set[str] = set()
        for line in closing_lines(history, self.catalog, cycle, first, end, by=by, pricing=pricing):
            # A reversal and a new charge can cover the same days: the id tells them apart.
            line_id = (
                f"{sub['subscription_id']}:{line.charge_key}:{line.role}:{line.plan_id}:"
                f"{line.first_day}:{line.end_day}:{line.seats}"
            )
            while line_id in taken:
                line_id += "+"
            taken.add(line_id)
            last = line.end_day - timedelta(days=1)
            details = [
                d.as_json()
                | {
                    "amount": plain(d.amount.copy_negate() if line.role == "unused" else d.amount),
                    "proration_factor": plain(line.factor),
                    "service": f"{line.first_day} to {last}",
                }
                for d in line.priced.details
            ]
            billed = _line(
                self.invoice(sub["account_id"], self.catalog.plans[line.plan_id]),
                line_id=line_id,
                subscription_id=sub["subscription_id"],
                plan_id=line.plan_id,
                charge_id=line.charge_key,
                charge_name=line.charge.name,
                charge_model=model_name(type(line.charge)),
                kind="recurring",
                metric=None,
                quantity=line.priced.quantity,
                unit="period",
                unit_price=line.priced.unit_price,
                proration_factor=line.factor,
                events=0,
                precise=line.amount,
                description=describe(line, self.catalog),
                details=details,
            )
            billed["next_period"] = line.role == "advance"
            billed["service"] = (line.first_day, line.end_day)

    def usage_line(
        self,
        sub: Mapping[str, Any],
        plan: Plan,
        key: str,
        charge: ChargeBase,
        quantity: Decimal,
        events: int,
        allowance: Decimal | None = None,
    ) -> None:
        """A usage line priced one by one (`allowance`: what an allowance per user covers;
        see `charges.user_allowance`)."""
        terms = self.terms.get(sub["account_id"])
        charge, overridden = _override(
            charge, key, sub["plan_id"], terms, self.period, self.notices
        )
        assert charge.metric is not None
        metric = self.catalog.metrics[charge.metric]
        held_per = (
            _HELD_PER[metric.time_unit] if metric.aggregation == "time_weighted_sum" else None
        )
        fields = usage_fields(
            charge,
            quantity,
            metric.unit,
            int(sub["quantity"]),
            allowance,
            held_per,
            (int(sub["served_days"]), self.period.days),
        )
        _line(
            self.invoice(sub["account_id"], plan),
            line_id=f"{sub['subscription_id']}:{key}",
            subscription_id=sub["subscription_id"],
            plan_id=sub["plan_id"],
            charge_id=key,
            charge_name=charge.name,
            charge_model=model_name(type(charge)),
            kind="usage",
            metric=charge.metric,
            quantity=fields["quantity"],
            unit=fields["unit"],
            unit_price=fields["unit_price"],
            proration_factor=None,
            events=events,
            precise=fields["precise"],
            description=fields["description"] + (" (account price)" if overridden else ""),
            details=fields["details"],
        )

    def add_line(
        self, account_id: str, plan: Plan, line: dict[str, Any], frames: _FrameLines
    ) -> None:
        """Put a line priced as a frame on the account's invoice, rounded as that invoice
        rounds (it may have started under a plan with another rounding mode)."""
        invoice = self.invoice(account_id, plan)
        if invoice.rounding != line["rounding"]:  # a StrEnum equals its text
            full = frames.row(line)
            rounded = round_money(
                Decimal(full["precise_amount"]), invoice.currency, invoice.rounding
            )
            line.clear()
            line |= full | {
                "amount": rounded,
                "amount_minor": to_minor_units(rounded, invoice.currency),
                "rounding": invoice.rounding.value,
            }
        invoice.lines.append(line)

    def commitment(self, sub: Mapping[str, Any], plan: Plan) -> None:
        if plan.minimum_commitment is None:
            return
        invoice = self.invoice(sub["account_id"], plan)
        rounding = invoice.rounding
        billable = int(sub["served_days"])  # prorated like the fees (`_served_days`)
        factor = proration_ratio(billable, self.period.days)
        committed = MONEY_CONTEXT.divide(
            MONEY_CONTEXT.multiply(plan.minimum_commitment, Decimal(billable)), self.period.days
        )
        spent = self.billed_before.get(sub["subscription_id"], Decimal(0)) + sum(
            (
                line["amount"]
                for line in invoice.lines
                # the next period's fees, billed in advance, count toward its own commitment
                if line["subscription_id"] == sub["subscription_id"] and not line.get("next_period")
            ),
            Decimal(0),
        )
        if spent >= committed:
            return
        shortfall = MONEY_CONTEXT.subtract(committed, spent)
        _line(
            invoice,
            line_id=f"{sub['subscription_id']}:commitment",
            subscription_id=sub["subscription_id"],
            plan_id=sub["plan_id"],
            charge_id="commitment",
            charge_name="Minimum commitment true-up",
            charge_model="commitment",
            kind="commitment",
            metric=None,
            quantity=Decimal(1),
            unit="period",
            unit_price=None,
            proration_factor=factor,
            events=0,
            precise=shortfall,
            # `spent` is a sum of rounded lines, so the rounded figures subtract exactly
            description=f"Committed {plain(round_money(committed, invoice.currency, rounding))}"
            + (
                ""
                if billable == self.period.days
                else f" ({plain(plan.minimum_commitment)} x {billable}/{self.period.days} days)"
            )
            + f" this period, billed {plain(spent)}: true-up "
            f"{plain(round_money(shortfall, invoice.currency, rounding))}",
            details=[
                ChargeDetail("commitment for the period", factor, committed).as_json(),
                ChargeDetail("billed for the period", Decimal(1), spent.copy_negate()).as_json(),
            ],
        )

    def contracts(self, invoice: _Invoice) -> None:
        """Contract commitments (true-up) and early-termination fees, before discounts."""
        terms = self.terms.get(invoice.account_id)
        for contract in terms.contracts if terms else []:
            if contract.currency != invoice.currency:
                continue
            first, end = self.period.start, self.period.end
            due = contract.committed(first, end)
            if due is not None:
                committed, covers = due
                spent = invoice.subtotal(("recurring", "usage", "commitment"))
                earlier = Decimal(0)
                if contract.commitment_per == "year":
                    earlier = self.contract_spend.get((invoice.account_id, contract.id), Decimal(0))
                billed = earlier + spent
                if billed < committed:
                    shortfall = MONEY_CONTEXT.subtract(committed, billed)
                    _invoice_line(
                        invoice,
                        f"contract:{contract.id}:commitment",
                        name=f"Contract {contract.id} commitment true-up",
                        kind="commitment",
                        precise=shortfall,
                        description=f"Contract {contract.id}: committed {plain(committed)} "
                        f"for {covers}, billed {plain(billed)}: true-up {plain(shortfall)}",
                        details=[
                            ChargeDetail(f"committed for {covers}", Decimal(1), committed),
                            ChargeDetail(
                                "billed earlier in the year", Decimal(1), earlier.copy_negate()
                            ),
                            ChargeDetail("billed this period", Decimal(1), spent.copy_negate()),
                        ],
                    )
            fee = contract.termination_fee_due(first, end)
            if fee:
                _invoice_line(
                    invoice,
                    f"contract:{contract.id}:termination",
                    name=f"Contract {contract.id} early termination",
                    kind="commitment",
                    model="termination_fee",
                    precise=fee,
                    description=f"Contract {contract.id} ended on {contract.terminated_on}, "
                    f"before its term ends on {contract.term_end}: early-termination fee "
                    f"{plain(fee)}",
                    details=[
                        ChargeDetail(
                            f"fixed fee {plain(contract.termination_fee)} + "
                            f"{plain(contract.termination_fee_percent)}% of the commitment left",
                            Decimal(1),
                            fee,
                        )
                    ],
                )

    def discounts(self, invoice: _Invoice, plan_discounts: list[tuple[str, Discount]]) -> None:
        terms = self.terms.get(invoice.account_id)
        loose = (
            [d for d in terms.discounts if d.kind == "fixed" and not d.currency] if terms else []
        )
        home = self.home_currency(invoice.account_id) if loose else None
        if loose and home is None:
            for discount in loose:
                self._once(
                    invoice.account_id,
                    "discount_without_currency",
                    f"fixed discount {discount.id!r} names no currency and the account "
                    f"has invoices in {', '.join(self.currencies(invoice.account_id))}: it "
                    "was not applied; give it a currency",
                )
        found = plan_discounts + [
            ("account", d)
            for d in (terms.effective_discounts(invoice.currency, home) if terms else [])
        ]
        for source, discount in found:
            covered = discount.covered_days(self.period.start, self.period.end)
            share = MONEY_CONTEXT.divide(Decimal(covered), Decimal(self.period.days))
            # A plan's discount reaches only that plan's lines; an account's, every line.
            lines = [
                line for line in invoice.lines if source == "account" or line["plan_id"] == source
            ]
            if discount.applies_to == "invoice":
                targets = [
                    line
                    for line in lines
                    if line["charge_kind"] in ("recurring", "usage", "commitment")
                ]
            else:
                targets = [
                    line
                    for line in lines
                    if line["charge_id"] == discount.applies_to
                    and line["charge_kind"] in ("recurring", "usage")
                ]
            base = sum((line["amount"] for line in targets), Decimal(0))
            # A line billed for other days than the period's (a fee in advance, a credit
            # for unused days) is discounted by the days of its own service in the window:
            # the discounted amount is that of those days, whatever the rest of the invoice.
            serviced = any(t.get("service") for t in targets)
            per_line = False
            if discount.kind == "percentage" and serviced:
                in_window = sum(
                    (
                        MONEY_CONTEXT.multiply(line["amount"], self._in_window(discount, line))
                        for line in targets
                    ),
                    Decimal(0),
                )
                per_line = in_window != base or covered != self.period.days
                base, share = in_window, Decimal(1)
            if base <= 0:
                continue
            if discount.kind == "percentage":
                full = MONEY_CONTEXT.multiply(
                    MONEY_CONTEXT.multiply(base, discount.value / Decimal(100)), share
                )
            else:
                full = MONEY_CONTEXT.multiply(min(discount.value, base), share)
            # Stacked discounts never take the invoice below zero; one weighed by service
            # days never takes more than those days' amount less the discounts before it
            # (this month's credits may leave the invoice below zero already).
            remaining = invoice.subtotal(("recurring", "usage", "commitment", "discount"))
            if serviced:
                remaining = base - sum(
                    (
                        amount
                        for target, amount in invoice.discounted
                        if "invoice" in (target, discount.applies_to)
                        or target == discount.applies_to
                    ),
                    Decimal(0),
                )
            precise = min(full, max(remaining, Decimal(0)))
            if precise <= 0:
                continue
            invoice.discounted.append((discount.applies_to, precise))
            label = (
                f"{plain(discount.value)}%"
                if discount.kind == "percentage"
                else f"{plain(discount.value)} {invoice.currency}"
            )
            _invoice_line(
                invoice,
                f"discount:{discount.id}",
                line_key=f"discount:{source}:{discount.id}",
                name=discount.name,
                kind="discount",
                unit="discount",
                proration_factor=None if per_line or covered == self.period.days else share,
                precise=precise.copy_negate(),
                description=f"{discount.name}: {label} off {plain(base)} "
                f"({discount.applies_to})"
                + (
                    ", for the days of each line's service it is valid on"
                    if per_line
                    else ""
                    if covered == self.period.days
                    else f", valid {covered} of {self.period.days} days"
                ),
                details=[ChargeDetail(f"{label} of {plain(base)}", share, precise.copy_negate())],
            )

    def unplaced_discounts(self) -> None:
        """Say which fixed account discounts valid in the period found no invoice in their
        currency (`Discount.currency`, or the account's own)."""
        for account_id, terms in self.terms.items():
            fixed = [
                d
                for d in terms.discounts
                if d.kind == "fixed" and d.covered_days(self.period.start, self.period.end)
            ]
            invoiced = self.currencies(account_id) if fixed else []
            home = self.home_currency(account_id) if invoiced else None
            for discount in fixed if invoiced else []:
                currency = discount.currency or home
                if currency is not None and currency not in invoiced:
                    self._once(
                        account_id,
                        "discount_unplaced",
                        f"fixed discount {discount.id!r} is in {currency}, and the account has "
                        f"no {currency} invoice this period (it has {', '.join(invoiced)}): "
                        "it was not applied",
                    )

    def _in_window(self, discount: Discount, line: Mapping[str, Any]) -> Decimal:
        """The share of a line's service days a discount is valid on (the period's, for a
        line with no service of its own)."""
        first, end = line.get("service") or (self.period.start, self.period.end)
        days = (end - first).days
        if days <= 0:
            return Decimal(0)
        return MONEY_CONTEXT.divide(Decimal(discount.covered_days(first, end)), Decimal(days))

    def tax(self, invoice: _Invoice) -> None:
        if not self.catalog.taxes:
            return
        terms = self.terms.get(invoice.account_id)
        if terms and terms.tax_exempt:
            return
        account = self.accounts.get(invoice.account_id, {})
        jurisdiction = (terms.tax_jurisdiction if terms else None) or account.get("country")
        jurisdiction = str(jurisdiction).upper() if jurisdiction else None  # as taxes are keyed
        rate = self.catalog.taxes.get(jurisdiction) if jurisdiction else None
        if rate is None:
            self.notices.append(
                {
                    "account_id": invoice.account_id,
                    "kind": "missing_tax_rate",
                    "message": (
                        f"no tax rate for jurisdiction {jurisdiction!r}"
                        if jurisdiction
                        else "no tax jurisdiction: the account has no country and its terms "
                        "no tax_jurisdiction"
                    )
                    + "; the invoice has no tax line",
                }
            )
            return
        base = invoice.subtotal(("recurring", "usage", "commitment", "discount"))
        precise = MONEY_CONTEXT.multiply(base, rate.rate)
        _invoice_line(
            invoice,
            f"tax:{jurisdiction}",
            name=rate.name,
            kind="tax",
            quantity=base,
            unit=invoice.currency,
            unit_price=rate.rate,
            precise=precise,
            description=f"{rate.name} ({jurisdiction}) {plain(rate.rate * 100)}% of "
            f"{base:,f} {invoice.currency}",
            details=[
                ChargeDetail(f"{rate.name} on the subtotal", base, precise, unit_price=rate.rate)
            ],
        )

    def credits(self, invoice: _Invoice) -> None:
        terms = self.terms.get(invoice.account_id)
        if terms is None:
            return
        due = invoice.subtotal(KIND_ORDER)
        for credit in sorted(terms.credits, key=lambda c: (c.expires_on or date.max, c.id)):
            if credit.currency != invoice.currency or due <= 0:
                continue
            if credit.granted_on >= self.period.end or (
                credit.expires_on is not None and credit.expires_on <= self.period.start
            ):
                continue
            used = self.credits_used.get((invoice.account_id, credit.id), Decimal(0))
            balance = credit.amount - used
            drawn = min(balance, due)
            if drawn <= 0:
                continue
            due -= drawn
            _invoice_line(
                invoice,
                f"credit:{credit.id}",
                name="Prepaid credit",
                kind="credit",
                quantity=drawn,
                unit=invoice.currency,
                precise=drawn.copy_negate(),
                description=f"Prepaid credit {credit.id}: {plain(drawn)} drawn, "
                f"{plain(balance - drawn)} left",
                details=[
                    ChargeDetail("balance before", balance, Decimal(0)),
                    ChargeDetail("drawn on this invoice", drawn, drawn.copy_negate()),
                ],
            )


# A line's place in the rated lines: its invoice's rank (`_inv`), then the invoice's
# plain lines (`_listed` 0, in subscription and charge order) before the lines in its
# `lines` (`_listed` 1, in their order); `_pos` orders each part.
_ORDER = ("_inv", "_listed", "_pos")
_INDEX_BITS = 32  # a listed line is known by (rank << _INDEX_BITS) | its index


class _FrameLines:
    """Lines priced as frames (usage and call-deck charges, whole-period fixed fees).

    Most go into the rated lines as they are: the plain lines (`split`), on invoices that
    need none of them one by one. The invoice steps see each other line as a small dict
    of the fields they read (`refs`, by subscription and charge key)."""

    _REF_COLUMNS = ("line_id", "subscription_id", "plan_id", "charge_id", "charge_kind")
    _KEYS = pl.Schema({"line_id": pl.String, "subscription_id": pl.String, "charge_id": pl.String})

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.refs: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, lines: pl.DataFrame) -> None:
        # A ref's `amount` keeps the currency's scale, as lines priced one by one have it.
        self.frames.append(
            lines.select(*LINE_SCHEMA, pl.col("amount").cast(pl.String).alias("_amount"))
            .cast(LINE_SCHEMA)
            .with_columns(pl.lit(len(self.frames), pl.Int64).alias("_frame"))
        )

    def covered(self) -> pl.DataFrame:
        """`subscription_id` and `charge_id` of every frame line; a line priced twice is
        an error."""
        keys = pl.concat(
            [pl.DataFrame(schema=self._KEYS)] + [f.select(*self._KEYS) for f in self.frames]
        )
        twice = keys.filter(pl.struct("subscription_id", "charge_id").is_duplicated())
        if twice.height:
            raise RatingError(f"line {twice['line_id'][0]} was priced twice")
        return keys.drop("line_id")

    def split(self, plain: pl.Series) -> pl.DataFrame:
        """The lines of the `plain` subscriptions, as one frame; a ref for every other."""
        taken = pl.col("subscription_id").is_in(plain.implode())
        for frame in self.frames:
            rest = frame.filter(~taken).select(*self._REF_COLUMNS, "_amount", "rounding", "_frame")
            for ref in rest.iter_rows(named=True):
                ref["amount"] = Decimal(ref.pop("_amount"))
                self.refs[(ref["subscription_id"], ref["charge_id"])] = ref
        return pl.concat(
            [pl.DataFrame(schema=LINE_SCHEMA)]
            + [f.filter(taken).drop("_frame", "_amount") for f in self.frames]
        )

    def row(self, ref: Mapping[str, Any]) -> dict[str, Any]:
        """The whole line behind a ref, with amounts at the currency's scale."""
        frame = self.frames[ref["_frame"]]
        row: dict[str, Any] = frame.row(
            by_predicate=pl.col("line_id") == ref["line_id"], named=True
        )
        del row["_frame"], row["_amount"]
        return {**row, "amount": ref["amount"]}

    def assemble(self, invoices: list[_Invoice], plain: pl.DataFrame) -> pl.DataFrame:
        """Every line, invoice by invoice in the order of `invoices`: first the invoice's
        plain lines (`plain`, placed by `_placed`), then its `lines` (dicts, and refs to
        frame lines) in their order."""
        own: list[dict[str, Any]] = []
        own_at: list[int] = []
        placed: list[dict[str, int]] = [{} for _ in self.frames]  # line id -> position
        for rank, invoice in enumerate(invoices):
            for index, line in enumerate(invoice.lines):
                at = (rank << _INDEX_BITS) | index
                if "_frame" not in line:
                    own.append(line)
                    own_at.append(at)
                elif line["line_id"] in placed[line["_frame"]]:
                    raise RatingError(f"line {line['line_id']} was invoiced twice")
                else:
                    placed[line["_frame"]][line["line_id"]] = at
        priced = sum("_frame" in ref for ref in self.refs.values())
        invoiced = sum(len(p) for p in placed)
        if invoiced != priced:
            raise RatingError(f"{priced} lines were priced as refs, {invoiced} invoiced")
        code = pl.col("_at")
        listed: list[pl.Expr] = [
            (code // (1 << _INDEX_BITS)).alias("_inv"),
            pl.lit(1, pl.Int64).alias("_listed"),
            (code % (1 << _INDEX_BITS)).alias("_pos"),
        ]
        parts = [
            plain.select(*LINE_SCHEMA, *_ORDER),
            pl.from_dicts(own, schema=LINE_SCHEMA)
            .with_columns(pl.Series("_at", own_at, dtype=pl.Int64))
            .select(*LINE_SCHEMA, *listed),
        ]
        # A frame line gets its place as one more column; a line taken off its frame
        # (re-rounded on an invoice that rounds otherwise) has none and is left out.
        for frame, positions in zip(self.frames, placed, strict=True):
            parts.append(
                frame.with_columns(
                    pl.col("line_id")
                    .replace_strict(positions, default=None, return_dtype=pl.Int64)
                    .alias("_at")
                )
                .filter(code.is_not_null())
                .select(*LINE_SCHEMA, *listed)
            )
        return pl.concat(parts).sort(*_ORDER).drop(*_ORDER)


_USAGE_RANK = 1 << 16  # a subscription's usage lines come after its recurring fees


def _charge_table(subs: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """For each plan and add-ons of `subs`: every charge key, its line's rank among a
    subscription's lines (recurring fees in charge order, then usage in charge order, as
    `rate` adds them), and whether every subscription gets that line (`_always`: a fixed
    fee, or a usage charge with a minimum amount)."""
    rows = []
    for plan_id, add_ons in subs.select("plan_id", "add_ons").unique().iter_rows():
        if plan_id not in catalog.plans:
            continue
        charges = catalog.plan_charges(plan_id, _add_ons({"add_ons": add_ons}))
        for index, (key, charge) in enumerate(charges):
            recurring = charge.kind == "recurring"
            always = recurring or (
                charge.metric is not None
                and charge.level == "aggregate"
                and charge.minimum_amount is not None
            )
            rows.append((plan_id, add_ons, key, index + (0 if recurring else _USAGE_RANK), always))
    return pl.DataFrame(
        rows,
        schema={
            "plan_id": pl.String,
            "add_ons": pl.String,
            "charge_id": pl.String,
            "_charge_rank": pl.Int64,
            "_always": pl.Boolean,
        },
        orient="row",
    )


def _plain_subscriptions(
    ranked: pl.DataFrame,
    subscriptions: pl.DataFrame,
    catalog: Catalog,
    histories: Mapping[str, History],
    terms: Mapping[str, AccountTerms],
    priced_alone: set[str],
    charges: pl.DataFrame,
    covered: pl.DataFrame,
) -> pl.DataFrame:
    """The subscriptions (rows of `ranked`) of the accounts whose invoices are plain:
    every line is a frame line rounded as its invoice rounds, and no invoice step reads
    a line one by one. Such an account has no terms (contracts, discounts, credits or
    prices of its own) and no subscription with a history; its plans have no commitment
    and no discount and round alike per currency; and none of its subscriptions has a
    line priced alone (`priced_alone`) or a line that every subscription gets missing
    from the frames. Tax reads only each invoice's subtotals (`_Invoice.plain`)."""
    plans = pl.DataFrame(
        [
            (
                plan_id,
                plan.currency,
                plan.rounding.value,
                plan.minimum_commitment is None and not plan.discounts,
            )
            for plan_id, plan in catalog.plans.items()
        ],
        schema={
            "plan_id": pl.String,
            "currency": pl.String,
            "rounding": pl.String,
            "_plain": pl.Boolean,
        },
        orient="row",
    )
    subs = ranked.join(plans, on="plan_id", how="left")
    missing = ranked.join(
        charges.filter("_always"), on=["plan_id", "add_ons"], nulls_equal=True
    ).join(covered, on=["subscription_id", "charge_id"], how="anti")
    mixed = subs.group_by("account_id", "currency").agg(pl.col("rounding").n_unique() > 1)
    histories_of = conform_subscriptions(subscriptions).filter(
        pl.col("subscription_id").is_in(list(histories))
    )
    not_plain = pl.concat(
        [
            pl.Series(list(terms), dtype=pl.String),
            histories_of["account_id"],
            subs.filter(
                ~pl.col("_plain").fill_null(False)
                | pl.col("subscription_id").is_in(list(priced_alone))
            )["account_id"],
            missing["account_id"],
            mixed.filter("rounding")["account_id"],
        ]
    )
    return subs.filter(~pl.col("account_id").is_in(not_plain.implode()))


def _placed(
    plain: pl.DataFrame, subs: pl.DataFrame, charges: pl.DataFrame, invoices: list[_Invoice]
) -> pl.DataFrame:
    """The plain lines with their place (`_ORDER`, see `_FrameLines.assemble`): by
    invoice, then by subscription (`_sub_rank` in `subs`) and the charge's rank."""
    ranks = pl.DataFrame(
        {
            "account_id": [i.account_id for i in invoices],
            "currency": [i.currency for i in invoices],
            "_inv": range(len(invoices)),
        },
        schema={"account_id": pl.String, "currency": pl.String, "_inv": pl.Int64},
    )
    keys = plain.select("subscription_id", "charge_id", "account_id", "currency").with_row_index(
        "_line"
    )
    where = (
        keys.join(
            subs.select("subscription_id", "add_ons", "plan_id", "_sub_rank"), on="subscription_id"
        )
        .join(charges.drop("_always"), on=["plan_id", "add_ons", "charge_id"], nulls_equal=True)
        .join(ranks, on=["account_id", "currency"])
        .sort("_line")
    )
    if where.height != plain.height:
        raise RatingError(f"{plain.height} plain lines, {where.height} placed on invoices")
    return plain.with_columns(
        where["_inv"],
        pl.lit(0, pl.Int64).alias("_listed"),
        (where["_sub_rank"].cast(pl.Int64) * (2 * _USAGE_RANK) + where["_charge_rank"]).alias(
            "_pos"
        ),
    )


def _fixed_frame_lines(
    frames: _FrameLines,
    subs: pl.DataFrame,
    catalog: Catalog,
    period: BillingPeriod,
    histories: Mapping[str, History],
    own: set[tuple[str, str, str]],
) -> None:
    """Fixed fees of the subscriptions billed for the whole period, priced as frames
    (`aggregate_rating.price_fixed_lines`). Subscriptions with a history, part of the
    period, or an account price for the fee are priced one by one (`_Rater.recurring`)."""
    whole = subs.filter(
        ~pl.col("subscription_id").is_in(list(histories)) & _covers_period(period)
    ).select(
        "subscription_id", "account_id", "plan_id", "add_ons", pl.col("quantity").alias("seats")
    )
    combos = whole.select("plan_id", "add_ons").unique().sort("plan_id", "add_ons", nulls_last=True)
    for plan_id, add_ons in combos.iter_rows():
        plan = catalog.plans.get(plan_id)
        if plan is None:
            continue
        scope = whole.filter((pl.col("plan_id") == plan_id) & pl.col("add_ons").eq_missing(add_ons))
        for key, charge in catalog.plan_charges(plan_id, _add_ons({"add_ons": add_ons})):
            if charge.kind != "recurring" or not fixed_frame_ready(charge):
                continue
            priced = price_fixed_lines(
                charge,
                _list_priced(scope, own, plan_id, key),
                days=period.days,
                currency=plan.currency,
                rounding=plan.rounding,
            )
            frames.add(
                line_frame(
                    priced, key=key, charge=charge, currency=plan.currency, rounding=plan.rounding
                ),
            )


def _own_prices(terms: Mapping[str, AccountTerms]) -> set[tuple[str, str, str]]:
    """(account, plan, charge key) of every account price override or contract price."""
    return {
        (account_id, o.plan_id, o.charge_id)
        for account_id, t in terms.items()
        for o in t.effective_overrides()
    }


def _list_priced(
    frame: pl.DataFrame, own: set[tuple[str, str, str]], plan_id: str, key: str
) -> pl.DataFrame:
    """The rows of `frame` (one plan's subscriptions) whose account has no price of its
    own for the charge: those `_override` would leave at the list price."""
    accounts = [a for a, p, k in own if p == plan_id and k == key]
    return frame.filter(~pl.col("account_id").is_in(accounts)) if accounts else frame


def _frame_lines(
    plan: Plan,
    plan_id: str,
    key: str,
    charge: ChargeBase,
    metric_unit: str,
    totals: pl.DataFrame,
    subs: pl.DataFrame,
    own: set[tuple[str, str, str]],
    period_days: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Price a charge's period totals (`subscription_id`, `quantity`, `events`) as one
    frame; see `pricing_rules.aggregate_rating`. `subs` has each subscription's
    `served_days` of the period's `period_days`. Returns the lines and the totals left to
    price one by one: an account with its own price for the charge (`_override` decides
    that price) or a negative quantity."""
    scoped = totals.join(
        subs.select(
            "subscription_id",
            "account_id",
            "plan_id",
            pl.col("quantity").alias("seats"),
            "served_days",
        ),
        on="subscription_id",
    )
    framed = _list_priced(scoped, own, plan_id, key).filter(pl.col("quantity") >= 0)
    priced = price_usage_lines(
        charge,
        framed,
        metric_unit=metric_unit,
        currency=plan.currency,
        rounding=plan.rounding,
        period_days=period_days,
    )
    lines = line_frame(
        priced, key=key, charge=charge, currency=plan.currency, rounding=plan.rounding
    )
    rest = totals.join(framed.select("subscription_id"), on="subscription_id", how="anti")
    return lines, rest


def _unmatched_terms(
    subscriptions: pl.DataFrame,
    histories: Mapping[str, History],
    catalog: Catalog,
    terms: Mapping[str, AccountTerms],
) -> list[dict[str, str]]:
    """Terms that would silently change nothing: an override or a discount naming no
    charge of any plan the account's subscriptions have had or will have (a typo in a
    plan or charge id), and an override of a call charge, whose rates come from its deck.
    Say so."""
    notices = []
    rows = conform_subscriptions(subscriptions).filter(pl.col("account_id").is_in(list(terms)))
    subs_of: dict[str, list[dict[str, Any]]] = {}
    for row in rows.iter_rows(named=True):
        subs_of.setdefault(row["account_id"], []).append(row)
    for account_id, account_terms in terms.items():
        charges: dict[tuple[str, str], ChargeBase] = {}
        for sub in subs_of.get(account_id, []):
            history = histories.get(sub["subscription_id"])
            plans = {sub["plan_id"], *(c.plan for c in (history.changes if history else []))}
            add_ons = [a for a in _add_ons(sub) if a in catalog.add_ons]  # others: a notice
            for plan_id in sorted(p for p in plans if p and p in catalog.plans):
                for key, charge in catalog.plan_charges(plan_id, add_ons):
                    charges[(plan_id, key)] = charge
        for override in account_terms.effective_overrides():
            target = charges.get((override.plan_id, override.charge_id))
            if target is None:
                notices.append(
                    {
                        "account_id": account_id,
                        "kind": "override_unmatched",
                        "message": f"price override of {override.plan_id}/"
                        f"{override.charge_id} matches no charge of the account's "
                        "subscriptions; check the plan and charge ids",
                    }
                )
            elif isinstance(target, CallDeckCharge):
                notices.append(
                    {
                        "account_id": account_id,
                        "kind": "override_invalid",
                        "message": f"price override of {override.plan_id}/"
                        f"{override.charge_id}: calls are priced from deck {target.deck!r}, "
                        "so the override was not applied; give the account a plan with "
                        "its own deck",
                    }
                )
        keys = {key for _, key in charges}
        for discount in account_terms.effective_discounts():
            if discount.applies_to != "invoice" and discount.applies_to not in keys:
                notices.append(
                    {
                        "account_id": account_id,
                        "kind": "discount_unmatched",
                        "message": f"discount {discount.id!r} applies to charge "
                        f"{discount.applies_to!r}, which none of the account's subscriptions "
                        "has; check the charge id",
                    }
                )
    return notices


def _covers_period(period: BillingPeriod) -> pl.Expr:
    """A subscription row active on every day of the period."""
    return (pl.col("start_date") <= period.start) & (
        pl.col("end_date").is_null() | (pl.col("end_date") >= period.end)
    )


def _split_by_day(subs: pl.DataFrame, period: BillingPeriod) -> list[str]:
    """Accounts whose usage is attributed day by day: all with a subscription in the
    period, except those with exactly one, active on every day of it."""
    counted = subs.group_by("account_id").agg(
        pl.len(), _covers_period(period).all().alias("covers")
    )
    return counted.filter((pl.col("len") > 1) | ~pl.col("covers"))["account_id"].to_list()


def _served_days(
    subs: pl.DataFrame,
    histories: Mapping[str, History],
    catalog: Catalog,
    period: BillingPeriod,
    zones: Mapping[str, str],
) -> pl.Series:
    """The days of the period each subscription is billed for on its plan: its row's, or
    its history's active days on the plan in force (no trial, no pause, not the days of
    a plan it left; `lifecycle.billable_days`). They prorate a plan's commitment and a
    charge's minimum."""
    from pricing_rules.lifecycle import billable_days, cycle_for

    first = pl.max_horizontal(pl.col("start_date"), pl.lit(period.start))
    end = pl.min_horizontal(pl.col("end_date").fill_null(period.end), pl.lit(period.end))
    served = subs.select(
        (end - first).dt.total_days().clip(lower_bound=0).cast(pl.Int64).alias("served_days")
    )["served_days"].to_list()
    with_history = subs.with_row_index("_index").filter(
        pl.col("subscription_id").is_in(list(histories))
    )
    for index, sub_id, account_id, plan_id in with_history.select(
        "_index", "subscription_id", "account_id", "plan_id"
    ).iter_rows():
        history = histories[sub_id]
        cycle = cycle_for(history, catalog, zones.get(account_id, "UTC"))
        served[index] = billable_days(history, catalog, cycle, period.start, period.end, plan_id)
    return pl.Series("served_days", served, pl.Int64)


def _known_add_ons(
    subs: pl.DataFrame, catalog: Catalog, notices: list[dict[str, str]]
) -> pl.DataFrame:
    """Drop add-ons the catalog does not define or that are priced in another currency than
    the plan's, each with a notice (a finding later)."""
    kept: list[str | None] = subs["add_ons"].to_list()
    listed = subs.with_row_index("_index").filter(pl.col("add_ons").is_not_null())
    for sub in listed.iter_rows(named=True):
        names = _add_ons(sub)
        unknown = [a for a in names if a not in catalog.add_ons]
        for name in unknown:
            notices.append(
                {
                    "account_id": sub["account_id"],
                    "kind": "unknown_add_on",
                    "message": f"subscription {sub['subscription_id']} has add-on {name!r}, "
                    "which the catalog does not define; its charges were not billed",
                }
            )
        known = [a for a in names if a in catalog.add_ons]
        plan = catalog.plans.get(sub["plan_id"])
        priced_in = {a: catalog.add_on_currencies(a) for a in known}
        mismatched = [
            a
            for a in known
            if plan is not None and priced_in[a] and plan.currency not in priced_in[a]
        ]
        for name in mismatched:
            notices.append(
                {
                    "account_id": sub["account_id"],
                    "kind": "add_on_currency_mismatch",
                    "message": f"subscription {sub['subscription_id']} adds {name!r}, priced "
                    f"in {', '.join(priced_in[name])}, to a "
                    f"{plan.currency if plan else '?'} plan; its charges were not billed",
                }
            )
        known = [a for a in known if a not in mismatched]
        kept[sub["_index"]] = ",".join(known) or None
    return subs.with_columns(pl.Series("add_ons", kept, dtype=pl.String))


def _add_ons(sub: Mapping[str, Any]) -> list[str]:
    """The subscription's add-on names, each once: an add-on listed twice is billed once."""
    text = sub.get("add_ons")
    names = [a.strip() for a in str(text).split(",") if a.strip()] if text else []
    return list(dict.fromkeys(names))


def active_on(day: str) -> pl.Expr:
    """The subscription row (`start_date`, `end_date`) is active on the date in `day`:
    `start_date <= day < end_date`, an open end never ending."""
    return (pl.col(day) >= pl.col("start_date")) & (
        pl.col("end_date").is_null() | (pl.col(day) < pl.col("end_date"))
    )


def charge_filter(charge: ChargeBase) -> pl.Expr:
    expr = pl.col("metric") == charge.metric
    for key, value in charge.filters.items():
        expr = expr & (pl.col(key) == value)
    return expr


def _day_position(instant: datetime, zone: str) -> Decimal:
    """Local calendar days since day 1 at `instant`: the date's ordinal plus the part of
    that local day gone, so a 23- or 25-hour day still counts as one day."""
    day = instant.astimezone(ZoneInfo(zone)).date()
    start, end = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
    gone = MONEY_CONTEXT.divide(
        Decimal((instant - start) // timedelta(microseconds=1)),
        Decimal((end - start) // timedelta(microseconds=1)),
    )
    return Decimal(day.toordinal()) + gone


def _user_allowances(
    chosen: pl.DataFrame, charge: ChargeBase, metric: Metric
) -> dict[str, Decimal]:
    """Per subscription, what the charge's allowance per user covers: each user's
    quantity (the value of the allowance's dimension) against their own units, in the
    price unit. Usage with no user has no allowance."""
    assert charge.free_units is not None and charge.free_units.dimension is not None
    user = charge.free_units.dimension
    factor = conversion_factor(metric.unit, charge.price_unit or metric.unit)
    per_user = (
        chosen.filter(pl.col(user).is_not_null())
        .group_by("subscription_id", user)
        .agg(_combine(metric).alias("quantity"))
    )
    # Exact fractions, rounded once per subscription as the line's quantity is: users all
    # inside their units then cover exactly the line's quantity, never 1e-12 short of it.
    units = Fraction(charge.free_units.units)
    found: dict[str, list[Fraction]] = {}
    for sub_id, _, quantity in per_user.iter_rows():
        found.setdefault(sub_id, []).append(Fraction(quantity) * factor)
    return {
        sub_id: _quantity_of(user_allowance(units, quantities))
        for sub_id, quantities in found.items()
    }


# What a time-weighted quantity is held per: a run's period is a month.
_HELD_PER = {"period": "month", "day": "day", "hour": "hour"}


def _time_weighted(
    usage: pl.LazyFrame,
    subs: pl.DataFrame,
    charge: ChargeBase,
    metric: Metric,
    period: BillingPeriod,
    zones: Mapping[str, str],
) -> dict[str, Decimal]:
    """Σ value x time held, per subscription, over the readings the charge's filters
    select, in the metric's `time_unit`: periods (seat-months on a monthly plan), local
    calendar days (seat-days) or hours.

    A reading holds until the next one or the end of the subscription's window; before
    the first reading in the window the value is zero. The period is the account's local
    month, so a month with a daylight-saving change is an hour longer or shorter; a local
    day is one day however long it is.
    """
    events = (
        usage.filter(charge_filter(charge))
        .join(
            subs.lazy().select("subscription_id", "account_id", "start_date", "end_date"),
            on="account_id",
        )
        .filter(active_on("local_day"))
        .collect()
        .sort("subscription_id", "timestamp")
    )
    weighted: dict[str, Decimal] = {}
    for (sub_id,), group in events.group_by(["subscription_id"], maintain_order=True):
        zone = zones.get(group["account_id"][0]) or "UTC"
        start_at, window_end = period.local_bounds(zone)
        total_micros = Decimal((window_end - start_at) // timedelta(microseconds=1))
        end = group["end_date"][0]
        if end is not None:
            window_end = min(window_end, local_midnight(end, zone))
        times = [*group["timestamp"].to_list(), window_end]
        values = group["quantity"].to_list()
        if metric.time_unit == "day":
            at = [_day_position(t, zone) for t in times]
            spans = [MONEY_CONTEXT.subtract(b, a) for a, b in pairwise(at)]
            whole = Decimal(1)
        else:
            spans = [Decimal((b - a) // timedelta(microseconds=1)) for a, b in pairwise(times)]
            whole = total_micros if metric.time_unit == "period" else Decimal(3_600_000_000)
        pairs = zip(spans, values, strict=True)
        held = sum((MONEY_CONTEXT.multiply(span, value) for span, value in pairs), Decimal(0))
        weighted[str(sub_id)] = MONEY_CONTEXT.divide(held, whole).quantize(
            Decimal(1).scaleb(-QUANTITY_SCALE), context=MONEY_CONTEXT
        )
    return weighted


def rate(
    usage: pl.LazyFrame,
    subscriptions: pl.DataFrame,
    catalog: Catalog,
    period: BillingPeriod,
    *,
    accounts: pl.DataFrame | None = None,
    terms: Mapping[str, AccountTerms] | None = None,
    credits_used: Mapping[tuple[str, str], Decimal] | None = None,
    histories: Mapping[str, History] | None = None,
    proration: Proration = "day",
    contract_spend: Mapping[tuple[str, str], Decimal] | None = None,
    local_months: bool = True,
) -> RatingResult:
    """Price a period: recurring fees for every active subscription, usage by charge,
    commitments, discounts, tax and prepaid credits.

    `usage` holds valid events with canonical quantities (see `validation.schemas`).
    Usage nobody pays for is returned in `unrated` with a reason, never priced at zero:
    `no_subscription`, `unknown_plan`, `metric_not_priced`, `no_matching_charge`, or a
    rate-deck reason such as `no_rate_for_destination`.

    A subscription with a history in `histories` (keyed by subscription id) has its fixed
    fees from that history: prorated segments, credits for unused time and the next
    period in advance (`pricing_rules.lifecycle`), by day or by second.

    Account terms may hold contracts (`pricing_rules.contracts`): ramp discounts and
    prices, a commitment true-up (per year against `contract_spend`, the spend on earlier
    invoices of the contract year per (account, contract id)) and early-termination fees.

    Usage falls on the account's local days (its `timezone` in `accounts`); with
    `local_months=False` (a month billed in UTC months) on UTC days.
    """
    counts = subscriptions["subscription_id"].value_counts().filter(pl.col("count") > 1)
    if counts.height:
        repeated, rows = counts.row(0)
        raise RatingError(
            f"subscription {repeated} is on {rows} rows; a subscription id names one row "
            "(a history holds its changes)"
        )
    histories = _ended_by_rows(
        {
            **_own_cycle_histories(subscriptions, catalog),
            **_stored_histories(subscriptions),
            **(histories or {}),
        },
        subscriptions,
    )
    subs = _in_force(active_subscriptions(subscriptions, period), histories, catalog, period)
    present = set(usage.collect_schema().names())
    usage = usage.with_columns(
        pl.lit(None, pl.String).alias(d) for d in used_dimensions(catalog) if d not in present
    )
    account_info = (
        {row["account_id"]: row for row in accounts.iter_rows(named=True)}
        if accounts is not None
        else {}
    )
    # Usage days follow the account's zone, except in a month billed in UTC months before
    # local months existed; call time bands follow the zone either way.
    zones = (
        {a: str(row.get("timezone") or "UTC") for a, row in account_info.items()}
        if local_months
        else {}
    )
    # Events are within a day of the period in UTC (validation places them by local month).
    window = period.start_at - timedelta(days=2), period.end_at + timedelta(days=2)
    usage = with_local_day(usage, zones, *window)
    rater = _Rater(catalog, period, account_info, terms or {}, credits_used or {}, contract_spend)
    subs = _known_add_ons(subs, catalog, rater.notices)
    subs = subs.with_columns(_served_days(subs, histories, catalog, period, zones))
    rater.notices.extend(_versions_not_offered(subs, histories, catalog))
    by_day = _split_by_day(subs, period)
    partials = partial_usage(usage, catalog, by_day, spans=False).collect(engine="streaming")
    covered, orphan = attribute(partials, subs)

    keys = ["account_id", "subscription_id", "plan_id", "metric"]
    # (partial rows, keys, reason) of usage nobody pays for; unrated once its days are known
    unpriced = [(orphan, ["account_id", "metric"], "no_subscription")]
    known = covered.filter(pl.col("plan_id").is_in(list(catalog.plans)))
    unpriced.append(
        (covered.filter(~pl.col("plan_id").is_in(list(catalog.plans))), keys, "unknown_plan")
    )

    rated_rows: set[int] = set()
    usage_by_sub: dict[tuple[str, str], tuple[Decimal, int]] = {}
    # what an allowance per user covers, per (subscription, charge key), in the price unit
    user_free: dict[tuple[str, str], Decimal] = {}
    frame_lines = _FrameLines()
    own = _own_prices(terms or {})
    combos = known.select("plan_id", "add_ons").unique().sort("plan_id", "add_ons", nulls_last=True)
    for plan_id, add_ons in combos.iter_rows():
        scope = known.filter(
            (pl.col("plan_id") == plan_id) & (pl.col("add_ons").eq_missing(add_ons))
        )
        claimed: dict[int, str] = {}
        for key, charge in catalog.plan_charges(plan_id, _add_ons({"add_ons": add_ons})):
            if charge.kind != "usage" or charge.metric is None:
                continue
            chosen = scope.filter(charge_filter(charge))
            for row_id in chosen["_row"].to_list():
                if row_id in claimed:
                    raise RatingError(
                        f"charges {claimed[row_id]!r} and {key!r} of plan {plan_id} with "
                        f"add-ons {add_ons or 'none'} both price the same "
                        f"{charge.metric!r} usage; an event must be billed by one charge"
                    )
                claimed[row_id] = key
            rated_rows.update(claimed)
            if charge.level == "event":
                continue
            metric = catalog.metrics[charge.metric]
            totals = chosen.group_by("subscription_id").agg(
                _combine(metric).alias("quantity"), pl.col("events").sum()
            )
            if charge.free_units is not None and charge.free_units.per == "user":
                covered_by_users = _user_allowances(chosen, charge, metric)
                user_free.update({(sub_id, key): v for sub_id, v in covered_by_users.items()})
                totals = totals.with_columns(
                    pl.col("subscription_id")
                    .replace_strict(covered_by_users, default=Decimal(0), return_dtype=QUANTITY)
                    .alias("allowance")
                )
            weighted = (
                _time_weighted(
                    usage,
                    subs.filter(
                        pl.col("subscription_id").is_in(totals["subscription_id"].implode())
                    ),
                    charge,
                    metric,
                    period,
                    zones,
                )
                if metric.aggregation == "time_weighted_sum"
                else {}
            )
            if metric.aggregation != "time_weighted_sum" and frame_ready(charge, metric.unit):
                framed, totals = _frame_lines(
                    catalog.plans[plan_id],
                    plan_id,
                    key,
                    charge,
                    metric.unit,
                    totals,
                    subs,
                    own,
                    period.days,
                )
                frame_lines.add(framed)
            for sub_id, quantity, events in totals.select(
                "subscription_id", "quantity", "events"
            ).iter_rows():
                # A time-weighted metric's readings are weighed, never summed.
                usage_by_sub[(sub_id, key)] = (
                    weighted[sub_id] if metric.aggregation == "time_weighted_sum" else quantity,
                    events,
                )

    _fixed_frame_lines(frame_lines, subs, catalog, period, histories, own)
    event_lines, event_unrated = _event_charges(
        usage, subs, known, catalog, account_info, by_day, period.days
    )
    for _, priced_calls in event_lines:
        frame_lines.add(priced_calls)
    not_priced = known.filter(~pl.col("_row").is_in(list(rated_rows)))
    priced_metrics = {
        (p, c.metric) for p in catalog.plans for _, c in catalog.plan_charges(p) if c.metric
    }
    metric_gap = (
        not_priced.filter(
            ~pl.struct("plan_id", "metric").map_elements(
                lambda s: (s["plan_id"], s["metric"]) in priced_metrics, return_dtype=pl.Boolean
            )
        )
        if not_priced.height
        else not_priced
    )
    filter_gap = not_priced.join(metric_gap.select("_row"), on="_row", how="anti")
    unpriced.append((metric_gap, keys, "metric_not_priced"))
    unpriced.append((filter_gap, keys, "no_matching_charge"))
    spanned = _with_spans([rows for rows, _, _ in unpriced], usage, used_dimensions(catalog))
    unrated = [
        _unrated_rows(rows, row_keys, reason, catalog)
        for rows, (_, row_keys, reason) in zip(spanned, unpriced, strict=True)
    ]
    unrated.append(event_unrated)

    ranked = subs.with_row_index("_sub_rank")
    charge_table = _charge_table(subs, catalog)
    plain_subs = _plain_subscriptions(
        ranked,
        subscriptions,
        catalog,
        histories,
        terms or {},
        {sub_id for sub_id, _ in usage_by_sub},
        charge_table,
        frame_lines.covered(),
    )
    plain_lines = frame_lines.split(plain_subs["subscription_id"])
    rater.open_plain(plain_subs, plain_lines)
    for sub in subs.filter(
        ~pl.col("subscription_id").is_in(plain_subs["subscription_id"].implode())
    ).iter_rows(named=True):
        plan = catalog.plans.get(sub["plan_id"])
        if plan is None:
            continue
        if sub["subscription_id"] in histories:
            rater.lifecycle(sub, histories[sub["subscription_id"]], proration)
        else:
            rater.recurring(sub, plan, frame_lines)
        for key, charge in rater.charges(sub):
            if charge.kind != "usage" or charge.metric is None:
                continue
            priced_line = frame_lines.refs.get((sub["subscription_id"], key))
            if priced_line is not None:
                rater.add_line(sub["account_id"], plan, priced_line, frame_lines)
                continue
            found = usage_by_sub.get((sub["subscription_id"], key))
            if charge.level == "event" or (found is None and charge.minimum_amount is None):
                continue
            quantity, events = found or (Decimal(0), 0)
            allowance = user_free.get((sub["subscription_id"], key), Decimal(0))
            rater.usage_line(sub, plan, key, charge, quantity, events, allowance)
        rater.commitment(sub, plan)

    # A history starting after the period is billed in advance on this invoice. One whose
    # service ended on the period's first day is settled on it: the credits and arrears
    # the last run could not know of. So is one whose service outlasts its row (a
    # quarterly plan cancelled at its quarter's end, imported with the end of the month).
    outside = conform_subscriptions(subscriptions).filter(
        pl.col("subscription_id").is_in(list(histories))
        & ~pl.col("subscription_id").is_in(subs["subscription_id"].implode())
        & (
            (pl.col("start_date") >= period.end)
            | (pl.col("end_date") == period.start)
            | pl.col("subscription_id").is_in(_serving_on(histories, subs, catalog, period.start))
        )
    )
    outside = _known_add_ons(outside, catalog, rater.notices)
    for sub in outside.iter_rows(named=True):
        if sub["plan_id"] in catalog.plans:
            rater.lifecycle(sub, histories[sub["subscription_id"]], proration)

    plan_discounts: dict[tuple[str, str], list[tuple[str, Discount]]] = {}
    for sub in pl.concat([subs.select(outside.columns), outside]).iter_rows(named=True):
        sub_plan = catalog.plans.get(sub["plan_id"])
        if sub_plan is not None and sub_plan.discounts:
            listed = plan_discounts.setdefault((sub["account_id"], sub_plan.currency), [])
            listed.extend(
                (sub["plan_id"], d) for d in sub_plan.discounts if (sub["plan_id"], d) not in listed
            )
    for invoice_key, invoice in sorted(rater.invoices.items()):
        rater.contracts(invoice)
        rater.discounts(invoice, plan_discounts.get(invoice_key, []))
        rater.tax(invoice)
        rater.credits(invoice)
    rater.unplaced_discounts()

    invoices = [invoice for _, invoice in sorted(rater.invoices.items())]
    lines_frame = frame_lines.assemble(
        invoices, _placed(plain_lines, ranked, charge_table, invoices)
    )
    # Every column is a sort key, so equal inputs list their unrated usage in one order.
    unrated_frame = pl.concat(unrated).sort(
        "account_id",
        "metric",
        "reason",
        pl.all().exclude("account_id", "metric", "reason"),
        nulls_last=True,
    )
    # An event an event-level charge matched but could not price is unrated, not rated.
    rated_events = int(known.filter(pl.col("_row").is_in(list(rated_rows)))["events"].sum())
    rated_events -= int(event_unrated["events"].sum())
    unrated_events = int(unrated_frame["events"].sum())
    total = int(partials["events"].sum())
    if rated_events + unrated_events != total:
        raise RatingError(
            f"rating lost events: {total} in, {rated_events} rated + {unrated_events} unrated"
        )
    billed = int(lines_frame.filter(pl.col("charge_kind") == "usage")["events"].sum())
    if billed != rated_events:
        raise RatingError(f"rating lost events: {rated_events} rated, {billed} on usage lines")
    rater.notices.extend(_unmatched_terms(subscriptions, histories, catalog, terms or {}))
    # A history's fee may be priced twice (billed before, and now): its notice once.
    notices = pl.DataFrame(rater.notices, schema=NOTICE_SCHEMA).unique(maintain_order=True)
    return RatingResult(lines_frame, unrated_frame, rated_events, unrated_events, notices)


def _stored_histories(subscriptions: pl.DataFrame) -> dict[str, History]:
    """Histories kept on subscription rows (`history` JSON); a bad one stops the rating."""

    from pricing_rules.lifecycle import History

    if "history" not in subscriptions.columns:
        return {}
    found: dict[str, History] = {}
    stored = subscriptions.filter(pl.col("history").is_not_null())
    for sub_id, text in stored.select("subscription_id", "history").iter_rows():
        try:
            found[sub_id] = History.model_validate_json(text)
        except ValidationError as exc:
            raise RatingError(f"subscription {sub_id} has an invalid history: {exc}") from exc
    return found


def _ended_by_rows(
    histories: Mapping[str, History], subscriptions: pl.DataFrame
) -> dict[str, History]:
    """Each history cut at its row's `end_date` where it records no end of its own
    (`lifecycle.ended_by`)."""
    from pricing_rules.lifecycle import ended_by

    ends = dict(
        conform_subscriptions(subscriptions)
        .filter(pl.col("end_date").is_not_null())
        .select("subscription_id", "end_date")
        .iter_rows()
    )
    return {
        sub_id: ended_by(history, ends[sub_id]) if sub_id in ends else history
        for sub_id, history in histories.items()
    }


def _own_cycle_histories(subscriptions: pl.DataFrame, catalog: Catalog) -> dict[str, History]:
    """A subscription without a history on a plan with its own cycle (quarterly, annual or
    anniversary) is billed through the one its row describes: start, seats, end."""
    from pricing_rules.lifecycle import Change, History

    found = {}
    for sub in conform_subscriptions(subscriptions).iter_rows(named=True):
        plan = catalog.plans.get(sub["plan_id"])
        if plan is None or not plan.own_cycle or sub["history"]:
            continue
        changes = [
            Change(
                action="start", day=sub["start_date"], plan=sub["plan_id"], seats=sub["quantity"]
            )
        ]
        if sub["end_date"] is not None:
            changes.append(Change(action="cancel", day=sub["end_date"], timing="immediate"))
        found[sub["subscription_id"]] = History(
            subscription_id=sub["subscription_id"], changes=changes
        )
    return found


def _in_force(
    subs: pl.DataFrame, histories: Mapping[str, History], catalog: Catalog, period: BillingPeriod
) -> pl.DataFrame:
    """Usage of a subscription with a history is priced on the plan and seats in force at
    the end of the period (its last segment starting before the period ends)."""
    from pricing_rules.lifecycle import LifecycleError, cycle_for, timeline

    if not histories:
        return subs
    rows = []
    for sub in subs.iter_rows(named=True):
        history = histories.get(sub["subscription_id"])
        if history is not None:
            try:
                # the plan's own cycle decides when a deferred change takes effect
                segments = timeline(history, catalog, cycle_for(history, catalog))
            except LifecycleError as exc:
                raise RatingError(str(exc)) from exc
            current = [s for s in segments if s.start < period.end] or segments[:1]
            if current:
                sub = sub | {"plan_id": current[-1].state.plan, "quantity": current[-1].state.seats}
        rows.append(sub)
    return pl.DataFrame(rows, schema=subs.schema)


def _serving_on(
    histories: Mapping[str, History], active: pl.DataFrame, catalog: Catalog, day: date
) -> list[str]:
    """The subscriptions, of those not in `active`, whose history is in service on `day`
    or ended on it: their fixed fees are due whatever their row's end (decision 0018)."""
    from pricing_rules.lifecycle import LifecycleError, cycle_for, timeline

    shown = set(active["subscription_id"])
    # A change takes effect within a cycle of its day, and no cycle is longer than a year.
    reach = day - timedelta(days=366)
    found = []
    for sub_id, history in histories.items():
        if sub_id in shown or history.start > day or max(c.day for c in history.changes) < reach:
            continue
        try:
            segments = timeline(history, catalog, cycle_for(history, catalog))
        except (LifecycleError, KeyError):
            continue  # a plan not in the catalog: as before its row ended, nothing is billed
        if segments and (segments[-1].end is None or segments[-1].end >= day):
            found.append(sub_id)
    return found


def _versions_not_offered(
    subs: pl.DataFrame, histories: Mapping[str, History], catalog: Catalog
) -> list[dict[str, str]]:
    """A subscription that signed (or moved to) a plan version outside the days it is
    offered is billed as signed, with a notice naming the version offered then."""
    notices = []
    for sub in subs.iter_rows(named=True):
        history = histories.get(sub["subscription_id"])
        signed = (
            [(c.plan, c.day) for c in history.changes if c.plan]
            if history is not None
            else [(sub["plan_id"], sub["start_date"])]
        )
        for plan_id, day in signed:
            plan = catalog.plans.get(plan_id)
            if plan is None or plan.offered_on(day):
                continue
            offered = catalog.plan_version(plan.family or plan_id, day)
            notices.append(
                {
                    "account_id": sub["account_id"],
                    "kind": "plan_version_not_effective",
                    "message": f"subscription {sub['subscription_id']} is on plan {plan_id!r} "
                    f"from {day}, when it was not offered (offered {plan.effective_from or '…'} "
                    f"to {plan.effective_to or '…'}); the version offered then is "
                    f"{offered!r}. It is billed as signed",
                }
            )
    return notices


def _event_charges(
    usage: pl.LazyFrame,
    subs: pl.DataFrame,
    known: pl.DataFrame,
    catalog: Catalog,
    accounts: Mapping[str, Mapping[str, Any]],
    by_day: Sequence[str],
    period_days: int,
) -> tuple[list[tuple[str, pl.DataFrame]], pl.DataFrame]:
    """Charges priced per event (calls from a rate deck): usage lines per charge key,
    and the events that could not be priced, with reasons."""
    from pricing_rules.event_rating import rate_event_charges

    return rate_event_charges(usage, subs, known, catalog, accounts, by_day, period_days)


def subscription_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """A subscriptions frame from dicts; `quantity` and `add_ons` are optional."""
    frame = pl.DataFrame(
        rows,
        schema_overrides={
            k: v for k, v in SUBSCRIPTION_SCHEMA.items() if k in (rows[0] if rows else {})
        },
    )
    if not rows:
        frame = pl.DataFrame(schema=SUBSCRIPTION_SCHEMA)
    return conform_subscriptions(frame)
