"""Event-level charges: calls priced one by one from a rate deck, then summed per line.

The per-call amounts come from `pricing_rules.decks.rate_calls` (Polars `Decimal`); each
line's explanation is one row per (destination prefix, time band, rate), with its calls,
billed seconds and billing increments, and the rows add up exactly to the line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import polars as pl

from pricing_rules.aggregate_rating import limited, line_frame, rounded
from pricing_rules.catalog import Catalog, Plan
from pricing_rules.charges import CallDeckCharge
from pricing_rules.decks import BANDS, RateDeck, rate_calls
from pricing_rules.units import conversion_factor, exact_decimal

_SUB_COLUMNS = ("subscription_id", "account_id", "plan_id", "add_ons", "start_date", "end_date")


def _calls_for(
    usage: pl.LazyFrame,
    scoped: pl.DataFrame,
    charge: CallDeckCharge,
    metric_unit: str,
    accounts: Mapping[str, Mapping[str, Any]],
    by_day: Sequence[str],
    *,
    zoned: bool,
) -> pl.LazyFrame:
    """The calls of `scoped` subscriptions the charge prices; each carries its
    subscription's row in `scoped` as `_sub`, and its account's time zone when `zoned`
    (UTC otherwise).

    A call goes to its subscription as the account's other usage does (`rating.attribute`):
    by its day for the accounts in `by_day`, and whatever its day for the others, whose one
    subscription covers the period. A call the calls query dropped would be counted rated
    in the partials and billed nowhere."""
    from pricing_rules.rating import active_on, charge_filter

    to_seconds = exact_decimal(conversion_factor(metric_unit, "s"))
    if to_seconds is None:
        raise ValueError(f"{metric_unit} does not convert exactly to seconds")
    seconds = (
        pl.col("quantity")
        if to_seconds == 1
        else pl.col("quantity") * pl.lit(to_seconds).cast(pl.Decimal(38, 12))
    )
    calls = usage.filter(charge_filter(charge)).join(
        scoped.select(*_SUB_COLUMNS, "_sub").lazy(), on="account_id"
    )
    if by_day:
        calls = calls.filter(
            ~pl.col("account_id").is_in(pl.Series(list(by_day), dtype=pl.String).implode())
            | active_on("local_day")
        )
    if zoned:
        zones = pl.LazyFrame(
            {
                "account_id": list(accounts),
                "timezone": [str(a.get("timezone") or "UTC") for a in accounts.values()],
            },
            schema={"account_id": pl.String, "timezone": pl.String},
        )
        calls = calls.join(zones, on="account_id", how="left")
    else:
        calls = calls.with_columns(pl.lit(None, pl.String).alias("timezone"))
    return calls.select(
        "account_id",
        "subscription_id",
        "plan_id",
        "_sub",
        "timestamp",
        "local_day",
        "quantity",
        "destination",
        pl.col("timezone").fill_null("UTC"),
        # A started second is a billed second.
        seconds.ceil().cast(pl.Int64).alias("duration"),
    )


def rate_event_charges(
    usage: pl.LazyFrame,
    subs: pl.DataFrame,
    known: pl.DataFrame,
    catalog: Catalog,
    accounts: Mapping[str, Mapping[str, Any]],
    by_day: Sequence[str],
    period_days: int | None = None,
) -> tuple[list[tuple[str, pl.DataFrame]], pl.DataFrame]:
    """Price every call of every call-deck charge; see `pricing_rules.rating.rate`
    (`by_day`: the accounts whose usage is attributed day by day; with `period_days`,
    `subs` has each subscription's `served_days`, which prorate a charge's minimum).
    Returns the usage lines (charge key, lines) and the calls not priced."""
    from pricing_rules.rating import UNRATED_SCHEMA, _add_ons

    lines: list[tuple[str, pl.DataFrame]] = []
    unrated: list[pl.DataFrame] = [pl.DataFrame(schema=UNRATED_SCHEMA)]
    with_usage = set(known.select("plan_id", "add_ons").unique().iter_rows())
    # Every plan's subscriptions, as a charge with a minimum bills even those with no usage.
    combos = subs.filter(pl.col("plan_id").is_in(list(catalog.plans)))
    combos = combos.select("plan_id", "add_ons").unique()
    for plan_id, add_ons in combos.sort("plan_id", "add_ons", nulls_last=True).iter_rows():
        for key, charge in catalog.plan_charges(plan_id, _add_ons({"add_ons": add_ons})):
            if not isinstance(charge, CallDeckCharge) or charge.metric is None:
                continue
            if (plan_id, add_ons) not in with_usage and charge.minimum_amount is None:
                continue
            deck = catalog.rate_deck(charge.deck)
            scoped = (
                subs.filter((pl.col("plan_id") == plan_id) & pl.col("add_ons").eq_missing(add_ons))
                .sort("subscription_id")
                .with_row_index("_sub")
            )
            metric_unit = catalog.metrics[charge.metric].unit
            plan = catalog.plans[plan_id]
            if (plan_id, add_ons) not in with_usage:  # no calls to read: only the minimum
                lines.append(
                    (key, _lines(_no_calls(deck), scoped, deck, key, charge, plan, period_days))
                )
                continue
            # Only a deck with time bands reads the caller's zone.
            zoned = deck.has_time_bands
            calls = _calls_for(usage, scoped, charge, metric_unit, accounts, by_day, zoned=zoned)
            rated = rate_calls(calls, deck, range_column="_range")
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
            lines.append((key, _lines(summary, scoped, deck, key, charge, plan, period_days)))
    return lines, pl.concat(unrated)


# Explanation rows of a prefix list its bands by name.
_BAND_ORDER = pl.Enum(sorted(BANDS))


def _explained(priced: pl.LazyFrame, deck: RateDeck) -> pl.LazyFrame:
    """Priced calls summed per explanation row: subscription, prefix and band.

    The calls are summed on integers: `_group` is the subscription's row (`_sub`) and the
    row of the prefix in `deck.prefix_table` in one number, beside the band's code.
    Millions of calls group far faster on integers than on text; `_named` names the
    rows."""
    prefixes = deck.prefix_table.height
    group = (pl.col("_sub").cast(pl.Int64) * prefixes + pl.col("_range")).alias("_group")
    bands = [pl.col("band").cast(_BAND_ORDER)] if deck.has_time_bands else []
    return priced.group_by(group, *bands).agg(
        pl.len().cast(pl.Int64).alias("calls"),
        pl.col("billed_seconds").sum().cast(pl.Int64),
        pl.col("increments").sum().cast(pl.Int64),
        pl.col("amount").sum(),
        *(pl.col(column).sum() for column, _, _ in _fees(deck)),
    )


# A per-call fee: the column `rate_calls` writes it to, the deck's value of it, and how a
# row's label and JSON name its sum.
_FEES = (
    ("connect_fee", "connect_fee", "connect fees", "connect_fees"),
    ("minimum_adjustment", "minimum_charge", "minimum charge top-ups", "minimum_top_ups"),
)


def _fees(deck: RateDeck) -> list[tuple[str, str, str]]:
    """The per-call fees a deck adds to the time it prices, each only where the deck has
    it: (column, words, field)."""
    return [
        (column, words, field)
        for column, setting, words, field in _FEES
        if getattr(deck, setting) > 0
    ]


def _no_calls(deck: RateDeck) -> pl.DataFrame:
    """`_explained`'s sums when there is no call."""
    bands = {"band": _BAND_ORDER} if deck.has_time_bands else {}
    return pl.DataFrame(
        schema={
            "_group": pl.Int64,
            **bands,
            "calls": pl.Int64,
            "billed_seconds": pl.Int64,
            "increments": pl.Int64,
            "amount": deck.amount_dtype,
            **{column: deck.amount_dtype for column, _, _ in _fees(deck)},
        }
    )


