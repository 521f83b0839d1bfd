"""rate: price the period's valid usage and recurring fees into explained lines."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.db import Ledger
from infra.settings import Settings
from pricing_rules.catalog import Catalog, load_catalog
from pricing_rules.money import from_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import RatingResult
from pricing_rules.rating import rate as rate_usage
from pricing_rules.terms import AccountTerms
from tasks.common import ledger, object_store, read_staged, stage, step_artifact, timed
from tasks.discover import month_clock
from validation.schemas import full_depth, rated_lines_schema


def totals_by_currency(lines: pl.DataFrame) -> dict[str, str]:
    totals = lines.group_by("currency").agg(pl.col("amount_minor").sum()).sort("currency")
    return {c: str(from_minor_units(int(m), c)) for c, m in totals.rows()}


@dataclass(frozen=True)
class RatingInputs:
    """What rating needs besides usage and the catalog, read from the ledger."""

    subscriptions: pl.DataFrame
    accounts: pl.DataFrame
    terms: dict[str, AccountTerms]
    credits_used: dict[tuple[str, str], Decimal]
    contract_spend: dict[tuple[str, str], Decimal]
    proration: Literal["day", "second"] = "day"
    local_months: bool = True


def account_inputs(settings: Settings, period: str, only: list[str] | None = None) -> RatingInputs:
    """Subscriptions, accounts, terms and credits drawn on other periods' invoices; with
    `only`, for those accounts alone."""
    db = ledger(settings)
    terms = {
        account_id: AccountTerms.model_validate_json(text)
        for account_id, text in db.account_terms().items()
        if only is None or account_id in only
    }
    subscriptions, accounts = db.subscriptions(), db.account_frame()
    if only is not None:
        subscriptions = subscriptions.filter(pl.col("account_id").is_in(only))
        accounts = accounts.filter(pl.col("account_id").is_in(only))
    return RatingInputs(
        subscriptions,
        accounts,
        terms,
        credits_used(db.credits_used(period), terms),
        contract_spend(db, terms, BillingPeriod.parse(period)),
        settings.proration,
        month_clock(db, period).local,
    )


def contract_spend(
    db: Ledger, terms: dict[str, AccountTerms], period: BillingPeriod
) -> dict[tuple[str, str], Decimal]:
    """Per (account, contract id) with a yearly commitment: the charges billed in the
    contract year's months before `period`."""
    spend: dict[tuple[str, str], Decimal] = {}
    for account_id, account_terms in terms.items():
        for contract in account_terms.contracts:
            if contract.commitment is None or contract.commitment_per != "year":
                continue
            year_start, _ = contract.year_of(period.start)
            months, current = [], period
            while current.start > year_start:
                current = current.previous()
                months.append(current.label)
            billed = db.charges_billed(months).get((account_id, contract.currency), 0)
            spend[(account_id, contract.id)] = from_minor_units(billed, contract.currency)
    return spend


def rate_with(
    usage: pl.LazyFrame, catalog: Catalog, period: BillingPeriod, inputs: RatingInputs
) -> RatingResult:
    return rate_usage(
        usage,
        inputs.subscriptions,
        catalog,
        period,
        accounts=inputs.accounts,
        terms=inputs.terms,
        credits_used=inputs.credits_used,
        contract_spend=inputs.contract_spend,
        proration=inputs.proration,
        local_months=inputs.local_months,
    )


@task(name="rate", cache_policy=NO_CACHE)
def rate(settings: Settings, run_id: str, period: str) -> dict[str, object]:
    """Stage `rated.parquet` and `unrated.parquet`; unrated usage carries its reason."""
    with timed() as clock:
        store = object_store(settings)
        catalog = load_catalog(settings.catalog_path)
        ledger(settings).update_run(
            run_id, catalog_version=catalog.version, catalog_hash=catalog.content_hash
        )
        valid = read_staged(store, run_id, "valid")
        result = rate_with(
            valid.lazy(), catalog, BillingPeriod.parse(period), account_inputs(settings, period)
        )
        with full_depth():
            rated_lines_schema().validate(result.lines, lazy=True)
        if result.events != valid.height:
            raise RuntimeError(f"rating saw {result.events} events but {valid.height} are valid")
        stage(store, run_id, "rated", result.lines)
        stage(store, run_id, "unrated", result.unrated)
        stage(store, run_id, "notices", result.notices)
    totals = totals_by_currency(result.lines)
    summary: dict[str, object] = {
        "lines": result.lines.height,
        "accounts": result.lines["account_id"].n_unique(),
        "rated_events": result.rated_events,
        "unrated_events": result.unrated_events,
        "totals": totals,
    }
    get_run_logger().info("rate: %s", summary)
    step_artifact(
        "rate",
        run_id,
        {**summary, "catalog": f"{catalog.version} ({catalog.content_hash[:12]})"},
        clock.seconds,
    )
    return summary


def credits_used(
    minor_by_credit: dict[tuple[str, str], int], terms: dict[str, AccountTerms]
) -> dict[tuple[str, str], Decimal]:
    """Minor units drawn per (account, credit id) -> amounts in each credit's currency."""
    currencies = {(t.account_id, c.id): c.currency for t in terms.values() for c in t.credits}
    return {
        key: from_minor_units(minor, currencies[key])
        for key, minor in minor_by_credit.items()
        if key in currencies
    }
