"""Alert delivery: Slack-compatible JSON to a webhook, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

BATCH = 20  # findings per message; Slack allows 50 blocks (one header + one per finding)
_ICON = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":white_circle:",
}


class AlertDeliveryError(RuntimeError):
    pass


def slack_message(period: str, run_id: str, findings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One Slack message for up to `BATCH` findings: amount at risk and evidence each."""
    if len(findings) > BATCH:
        raise ValueError(f"at most {BATCH} findings per message, got {len(findings)}")
    lines = []
    for finding in findings:
        amount = (
            f"{finding['amount_at_risk']} {finding['currency']} at risk"
            if finding.get("amount_at_risk") is not None
            else "amount at risk unknown"
        )
        lines.append(
            f"{_ICON.get(finding['severity'], '')} *{finding['rule']}* ({finding['severity']}, "
            f"{amount}) — {finding['message']}\n> evidence: `{finding['evidence']}`"
        )
    title = f"Tallyflow: {len(findings)} revenue-leakage finding(s) for {period} (run {run_id})"
    return {
        "text": title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            *(
                {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
                for text in lines
            ),
        ],
    }


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
    try:
        response = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:
        raise AlertDeliveryError(f"alert webhook unreachable: {exc}") from exc
    if response.status_code >= 300:
        raise AlertDeliveryError(
            f"alert webhook answered {response.status_code}: {response.text[:200]}"
        )
