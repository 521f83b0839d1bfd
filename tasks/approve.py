"""approve: publish the run's summary, then wait for finance (or apply the auto policy)."""

from __future__ import annotations

import json
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from infra.settings import Settings
from tasks.common import ledger


class FinanceDecision(RunInput):
    """The form finance fills in from the Prefect UI (Resume) or `tallyflow approve`."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: publish this run's invoices; reject: publish nothing."
    )
    approver: str = Field(min_length=1, pattern=r"\S", description="Who decides (name or email).")
    comment: str = Field("", description="Why; kept with the decision.")

    @property
    def approved(self) -> bool:
        return self.decision == "approve"


def summary_markdown(period: str, run_id: str, summary: dict[str, Any]) -> str:
    counts = summary["counts"]
    detected = summary["detected"]
    totals = (
        "\n".join(f"| {c} | {t} |" for c, t in summary["pending_totals"].items()) or "| – | – |"
    )
    risk = "\n".join(f"- {c}: {a}" for c, a in detected["amount_at_risk"].items()) or "- none"
    rules = "\n".join(f"- `{r}`: {n}" for r, n in detected["by_rule"].items()) or "- none"
    rerate = summary.get("kind") == "rerate"
    title = "Re-rating run" if rerate else "Billing run"
    documents = "Credit and debit notes" if rerate else "Invoices"
    return (
        f"## {title} {run_id} — period {period}\n\n"
        f"**{documents} to publish**: {summary['pending_invoices']} new, "
        f"{summary['existing_invoices']} already published\n\n"
        f"| currency | net total of the new {documents.lower()} (tax, discounts and credits "
        f"included) |\n"
        f"|---|---|\n"
        f"{totals}\n\n"
        f"**Amount at risk** (findings: {detected['findings']}, high or critical: "
        f"{detected.get('high_or_critical', 0)})\n{risk}\n\n"
        f"**Findings by rule**\n{rules}\n\n"
        f"**Events**: read {counts['read']:,} = valid {counts['valid']:,} + quarantined "
        f"{counts['quarantined']:,} + duplicates {counts['duplicates']:,}\n"
    )


@task(name="approve", cache_policy=NO_CACHE)
def approve(
    settings: Settings, run_id: str, period: str, summary: dict[str, Any], policy: str
) -> dict[str, Any]:
    """Return the decision, recorded in the ledger with who made it and when."""
    logger = get_run_logger()
    markdown = summary_markdown(period, run_id, summary)
    create_markdown_artifact(
        key="tallyflow-approval-summary",
        markdown=markdown,
        description=f"What finance approves for run {run_id}",
    )
    db = ledger(settings)
    decision: dict[str, Any]
    if summary["pending_invoices"] == 0:
        decision = {
            "approved": True,
            "approver": "policy:nothing-to-publish",
            "comment": "nothing changed since the period was billed"
            if summary.get("kind") == "rerate"
            else "every invoice of this period is already published",
            "policy": "nothing-to-publish",
        }
    elif policy == "low_risk" and summary["detected"]["high_or_critical"] == 0:
        decision = {
            "approved": True,
            "approver": "policy:low-risk",
            "comment": "approved by the low-risk policy: no high or critical findings",
            "policy": "low_risk",
        }
    elif policy == "auto":
        decision = {
            "approved": True,
            "approver": "policy:auto",
            "comment": "approved by the auto-approve policy without review",
            "policy": "auto",
        }
    else:
        # manual, or low_risk with high findings: finance decides.
        db.update_run(run_id, status="awaiting_approval")
        logger.info(
            "approve: waiting for finance; resume the run in the Prefect UI or run "
            "`tallyflow approve %s`",
            run_id,
        )
        answer = pause_flow_run(
            wait_for_input=FinanceDecision.with_initial_data(description=markdown),
            timeout=settings.approval_timeout_seconds,
            poll_interval=settings.approval_poll_seconds,
        )
        decision = {
            "approved": answer.approved,
            "approver": answer.approver.strip(),
            "comment": answer.comment,
            "policy": "manual",
        }
    db.record_approval(
        run_id,
        "approved" if decision["approved"] else "rejected",
        decision["approver"],
        decision["comment"],
        decision["policy"],
    )
    db.update_run(run_id, status="approved" if decision["approved"] else "rejected")
    logger.info("approve: %s", json.dumps(decision))
    return decision
