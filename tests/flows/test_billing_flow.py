"""The real billing flow end to end: S3 on moto's HTTP server + PostgreSQL, and the
embedded default (local folder + SQLite), through the real Prefect engine."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flows.billing import billing_run
from flows.decisions import DecisionError, submit_decision
from infra.demo_data import DemoMonth
from infra.settings import Settings
from pricing_rules.rating import subscription_frame
from tasks.common import ledger, object_store, read_staged, usage_store
from tests.support.harness import WebhookReceiver, land_month, make_settings
from tests.support.s3 import FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(params=["local+sqlite", "s3+postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "local+sqlite":
        return make_settings(tmp_path)
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("moto_endpoint")
    return make_settings(
        tmp_path,
        database_url=request.getfixturevalue("postgres_url"),
        store_url=f"s3://{bucket}/billing",
        s3_endpoint=endpoint,
    )


def invoice_objects(settings: Settings) -> list[str]:
    return [o.key for o in object_store(settings).list("invoices/")]


SMS_HEADER = "event_id,account_id,metric,quantity,unit,timestamp,direction\n"


def one_eur_account(settings: Settings, zone: str = "UTC", *more: str) -> Any:
    """ACC-1 (and any `more` accounts), in Germany, on UCaaS Business EUR since January
    2026; returns the ledger."""
    accounts = ["ACC-1", *more]
    db = ledger(settings)
    db.upsert_accounts(
        pl.DataFrame(
            {
                "account_id": accounts,
                "name": [f"Customer {a}" for a in accounts],
                "currency": ["EUR"] * len(accounts),
                "country": ["DE"] * len(accounts),
                "timezone": [zone] * len(accounts),
                "billing_email": [None] * len(accounts),
            }
        )
    )
    db.upsert_subscriptions(
        subscription_frame(
            [
                {
                    "subscription_id": f"SUB-{account}",
                    "account_id": account,
                    "plan_id": "ucaas-business-eur",
                    "start_date": date(2026, 1, 1),
                    "end_date": None,
                }
                for account in accounts
            ]
        )
    )
    return db


def test_billing_run_end_to_end(settings: Settings, small_month: DemoMonth) -> None:
    land_month(settings, small_month)

    summary = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    planted = small_month.planted
    counts = summary["counts"]
    # October's files plus the edge days (Sep 30, Nov 1) that hold the local Octobers of
    # accounts away from UTC; every event of the demo month belongs to its local October.
    assert counts["read"] + counts["edge_read"] == small_month.events_written
    assert counts["edge_read"] > 0 and counts["borrowed"] == counts["edge_read"]
    assert counts["deferred"] == 0
    assert counts["quarantined"] == sum(planted.malformed_by_reason.values())
    assert counts["duplicates"] == planted.duplicate_copies
    assert counts["read"] + counts["borrowed"] == (
        counts["valid"] + counts["quarantined"] + counts["duplicates"]
    )
    rated = summary["rated"]
    assert rated["rated_events"] + rated["unrated_events"] == counts["valid"]

    rules = summary["detected"]["by_rule"]
    assert set(rules) == {
        "usage_without_subscription",
        "usage_not_priced",
        "missing_recurring_charge",
    }
    db = ledger(settings)
    run = db.run(summary["run_id"])
    assert run is not None and run.status == "published"
    assert run.events_read == counts["read"]
    assert (run.events_deferred, run.events_borrowed) == (0, counts["borrowed"])

    invoices = db.invoices("2026-10")
    billed_accounts = {i.account_id for i in invoices}
    # Every account with a known plan is invoiced; the orphan and the unknown plan are not.
    expected = set(small_month.subscriptions["account_id"]) - {planted.unknown_plan_account_id}
    assert billed_accounts == expected
    assert planted.orphan_account_id not in billed_accounts
    assert sorted(summary["published"]) == sorted(i.invoice_id for i in invoices)
    for invoice in invoices:
        lines = db.invoice_lines(invoice.invoice_id)
        assert invoice.total_minor == sum(line.amount_minor for line in lines)
        assert invoice.line_count == len(lines) > 0
        document = json.loads(object_store(settings).get(invoice.json_key))
        assert document["total_minor"] == invoice.total_minor
        assert document["catalog_hash"] == invoice.catalog_hash == run.catalog_hash
        html = object_store(settings).get(invoice.html_key).decode()
        assert invoice.invoice_id in html
    assert len(invoice_objects(settings)) == 2 * len(invoices)
    for name in ("raw", "valid", "quarantine", "duplicates", "rated", "findings"):
        assert object_store(settings).head(f"runs/{summary['run_id']}/{name}.parquet")


def test_rerun_publishes_nothing_new(
    settings: Settings, small_month: DemoMonth, webhook_receiver: WebhookReceiver
) -> None:
    settings = Settings.model_validate({**dict(settings), "webhook_url": webhook_receiver.url})
    land_month(settings, small_month)
    first = billing_run(period="2026-10", settings=settings, approval_policy="auto")
    objects = invoice_objects(settings)
    alerts = len(webhook_receiver.finding_lines)

    second = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    assert first["published"] and second["published"] == []
    assert sorted(second["existing"]) == sorted(first["published"])
    assert second["decision"]["policy"] == "nothing-to-publish"
    db = ledger(settings)
    assert len(db.invoices("2026-10")) == len(first["published"])
    assert invoice_objects(settings) == objects
    # Findings are found again but each was alerted once.
    assert second["detected"]["findings"] == first["detected"]["findings"]
    assert alerts == first["detected"]["findings"]
    assert len(webhook_receiver.finding_lines) == alerts
    assert second["alerts"] == {"webhook": 0, "event": 0}


def test_webhook_receives_slack_compatible_findings(
    tmp_path: Path, small_month: DemoMonth, webhook_receiver: WebhookReceiver
) -> None:
    settings = make_settings(tmp_path, webhook_url=webhook_receiver.url)
    land_month(settings, small_month)
    webhook_receiver.fail_next = 1  # the first post fails; the alert task retries

    summary = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    assert webhook_receiver.bodies, "no alert reached the webhook"
    for body in webhook_receiver.bodies:
        assert isinstance(body["text"], str) and "2026-10" in body["text"]
        assert body["blocks"][0]["type"] == "header"
    lines = webhook_receiver.finding_lines
    assert len(lines) == summary["detected"]["findings"]
    orphan = [line for line in lines if small_month.planted.orphan_account_id in line]
    assert orphan and "usage_without_subscription" in orphan[0]
    assert "at risk" in orphan[0] and "evidence" in orphan[0]


def _start_paused_run(
    settings: Settings, policy: str = "manual", run: Any = billing_run, period: str = "2026-10"
) -> tuple[threading.Thread, dict[str, Any], str]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["summary"] = run(period=period, settings=settings, approval_policy=policy)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    db = ledger(settings)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        waiting = [r for r in db.latest_runs() if r.status == "awaiting_approval"]
        if waiting:
            return thread, outcome, waiting[0].run_id
        assert "error" not in outcome, outcome.get("error")
        time.sleep(0.2)
    raise AssertionError("the run never paused for approval")


def _decide_when_paused(settings: Settings, run_id: str, approved: bool) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            submit_decision(
                settings, run_id, approved, "fin.controller@example.com", "checked the totals"
            )
            return
        except DecisionError:
            # The ledger says "awaiting" a moment before Prefect reports Paused.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_paused_run_resumes_with_finance_approval(tmp_path: Path, small_month: DemoMonth) -> None:
    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    thread, outcome, run_id = _start_paused_run(settings)
    assert invoice_objects(settings) == []  # nothing is published before the decision

    _decide_when_paused(settings, run_id, approved=True)
    thread.join(120)

    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert summary["decision"] == {
        "approved": True,
        "approver": "fin.controller@example.com",
        "comment": "checked the totals",
        "policy": "manual",
    }
    approval = ledger(settings).approval(run_id)
    assert approval is not None and approval.decision == "approved"
    assert approval.approver == "fin.controller@example.com"
    assert summary["published"] and len(ledger(settings).invoices("2026-10")) == len(
        summary["published"]
    )


# The demo month has high findings, so the low-risk policy also leaves the call to finance.
@pytest.mark.parametrize("policy", ["manual", "low_risk"])
def test_rejected_run_publishes_nothing(
    tmp_path: Path, small_month: DemoMonth, policy: str
) -> None:
    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    thread, outcome, run_id = _start_paused_run(settings, policy)

    _decide_when_paused(settings, run_id, approved=False)
    thread.join(120)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"]["status"] == "rejected"
    assert ledger(settings).invoices("2026-10") == []
    assert invoice_objects(settings) == []
    approval = ledger(settings).approval(run_id)
    assert approval is not None and approval.decision == "rejected"
    run = ledger(settings).run(run_id)
    assert run is not None and run.status == "rejected"


def test_decision_for_unknown_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DecisionError, match="no billing run"):
        submit_decision(make_settings(tmp_path), "2026-10-nope", True, "someone")


def test_s3_faults_are_retried_during_a_run(
    tmp_path: Path, small_month: DemoMonth, s3_bucket: str, fault_proxy: FaultProxy
) -> None:
    settings = make_settings(
        tmp_path,
        store_url=f"s3://{s3_bucket}",
        s3_endpoint=fault_proxy.endpoint_url,
        s3_max_attempts=6,
    )
    land_month(settings, small_month)
    before = fault_proxy.request_count
    fault_proxy.fail_next(3)
    fault_proxy.reset_next(2)

    summary = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    assert fault_proxy.pending_faults == 0
    assert fault_proxy.request_count > before + 5
    assert summary["counts"]["read"] + summary["counts"]["edge_read"] == small_month.events_written
    assert summary["published"]


def test_low_risk_policy_approves_a_clean_run(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    usage_store(settings).put(
        "usage/dt=2026-10-05/part-0000.csv",
        b"event_id,account_id,metric,quantity,unit,timestamp,direction\n"
        b"e1,ACC-1,sms,2350,message,2026-10-05T10:00:00Z,outbound\n"
        # midnight in Berlin (CEST) on October 1, where the account's month starts
        b"e2,ACC-1,seats,12,seat,2026-09-30T22:00:00Z,\n",
    )
    db = one_eur_account(settings, "Europe/Berlin")

    summary = billing_run(period="2026-10", settings=settings, approval_policy="low_risk")

    assert summary["detected"]["findings"] == 0
    assert summary["decision"]["approver"] == "policy:low-risk"
    approval = db.approval(summary["run_id"])
    assert approval is not None and approval.policy == "low_risk"
    (invoice,) = db.invoices("2026-10")
    # 185.00 platform + 12 seats all month x 13.50 + 2,350 x 0.0072 SMS (16.92) = 363.92;
    # DE MwSt 19% of 363.92 = 69.1448 => 69.14; total 433.06
    assert invoice.total_minor == 43306


class FlakyLedger:
    """Makes `Ledger.publish_invoice` fail on chosen calls, as a crash or a lost
    connection would between writing the invoice objects and the ledger row."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_calls: set[int]) -> None:
        from infra.db import Ledger

        self.calls = 0
        original = Ledger.publish_invoice

        def publish_invoice(ledger: Ledger, invoice: Any) -> bool:
            self.calls += 1
            if self.calls in fail_calls:
                raise ConnectionError("ledger connection lost")
            return original(ledger, invoice)

        monkeypatch.setattr(Ledger, "publish_invoice", publish_invoice)


