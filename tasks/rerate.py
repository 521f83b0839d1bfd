"""compare and publish-notes: a re-rated closed period against what it was billed.

The re-rating run rates the period again (usage fixed, a late file, a catalog fix) and
`compare` sets each line against what the period was billed for it: its invoice line,
adjustments later invoices carried, and notes published before. Every difference is a
note line; `publish-notes` publishes one credit note (the total goes down) or debit note
(up) per account and currency, after the same finance approval as a billing run. A
published invoice is never replaced and never issued twice.
"""

from __future__ import annotations

import dataclasses

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.db import NewNote
from infra.render import render_invoice
from infra.settings import Settings
from pricing_rules.adjustments import adjustment_lines
from pricing_rules.invoicing import InvoiceDoc, assemble_invoices
from pricing_rules.money import from_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import LINE_SCHEMA
from tasks.common import (
    check_basis,
    ledger,
    object_store,
    read_staged,
    retry_transient,
    stage,
    step_artifact,
    timed,
)
from tasks.publish import ledger_lines, store_document
from validation.schemas import full_depth, rated_lines_schema


def billed_frame(rows: list[dict[str, object]], corrected: pl.DataFrame) -> pl.DataFrame:
    """The ledger's billed lines as rated lines (`LINE_SCHEMA`), enough to compare."""
    rounding = dict(corrected.select("account_id", "rounding").unique("account_id").iter_rows())
    frame = pl.DataFrame(
        [
            {name: None for name in LINE_SCHEMA}
            | {
                "line_id": row["line_id"],
                "account_id": row["account_id"],
                "charge_id": row["charge_id"],
                "charge_name": row["charge_id"],
                "charge_model": "billed",
                "charge_kind": "usage",
                "quantity": row["quantity"],
                "unit": row["unit"],
                "events": 0,
                "precise_amount": "",
                "amount": from_minor_units(int(str(row["amount_minor"])), str(row["currency"])),
                "amount_minor": row["amount_minor"],
                "currency": row["currency"],
                "rounding": rounding.get(row["account_id"], "half_up"),
                "description": row["description"],
                "details": "[]",
            }
            for row in rows
        ],
        schema=LINE_SCHEMA,
    )
    return frame


@task(name="compare", cache_policy=NO_CACHE)
def compare(settings: Settings, run_id: str, period: str) -> dict[str, object]:
    """Stage `notes.parquet`: one line per line whose amount differs from what was billed."""
    with timed() as clock:
        store = object_store(settings)
        corrected = read_staged(store, run_id, "rated")
        billed = billed_frame(ledger(settings).billed_lines(period), corrected)
        invoiced = billed.select("account_id", "currency").unique()
        # Accounts never billed for the period are for its billing run, not a note.
        mine = corrected.join(invoiced, on=["account_id", "currency"], how="semi")
        skipped = corrected.join(invoiced, on=["account_id", "currency"], how="anti")
        notes = adjustment_lines(billed, mine, period, "Re-rating", prefix="note").with_columns(
            pl.lit(0, pl.Int64).alias("events")
        )
        with full_depth():
            rated_lines_schema().validate(notes, lazy=True)
        stage(store, run_id, "notes", notes)
    totals = notes.group_by("account_id", "currency").agg(pl.col("amount_minor").sum())
    net: dict[str, int] = {}
    for _, currency, minor in totals.rows():
        net[currency] = net.get(currency, 0) + minor
    summary: dict[str, object] = {
        "notes": totals.height,
        "credit_notes": totals.filter(pl.col("amount_minor") <= 0).height,
        "debit_notes": totals.filter(pl.col("amount_minor") > 0).height,
        "lines": notes.height,
        "net": {c: str(from_minor_units(m, c)) for c, m in sorted(net.items())},
        "accounts_not_billed_yet": skipped["account_id"].n_unique(),
    }
    get_run_logger().info("compare: %s", summary)
    step_artifact("compare", run_id, summary, clock.seconds)
    return summary


def note_documents(settings: Settings, run_id: str, period: str) -> list[InvoiceDoc]:
    db = ledger(settings)
    run = db.run(run_id)
    if run is None or run.catalog_hash is None or run.catalog_version is None:
        raise RuntimeError(f"run {run_id} has not been rated; nothing to publish")
    accounts = {a.account_id: (a.name, a.billing_email) for a in db.accounts().values()}
    lines = read_staged(object_store(settings), run_id, "notes")
    docs = assemble_invoices(
        lines, accounts, BillingPeriod.parse(period), run.catalog_version, run.catalog_hash
    )
    issued = run.started_at.date()  # the note's issue date: when the re-rating ran
    suffix = run_id.rsplit("-", 1)[-1]
    return [
        dataclasses.replace(
            doc,
            invoice_id=f"{'CN' if doc.total_minor <= 0 else 'DN'}-{period}-{doc.account_id}-"
            f"{doc.currency}-{suffix}",
            title="Credit note" if doc.total_minor <= 0 else "Debit note",
            issue_date=issued,
        )
        for doc in docs
    ]


@task(
    name="publish-notes",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def publish_notes(settings: Settings, run_id: str, period: str) -> dict[str, list[str]]:
    """Objects first (content-addressed), then one ledger insert per note, like invoices;
    only if nobody billed the period for the accounts since `compare` (`check_basis`)."""
    published: list[str] = []
    existing: list[str] = []
    with timed() as clock:
        db = ledger(settings)
        store = object_store(settings)
        docs = note_documents(settings, run_id, period)
        check_basis(settings, run_id, {doc.account_id for doc in docs}, period)
        for doc in docs:
            rendered = render_invoice(doc)
            html_key, json_key = store_document(store, rendered, "notes")
            inserted = db.publish_note(
                NewNote(
                    note_id=doc.invoice_id,
                    kind="credit" if doc.total_minor <= 0 else "debit",
                    account_id=doc.account_id,
                    period=doc.period,
                    currency=doc.currency,
                    run_id=run_id,
                    total_minor=doc.total_minor,
                    catalog_hash=doc.catalog_hash,
                    content_sha256=rendered.content_sha256,
                    html_key=html_key,
                    json_key=json_key,
                    lines=ledger_lines(doc, with_service_period=False),
                )
            )
            (published if inserted else existing).append(doc.invoice_id)
        db.update_run(run_id, status="published")
    get_run_logger().info(
        "publish-notes: %d new notes, %d already published", len(published), len(existing)
    )
    step_artifact(
        "publish-notes",
        run_id,
        {"published": len(published), "already published": len(existing)},
        clock.seconds,
    )
    return {"published": published, "existing": existing}
