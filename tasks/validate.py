"""validate: Pandera at full depth; quarantine with reasons; drop duplicate event ids."""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.settings import Settings
from pricing_rules.catalog import load_catalog
from pricing_rules.periods import BillingPeriod
from tasks.common import ledger, object_store, read_staged, stage, step_artifact, timed
from tasks.discover import month_clock
from validation.usage import validate_usage


@task(name="validate", cache_policy=NO_CACHE)
def validate(settings: Settings, run_id: str, period: str) -> dict[str, int]:
    """Stage valid, quarantine, duplicates and deferred; the counts satisfy
    read + borrowed = valid + quarantined + duplicates + deferred."""
    with timed() as clock:
        store = object_store(settings)
        catalog = load_catalog(settings.catalog_path)
        db = ledger(settings)
        months = month_clock(db, period)
        result = validate_usage(
            read_staged(store, run_id, "raw"),
            catalog.metric_units(),
            BillingPeriod.parse(period),
            db.account_zones() if months.local else {},
            months.shared,
        )
        stage(store, run_id, "valid", result.valid)
        stage(store, run_id, "quarantine", result.quarantine)
        stage(store, run_id, "duplicates", result.duplicates)
        stage(store, run_id, "deferred", result.deferred)
        counts = asdict(result.counts)
        db.update_run(
            run_id,
            events_read=counts["read"],
            events_valid=counts["valid"],
            events_quarantined=counts["quarantined"],
            events_duplicate=counts["duplicates"],
            events_deferred=counts["deferred"],
            events_borrowed=counts["borrowed"],
        )
    by_reason = result.quarantine.group_by("reason").len().sort("len", descending=True).rows()
    get_run_logger().info("validate: %s; quarantined by reason: %s", counts, dict(by_reason))
    step_artifact(
        "validate",
        run_id,
        {
            **counts,
            "conservation": "read + borrowed = valid + quarantined + duplicates + deferred",
        },
        clock.seconds,
        note="\n".join(f"- `{reason}`: {n}" for reason, n in by_reason),
    )
    return counts
