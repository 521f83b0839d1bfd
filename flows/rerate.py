"""The re-rating run: rate a closed period again and publish credit and debit notes."""

from __future__ import annotations

import json
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext

from infra.db import utcnow
from infra.settings import Settings, load_settings
from pricing_rules.periods import BillingPeriod
from tasks.approve import approve
from tasks.common import basis_rows, ledger, object_store, stage_basis, staged_key
from tasks.discover import discover
from tasks.load import load
from tasks.rate import rate
from tasks.rerate import compare, publish_notes
from tasks.validate import validate
from validation.usage import check_loaded

NO_FINDINGS = {"findings": 0, "high_or_critical": 0, "by_rule": {}, "amount_at_risk": {}}


def _run_name() -> str:
    from prefect.runtime import flow_run

    return f"rerate-{flow_run.parameters.get('period')}"


@flow(name="rerate-run", flow_run_name=_run_name)
def rerate_run(
    period: str, settings: Settings | None = None, approval_policy: str | None = None
) -> dict[str, Any]:
    """Re-rate a closed period after a usage or catalog fix.

    Every line that now prices differently from what the period was billed (invoice,
    later adjustments, earlier notes) becomes a note line; after the finance approval
    (the same policies as a billing run) each account gets one credit or debit note per
    currency. Invoices are never touched; a second re-rating with nothing new publishes
    nothing.
    """
    settings = settings or load_settings()
    BillingPeriod.parse(period)
    policy = approval_policy or settings.approval_policy
    if policy not in ("manual", "auto", "low_risk"):
        raise ValueError(f"approval policy must be manual, auto or low_risk, got {policy!r}")
    logger = get_run_logger()
    run_id = f"rerate-{period}-{uuid.uuid4().hex[:10]}"
    context = FlowRunContext.get()
    flow_run_id = str(context.flow_run.id) if context and context.flow_run else None
    db = ledger(settings)
    db.start_run(run_id, period, flow_run_id, kind="rerate")
    logger.info("re-rating run %s for %s (policy %s)", run_id, period, policy)
    try:
        # What the period was billed, before any usage is read: publish-notes checks that
        # nobody billed it since (docs/decisions/0020).
        basis = db.billing_basis(period)
        stage_basis(object_store(settings), run_id, basis_rows(basis, period, set(basis)))
        manifest = discover(settings, run_id, period)
        read = load(settings, run_id, manifest)
        counts = validate(settings, run_id, period)
        check_loaded(read, counts)
        rated = rate(settings, run_id, period)
        compared = compare(settings, run_id, period)
        summary: dict[str, Any] = {
            "run_id": run_id,
            "kind": "rerate",
            "period": period,
            "files": len(manifest),
            "counts": counts,
            "rated": rated,
            "notes": compared,
            "detected": NO_FINDINGS,
            "pending_invoices": compared["notes"],
            "existing_invoices": 0,
            "pending_totals": compared["net"],
        }
        decision = approve(settings, run_id, period, summary, policy)
        if decision["approved"] and compared["notes"]:
            outcome = publish_notes(settings, run_id, period)
        else:
            outcome = {"published": [], "existing": []}
        summary |= {
            "decision": decision,
            "published": outcome["published"],
            "existing": outcome["existing"],
            "reports": {name: staged_key(run_id, name) for name in ("rated", "notes")},
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