def _named(summary: pl.LazyFrame, deck: RateDeck) -> pl.LazyFrame:
    """`_explained`'s sums with their subscription row, prefix, destination, band and
    rate. Sorted on (`_group`, `band`) they are in the order of subscription,
    destination, prefix and band: the subscriptions are numbered in id order and the
    deck's prefix table is in destination order."""
    table = deck.prefix_table
    row = pl.col("_group") % table.height
    banded = deck.has_time_bands  # `_explained` keeps the band only then
    rate = pl.coalesce(
        *(
            pl.when(pl.col("band") == band).then(pl.lit(table[f"rate_{band}"]).gather(row))
            for band in BANDS
        )
    )
    return summary.with_columns(
        (pl.col("_group") // table.height).alias("_sub"),
        pl.lit(table["prefix"]).gather(row).alias("prefix"),
        pl.lit(table["destination"]).gather(row).alias("deck_destination"),
        (pl.col("band").cast(pl.String) if banded else pl.lit("all")).alias("band"),
    ).with_columns(
        (rate if banded else pl.lit(table["rate_all"]).gather(row)).alias("rate_per_minute")
    )


def _lines(
    summary: pl.DataFrame,
    scoped: pl.DataFrame,
    deck: RateDeck,
    key: str,
    charge: CallDeckCharge,
    plan: Plan,
    period_days: int | None = None,
) -> pl.DataFrame:
    """One usage line per subscription from its explanation rows (`_explained`), built
    in Polars: a month has thousands of lines. The line's totals are the sums of its
    rows, so the rows add up to the line by construction."""
    fees = _fees(deck)
    # The row's amount is the time priced plus these fees: its label says how much of it
    # they are.
    fee_words = [
        pl.when(pl.col(column) > 0).then(pl.format(f"{words} {{}}", pl.col(column)))
        for column, words, _ in fees
    ]
    rows = _named(summary.lazy(), deck).with_columns(
        pl.struct(
            pl.concat_str(
                pl.format(
                    "{} (+{}, {}): {} call(s), {} s billed in {} increment(s) of {}",
                    "deck_destination",
                    "prefix",
                    "band",
                    "calls",
                    "billed_seconds",
                    "increments",
                    pl.lit(str(deck.increments)),
                ),
                *fee_words,
                separator=", ",
                ignore_nulls=True,
            ).alias("label"),
            _minutes(pl.col("billed_seconds")).cast(pl.String).alias("quantity"),
            pl.col("rate_per_minute").cast(pl.String).alias("unit_price"),
            pl.col("amount").cast(pl.String).alias("amount"),
            "prefix",
            "band",
            "calls",
            "billed_seconds",
            "increments",
            *(pl.col(column).cast(pl.String).alias(field) for column, _, field in fees),
        )
        .struct.json_encode()
        .alias("row")
    )
    per_sub = (
        rows.group_by("_sub")
        .agg(
            pl.col("amount").sum().alias("precise"),
            pl.col("billed_seconds").sum(),
            pl.col("calls").sum().alias("events"),
            # In subscription, destination, prefix and band order (see `_named`). Joined
            # after the group-by: a text join inside it costs far more on long lines.
            pl.col("row").sort_by("_group", "band"),
            pl.len().alias("rows"),
        )
        .with_columns(pl.col("row").list.join(","))
    )
    minutes = _minutes(pl.col("billed_seconds"))
    prorated = period_days is not None  # then `scoped` has `served_days`
    subs = scoped.select(
        pl.col("_sub").cast(pl.Int64),
        "subscription_id",
        "account_id",
        "plan_id",
        *(["served_days"] if prorated else []),
    )
    if charge.minimum_amount is None:
        per_sub = per_sub.join(subs.lazy(), on="_sub")
    else:
        # A minimum is owed by every subscription, with calls or without.
        per_sub = (
            subs.lazy()
            .join(per_sub, on="_sub", how="left")
            .with_columns(
                pl.col("precise").fill_null(pl.lit(Decimal(0), deck.amount_dtype)),
                pl.col("billed_seconds", "events", "rows").fill_null(0),
            )
        )
    served = (pl.col("served_days"), period_days) if prorated and period_days else None
    amount, limit_rows, limit_words = limited(charge, pl.col("precise"), served)
    priced = per_sub.with_columns(
        minutes.alias("quantity"),
        pl.lit("min").alias("unit"),
        pl.lit(None, pl.Decimal(38, 12)).alias("unit_price"),
        pl.concat_str(
            pl.format(
                "{}, {} call(s), {} billed min — rated per call from deck {} ({} s "
                "increments; {} destination/band rows)",
                pl.lit(charge.name),
                "events",
                minutes.round(2, mode="half_to_even").cast(pl.Decimal(38, 2)),
                pl.lit(charge.deck),
                pl.lit(str(deck.increments)),
                "rows",
            ),
            *limit_words,
            separator=", ",
            ignore_nulls=True,
        ).alias("description"),
        pl.concat_str(
            pl.lit("["),
            pl.concat_str("row", *limit_rows, separator=", ", ignore_nulls=True),
            pl.lit("]"),
        ).alias("details"),
        amount.alias("precise"),
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
