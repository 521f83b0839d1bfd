"""Approve or reject a paused billing run from code or the terminal."""

from __future__ import annotations

from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run

from infra.settings import Settings
from tasks.common import ledger


class DecisionError(RuntimeError):
    pass


def submit_decision(
    settings: Settings, run_id: str, approved: bool, approver: str, comment: str = ""
) -> None:
    """Resume the run's paused Prefect flow with finance's input; the flow records it."""
    if not approver.strip():
        raise DecisionError("an approver is required")
    run = ledger(settings).run(run_id)
    if run is None:
        raise DecisionError(f"no billing run {run_id!r}")
    if run.status != "awaiting_approval" or run.flow_run_id is None:
        raise DecisionError(f"run {run_id} is {run.status}, not awaiting approval")
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(run.flow_run_id)).state
    except (httpx.HTTPError, ObjectNotFound, RuntimeError) as exc:
        raise DecisionError(
            f"cannot read flow run {run.flow_run_id} from the Prefect API ({exc}); is "
            "PREFECT_API_URL pointing at the server that runs it?"
        ) from exc
    if state is None or not state.is_paused():
        raise DecisionError(
            f"flow run {run.flow_run_id} is not paused (state {state.name if state else None}); "
            "is PREFECT_API_URL pointing at the server that runs it?"
        )
    try:
        resume_flow_run(
            UUID(run.flow_run_id),
            run_input={
                "decision": "approve" if approved else "reject",
                "approver": approver.strip(),
                "comment": comment,
            },
        )
    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
        raise DecisionError(f"the Prefect API refused the decision: {exc}") from exc
