"""settle-late: bill usage that arrived after a closed period was invoiced, as adjustments.

For each of the `late_usage_grace_periods` closed periods before the run's own, usage
objects that no invoice of an account has billed yet are found by comparing the period's
listing with the keys read by the runs that published what the account was billed for
that period. The period is then rated twice, with the objects already billed and with all
of them, and the difference becomes labelled adjustment lines on this run's invoices.
The same rules price both sides, so only the late usage moves the amounts; once this
run publishes the account's invoices, those objects count as billed for it
(`late_settlements`). An account whose invoice for this run's period is already out
(a re-run) is left to the next run. Periods beyond the grace window, up to
`late_usage_lookback_periods` back, are only checked: accounts with usage in objects no
billing read get a `late_usage_outside_grace` finding.
"""

from __future__ import annotations

from collections import defaultdict

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.object_store import ObjectStore
from infra.settings import Settings
from pricing_rules.adjustments import adjustment_lines
from pricing_rules.catalog import Catalog, load_catalog
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import LINE_SCHEMA
from tasks.common import (
    basis_rows,
    ledger,
    object_store,
    read_staged,
    retry_transient,
    stage,
    stage_basis,
    step_artifact,
    timed,
    usage_store,
)
from tasks.discover import list_period, month_clock, period_prefixes
from tasks.load import read_usage_objects
from tasks.rate import account_inputs, rate_with
from validation.formats import is_usage_file
from validation.leakage import LATE_OUTSIDE_GRACE_SCHEMA
from validation.schemas import full_depth, rated_lines_schema
from validation.usage import validate_usage


def earlier_periods(period: str, count: int) -> list[str]:
    """The `count` periods before `period`, nearest first.

    >>> earlier_periods("2027-02", 3)
    ['2027-01', '2026-12', '2026-11']
    """
    found = []
    current = BillingPeriod.parse(period)
    for _ in range(count):
        current = current.previous()
        found.append(current.label)
    return found


