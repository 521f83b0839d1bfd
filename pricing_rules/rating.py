"""Rating: attribute valid usage to subscriptions and price every charge, exactly.

Usage is reduced with Polars to one row per (account, metric, day) and then per
(subscription, metric); charges are priced on those totals in Python `Decimal`, so an
invoice line never passes through a float.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

import polars as pl

from pricing_rules.catalog import Catalog, Plan
from pricing_rules.charges import ChargeBase, PricedCharge, model_name
from pricing_rules.money import MONEY_CONTEXT, round_money, to_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.units import QUANTITY_SCALE, conversion_factor

QUANTITY = pl.Decimal(38, QUANTITY_SCALE)
MONEY = pl.Decimal(38, 4)

LINE_SCHEMA: dict[str, pl.DataType] = {
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
}

UNRATED_SCHEMA: dict[str, pl.DataType] = {
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

SUBSCRIPTION_SCHEMA: dict[str, pl.DataType] = {
    "subscription_id": pl.String(),
    "account_id": pl.String(),
    "plan_id": pl.String(),
    "start_date": pl.Date(),
    "end_date": pl.Date(),
}


class RatingError(ValueError):
    pass


@dataclass(frozen=True)
class RatingResult:
    lines: pl.DataFrame
    unrated: pl.DataFrame
    rated_events: int
    unrated_events: int

    @property
    def events(self) -> int:
        return self.rated_events + self.unrated_events


def daily_usage(usage: pl.LazyFrame) -> pl.LazyFrame:
    """Partial aggregate per (account, metric, UTC day): sum, max and event count."""
    return usage.group_by("account_id", "metric", pl.col("timestamp").dt.date().alias("day")).agg(
        pl.col("quantity").sum().alias("quantity_sum"),
        pl.col("quantity").max().alias("quantity_max"),
        pl.len().cast(pl.Int64).alias("events"),
    )


def active_subscriptions(subscriptions: pl.DataFrame, period: BillingPeriod) -> pl.DataFrame:
    return subscriptions.filter(
        (pl.col("start_date") < period.end)
        & (pl.col("end_date").is_null() | (pl.col("end_date") > period.start))
    ).sort("subscription_id")


def _reduce(frame: pl.DataFrame, keys: list[str], catalog: Catalog) -> pl.DataFrame:
    """Combine daily partials with each metric's aggregation (sum of sums, max of maxima)."""
    sums = [m for m, d in catalog.metrics.items() if d.aggregation == "sum"]
    return (
        frame.group_by(keys)
        .agg(
            pl.when(pl.col("metric").first().is_in(sums))
            .then(pl.col("quantity_sum").sum())
            .otherwise(pl.col("quantity_max").max())
            .alias("quantity"),
            pl.col("events").sum(),
            pl.col("day").min().alias("first_day"),
            pl.col("day").max().alias("last_day"),
        )
        .with_columns(
            pl.col("metric")
            .replace_strict(catalog.metric_units(), default=None, return_dtype=pl.String)
            .alias("unit")
        )
        .sort(keys)
    )


