"""infra.db.Ledger on both dialects it supports: SQLite (a file under tmp_path) and
PostgreSQL (a fresh database on the local server, see `postgres_url`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import inspect

from infra.db import Ledger, NewInvoice

PERIOD = "2026-10"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger' / 'tallyflow.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    ledger = Ledger(url)
    ledger.migrate()
    yield ledger
    ledger.dispose()


def accounts_frame(*rows: tuple[str, str, str]) -> pl.DataFrame:
    """(account_id, name, currency) rows, shaped like `infra.directory.read_accounts`."""
    return pl.DataFrame(
        [
            {
                "account_id": account_id,
                "name": name,
                "currency": currency,
                "country": "US",
                "timezone": "UTC",
                "billing_email": None,
            }
            for account_id, name, currency in rows
        ],
        schema={
            "account_id": pl.String,
            "name": pl.String,
            "currency": pl.String,
            "country": pl.String,
            "timezone": pl.String,
            "billing_email": pl.String,
        },
    )


def line(line_no: int, charge_id: str, amount_minor: int, currency: str = "USD") -> dict[str, Any]:
    return {
        "line_no": line_no,
        "line_id": f"line-{line_no}:{charge_id}",
        "charge_id": charge_id,
        "description": f"{charge_id} line",
        "quantity": "1",
        "unit": "period",
        "unit_price": None,
        "amount_minor": amount_minor,
        "currency": currency,
        "details": "[]",
    }


def new_invoice(
    account_id: str = "ACC-1",
    period: str = PERIOD,
    currency: str = "USD",
    *,
    invoice_id: str | None = None,
    lines: list[dict[str, Any]] | None = None,
    run_id: str = "run-1",
) -> NewInvoice:
    lines = lines if lines is not None else [line(1, "base", 4_900), line(2, "voice", 1_234)]
    return NewInvoice(
        invoice_id=invoice_id or f"INV-{period}-{account_id}-{currency}",
        account_id=account_id,
        period=period,
        currency=currency,
        run_id=run_id,
        total_minor=sum(item["amount_minor"] for item in lines),
        catalog_hash="c" * 64,
        content_sha256="a" * 64,
        html_key=f"invoices/{period}/{account_id}/x.html",
        json_key=f"invoices/{period}/{account_id}/x.json",
        lines=lines,
    )


# --------------------------------------------------------------------------------------
# schema


def test_migrate_twice_is_a_no_op(db: Ledger) -> None:
    db.upsert_accounts(accounts_frame(("ACC-1", "Acme", "USD")))
    tables = set(inspect(db.engine).get_table_names())

    db.migrate()

    assert set(inspect(db.engine).get_table_names()) == tables
    assert {
        "accounts",
        "subscriptions",
        "billing_runs",
        "manifest_entries",
        "findings",
        "alerts_sent",
        "approvals",
        "invoices",
        "invoice_lines",
    } <= tables
    assert list(db.accounts()) == ["ACC-1"]


def test_the_migrations_build_exactly_the_models(db: Ledger) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from infra.db import Base

    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


# --------------------------------------------------------------------------------------
# accounts and subscriptions


def test_upsert_accounts_twice_updates_and_keeps_terms(db: Ledger) -> None:
    assert db.upsert_accounts(accounts_frame(("ACC-1", "Acme", "USD"), ("ACC-2", "Bolt", "EUR")))
    db.set_account_terms("ACC-1", '{"account_id": "ACC-1", "tax_exempt": true}')

    assert db.upsert_accounts(accounts_frame(("ACC-1", "Acme Holdings", "GBP"))) == 1

    accounts = db.accounts()
    assert sorted(accounts) == ["ACC-1", "ACC-2"]
    assert (accounts["ACC-1"].name, accounts["ACC-1"].currency) == ("Acme Holdings", "GBP")
    assert accounts["ACC-2"].name == "Bolt"
    # The directory frame has no `terms` column, so an import never wipes them.
    assert db.account_terms() == {"ACC-1": '{"account_id": "ACC-1", "tax_exempt": true}'}
    assert db.account_frame()["currency"].to_list() == ["GBP", "EUR"]


def test_upsert_of_nothing_writes_nothing(db: Ledger) -> None:
    assert db.upsert_accounts(accounts_frame()) == 0
    assert db.account_frame().height == 0


def test_terms_for_an_unknown_account_are_refused(db: Ledger) -> None:
    with pytest.raises(KeyError, match="account NOPE does not exist"):
        db.set_account_terms("NOPE", "{}")


def test_subscriptions_round_trip_with_quantity_and_add_ons(db: Ledger) -> None:
    subscriptions = pl.DataFrame(
        [
            {
                "subscription_id": "S-2",
                "account_id": "ACC-1",
                "plan_id": "ucaas-business",
                "start_date": date(2026, 10, 16),
                "end_date": None,
                "quantity": 25,
                "add_ons": "call-recording,sms-pack",
            },
            {
                "subscription_id": "S-1",
                "account_id": "ACC-1",
                "plan_id": "ucaas-starter",
                "start_date": date(2026, 1, 1),
                "end_date": date(2026, 10, 16),
                "quantity": 1,
                "add_ons": None,
            },
        ],
        schema={
            "subscription_id": pl.String,
            "account_id": pl.String,
            "plan_id": pl.String,
            "start_date": pl.Date,
            "end_date": pl.Date,
            "quantity": pl.Int64,
            "add_ons": pl.String,
        },
    )
    db.upsert_subscriptions(subscriptions)
    db.upsert_subscriptions(subscriptions.with_columns(pl.col("quantity") * 2))

    stored = db.subscriptions()

    # 25 seats upserted again as 50; rows come back ordered by subscription_id, with no
    # lifecycle history.
    expected = subscriptions.with_columns(
        pl.col("quantity") * 2, pl.lit(None, pl.String).alias("history")
    ).sort("subscription_id")
    assert stored.to_dicts() == expected.to_dicts()
    assert stored.schema == expected.schema


# --------------------------------------------------------------------------------------
# invoices


def test_publish_invoice_inserts_once(db: Ledger) -> None:
    invoice = new_invoice()

    assert db.publish_invoice(invoice) is True
    assert db.publish_invoice(invoice) is False
    # Another run of the same period computes other lines: still not published twice.
    rerun = new_invoice(lines=[line(1, "base", 9_999)], run_id="run-2")
    assert db.publish_invoice(rerun) is False

    [stored] = db.invoices(PERIOD)
    assert (stored.run_id, stored.total_minor, stored.line_count) == ("run-1", 6_134, 2)
    lines = db.invoice_lines(stored.invoice_id)
    assert [(r.line_no, r.charge_id, r.amount_minor) for r in lines] == [
        (1, "base", 4_900),
        (2, "voice", 1_234),
    ]


def test_one_invoice_per_account_period_and_currency(db: Ledger) -> None:
    assert db.publish_invoice(new_invoice(invoice_id="INV-A"))
    # A different invoice id for the same (account, period, currency) is refused too.
    assert db.publish_invoice(new_invoice(invoice_id="INV-B")) is False
    # Any other currency or period is a separate invoice.
    assert db.publish_invoice(new_invoice(currency="EUR"))
    assert db.publish_invoice(new_invoice(period="2026-11"))

    assert [i.invoice_id for i in db.invoices()] == [
        "INV-2026-10-ACC-1-EUR",
        "INV-2026-11-ACC-1-USD",
        "INV-A",
    ]
    assert db.invoice_lines("INV-B") == []
    assert set(db.existing_invoices(PERIOD)) == {("ACC-1", "USD"), ("ACC-1", "EUR")}


def test_amounts_survive_as_exact_integers(db: Ledger) -> None:
    # 10**15 + 1 minor units = 10,000,000,000,000.01 USD: beyond a float's exact cents.
    huge = 10**15 + 1
    assert float(huge * 1000 + 1) != huge * 1000 + 1
    db.publish_invoice(new_invoice(lines=[line(1, "base", huge), line(2, "credit:p", -1)]))

    [stored] = db.invoices()
    assert stored.total_minor == huge - 1
    assert type(stored.total_minor) is int
    assert [r.amount_minor for r in db.invoice_lines(stored.invoice_id)] == [huge, -1]


def test_concurrent_publishers_insert_exactly_once(db: Ledger) -> None:
    barrier = threading.Barrier(2, timeout=10)

    def publish(run_id: str) -> bool:
        invoice = new_invoice(run_id=run_id)
        barrier.wait()
        return db.publish_invoice(invoice)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(publish, ["run-a", "run-b"]))

    assert sorted(results) == [False, True]
    [stored] = db.invoices()
    assert len(db.invoice_lines(stored.invoice_id)) == 2


def test_credits_used_counts_credit_lines_of_every_other_period(db: Ledger) -> None:
    # Credit lines are negative: drawing 100.00 of prepay-1 is a line of -10000.
    db.publish_invoice(
        new_invoice(
            period="2026-08",
            lines=[line(1, "base", 15_000), line(2, "credit:prepay-1", -10_000)],
        )
    )
    db.publish_invoice(
        new_invoice(
            period="2026-09",
            lines=[
                line(1, "base", 15_000),
                line(2, "credit:prepay-1", -5_000),
                line(3, "credit:promo", -250),
                line(4, "credit_note_fee", 99),  # not a credit draw: no colon
            ],
        )
    )
    db.publish_invoice(new_invoice(period="2026-10", lines=[line(1, "credit:prepay-1", -777)]))

    # Rating October: prepay-1 drew 10000 + 5000 = 15000 in other periods.
    assert db.credits_used("2026-10") == {("ACC-1", "prepay-1"): 15_000, ("ACC-1", "promo"): 250}
    # Re-rating September: August's 10000 and October's 777 are already drawn.
    assert db.credits_used("2026-09") == {("ACC-1", "prepay-1"): 10_777}
    assert db.credits_used("2026-08") == {("ACC-1", "prepay-1"): 5_777, ("ACC-1", "promo"): 250}


def test_billed_totals_and_consumed_keys_follow_adjustments(db: Ledger) -> None:
    for run_id, period in (("run-oct", "2026-10"), ("run-nov", "2026-11")):
        db.start_run(run_id, period, None)
    db.record_manifest("run-oct", [("usage/dt=2026-10-01/a.csv", 10, "e")])
    db.record_manifest(
        "run-nov",
        [("usage/dt=2026-11-01/b.csv", 10, "e"), ("usage/dt=2026-10-30/late.csv", 5, "e")],
    )
    db.publish_invoice(new_invoice("ACC-A", "2026-10", run_id="run-oct"))  # 4900 + 1234
    db.publish_invoice(new_invoice("ACC-B", "2026-10", run_id="run-oct"))
    late = line(3, "voice", 300) | {"line_id": "adjust:2026-10:x", "service_period": "2026-10"}
    db.publish_invoice(
        new_invoice(
            "ACC-A",
            "2026-11",
            run_id="run-nov",
            lines=[line(1, "base", 4_900) | {"service_period": None}, late],
        )
    )

    # October: its own lines plus the 300 adjustment billed on ACC-A's November invoice;
    # November: its own line only (the adjustment serves October).
    assert db.billed_totals("2026-10") == {("ACC-A", "USD"): 6_434, ("ACC-B", "USD"): 6_134}
    assert db.billed_totals("2026-11") == {("ACC-A", "USD"): 4_900}
    # ACC-A's October was billed by both runs' reads; ACC-B's by October's alone.
    assert db.consumed_keys("2026-10", ["usage/dt=2026-10-"]) == {
        "ACC-A": {"usage/dt=2026-10-01/a.csv", "usage/dt=2026-10-30/late.csv"},
        "ACC-B": {"usage/dt=2026-10-01/a.csv"},
    }
    assert db.consumed_keys("2026-09", ["usage/dt=2026-09-"]) == {}


def test_charges_billed_leave_out_tax_credits_and_discounts(db: Ledger) -> None:
    lines = [
        line(1, "platform", 18_500),
        line(2, "discount:promo", -1_850),
        line(3, "tax:DE", 3_164),
        line(4, "credit:prepay", -5_000),
        line(5, "contract:C1:commitment", 1_000),
    ]
    db.publish_invoice(new_invoice("ACC-A", "2026-10", lines=lines))
    db.publish_invoice(new_invoice("ACC-A", "2026-11", lines=[line(1, "platform", 18_500)]))
    late = line(2, "sms", 300) | {"line_id": "adjust:2026-10:S:sms", "service_period": "2026-10"}
    db.publish_invoice(
        new_invoice(
            "ACC-A", "2026-12", lines=[line(1, "platform", 18_500) | {"service_period": None}, late]
        )
    )

    # October: 18,500 + 1,000 (+ 300 late, billed in December); November: 18,500.
    assert db.charges_billed(["2026-10"]) == {("ACC-A", "USD"): 19_800}
    assert db.charges_billed(["2026-10", "2026-11"]) == {("ACC-A", "USD"): 38_300}
    assert db.charges_billed([]) == {}


def test_notes_count_in_credits_used_and_charges_billed(db: Ledger) -> None:
    from infra.db import NewNote

    db.publish_invoice(new_invoice("ACC-A", "2026-09", lines=[line(1, "platform", 10_000)]))
    note_lines = [line(1, "platform", -2_000), line(2, "credit:prepay", -500)]
    db.publish_note(
        NewNote(
            note_id="CN-2026-09-ACC-A-USD-x",
            kind="credit",
            account_id="ACC-A",
            period="2026-09",
            currency="USD",
            run_id="rerate-1",
            total_minor=-2_500,
            catalog_hash="c" * 64,
            content_sha256="a" * 64,
            html_key="notes/x.html",
            json_key="notes/x.json",
            lines=note_lines,
        )
    )
    # September's charges: 10,000 less the 2,000 the note took back; the note also drew
    # 500 of the prepaid credit, which an October rating must see as used.
    assert db.charges_billed(["2026-09"]) == {("ACC-A", "USD"): 8_000}
    assert db.credits_used("2026-10") == {("ACC-A", "prepay"): 500}
    assert db.credits_used("2026-09") == {}


def test_credits_used_keeps_accounts_apart(db: Ledger) -> None:
    db.publish_invoice(new_invoice("ACC-A", "2026-09", lines=[line(1, "credit:prepay-1", -10_000)]))
    db.publish_invoice(new_invoice("ACC-B", "2026-09", lines=[line(1, "credit:prepay-1", -3_000)]))

    used = db.credits_used("2026-10")

    # ACC-B drew 30.00 of its own prepay-1; ACC-A's 100.00 is not ACC-B's.
    assert used == {("ACC-A", "prepay-1"): 10_000, ("ACC-B", "prepay-1"): 3_000}


# --------------------------------------------------------------------------------------
# runs, manifests, findings, alerts, approvals


def test_runs_are_started_updated_and_listed(db: Ledger) -> None:
    db.start_run("run-1", PERIOD, flow_run_id="flow-1")
    db.start_run("run-2", PERIOD, flow_run_id=None)
    db.update_run("run-1", status="published", events_read=10**12, summary='{"ok": true}')

    run = db.run("run-1")
    assert run is not None
    assert (run.status, run.events_read, run.summary) == ("published", 10**12, '{"ok": true}')
    assert db.run("missing") is None
    assert {r.run_id for r in db.latest_runs()} == {"run-1", "run-2"}
    assert len(db.latest_runs(limit=1)) == 1
    with pytest.raises(KeyError, match="billing run missing does not exist"):
        db.update_run("missing", status="failed")


def test_period_manifest_excludes_the_given_run(db: Ledger) -> None:
    db.start_run("run-1", PERIOD, None)
    db.start_run("run-2", PERIOD, None)
    db.start_run("run-nov", "2026-11", None)
    db.record_manifest("run-1", [("usage/dt=2026-10-01/a.csv", 10, "e1")])
    db.record_manifest(
        "run-2",
        [("usage/dt=2026-10-01/a.csv", 10, "e1"), ("usage/dt=2026-10-02/b.csv", 20, "e2")],
    )
    db.record_manifest("run-nov", [("usage/dt=2026-11-01/c.csv", 30, "e3")])
    # Recording the same entry again is harmless.
    db.record_manifest("run-1", [("usage/dt=2026-10-01/a.csv", 10, "e1")])

    assert db.period_manifest(PERIOD, exclude_run="run-2") == [
        ("usage/dt=2026-10-01/a.csv", 10, "e1")
    ]
    assert sorted(db.period_manifest(PERIOD)) == [
        ("usage/dt=2026-10-01/a.csv", 10, "e1"),
        ("usage/dt=2026-10-02/b.csv", 20, "e2"),
    ]
    assert db.period_manifest("2026-12") == []
    assert db.manifest("run-2") == [
        ("usage/dt=2026-10-01/a.csv", 10, "e1"),
        ("usage/dt=2026-10-02/b.csv", 20, "e2"),
    ]


def test_findings_and_alerts_are_recorded_once(db: Ledger) -> None:
    db.start_run("run-1", PERIOD, None)
    finding = {
        "finding_id": "F-1",
        "rule": "unrated_usage",
        "severity": "high",
        "account_id": "ACC-1",
        "subscription_id": None,
        "metric": "voice",
        "amount_at_risk_minor": 12_345,
        "currency": "USD",
        "message": "usage without a price",
        "evidence": "{}",
    }
    db.record_findings("run-1", [finding])
    db.record_findings("run-1", [finding])

    assert db.alerted(["F-1", "F-2"], "webhook") == set()
    db.mark_alerted("run-1", ["F-1", "F-2"], "webhook")
    db.mark_alerted("run-2", ["F-1"], "webhook")
    db.mark_alerted("run-1", [], "webhook")

    assert db.alerted(["F-1", "F-2", "F-3"], "webhook") == {"F-1", "F-2"}
    assert db.alerted(["F-1"], "event") == set()
    assert db.alerted([], "webhook") == set()


def test_record_approval_overwrites_the_decision(db: Ledger) -> None:
    db.start_run("run-1", PERIOD, None)
    assert db.approval("run-1") is None

    db.record_approval("run-1", "rejected", "ana@finance", "totals look off", "manual")
    db.record_approval("run-1", "approved", "bo@finance", "checked again", "manual")

    approval = db.approval("run-1")
    assert approval is not None
    assert (approval.decision, approval.approver, approval.comment, approval.policy) == (
        "approved",
        "bo@finance",
        "checked again",
        "manual",
    )


def test_settled_late_keys_count_only_for_the_accounts_a_run_settled_and_invoiced(
    db: Ledger,
) -> None:
    prefixes = ["usage/dt=2026-10-"]
    for account in ("ACC-1", "ACC-2", "ACC-3"):
        db.start_run(f"oct-{account}", "2026-10", None)
        assert db.publish_invoice(new_invoice(account, "2026-10", run_id=f"oct-{account}"))
    # November's run settled the late file for ACC-1 and ACC-2, and published November's
    # invoices of ACC-1 and ACC-3 only (ACC-2's was already out).
    db.start_run("nov", "2026-11", None)
    late = "usage/dt=2026-10-20/late.csv"
    currencies = {"ACC-1": ["USD"], "ACC-2": ["USD"], "ACC-4": ["USD", "EUR"]}
    db.record_settled(
        "nov", "2026-10", {"ACC-1": [late], "ACC-2": [late], "ACC-4": [late]}, currencies
    )
    for account in ("ACC-1", "ACC-3"):
        assert db.publish_invoice(new_invoice(account, "2026-11", run_id="nov"))
    # ACC-4 is billed in USD and EUR: only its USD invoice came out of the run.
    db.start_run("oct-ACC-4", "2026-10", None)
    assert db.publish_invoice(new_invoice("ACC-4", "2026-10", run_id="oct-ACC-4"))
    assert db.publish_invoice(new_invoice("ACC-4", "2026-11", "USD", run_id="nov"))

    consumed = db.consumed_keys("2026-10", prefixes)
    assert {a: late in keys for a, keys in consumed.items()} == {
        "ACC-1": True,  # settled and invoiced by the run
        "ACC-2": False,  # settled, but its adjustments never reached an invoice
        "ACC-3": False,  # invoiced by the run, but not settled (not billed for October then)
        "ACC-4": False,  # its EUR invoice, which would carry EUR adjustments, never came out
    }
