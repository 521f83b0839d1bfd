"""Event-level charges: calls priced one by one from a rate deck, then summed per line.

The per-call amounts come from `pricing_rules.decks.rate_calls` (Polars `Decimal`); each
line's explanation is one row per (destination prefix, time band, rate), and the rows add
up exactly to the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from pricing_rules.aggregate_rating import line_frame, rounded
from pricing_rules.catalog import Catalog, Plan
from pricing_rules.charges import CallDeckCharge
from pricing_rules.decks import _TMP, BANDS, RateDeck, rate_calls
from pricing_rules.units import conversion_factor, exact_decimal

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
) -> tuple[list[tuple[str, pl.DataFrame]], pl.DataFrame]:
    """Price every call of every call-deck charge; see `pricing_rules.rating.rate`.
    Returns the usage lines (charge key, lines) and the calls not priced."""
    from pricing_rules.rating import UNRATED_SCHEMA, _add_ons

    lines: list[tuple[str, pl.DataFrame]] = []
    unrated: list[pl.DataFrame] = [pl.DataFrame(schema=UNRATED_SCHEMA)]
    combos = known.select("plan_id", "add_ons").unique()
    for plan_id, add_ons in combos.sort("plan_id", "add_ons", nulls_last=True).iter_rows():
        for key, charge in catalog.plan_charges(plan_id, _add_ons({"add_ons": add_ons})):
            if not isinstance(charge, CallDeckCharge) or charge.metric is None:
                continue
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
                    _explained(rated.filter(pl.col("unrated_reason").is_null()), deck),
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
            lines.append((key, _lines(summary, subs, key, charge, catalog.plans[plan_id])))
    return lines, pl.concat(unrated)


def _explained(priced: pl.LazyFrame, deck: RateDeck) -> pl.LazyFrame:
    """Priced calls summed per explanation row: subscription, prefix and band. A prefix
    names one destination and, per band, one rate; they are looked up after the sums,
    so the calls are grouped on fewer keys."""
    sums = priced.group_by("subscription_id", "prefix", "band").agg(
        pl.len().cast(pl.Int64).alias("calls"),
        pl.col("billed_seconds").sum().cast(pl.Int64),
        pl.col("amount").sum(),
    )
    return sums.join(_band_rates(deck).lazy(), on=["prefix", "band"], how="left")


def _band_rates(deck: RateDeck) -> pl.DataFrame:
    """(prefix, band) -> destination and rate, as `rate_calls` picks them: the all-day
    rate where the prefix has one, else the rate of the call's time band."""
    ranges = deck._prefix_ranges.unique(f"{_TMP}prefix", keep="first")
    prefix = pl.col(f"{_TMP}prefix").alias("prefix")
    destination = pl.col(f"{_TMP}destination").alias("deck_destination")
    frames = [
        ranges.filter(
            pl.col(f"{_TMP}rate_{band}").is_not_null()
            & (pl.col(f"{_TMP}rate_all").is_null() if band != "all" else pl.lit(True))
        ).select(
            prefix,
            pl.lit(band).alias("band"),
            destination,
            pl.col(f"{_TMP}rate_{band}").alias("rate_per_minute"),
        )
        for band in BANDS
    ]
    return pl.concat(frames)


def _lines(
    summary: pl.DataFrame,
    subs: pl.DataFrame,
    key: str,
    charge: CallDeckCharge,
    plan: Plan,
) -> pl.DataFrame:
    """One usage line per subscription from its explanation rows (`_explained`), built
    in Polars: a month has thousands of lines. The line's totals are the sums of its
    rows, so the rows add up to the line by construction."""
    keys = ["subscription_id", "deck_destination", "prefix", "band", "rate_per_minute"]
    rows = summary.sort(keys).with_columns(
        pl.struct(
            pl.format(
                "{} (+{}, {}): {} call(s), {} s billed",
                "deck_destination",
                "prefix",
                "band",
                "calls",
                "billed_seconds",
            ).alias("label"),
            _minutes(pl.col("billed_seconds")).cast(pl.String).alias("quantity"),
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
    per_sub = rows.group_by("subscription_id").agg(
        pl.col("amount").sum().alias("precise"),
        pl.col("billed_seconds").sum(),
        pl.col("calls").sum().alias("events"),
        pl.col("row").str.join(","),
        pl.len().alias("rows"),
    )
    minutes = _minutes(pl.col("billed_seconds"))
    priced = per_sub.join(
        subs.select("subscription_id", "account_id", "plan_id"), on="subscription_id"
    ).with_columns(
        minutes.alias("quantity"),
        pl.lit("min").alias("unit"),
        pl.lit(None, pl.Decimal(38, 12)).alias("unit_price"),
        pl.format(
            "{}, {} call(s), {} billed min — rated per call from deck {} ({} destination/band "
            "rows)",
            pl.lit(charge.name),
            "events",
            minutes.round(2, mode="half_to_even").cast(pl.Decimal(38, 2)),
            pl.lit(charge.deck),
            "rows",
        ).alias("description"),
        pl.concat_str(pl.lit("["), "row", pl.lit("]")).alias("details"),
    )
    return line_frame(
        rounded(priced, plan.currency, plan.rounding),
        key=key,
        charge=charge,
        currency=plan.currency,
        rounding=plan.rounding,
    )


def _minutes(seconds: pl.Expr) -> pl.Expr:
    """Whole seconds as minutes to 12 decimals (a third of a minute does not end)."""
    return seconds.cast(pl.Decimal(38, 12)) / pl.lit(60, pl.Decimal(38, 0))