def attribute_usage(
    daily: pl.DataFrame, subscriptions: pl.DataFrame, catalog: Catalog
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split daily usage into per-subscription totals and usage no subscription covers.

    A day is covered when `start_date <= day < end_date`. Two subscriptions covering the
    same account on the same day would bill the usage twice, so that is an error.
    """
    matched = daily.join(subscriptions, on="account_id", how="inner").filter(
        (pl.col("day") >= pl.col("start_date"))
        & (pl.col("end_date").is_null() | (pl.col("day") < pl.col("end_date")))
    )
    overlap = matched.group_by("account_id", "metric", "day").len().filter(pl.col("len") > 1)
    if overlap.height:
        first = overlap.sort("account_id", "day").row(0, named=True)
        raise RatingError(
            f"{overlap.height} account-days are covered by more than one subscription, "
            f"e.g. account {first['account_id']} on {first['day']}"
        )
    covered = _reduce(matched, ["subscription_id", "account_id", "plan_id", "metric"], catalog)
    orphan = _reduce(
        daily.join(
            matched.select("account_id", "metric", "day"),
            on=["account_id", "metric", "day"],
            how="anti",
        ),
        ["account_id", "metric"],
        catalog,
    )
    return covered, orphan


def price_quantity(
    charge: ChargeBase, quantity: Decimal, metric_unit: str
) -> tuple[Decimal, str, PricedCharge]:
    """Convert a canonical quantity to the charge's price unit and price it."""
    unit = charge.price_unit or metric_unit
    factor = conversion_factor(metric_unit, unit)
    converted = quantity if factor == 1 else _scale(quantity, factor)
    return converted, unit, charge.price(converted)


def _scale(quantity: Decimal, factor: Fraction) -> Decimal:
    scaled = MONEY_CONTEXT.multiply(quantity, Decimal(factor.numerator))
    return MONEY_CONTEXT.divide(scaled, Decimal(factor.denominator))


def _describe(charge: ChargeBase, priced: PricedCharge, unit: str) -> str:
    quantity = f"{priced.quantity.normalize():f} {unit}"
    parts = []
    for detail in priced.details:
        price = "" if detail.unit_price is None else f" at {detail.unit_price.normalize():f}"
        fee = "" if detail.flat_fee is None else f" + flat {detail.flat_fee.normalize():f}"
        parts.append(f"{detail.label}: {detail.quantity.normalize():f}{price}{fee}")
    return f"{charge.name}, {quantity} — " + "; ".join(parts)


def _line(
    *,
    subscription: dict[str, object],
    plan: Plan,
    charge: ChargeBase,
    priced: PricedCharge,
    unit: str,
    events: int,
    proration_factor: Decimal | None,
) -> dict[str, object]:
    rounded = round_money(priced.amount, plan.currency, plan.rounding)
    details = [d.as_json() for d in priced.details]
    if proration_factor is not None:
        for detail in details:
            detail["proration_factor"] = str(proration_factor)
    return {
        "line_id": f"{subscription['subscription_id']}:{charge.id}",
        "account_id": subscription["account_id"],
        "subscription_id": subscription["subscription_id"],
        "plan_id": subscription["plan_id"],
        "charge_id": charge.id,
        "charge_name": charge.name,
        "charge_model": model_name(type(charge)),
        "charge_kind": charge.kind,
        "metric": charge.metric,
        "quantity": priced.quantity.quantize(Decimal(1).scaleb(-QUANTITY_SCALE)),
        "unit": unit,
        "unit_price": priced.unit_price,
        "proration_factor": None
        if proration_factor is None
        else proration_factor.quantize(Decimal(1).scaleb(-12)),
        "events": events,
        "precise_amount": str(priced.amount),
        "amount": rounded,
        "amount_minor": to_minor_units(rounded, plan.currency),
        "currency": plan.currency,
        "rounding": plan.rounding.value,
        "description": _describe(charge, priced, unit),
        "details": json.dumps(details),
    }


def rate(
    usage: pl.LazyFrame,
    subscriptions: pl.DataFrame,
    catalog: Catalog,
    period: BillingPeriod,
) -> RatingResult:
    """Price a period: recurring fees for every active subscription, usage by metric.

    `usage` holds valid events with canonical quantities (see `validation.schemas`).
    Usage nobody pays for is returned in `unrated` with a reason, never priced at zero:
    `no_subscription`, `unknown_plan` or `metric_not_priced`.
    """
    subs = active_subscriptions(subscriptions.cast(SUBSCRIPTION_SCHEMA), period)  # type: ignore[arg-type]
    daily = daily_usage(usage).collect(engine="streaming")
    covered, orphan = attribute_usage(daily, subs, catalog)

    lines: list[dict[str, object]] = []
    unrated: list[pl.DataFrame] = [
        orphan.with_columns(
            pl.lit(None, pl.String).alias("subscription_id"),
            pl.lit(None, pl.String).alias("plan_id"),
            pl.lit("no_subscription").alias("reason"),
        )
    ]
    rated_events = 0
    usage_by_sub = covered.partition_by("subscription_id", as_dict=True)
    for subscription in subs.iter_rows(named=True):
        sub_usage = usage_by_sub.get((subscription["subscription_id"],), covered.clear())
        plan = catalog.plans.get(subscription["plan_id"])
        if plan is None:
            unrated.append(sub_usage.with_columns(pl.lit("unknown_plan").alias("reason")))
            continue
        factor = period.proration_factor(subscription["start_date"], subscription["end_date"])
        active_days = period.active_days(subscription["start_date"], subscription["end_date"])
        for charge in plan.recurring_charges():
            priced = charge.price(factor)
            lines.append(
                _line(
                    subscription=subscription,
                    plan=plan,
                    charge=charge,
                    priced=priced,
                    unit="period",
                    events=0,
                    proration_factor=factor,
                )
                | {
                    "description": f"{charge.name}: {active_days} of {period.days} days "
                    f"at {priced.unit_price} per period"
                }
            )
        for row in sub_usage.iter_rows(named=True):
            charges = plan.usage_charges(row["metric"])
            if not charges:
                unrated.append(
                    pl.DataFrame([row]).with_columns(pl.lit("metric_not_priced").alias("reason"))
                )
                continue
            rated_events += row["events"]
            for charge in charges:
                _, unit, priced = price_quantity(charge, row["quantity"], row["unit"])
                lines.append(
                    _line(
                        subscription=subscription,
                        plan=plan,
                        charge=charge,
                        priced=priced,
                        unit=unit,
                        events=row["events"],
                        proration_factor=None,
                    )
                )

    unrated_frame = pl.concat(
        [frame.select(list(UNRATED_SCHEMA)).cast(UNRATED_SCHEMA) for frame in unrated]  # type: ignore[arg-type]
    ).sort("account_id", "metric", "reason")
    covered_events = int(covered["events"].sum())
    orphan_events = int(orphan["events"].sum())
    unrated_events = int(unrated_frame["events"].sum())
    if rated_events + unrated_events != covered_events + orphan_events:
        raise RatingError(
            f"rating lost events: {covered_events + orphan_events} attributed or orphaned, "
            f"{rated_events} rated + {unrated_events} unrated"
        )
    lines_frame = pl.DataFrame(lines, schema=LINE_SCHEMA).sort("account_id", "line_id")
    return RatingResult(lines_frame, unrated_frame, rated_events, unrated_events)


def subscription_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SUBSCRIPTION_SCHEMA)


def period_dates(period: BillingPeriod) -> tuple[date, date]:
    return period.start, period.end
