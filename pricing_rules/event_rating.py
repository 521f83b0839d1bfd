"""Event-level charges: calls priced one by one from a rate deck, then summed per line.

The per-call amounts come from `pricing_rules.decks.rate_calls` (Polars `Decimal`); each
line's explanation is one row per (destination prefix, time band, rate), and the rows add
up exactly to the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import polars as pl

from pricing_rules.catalog import Catalog, Plan
from pricing_rules.charges import CallDeckCharge, ChargeBase, model_name
from pricing_rules.units import conversion_factor, exact_decimal

if TYPE_CHECKING:
    from pricing_rules.rating import EventLine, _Rater

_SUB_COLUMNS = ("subscription_id", "account_id", "plan_id", "add_ons", "start_date", "end_date")


def _calls_for(
    usage: pl.LazyFrame,
    subs: pl.DataFrame,
    charge: CallDeckCharge,
    sub_ids: list[str],
    metric_unit: str,
    accounts: Mapping[str, Mapping[str, Any]],
) -> pl.LazyFrame:
    from pricing_rules.rating import charge_filter

    to_seconds = exact_decimal(conversion_factor(metric_unit, "s"))
    if to_seconds is None:
        raise ValueError(f"{metric_unit} does not convert exactly to seconds")
    zones = pl.DataFrame(
        {
            "account_id": list(accounts),
            "timezone": [str(a.get("timezone") or "UTC") for a in accounts.values()],
        },
        schema={"account_id": pl.String, "timezone": pl.String},
    )
    scoped = subs.filter(pl.col("subscription_id").is_in(sub_ids)).select(_SUB_COLUMNS)
    seconds = pl.col("quantity") * pl.lit(to_seconds).cast(pl.Decimal(38, 12))
    return (
        usage.filter(charge_filter(charge))
        .join(scoped.lazy(), on="account_id")
        .filter(
            (pl.col("local_day") >= pl.col("start_date"))
            & (pl.col("end_date").is_null() | (pl.col("local_day") < pl.col("end_date")))
        )
        .join(zones.lazy(), on="account_id", how="left")
        .select(
            "account_id",
            "subscription_id",
            "plan_id",
            "timestamp",
            "local_day",
            "quantity",
            "destination",
            pl.col("timezone").fill_null("UTC"),
            # A started second is a billed second.
            seconds.ceil().cast(pl.Int64).alias("duration"),
        )
    )


def rate_event_charges(
    usage: pl.LazyFrame,
    subs: pl.DataFrame,
    known: pl.DataFrame,
    catalog: Catalog,
    accounts: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], EventLine], pl.DataFrame]:
    """Price every call of every call-deck charge; see `pricing_rules.rating.rate`."""
    from pricing_rules.rating import UNRATED_SCHEMA, _add_ons

    builders: dict[tuple[str, str], EventLine] = {}
    unrated: list[pl.DataFrame] = [pl.DataFrame(schema=UNRATED_SCHEMA)]
    combos = known.select("plan_id", "add_ons").unique()
    for plan_id, add_ons in combos.sort("plan_id", "add_ons", nulls_last=True).iter_rows():
        for key, charge in catalog.plan_charges(plan_id, _add_ons({"add_ons": add_ons})):
            if not isinstance(charge, CallDeckCharge) or charge.metric is None:
                continue
            from pricing_rules.decks import rate_calls

            deck = catalog.rate_deck(charge.deck)
            sub_ids = subs.filter(
                (pl.col("plan_id") == plan_id) & pl.col("add_ons").eq_missing(add_ons)
            )["subscription_id"].to_list()
            metric_unit = catalog.metrics[charge.metric].unit
            calls = _calls_for(usage, subs, charge, sub_ids, metric_unit, accounts)
            rated = rate_calls(calls, deck)
            # Both aggregates in one streaming pass: the calls are never held in memory.
            failed, summary = pl.collect_all(
                [
                    rated.filter(pl.col("unrated_reason").is_not_null())
                    .group_by("account_id", "subscription_id", "plan_id", "unrated_reason")
                    .agg(
                        pl.col("quantity").sum(),
                        pl.len().cast(pl.Int64).alias("events"),
                        pl.col("local_day").min().alias("first_day"),
                        pl.col("local_day").max().alias("last_day"),
                    ),
                    _explained(rated.filter(pl.col("unrated_reason").is_null())),
                ],
                engine="streaming",
            )
            if failed.height:
                unrated.append(
                    failed.with_columns(
                        pl.lit(charge.metric).alias("metric"),
                        pl.lit(metric_unit).alias("unit"),
                        pl.col("unrated_reason").alias("reason"),
                    )
                    .select(list(UNRATED_SCHEMA))
                    .cast(UNRATED_SCHEMA)
                )
            builders.update({(sub_id, key): build for sub_id, build in _builders(summary).items()})
    return builders, pl.concat(unrated)


def _explained(priced: pl.LazyFrame) -> pl.LazyFrame:
    """Priced calls summed per explanation row: subscription, prefix and band (a prefix
    names one destination and, per band, one rate, so fewer string keys to hash)."""
    return priced.group_by("subscription_id", "prefix", "band").agg(
        pl.col("deck_destination").first(),
        pl.col("rate_per_minute").first(),
        pl.len().cast(pl.Int64).alias("calls"),
        pl.col("billed_seconds").sum().cast(pl.Int64),
        pl.col("amount").sum(),
    )


def _builders(summary: pl.DataFrame) -> dict[str, EventLine]:
    """One line builder per subscription from its explanation rows (`_explained`), which
    are written as JSON in Polars: a month has thousands of lines. The line's totals are
    the sums of its rows, so the rows add up to the line by construction."""
    keys = ["subscription_id", "deck_destination", "prefix", "band", "rate_per_minute"]
    summary = summary.sort(keys)
    rows = summary.with_columns(
        pl.struct(
            pl.format(
                "{} (+{}, {}): {} call(s), {} s billed",
                "deck_destination",
                "prefix",
                "band",
                "calls",
                "billed_seconds",
            ).alias("label"),
            (pl.col("billed_seconds").cast(pl.Decimal(38, 12)) / pl.lit(60))
            .cast(pl.String)
            .alias("quantity"),
            pl.col("rate_per_minute").cast(pl.String).alias("unit_price"),
            pl.col("amount").cast(pl.String).alias("amount"),
            "prefix",
            "band",
            "calls",
            "billed_seconds",
        )
        .struct.json_encode()
        .alias("row")
    )
    joined = rows.group_by("subscription_id").agg(
        pl.col("amount").sum(),
        pl.col("billed_seconds").sum(),
        pl.col("calls").sum(),
        pl.col("row").str.join(","),
        pl.len().alias("rows"),
    )
    return {
        sub_id: _builder(amount, billed, calls, f"[{row_json}]", row_count)
        for sub_id, amount, billed, calls, row_json, row_count in joined.iter_rows()
    }


def _builder(total: Decimal, billed: int, count: int, details: str, rows: int) -> EventLine:
    def build(
        rater: _Rater, sub: Mapping[str, Any], plan: Plan, key: str, charge: ChargeBase
    ) -> None:
        from pricing_rules.rating import _line

        assert isinstance(charge, CallDeckCharge)
        minutes = Decimal(billed) / Decimal(60)
        _line(
            rater.invoice(sub["account_id"], plan),
            line_id=f"{sub['subscription_id']}:{key}",
            subscription_id=sub["subscription_id"],
            plan_id=sub["plan_id"],
            charge_id=key,
            charge_name=charge.name,
            charge_model=model_name(type(charge)),
            kind="usage",
            metric=charge.metric,
            quantity=minutes,
            unit="min",
            unit_price=None,
            proration_factor=None,
            events=count,
            precise=total,
            description=f"{charge.name}, {count} call(s), {minutes:.2f} billed min — rated "
            f"per call from deck {charge.deck} ({rows} destination/band rows)",
            details=details,
        )

    return build
