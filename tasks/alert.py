"""alert: send new findings to the billing team's webhook and as Prefect events, once each."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from infra.alerts import BATCH, post_webhook, slack_message
from infra.settings import Settings
from tasks.common import ledger, object_store, read_staged, step_artifact, timed


@task(name="alert", retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NO_CACHE)
def alert(settings: Settings, run_id: str, period: str) -> dict[str, int]:
    """A finding already sent on a channel (by this or an earlier run) is not sent again."""
    with timed() as clock:
        findings = read_staged(object_store(settings), run_id, "findings")
        rows = [
            {
                **row,
                "amount_at_risk": None
                if row["amount_at_risk"] is None
                else f"{row['amount_at_risk'].normalize():f}",
            }
            for row in findings.iter_rows(named=True)
        ]
        db = ledger(settings)
        sent = {"webhook": 0, "event": 0}
        already = db.alerted([r["finding_id"] for r in rows], "event")
        fresh_events = [r for r in rows if r["finding_id"] not in already]
        for row in fresh_events:
            emit_event(
                event=f"tallyflow.finding.{row['rule']}",
                resource={
                    "prefect.resource.id": f"tallyflow.finding.{row['finding_id']}",
                    "prefect.resource.name": row["rule"],
                    "tallyflow.account": row["account_id"],
                    "tallyflow.severity": row["severity"],
                },
                payload={**row, "period": period, "run_id": run_id},
            )
        db.mark_alerted(run_id, [r["finding_id"] for r in fresh_events], "event")
        sent["event"] = len(fresh_events)
        if settings.webhook_url is not None:
            url = settings.webhook_url.get_secret_value()
            already = db.alerted([r["finding_id"] for r in rows], "webhook")
            fresh = [r for r in rows if r["finding_id"] not in already]
            for start in range(0, len(fresh), BATCH):
                batch = fresh[start : start + BATCH]
                post_webhook(url, slack_message(period, run_id, batch))
                db.mark_alerted(run_id, [r["finding_id"] for r in batch], "webhook")
                sent["webhook"] += len(batch)
    skipped = len(rows) - sent["event"]
    get_run_logger().info("alert: %s new, %d already sent earlier", sent, skipped)
    step_artifact(
        "alert",
        run_id,
        {**sent, "findings": len(rows), "webhook configured": settings.webhook_url is not None},
        clock.seconds,
    )
    return sent