@task(
    name="settle-late",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def settle_late(settings: Settings, run_id: str, period: str) -> dict[str, object]:
    """Stage `adjustments.parquet`: late usage of earlier periods, priced as adjustments;
    and `late_outside_grace.parquet`: unbilled objects of periods beyond the window."""
    logger = get_run_logger()
    with timed() as clock:
        db = ledger(settings)
        source = usage_store(settings)
        catalog = load_catalog(settings.catalog_path)
        zones = db.account_zones()
        found: list[pl.DataFrame] = [pl.DataFrame(schema=LINE_SCHEMA)]
        basis: list[dict[str, str]] = []
        report: dict[str, object] = {}
        outside: list[dict[str, object]] = []
        grace = settings.late_usage_grace_periods
        invoiced = {account for account, _ in db.existing_invoices(period)}
        rated = read_staged(object_store(settings), run_id, "rated")
        own_currencies: dict[str, list[str]] = {
            account: sorted(currencies)
            for account, currencies in rated.group_by("account_id")
            .agg(pl.col("currency").unique())
            .rows()
        }
        lookback = max(grace, settings.late_usage_lookback_periods)
        for back, closed in enumerate(earlier_periods(period, lookback)):
            months = month_clock(db, closed)
            prefixes = period_prefixes(settings.usage_prefix, closed, months.shared)
            # What was billed, taken before anything is read: publishing checks it is
            # unchanged (docs/decisions/0020).
            before = db.billing_basis(closed)
            billed_keys = db.consumed_keys(closed, prefixes)
            if not billed_keys:
                continue  # nothing invoiced for that period: its own run bills it
            listed = [
                (o.key, o.size, o.etag)
                for o in list_period(source, prefixes)
                if is_usage_file(o.key)
            ]
            keys = {key for key, _, _ in listed}
            late = {account: keys - known for account, known in billed_keys.items()}
            local = zones if months.local else {}
            if back >= grace:
                if any(late.values()):
                    outside.extend(
                        _unbilled_by_account(
                            catalog, source, listed, late, closed, local, months.shared
                        )
                    )
                continue
            groups: dict[frozenset[str], list[str]] = defaultdict(list)
            for account, known in billed_keys.items():
                # Adjustments ride on this run's invoices: an account with one already
                # out for this period waits for the next run.
                if late[account] and account not in invoiced:
                    groups[frozenset(known & keys)].append(account)
            if not groups:
                continue
            db.record_manifest(run_id, listed)
            raw = read_usage_objects(source, listed)
            lines = _settle(settings, catalog, raw, closed, groups, local, months.shared)
            # Settled once this run publishes the account's invoices in every currency it
            # bills the account in: this period's own, and the adjustments'.
            settled = {a for g in groups.values() for a in g}
            currencies = defaultdict(set, {a: set(c) for a, c in own_currencies.items()})
            for account, currency in lines.select("account_id", "currency").unique().rows():
                currencies[account].add(currency)
            db.record_settled(
                run_id,
                closed,
                {a: late[a] for a in settled},
                {a: sorted(currencies[a]) for a in settled},
            )
            basis.extend(basis_rows(before, closed, settled))
            found.append(lines)
            late_keys = sorted(set().union(*late.values()))
            report[closed] = {
                "late objects": len(late_keys),
                "accounts": len(lines["account_id"].unique()),
                "adjustment lines": lines.height,
            }
            logger.info(
                "settle-late: %s has %d late object(s); %d adjustment line(s)",
                closed,
                len(late_keys),
                lines.height,
            )
        if outside:
            logger.warning(
                "settle-late: usage objects no invoice billed in %s, beyond the %d-period "
                "grace window: re-rate those periods",
                ", ".join(sorted({str(row["period"]) for row in outside})),
                grace,
            )
        adjustments = pl.concat(found)
        with full_depth():
            rated_lines_schema().validate(adjustments, lazy=True)
        stage(object_store(settings), run_id, "adjustments", adjustments)
        stage_basis(object_store(settings), run_id, basis)
        stage(
            object_store(settings),
            run_id,
            "late_outside_grace",
            pl.DataFrame(outside, schema=LATE_OUTSIDE_GRACE_SCHEMA),
        )
    summary: dict[str, object] = {
        "grace_periods": grace,
        "adjustment_lines": adjustments.height,
        "periods": report,
        "outside_grace": len(outside),
    }
    step_artifact("settle-late", run_id, summary, clock.seconds)
    return summary


def _unbilled_by_account(
    catalog: Catalog,
    source: ObjectStore,
    listed: list[tuple[str, int, str]],
    late: dict[str, set[str]],
    closed: str,
    zones: dict[str, str],
    shared: tuple[bool, bool],
) -> list[dict[str, object]]:
    """Per account with usage of `closed` in objects no billing of the period for it
    read: how many such objects, and one of them."""
    wanted = set().union(*late.values())
    raw = read_usage_objects(source, [entry for entry in listed if entry[0] in wanted])
    period = BillingPeriod.parse(closed)
    valid = validate_usage(raw, catalog.metric_units(), period, zones, shared).valid
    pairs = pl.DataFrame(
        [(a, k) for a, keys in late.items() for k in keys],
        schema={"account_id": pl.String, "source_key": pl.String},
        orient="row",
    )
    holders = (
        valid.select("account_id", "source_key")
        .unique()
        .join(pairs, on=["account_id", "source_key"], how="semi")
        .group_by("account_id")
        .agg(pl.len().alias("objects"), pl.col("source_key").min().alias("example"))
        .sort("account_id")
    )
    return [{"period": closed, **row} for row in holders.iter_rows(named=True)]


def _settle(
    settings: Settings,
    catalog: Catalog,
    raw: pl.DataFrame,
    closed: str,
    groups: dict[frozenset[str], list[str]],
    zones: dict[str, str],
    shared: tuple[bool, bool],
) -> pl.DataFrame:
    """Adjustment lines for one closed period, per group of accounts sharing billed keys."""
    billing_period = BillingPeriod.parse(closed)
    units = catalog.metric_units()
    everything = validate_usage(raw, units, billing_period, zones, shared).valid
    found = [pl.DataFrame(schema=LINE_SCHEMA)]
    for known, accounts in sorted(groups.items(), key=lambda g: sorted(g[1])):
        billed_raw = raw.filter(pl.col("source_key").is_in(sorted(known)))
        billed_usage = validate_usage(billed_raw, units, billing_period, zones, shared).valid
        mine = pl.col("account_id").is_in(accounts)
        inputs = account_inputs(settings, closed, accounts)
        before = rate_with(billed_usage.filter(mine).lazy(), catalog, billing_period, inputs)
        after = rate_with(everything.filter(mine).lazy(), catalog, billing_period, inputs)
        found.append(
            adjustment_lines(
                before.lines.filter(mine), after.lines.filter(mine), closed, "Late usage"
            )
        )
    return pl.concat(found)
