"""The billing run: discover, load, validate, rate, detect, alert, approve, publish."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext

from infra.db import utcnow
from infra.settings import Settings, load_settings
from pricing_rules.periods import BillingPeriod
from tasks.alert import alert
from tasks.approve import approve
from tasks.common import ledger, staged_key
from tasks.detect import detect
from tasks.discover import discover
from tasks.late import settle_late
from tasks.load import load
from tasks.publish import pending_invoices, publish
from tasks.rate import rate
from tasks.validate import validate
from validation.usage import check_loaded

STAGED = (
    "raw",
    "valid",
    "quarantine",
    "duplicates",
    "deferred",
    "rated",
    "adjustments",
    "unrated",
    "notices",
    "findings",
    "basis",
    "late_outside_grace",
)


def previous_month(today: date) -> str:
    """The month before `today`'s, e.g. 2026-11-02 -> `2026-10`.

    >>> previous_month(date(2027, 1, 15))
    '2026-12'
    """
    first = today.replace(day=1)
    return f"{(first - timedelta(days=1)):%Y-%m}"


def new_run_id(period: str) -> str:
    return f"{period}-{uuid.uuid4().hex[:10]}"


def _run_name() -> str:
    from prefect.runtime import flow_run

    period = flow_run.parameters.get("period") or previous_month(datetime.now(UTC).date())
    return f"billing-{period}"


@flow(name="billing-run", flow_run_name=_run_name)
def billing_run(
    period: str | None = None,
    settings: Settings | None = None,
    approval_policy: str | None = None,
) -> dict[str, Any]:
    """Bill one period end to end; returns the run summary (also stored in the ledger).

    Without a period (a scheduled deployment) it bills the previous calendar month.

    `approval_policy` overrides the settings: `manual` pauses for finance, `auto`
    approves and records that a policy did, `low_risk` does so only without high or
    critical findings.
    """
    settings = settings or load_settings()
    period = period or previous_month(datetime.now(UTC).date())
    BillingPeriod.parse(period)
    policy = approval_policy or settings.approval_policy
    if policy not in ("manual", "auto", "low_risk"):
        raise ValueError(f"approval policy must be manual, auto or low_risk, got {policy!r}")
    logger = get_run_logger()
    run_id = new_run_id(period)
    context = FlowRunContext.get()
    flow_run_id = str(context.flow_run.id) if context and context.flow_run else None
    db = ledger(settings)
    db.start_run(run_id, period, flow_run_id)
    logger.info("billing run %s for %s (policy %s)", run_id, period, policy)
    try:
        manifest = discover(settings, run_id, period)
        read = load(settings, run_id, manifest)
        counts = validate(settings, run_id, period)
        check_loaded(read, counts)
        rated = rate(settings, run_id, period)
        late = settle_late(settings, run_id, period)
        detected = detect(settings, run_id, period)
        alerts = alert(settings, run_id, period)
        new, existing, pending_totals = pending_invoices(settings, run_id, period)
        summary: dict[str, Any] = {
            "run_id": run_id,
            "period": period,
            "files": len(manifest),
            "counts": counts,
            "rated": rated,
            "late_usage": late,
            "detected": detected,
            "alerts": alerts,
            "pending_invoices": new,
            "existing_invoices": existing,
            "pending_totals": pending_totals,
        }
        decision = approve(settings, run_id, period, summary, policy)
        if decision["approved"]:
            outcome = publish(settings, run_id, period)
        else:
            logger.info("run %s rejected by %s: nothing published", run_id, decision["approver"])
            outcome = {"published": [], "existing": []}
        summary |= {
            "decision": decision,
            "published": outcome["published"],
            "existing": outcome["existing"],
            "store_url": settings.resolved_store_url,
            "reports": {name: staged_key(run_id, name) for name in STAGED},
            "status": "published" if decision["approved"] else "rejected",
        }
        db.update_run(
            run_id,
            status=summary["status"],
            finished_at=utcnow(),
            summary=json.dumps(summary, default=str),
        )
        return summary
    except BaseException:
        db.update_run(run_id, status="failed", finished_at=utcnow())
        raise
