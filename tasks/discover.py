"""discover: list the period's usage objects and record the manifest."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.db import Ledger
from infra.object_store import ObjectInfo, ObjectStore
from infra.settings import Settings
from pricing_rules.periods import BillingPeriod
from tasks.common import ledger, step_artifact, timed, usage_store
from validation.formats import is_usage_file


@dataclass(frozen=True)
class MonthClock:
    """How a period's usage is placed: in local months (each account's time zone), and
    whether the month before and the month after share their edge days with it. A month
    invoiced before local months existed stays a UTC month, and its neighbours do not
    reach into it."""

    local: bool = True
    shared: tuple[bool, bool] = (True, True)


def month_clock(db: Ledger, period: str) -> MonthClock:
    utc = db.utc_billed_periods()
    if period in utc:
        return MonthClock(local=False, shared=(False, False))
    month = BillingPeriod.parse(period)
    return MonthClock(shared=(month.previous().label not in utc, month.next().label not in utc))


def period_prefixes(
    usage_prefix: str, period: str, shared: tuple[bool, bool] = (True, True)
) -> list[str]:
    """Where a period's usage can be: its own days and the edge days it shares with its
    neighbours (an account's local month reaches up to 14 hours into them).

    >>> period_prefixes("usage/", "2026-11")
    ['usage/dt=2026-10-31/', 'usage/dt=2026-11-', 'usage/dt=2026-12-01/']
    """
    before, after = BillingPeriod.parse(period).edge_days
    base = usage_prefix.rstrip("/")
    return [
        *([f"{base}/dt={before}/"] if shared[0] else []),
        f"{base}/dt={period}-",
        *([f"{base}/dt={after}/"] if shared[1] else []),
    ]


def list_period(store: ObjectStore, prefixes: list[str]) -> list[ObjectInfo]:
    """Every object under the period's prefixes, in key order."""
    return sorted((o for prefix in prefixes for o in store.list(prefix)), key=lambda o: o.key)


@task(name="discover", retries=3, retry_delay_seconds=[1, 5, 15], cache_policy=NO_CACHE)
def discover(settings: Settings, run_id: str, period: str) -> list[tuple[str, int, str]]:
    """Usage objects under `usage/dt=YYYY-MM-DD/` for every day of the period and the
    neighbours' edge days."""
    with timed() as clock:
        BillingPeriod.parse(period)
        store = usage_store(settings)
        db = ledger(settings)
        prefixes = period_prefixes(settings.usage_prefix, period, month_clock(db, period).shared)
        prefix = ", ".join(prefixes)
        listed = list_period(store, prefixes)
        manifest = [(o.key, o.size, o.etag) for o in listed if is_usage_file(o.key)]
        skipped = [o.key for o in listed if not is_usage_file(o.key)]
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
