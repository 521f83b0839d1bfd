"""discover: list the period's usage objects and record the manifest."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.object_store import ObjectInfo, ObjectStore
from infra.settings import Settings
from pricing_rules.periods import BillingPeriod
from tasks.common import ledger, step_artifact, timed, usage_store
from validation.formats import is_usage_file


def period_prefixes(usage_prefix: str, period: str) -> list[str]:
    """Where a period's usage can be: its own days and its neighbours' edge days (an
    account's local month reaches up to 14 hours into them).

    >>> period_prefixes("usage/", "2026-11")
    ['usage/dt=2026-10-31/', 'usage/dt=2026-11-', 'usage/dt=2026-12-01/']
    """
    before, after = BillingPeriod.parse(period).edge_days
    base = usage_prefix.rstrip("/")
    return [f"{base}/dt={before}/", f"{base}/dt={period}-", f"{base}/dt={after}/"]


def list_period(store: ObjectStore, usage_prefix: str, period: str) -> list[ObjectInfo]:
    """Every object under the period's prefixes, in key order."""
    found = [o for prefix in period_prefixes(usage_prefix, period) for o in store.list(prefix)]
    return sorted(found, key=lambda o: o.key)


@task(name="discover", retries=3, retry_delay_seconds=[1, 5, 15], cache_policy=NO_CACHE)
def discover(settings: Settings, run_id: str, period: str) -> list[tuple[str, int, str]]:
    """Usage objects under `usage/dt=YYYY-MM-DD/` for every day of the period and the
    neighbours' edge days."""
    with timed() as clock:
        BillingPeriod.parse(period)
        store = usage_store(settings)
        prefix = ", ".join(period_prefixes(settings.usage_prefix, period))
        listed = list_period(store, settings.usage_prefix, period)
        manifest = [(o.key, o.size, o.etag) for o in listed if is_usage_file(o.key)]
        skipped = [o.key for o in listed if not is_usage_file(o.key)]
        db = ledger(settings)
        seen_before = {key for key, _, _ in db.period_manifest(period, exclude_run=run_id)}
        db.record_manifest(run_id, manifest)
    late = [key for key, _, _ in manifest if seen_before and key not in seen_before]
    since = (
        f"{len(late)} new since an earlier run of {period}"
        if seen_before
        else f"first run of {period}"
    )
    get_run_logger().info(
        "discover: %d usage files (%d bytes) under %s; %s; %d skipped (not usage files)",
        len(manifest),
        sum(size for _, size, _ in manifest),
        prefix,
        since,
        len(skipped),
    )
    step_artifact(
        "discover",
        run_id,
        {
            "files": len(manifest),
            "bytes": sum(s for _, s, _ in manifest),
            "new since an earlier run": len(late) if seen_before else "first run",
            "skipped (not usage)": len(skipped),
        },
        clock.seconds,
        note="\n".join(f"- late file `{key}`" for key in late[:50]),
    )
    return manifest
