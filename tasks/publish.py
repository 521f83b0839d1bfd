"""publish: render invoices and store them in the object store and the ledger, once."""

from __future__ import annotations

import json

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.db import NewInvoice
from infra.object_store import ObjectStore
from infra.render import RenderedInvoice, render_invoice
from infra.settings import Settings
from pricing_rules.invoicing import InvoiceDoc, assemble_invoices
from pricing_rules.money import from_minor_units
from pricing_rules.periods import BillingPeriod
from tasks.common import (
    check_basis,
    ledger,
    object_store,
    read_staged,
    retry_transient,
    staged_key,
    step_artifact,
    timed,
)


def invoices_for(settings: Settings, run_id: str, period: str) -> list[InvoiceDoc]:
    db = ledger(settings)
    run = db.run(run_id)
    if run is None or run.catalog_hash is None or run.catalog_version is None:
        raise RuntimeError(f"run {run_id} has not been rated; nothing to publish")
    accounts = {a.account_id: (a.name, a.billing_email) for a in db.accounts().values()}
    store = object_store(settings)
    lines = read_staged(store, run_id, "rated")
    if store.head(staged_key(run_id, "adjustments")) is not None:
        lines = pl.concat([lines, read_staged(store, run_id, "adjustments")])
    return assemble_invoices(
        lines, accounts, BillingPeriod.parse(period), run.catalog_version, run.catalog_hash
    )


def pending_invoices(
    settings: Settings, run_id: str, period: str
) -> tuple[int, int, dict[str, str]]:
    """(new, already published) invoice counts for this run's lines, and the totals per
    currency of the new ones: what finance is asked to approve."""
    existing = ledger(settings).existing_invoices(period)
    docs = invoices_for(settings, run_id, period)
    new_docs = [d for d in docs if (d.account_id, d.currency) not in existing]
    totals: dict[str, int] = {}
    for doc in new_docs:
        totals[doc.currency] = totals.get(doc.currency, 0) + doc.total_minor
    shown = {c: str(from_minor_units(m, c)) for c, m in sorted(totals.items())}
    return len(new_docs), len(docs) - len(new_docs), shown


@task(
    name="publish",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def publish(settings: Settings, run_id: str, period: str) -> dict[str, list[str]]:
    """Objects first (content-addressed, never overwritten), then one ledger insert.

    The ledger row is the publication: a crash between the two leaves an unreferenced
    object that the next attempt finds and reuses; a concurrent run loses the insert.
    Adjustments of closed periods are published only if nobody billed those periods for
    the accounts since settle-late priced them (`check_basis`).
    """
    logger = get_run_logger()
    published: list[str] = []
    existing: list[str] = []
    with timed() as clock:
        db = ledger(settings)
        store = object_store(settings)
        already = db.existing_invoices(period)
        docs = invoices_for(settings, run_id, period)
        check_basis(
            settings,
            run_id,
            {d.account_id for d in docs if (d.account_id, d.currency) not in already},
        )
        for number, doc in enumerate(docs, start=1):
            found = already.get((doc.account_id, doc.currency))
            if found is not None:
                # Published by an earlier attempt of this run (a retry) or by another run.
                (published if found.run_id == run_id else existing).append(found.invoice_id)
                continue
            rendered = render_invoice(doc)
            html_key, json_key = store_document(store, rendered, "invoices")
            inserted = db.publish_invoice(
                NewInvoice(
                    invoice_id=doc.invoice_id,
                    account_id=doc.account_id,
                    period=doc.period,
                    currency=doc.currency,
                    run_id=run_id,
                    total_minor=doc.total_minor,
                    catalog_hash=doc.catalog_hash,
                    content_sha256=rendered.content_sha256,
                    html_key=html_key,
                    json_key=json_key,
                    lines=ledger_lines(doc),
                )
            )
            (published if inserted else existing).append(doc.invoice_id)
            if number % 25 == 0:
                logger.info("publish: %d/%d invoices", number, len(docs))
        db.update_run(run_id, status="published")
    logger.info("publish: %d new invoices, %d already published", len(published), len(existing))
    mine = set(published)
    totals: dict[str, int] = {}
    for doc in docs:
        if doc.invoice_id in mine:
            totals[doc.currency] = totals.get(doc.currency, 0) + doc.total_minor
    step_artifact(
        "publish",
        run_id,
        {
            "published": len(published),
            "already published": len(existing),
            **{
                f"published total {c}": str(from_minor_units(m, c))
                for c, m in sorted(totals.items())
            },
        },
        clock.seconds,
    )
    return {"published": published, "existing": existing}


def store_document(store: ObjectStore, rendered: RenderedInvoice, prefix: str) -> tuple[str, str]:
    """Write a document's HTML and JSON under content-addressed keys, never overwriting."""
    html_key, json_key = rendered.keys(prefix)
    store.put_if_absent(html_key, rendered.html, content_type="text/html; charset=utf-8")
    store.put_if_absent(json_key, rendered.json, content_type="application/json")
    return html_key, json_key


def ledger_lines(doc: InvoiceDoc, with_service_period: bool = True) -> list[dict[str, object]]:
    """A document's lines as ledger rows (quantities and prices as exact text)."""
    return [
        {
            "line_no": line.line_no,
            "line_id": line.line_id,
            "charge_id": line.charge_id,
            "description": line.description,
            "quantity": f"{line.quantity.normalize():f}",
            "unit": line.unit,
            "unit_price": None if line.unit_price is None else f"{line.unit_price.normalize():f}",
            "amount_minor": line.amount_minor,
            "currency": doc.currency,
            "details": json.dumps(line.details, sort_keys=True),
            **({"service_period": line.service_period} if with_service_period else {}),
        }
        for line in doc.lines
    ]
