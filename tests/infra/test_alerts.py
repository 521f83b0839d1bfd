"""infra.alerts: the Slack message and its delivery to a webhook (a real local HTTP
receiver, see `webhook_receiver`)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from infra.alerts import AlertDeliveryError, post_webhook, slack_message
from tests.support.harness import WebhookReceiver


def finding(**changes: Any) -> dict[str, Any]:
    return {
        "finding_id": "F-1",
        "rule": "unrated_usage",
        "severity": "high",
        "account_id": "ACC-1",
        "amount_at_risk": "123.45",
        "currency": "USD",
        "message": "voice usage with no price on plan ucaas-business",
        "evidence": '{"events": 42}',
    } | changes


def test_one_header_and_one_section_per_finding() -> None:
    findings = [
        finding(),
        finding(finding_id="F-2", rule="missing_tax_rate", severity="low", amount_at_risk=None),
    ]

    message = slack_message("2026-10", "run-7", findings)

    title = "Tallyflow: 2 revenue-leakage finding(s) for 2026-10 (run run-7)"
    assert message["text"] == title
    header, *sections = message["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": title}}
    assert [s["type"] for s in sections] == ["section", "section"]
    assert [s["text"]["type"] for s in sections] == ["mrkdwn", "mrkdwn"]
    assert sections[0]["text"]["text"] == (
        ":red_circle: *unrated_usage* (high, 123.45 USD at risk) — "
        "voice usage with no price on plan ucaas-business\n"
        '> evidence: `{"events": 42}`'
    )
    assert "(low, amount at risk unknown)" in sections[1]["text"]["text"]
    assert sections[1]["text"]["text"].startswith(":white_circle: *missing_tax_rate*")


def test_no_findings_is_a_header_only() -> None:
    message = slack_message("2026-10", "run-7", [])

    assert [b["type"] for b in message["blocks"]] == ["header"]


def test_long_texts_are_cut_to_slack_limits() -> None:
    # Slack: a header's plain_text holds at most 150 characters, a section's text 3000.
    run_id = "r" * 200
    message = slack_message("2026-10", run_id, [finding(evidence="x" * 5_000)])

    header, section = message["blocks"]
    assert len(header["text"]["text"]) == 150
    assert message["text"].endswith(f"(run {run_id})")
    assert len(section["text"]["text"]) == 3_000
    assert section["text"]["text"].startswith(":red_circle: *unrated_usage*")


def test_post_webhook_delivers_the_json(webhook_receiver: WebhookReceiver) -> None:
    payload = slack_message("2026-10", "run-7", [finding()])

    post_webhook(webhook_receiver.url, payload)

    assert webhook_receiver.bodies == [payload]
    assert webhook_receiver.finding_lines == [payload["blocks"][1]["text"]["text"]]


def test_post_webhook_raises_on_a_server_error(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_next = 1

    with pytest.raises(AlertDeliveryError, match="alert webhook answered 500"):
        post_webhook(webhook_receiver.url, {"text": "hello"})

    assert webhook_receiver.bodies == []
    post_webhook(webhook_receiver.url, {"text": "hello"})
    assert webhook_receiver.bodies == [{"text": "hello"}]


def test_post_webhook_raises_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.

    with pytest.raises(AlertDeliveryError, match="alert webhook unreachable"):
        post_webhook(f"http://127.0.0.1:{port}/hooks/billing", {"text": "hello"}, timeout=2)