@pytest.fixture
def fast_publish_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.billing
    from tasks.publish import publish

    monkeypatch.setattr(flows.billing, "publish", publish.with_options(retry_delay_seconds=0))


@pytest.mark.usefixtures("fast_publish_retries")
def test_a_publish_retried_after_a_failure_publishes_each_invoice_once(
    tmp_path: Path, small_month: DemoMonth, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    flaky = FlakyLedger(monkeypatch, fail_calls={3})

    summary = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    invoices = ledger(settings).invoices("2026-10")
    assert flaky.calls > len(invoices)  # the task really failed and ran again
    assert sorted(summary["published"]) == sorted(i.invoice_id for i in invoices)
    assert len(invoice_objects(settings)) == 2 * len(invoices)


@pytest.mark.usefixtures("fast_publish_retries")
def test_a_run_that_died_while_publishing_is_completed_by_the_next_run(
    tmp_path: Path, small_month: DemoMonth, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    # Two invoices go through, then every attempt fails until the retries run out.
    FlakyLedger(monkeypatch, fail_calls=set(range(3, 1000)))
    with pytest.raises(ConnectionError):
        billing_run(period="2026-10", settings=settings, approval_policy="auto")
    failed = ledger(settings).latest_runs()[0]
    assert failed.status == "failed"
    assert len(ledger(settings).invoices("2026-10")) == 2
    monkeypatch.undo()

    again = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    invoices = ledger(settings).invoices("2026-10")
    assert len(again["existing"]) == 2
    assert len(again["published"]) == len(invoices) - 2
    assert len({i.invoice_id for i in invoices}) == len(invoices)
    # The failed attempts wrote objects before failing; the re-run reused the same keys.
    assert len(invoice_objects(settings)) == 2 * len(invoices)


def test_a_late_file_after_publishing_is_a_finding_and_nothing_is_republished(
    tmp_path: Path, small_month: DemoMonth
) -> None:
    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    first = billing_run(period="2026-10", settings=settings, approval_policy="auto")
    account = small_month.subscriptions.filter(pl.col("plan_id") == "ucaas-business-eur")[
        "account_id"
    ][0]
    # 20,000 SMS arrive after the October invoices went out: 20,000 x 0.0072 = 144.00 EUR
    # plus VAT, which no invoice bills.
    usage_store(settings).put(
        "usage/dt=2026-10-30/late-0001.csv",
        f"event_id,account_id,metric,quantity,unit,timestamp,direction\n"
        f"late-1,{account},sms,20000,message,2026-10-30T10:00:00Z,outbound\n".encode(),
    )

    again = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    assert again["published"] == []
    assert len(again["existing"]) == len(first["published"])
    assert again["counts"]["read"] == first["counts"]["read"] + 1
    findings = pl.read_parquet(
        io.BytesIO(object_store(settings).get(f"runs/{again['run_id']}/findings.parquet"))
    ).filter(pl.col("rule") == "published_invoice_differs")
    (finding,) = findings.iter_rows(named=True)
    assert finding["account_id"] == account
    assert finding["currency"] == "EUR"
    assert finding["amount_at_risk"] >= Decimal("144.00")


def test_late_usage_is_billed_once_as_an_adjustment_on_the_next_invoice(
    tmp_path: Path, small_month: DemoMonth
) -> None:
    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    billing_run(period="2026-10", settings=settings, approval_policy="auto")
    db = ledger(settings)
    october = db.billed_totals("2026-10")
    account = small_month.subscriptions.filter(pl.col("plan_id") == "ucaas-business-eur")[
        "account_id"
    ][0]
    usage_store(settings).put(
        "usage/dt=2026-10-30/late-0001.csv",
        f"event_id,account_id,metric,quantity,unit,timestamp,direction\n"
        f"late-1,{account},sms,20000,message,2026-10-30T10:00:00Z,outbound\n".encode(),
    )

    november = billing_run(period="2026-11", settings=settings, approval_policy="auto")

    assert november["late_usage"]["periods"]["2026-10"]["late objects"] == 1
    (invoice,) = [i for i in db.invoices("2026-11") if i.account_id == account]
    adjustments = [line for line in db.invoice_lines(invoice.invoice_id) if line.service_period]
    assert {line.service_period for line in adjustments} == {"2026-10"}
    by_charge = {line.charge_id: line.amount_minor for line in adjustments}
    # 20,000 SMS x 0.0072 EUR = 144.00 EUR, with the tax on it as its own adjustment
    assert by_charge["sms"] == 14400
    assert any(charge.startswith("tax:") for charge in by_charge)
    assert all("Late usage for 2026-10" in line.description for line in adjustments)
    # Only that account's October moved, by exactly its adjustments.
    after = db.billed_totals("2026-10")
    moved = {key: after[key] - october[key] for key in after if after[key] != october[key]}
    assert moved == {(account, "EUR"): sum(by_charge.values())}

    # Re-running either period publishes nothing, finds nothing unbilled, bills nothing again.
    october_again = billing_run(period="2026-10", settings=settings, approval_policy="auto")
    assert october_again["published"] == []
    assert "published_invoice_differs" not in october_again["detected"]["by_rule"]
    november_again = billing_run(period="2026-11", settings=settings, approval_policy="auto")
    assert november_again["published"] == []
    assert november_again["late_usage"]["adjustment_lines"] == 0
    assert "published_invoice_differs" not in november_again["detected"]["by_rule"]
    december = billing_run(period="2026-12", settings=settings, approval_policy="auto")
    assert december["late_usage"]["adjustment_lines"] == 0
    assert db.billed_totals("2026-10") == after


def test_rerating_a_closed_period_publishes_notes_after_approval_never_an_invoice(
    tmp_path: Path, small_month: DemoMonth
) -> None:
    from flows.rerate import rerate_run

    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    billing_run(period="2026-10", settings=settings, approval_policy="auto")
    db = ledger(settings)
    invoices = {i.invoice_id: i for i in db.invoices("2026-10")}
    billed = db.billed_totals("2026-10")
    # The catalog is fixed: EUR SMS were listed at 0.0072 but sold at 0.0070.
    fixed = tmp_path / "catalog-fixed"
    fixed.mkdir()
    (fixed / "decks").mkdir()
    for deck in (Path(settings.catalog_path).parent / "decks").iterdir():
        (fixed / "decks" / deck.name).write_bytes(deck.read_bytes())
    text = Path(settings.catalog_path).read_text()
    assert text.count('unit_price: "0.0072"') == 1
    (fixed / "catalog.yaml").write_text(
        text.replace('unit_price: "0.0072"', 'unit_price: "0.0070"')
    )
    settings = settings.model_copy(update={"catalog_path": fixed / "catalog.yaml"})

    # Finance rejects the first re-rating: nothing is published.
    thread, outcome, run_id = _start_paused_run(settings, run=rerate_run)
    _decide_when_paused(settings, run_id, approved=False)
    thread.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"]["notes"]["credit_notes"] > 0
    assert outcome["summary"]["published"] == [] and db.notes("2026-10") == []

    approved = rerate_run(period="2026-10", settings=settings, approval_policy="auto")

    notes = db.notes("2026-10")
    assert len(notes) == len(approved["published"]) == approved["notes"]["credit_notes"]
    assert approved["notes"]["debit_notes"] == 0
    assert {n.kind for n in notes} == {"credit"}
    for note in notes:
        (invoice,) = [
            i for i in invoices.values() if (i.account_id, i.currency) == (note.account_id, "EUR")
        ]
        old = {line.charge_id: line for line in db.invoice_lines(invoice.invoice_id)}
        lines = {line.charge_id: line for line in db.note_lines(note.note_id)}
        sms = Decimal(old["sms"].quantity)
        # e.g. 1,234 SMS: 1,234 x 0.0070 = 8.638 -> 8.64, billed 1,234 x 0.0072 = 8.88
        cent = Decimal("0.01")
        expected = (sms * Decimal("0.0070")).quantize(cent, ROUND_HALF_UP) - (
            sms * Decimal("0.0072")
        ).quantize(cent, ROUND_HALF_UP)
        assert lines["sms"].amount_minor == int(expected * 100)
        assert note.total_minor == sum(line.amount_minor for line in lines.values())
        assert set(lines) <= {"sms"} | {c for c in old if c.startswith("tax:")}
    # Invoices are untouched; what October was billed moved by the notes exactly.
    assert {i.invoice_id: i.total_minor for i in db.invoices("2026-10")} == {
        k: i.total_minor for k, i in invoices.items()
    }
    after = db.billed_totals("2026-10")
    assert sum(after.values()) - sum(billed.values()) == sum(n.total_minor for n in notes)
    assert len([o for o in object_store(settings).list("notes/2026-10/")]) == 2 * len(notes)

    # Again: nothing changed since, nothing to publish; the billing run sees no difference.
    again = rerate_run(period="2026-10", settings=settings, approval_policy="auto")
    assert again["notes"]["notes"] == 0 and again["published"] == []
    assert again["decision"]["policy"] == "nothing-to-publish"
    rerun = billing_run(period="2026-10", settings=settings, approval_policy="auto")
    assert "published_invoice_differs" not in rerun["detected"]["by_rule"]


def test_rerate_and_invoices_commands(
    tmp_path: Path, small_month: DemoMonth, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    monkeypatch.setenv("TALLYFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("TALLYFLOW_CATALOG_PATH", str(settings.catalog_path))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    assert runner.invoke(app, ["run", "--period", "2026-10", "--auto-approve"]).exit_code == 0
    # A subscription ended on October 21 but was billed the whole month: a correction.
    db = ledger(settings)
    invoiced = sorted({i.account_id for i in db.invoices("2026-10")})
    subs = db.subscriptions().sort("subscription_id")
    first = subs.filter(pl.col("account_id") == invoiced[0]).row(0, named=True)
    db.upsert_subscriptions(
        subs.filter(pl.col("subscription_id") == first["subscription_id"]).with_columns(
            pl.lit(date(2026, 10, 22)).alias("end_date")
        )
    )

    result = runner.invoke(app, ["rerate", "--period", "2026-10", "--auto-approve"])

    assert result.exit_code == 0, result.output
    assert "Re-rating run rerate-2026-10-" in result.output
    assert "credit notes / debit notes" in result.output
    (note,) = db.notes("2026-10")
    assert note.account_id == first["account_id"] and note.kind == "credit"
    listed = runner.invoke(app, ["invoices", "--period", "2026-10"])
    assert f"{note.note_id} (credit note)" in listed.output


def test_imported_histories_bill_prorated_fees_and_credits_in_a_run(
    tmp_path: Path, small_month: DemoMonth, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    sub = small_month.subscriptions.filter(
        (pl.col("plan_id") == "ucaas-business-usd") & pl.col("end_date").is_null()
    ).row(0, named=True)
    histories = tmp_path / "histories.yaml"
    histories.write_text(
        f"- subscription_id: {sub['subscription_id']}\n"
        f"  account_id: {sub['account_id']}\n"
        "  billing_from: 2026-10-01\n"
        "  changes:\n"
        f"    - {{action: start, day: {sub['start_date']}, plan: ucaas-business-usd}}\n"
        "    - {action: pause, day: 2026-10-11}\n"
        "    - {action: resume, day: 2026-10-21}\n"
    )
    monkeypatch.setenv("TALLYFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("TALLYFLOW_CATALOG_PATH", str(settings.catalog_path))
    imported = CliRunner().invoke(app, ["import", "--histories-file", str(histories)])
    assert imported.exit_code == 0, imported.output
    assert "Imported 1 subscription histories" in imported.output

    summary = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    db = ledger(settings)
    (invoice,) = [i for i in db.invoices("2026-10") if i.account_id == sub["account_id"]]
    fees = [
        (line.description.split(",")[0], line.amount_minor)
        for line in db.invoice_lines(invoice.invoice_id)
        if line.charge_id == "platform"
    ]
    # 199.00 a month in advance; October is the first invoice from the history and was
    # not billed before: October 1-10, 10/31 x 199 = 64.19; paused 11-20; 21-31,
    # 11/31 x 199 = 70.61; then November in advance, 199.00.
    assert fees == [
        ("Remaining time on UCaaS Business: Platform fee", 6419),
        ("Remaining time on UCaaS Business: Platform fee", 7061),
        ("Platform fee (UCaaS Business", 19900),
    ]
    assert summary["counts"]["read"] + summary["counts"]["edge_read"] == small_month.events_written


def test_a_contract_year_ending_is_trued_up_against_every_invoice_of_the_year(
    tmp_path: Path, small_month: DemoMonth
) -> None:
    from pricing_rules.terms import AccountTerms

    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    account = small_month.subscriptions.filter(pl.col("plan_id") == "ucaas-business-eur")[
        "account_id"
    ][0]
    db = ledger(settings)
    terms = AccountTerms.model_validate(
        {
            "account_id": account,
            "tax_exempt": True,
            "contracts": [
                {
                    "id": "MSA-7",
                    "currency": "EUR",
                    "start": "2025-11-01",  # contract year 1 ends with October 2026
                    "term_months": 24,
                    "commitment": "5000",
                }
            ],
        }
    )
    db.set_account_terms(account, terms.model_dump_json())
    billing_run(period="2026-09", settings=settings, approval_policy="auto")
    september = db.charges_billed(["2026-09"]).get((account, "EUR"), 0)

    billing_run(period="2026-10", settings=settings, approval_policy="auto")

    (invoice,) = [i for i in db.invoices("2026-10") if i.account_id == account]
    lines = {line.charge_id: line.amount_minor for line in db.invoice_lines(invoice.invoice_id)}
    october = sum(v for k, v in lines.items() if not k.startswith("contract:"))
    # 5,000.00 committed for the year; September and October are its only invoices
    assert september > 0
    assert lines["contract:MSA-7:commitment"] == 500_000 - september - october
    assert db.charges_billed(["2026-09", "2026-10"])[(account, "EUR")] == 500_000


def test_findings_are_emitted_as_prefect_events(tmp_path: Path, small_month: DemoMonth) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    settings = make_settings(tmp_path)
    land_month(settings, small_month)
    started = datetime.now(UTC) - timedelta(seconds=5)
    summary = billing_run(period="2026-10", settings=settings, approval_policy="auto")

    wanted = EventFilter(
        occurred=EventOccurredFilter(since=started),
        event=EventNameFilter(prefix=["tallyflow.finding."]),
    )
    names: list[str] = []
    deadline = time.monotonic() + 30  # events reach the server asynchronously
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            page = client.read_events(filter=wanted, limit=50)
            events = list(page.events)
            while page.next_page:
                page = client.read_events_page(page.next_page)
                events.extend(page.events)
            # Other tests' runs emit the same rules; keep this run's events.
            names = [e.event for e in events if e.payload.get("run_id") == summary["run_id"]]
            if len(names) >= summary["detected"]["findings"]:
                break
            time.sleep(0.5)
    assert len(names) == summary["detected"]["findings"]
    rules = {name.removeprefix("tallyflow.finding.") for name in names}
    assert rules == set(summary["detected"]["by_rule"])


def test_each_account_is_billed_its_local_month_across_two_runs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = usage_store(settings)
    # Berlin (UTC+1 after Oct 25) starts November at 23:00 UTC on October 31;
    # Los Angeles (UTC-7 until Nov 1) ends October at 07:00 UTC on November 1.
    store.put(
        "usage/dt=2026-10-31/part-0000.csv",
        (
            SMS_HEADER + "b-oct,BER,sms,100,message,2026-10-31T12:00:00Z,outbound\n"
            "b-nov,BER,sms,1000,message,2026-10-31T23:30:00Z,outbound\n"
        ).encode(),
    )
    store.put(
        "usage/dt=2026-11-01/part-0000.csv",
        (
            SMS_HEADER + "l-oct,LAX,sms,2000,message,2026-11-01T03:00:00Z,outbound\n"
            "l-nov,LAX,sms,10,message,2026-11-01T12:00:00Z,outbound\n"
        ).encode(),
    )
    db = ledger(settings)
    db.upsert_accounts(
        pl.DataFrame(
            {
                "account_id": ["BER", "LAX"],
                "name": ["Berlin GmbH", "LA Inc"],
                "currency": ["EUR", "USD"],
                "country": ["DE", "US"],
                "timezone": ["Europe/Berlin", "America/Los_Angeles"],
                "billing_email": [None, None],
            }
        )
    )
    db.upsert_subscriptions(
        subscription_frame(
            [
                {
                    "subscription_id": f"S-{account}",
                    "account_id": account,
                    "plan_id": plan,
                    "start_date": date(2026, 1, 1),
                    "end_date": None,
                }
                for account, plan in [("BER", "ucaas-business-eur"), ("LAX", "ucaas-business-usd")]
            ]
        )
    )

    def sms(period: str) -> dict[str, list[tuple[str | None, str]]]:
        found: dict[str, list[tuple[str | None, str]]] = {}
        for invoice in db.invoices(period):
            found[invoice.account_id] = [
                (line.service_period, line.quantity)
                for line in db.invoice_lines(invoice.invoice_id)
                if line.charge_id == "sms"
            ]
        return found

    october = billing_run(period="2026-10", settings=settings, approval_policy="auto")
    counts = october["counts"]
    # own day Oct 31: b-oct valid, b-nov deferred; edge day Nov 1: l-oct borrowed
    assert (counts["read"], counts["edge_read"]) == (2, 2)
    assert (counts["valid"], counts["deferred"], counts["borrowed"]) == (2, 1, 1)
    assert sms("2026-10") == {
        "BER": [(None, "100")],
        "LAX": [(None, "2000")],
    }

    # A file for November 1 lands after October was invoiced; its event is October's in LA.
    store.put(
        "usage/dt=2026-11-01/part-0001.csv",
        (SMS_HEADER + "l-late,LAX,sms,500,message,2026-11-01T05:00:00Z,outbound\n").encode(),
    )
    november = billing_run(period="2026-11", settings=settings, approval_policy="auto")
    counts = november["counts"]
    # own day Nov 1: l-nov valid, l-oct and l-late deferred; edge day Oct 31: b-nov borrowed
    assert (counts["read"], counts["valid"], counts["deferred"], counts["borrowed"]) == (3, 2, 2, 1)
    bills = sms("2026-11")
    assert bills["BER"] == [(None, "1000")]
    # LAX's November holds its own 10 messages, and October's late 500 as an adjustment:
    # October was 2,000 messages, ceil(2000 / 1000) = 2 blocks - 1 free = 1 x 7.50;
    # with the late 500 it is 2,500, 3 blocks - 1 free = 2 x 7.50, so +7.50.
    assert (None, "10") in bills["LAX"]
    (adjustment,) = [
        line
        for invoice in db.invoices("2026-11")
        if invoice.account_id == "LAX"
        for line in db.invoice_lines(invoice.invoice_id)
        if line.service_period == "2026-10" and line.charge_id == "sms"
    ]
    assert adjustment.amount_minor == 750

    # Running both months again bills nothing more, and finds nothing unbilled.
    billed = {p: db.billed_totals(p) for p in ("2026-10", "2026-11")}
    for month in ("2026-10", "2026-11"):
        again = billing_run(period=month, settings=settings, approval_policy="auto")
        assert again["late_usage"]["adjustment_lines"] == 0
        assert "published_invoice_differs" not in again["detected"]["by_rule"]
    assert {p: db.billed_totals(p) for p in ("2026-10", "2026-11")} == billed


def test_a_late_file_is_billed_once_when_a_rerating_publishes_first(tmp_path: Path) -> None:
    from flows.rerate import rerate_run
    from tasks.common import BasisChangedError

    settings = make_settings(tmp_path)
    store = usage_store(settings)
    store.put(
        "usage/dt=2026-10-05/part-0000.csv",
        (SMS_HEADER + "e1,ACC-1,sms,100,message,2026-10-05T10:00:00Z,outbound\n").encode(),
    )
    db = one_eur_account(settings)
    billing_run(period="2026-10", settings=settings, approval_policy="auto")
    october = db.billed_totals("2026-10")[("ACC-1", "EUR")]
    store.put(
        "usage/dt=2026-10-20/late-0000.csv",
        (SMS_HEADER + "late,ACC-1,sms,20000,message,2026-10-20T10:00:00Z,outbound\n").encode(),
    )

    # November's run prices the late file as an adjustment and waits for finance; in the
    # meantime a re-rating of October bills the same file as a debit note.
    thread, outcome, run_id = _start_paused_run(settings, period="2026-11")
    rerated = rerate_run(period="2026-10", settings=settings, approval_policy="auto")
    (note,) = db.notes("2026-10")
    assert note.kind == "debit" and rerated["published"] == [note.note_id]
    sms = {line.charge_id: line.amount_minor for line in db.note_lines(note.note_id)}["sms"]
    assert sms == 14400  # 20,000 SMS x 0.0072 EUR = 144.00

    # Approving November now would bill the file twice: the publish refuses, at once.
    _decide_when_paused(settings, run_id, approved=True)
    thread.join(120)
    assert isinstance(outcome.get("error"), BasisChangedError), outcome
    assert "ACC-1 for 2026-10" in str(outcome["error"])
    assert db.invoices("2026-11") == []
    failed = db.run(run_id)
    assert failed is not None and failed.status == "failed"

    # A new run prices against what is billed now: the file is billed, nothing to adjust.
    again = billing_run(period="2026-11", settings=settings, approval_policy="auto")
    assert again["late_usage"]["adjustment_lines"] == 0
    (invoice,) = db.invoices("2026-11")
    assert not [line for line in db.invoice_lines(invoice.invoice_id) if line.service_period]
    assert db.billed_totals("2026-10")[("ACC-1", "EUR")] == october + note.total_minor


def test_late_usage_beyond_the_grace_window_is_a_finding_until_re_rated(tmp_path: Path) -> None:
    from flows.rerate import rerate_run

    settings = make_settings(tmp_path, late_usage_grace_periods=1)
    store = usage_store(settings)
    db = one_eur_account(settings, "UTC", "ACC-2")
    billing_run(period="2026-10", settings=settings, approval_policy="auto")
    # November 1's file is on October's edge, but holds only November usage: November's
    # run settles it for October (nothing changes) and bills it for November.
    store.put(
        "usage/dt=2026-11-01/part-0000.csv",
        (SMS_HEADER + "nov,ACC-2,sms,100,message,2026-11-01T10:00:00Z,outbound\n").encode(),
    )
    billing_run(period="2026-11", settings=settings, approval_policy="auto")
    store.put(
        "usage/dt=2026-10-20/late-0000.csv",
        (SMS_HEADER + "late,ACC-1,sms,500,message,2026-10-20T10:00:00Z,outbound\n").encode(),
    )

    # December's grace window is November only: October's file is reported, not billed,
    # for the account whose usage it holds.
    december = billing_run(period="2026-12", settings=settings, approval_policy="auto")
    assert december["late_usage"]["adjustment_lines"] == 0
    assert december["late_usage"]["outside_grace"] == 1
    assert december["detected"]["by_rule"].get("late_usage_outside_grace") == 1
    findings = read_staged(object_store(settings), december["run_id"], "findings")
    (finding,) = findings.filter(pl.col("rule") == "late_usage_outside_grace").iter_rows(named=True)
    assert finding["account_id"] == "ACC-1" and finding["severity"] == "high"
    assert "rerate --period 2026-10" in finding["message"]

    rerate_run(period="2026-10", settings=settings, approval_policy="auto")
    (note,) = db.notes("2026-10")  # ACC-1's: ACC-2's October did not change
    assert note.account_id == "ACC-1"
    assert {line.charge_id: line.amount_minor for line in db.note_lines(note.note_id)}[
        "sms"
    ] == 360  # 500 x 0.0072 EUR = 3.60
    again = billing_run(period="2026-12", settings=settings, approval_policy="auto")
    assert "late_usage_outside_grace" not in again["detected"]["by_rule"]


def test_the_first_local_month_after_utc_months_neither_borrows_nor_defers(
    tmp_path: Path,
) -> None:
    # October was billed before usage followed local months (its run counted no deferred
    # events): ACC-1's event at 20:00 UTC on October 31 was on October's invoice, though
    # it is November 1 in Tokyo, where the account now is.
    settings = make_settings(tmp_path)
    store = usage_store(settings)
    db = one_eur_account(settings, "UTC", "ACC-2")
    store.put(
        "usage/dt=2026-10-31/part-0000.csv",
        (SMS_HEADER + "tyo,ACC-1,sms,700,message,2026-10-31T20:00:00Z,outbound\n").encode(),
    )
    october = billing_run(period="2026-10", settings=settings, approval_policy="auto")
    db.update_run(october["run_id"], events_deferred=None, events_borrowed=None)
    db.upsert_accounts(
        pl.DataFrame(
            {
                "account_id": ["ACC-1", "ACC-2"],
                "name": ["Tokyo KK", "LA Inc"],
                "currency": ["EUR", "EUR"],
                "country": ["DE", "DE"],
                "timezone": ["Asia/Tokyo", "America/Los_Angeles"],
                "billing_email": [None, None],
            }
        )
    )
    # 03:00 UTC on November 1 is still October 31 in Los Angeles, but October's UTC run
    # never read November 1: it is November's.
    store.put(
        "usage/dt=2026-11-01/part-0000.csv",
        (SMS_HEADER + "lax,ACC-2,sms,300,message,2026-11-01T03:00:00Z,outbound\n").encode(),
    )

    november = billing_run(period="2026-11", settings=settings, approval_policy="auto")

    counts = november["counts"]
    assert (counts["read"], counts["edge_read"], counts["deferred"]) == (1, 0, 0)
    assert november["late_usage"]["adjustment_lines"] == 0
    sms = {
        invoice.account_id: [
            line.quantity
            for line in db.invoice_lines(invoice.invoice_id)
            if line.charge_id == "sms"
        ]
        for invoice in db.invoices("2026-11")
    }
    assert sms == {"ACC-1": [], "ACC-2": ["300"]}


def test_late_usage_a_re_run_cannot_invoice_is_billed_by_the_next_run(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    db = one_eur_account(settings)
    for month in ("2026-10", "2026-11"):
        billing_run(period=month, settings=settings, approval_policy="auto")
    usage_store(settings).put(
        "usage/dt=2026-10-20/late-0000.csv",
        (SMS_HEADER + "late,ACC-1,sms,500,message,2026-10-20T10:00:00Z,outbound\n").encode(),
    )
    # Re-running November cannot carry the late file: November's invoice is already out,
    # so the run leaves it to the next one.
    rerun = billing_run(period="2026-11", settings=settings, approval_policy="auto")
    assert rerun["late_usage"]["adjustment_lines"] == 0 and rerun["published"] == []

    december = billing_run(period="2026-12", settings=settings, approval_policy="auto")

    (invoice,) = db.invoices("2026-12")
    assert december["published"] == [invoice.invoice_id]
    adjusted = {
        line.charge_id: line.amount_minor
        for line in db.invoice_lines(invoice.invoice_id)
        if line.service_period == "2026-10"
    }
    assert adjusted["sms"] == 360  # 500 x 0.0072 EUR = 3.60
