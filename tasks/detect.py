"""detect: revenue-assurance rules over rated lines, unrated usage and subscriptions."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.settings import Settings
from pricing_rules.catalog import load_catalog
from pricing_rules.money import minor_unit_exponent, to_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import RatingResult
from tasks.common import (
    ledger,
    object_store,
    read_staged,
    stage,
    staged_key,
    step_artifact,
    timed,
)
from validation.leakage import detect_leakage
from validation.schemas import Findings, full_depth


def risk_by_currency(findings: pl.DataFrame) -> dict[str, str]:
    known = findings.filter(pl.col("amount_at_risk").is_not_null())
    totals = known.group_by("currency").agg(pl.col("amount_at_risk").sum()).sort("currency")
    return {
        c: str(a.quantize(Decimal(1).scaleb(-minor_unit_exponent(c)))) for c, a in totals.rows()
    }


@task(name="detect", cache_policy=NO_CACHE)
def detect(settings: Settings, run_id: str, period: str) -> dict[str, object]:
    """Stage `findings.parquet` and record the findings in the ledger."""
    with timed() as clock:
        store = object_store(settings)
        catalog = load_catalog(settings.catalog_path)
        db = ledger(settings)
        lines = read_staged(store, run_id, "rated")
        unrated = read_staged(store, run_id, "unrated")
        rating = RatingResult(
            lines,
            unrated,
            rated_events=int(lines["events"].sum()),
            unrated_events=int(unrated["events"].sum()),
            notices=read_staged(store, run_id, "notices"),
        )
        # What the period was billed: its invoices' own lines and later adjustments for it.
        published = db.billed_totals(period)
        late = (
            read_staged(store, run_id, "late_outside_grace")
            if store.head(staged_key(run_id, "late_outside_grace")) is not None
            else None
        )
        findings = detect_leakage(
            rating, db.subscriptions(), catalog, BillingPeriod.parse(period), published, late
        )
        with full_depth():
            Findings.validate(findings, lazy=True)
        stage(store, run_id, "findings", findings)
        db.record_findings(
            run_id,
            [
                {
                    **{k: v for k, v in row.items() if k != "amount_at_risk"},
                    "amount_at_risk_minor": None
                    if row["amount_at_risk"] is None
                    else to_minor_units(row["amount_at_risk"].normalize(), row["currency"]),
                }
                for row in findings.iter_rows(named=True)
            ],
        )
    by_rule = dict(findings.group_by("rule").len().sort("rule").rows())
    summary: dict[str, object] = {
        "findings": findings.height,
        "high_or_critical": findings.filter(pl.col("severity").is_in(["high", "critical"])).height,
        "by_rule": by_rule,
        "amount_at_risk": risk_by_currency(findings),
    }
    get_run_logger().info("detect: %s", summary)
    step_artifact("detect", run_id, summary, clock.seconds)
    return summary
