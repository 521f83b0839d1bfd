"""pricing_rules.invoicing: one invoice per account and currency; total = sum of lines."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from pricing_rules.catalog import Catalog, parse_catalog
from pricing_rules.invoicing import assemble_invoices, invoice_id
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import CATALOG_YAML, at, usage_frame

OCT = BillingPeriod.parse("2026-10")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML)


@pytest.fixture(scope="module")
def lines(catalog: Catalog) -> pl.DataFrame:
    subs = subscription_frame(
        [
            {
                "subscription_id": "S-A",
                "account_id": "A",
                "plan_id": "usd",
                "start_date": date(2026, 1, 1),
                "end_date": None,
            },
            {
                "subscription_id": "S-B1",
                "account_id": "B",
                "plan_id": "usd",
                "start_date": date(2026, 1, 1),
                "end_date": date(2026, 10, 16),
            },
            {
                "subscription_id": "S-B2",
                "account_id": "B",
                "plan_id": "jpy",
                "start_date": date(2026, 10, 16),
                "end_date": None,
            },
        ]
    )
    usage = usage_frame(
        [
            ("A", "voice", 90_000, at(2)),
            ("A", "sms", 3_200, at(3)),
            ("A", "storage", 150, at(4)),
            ("B", "sms", 100, at(5)),
            ("B", "sms", 15, at(20)),
        ]
    )
    return rate(usage, subs, catalog, OCT).lines


def test_invoice_id_is_deterministic() -> None:
    assert invoice_id(OCT, "ACC-0001", "USD") == "INV-2026-10-ACC-0001-USD"


def test_one_invoice_per_account_and_currency(lines: pl.DataFrame, catalog: Catalog) -> None:
    invoices = assemble_invoices(
        lines,
        {"A": ("Acme Ltd", "billing@acme.test")},
        OCT,
        catalog.version,
        catalog.content_hash,
    )
    assert [i.invoice_id for i in invoices] == [
        "INV-2026-10-A-USD",
        "INV-2026-10-B-JPY",
        "INV-2026-10-B-USD",
    ]
    acme, b_jpy, b_usd = invoices
    # 199.00 platform + 6.00 voice + 25.28 sms + 27.00 storage = 257.28 => 25728 cents
    assert {line.charge_id: line.amount_minor for line in acme.lines} == {
        "platform": 19900,
        "voice": 600,
        "sms": 2528,
        "storage": 2700,
    }
    assert acme.total_minor == 25728
    assert acme.total == Decimal("257.28")
    # JPY: 9800 x 16/31 = 5058.06 => 5058 yen; 15 x 1.1 = 16.5 => 17 yen; 5058 + 17 = 5075
    assert b_jpy.total_minor == 5075
    assert b_jpy.total == Decimal(5075)
    # USD: 199.00 x 15/31 = 96.29; 100 x 0.0079 = 0.79; 96.29 + 0.79 = 97.08 => 9708 cents
    assert b_usd.total_minor == 9708


def test_invoice_header(lines: pl.DataFrame, catalog: Catalog) -> None:
    invoices = assemble_invoices(
        lines,
        {"A": ("Acme Ltd", "billing@acme.test")},
        OCT,
        "v1",
        "hash",
    )
    acme = invoices[0]
    assert (acme.account_name, acme.billing_email) == ("Acme Ltd", "billing@acme.test")
    assert (acme.period, acme.period_start, acme.period_end) == (
        "2026-10",
        date(2026, 10, 1),
        date(2026, 11, 1),
    )
    assert acme.issue_date == date(2026, 11, 1)
    assert (acme.currency, acme.rounding) == ("USD", "half_up")
    assert (acme.catalog_version, acme.catalog_hash) == ("v1", "hash")
    # an account missing from the directory is named by its id
    b_usd = invoices[2]
    assert (b_usd.account_name, b_usd.billing_email) == ("B", None)


def test_lines_are_numbered_recurring_first(lines: pl.DataFrame) -> None:
    for invoice in assemble_invoices(lines, {}, OCT, "v1", "hash"):
        assert [line.line_no for line in invoice.lines] == list(range(1, len(invoice.lines) + 1))
        kinds = [line.charge_kind for line in invoice.lines]
        assert kinds == sorted(kinds)  # "recurring" lines before "usage" lines
    acme = assemble_invoices(lines, {}, OCT, "v1", "hash")[0]
    assert acme.lines[0].line_id == "S-A:platform"
    assert {line.line_id for line in acme.lines} == {
        "S-A:platform",
        "S-A:sms",
        "S-A:storage",
        "S-A:voice",
    }
    (voice,) = [line for line in acme.lines if line.charge_id == "voice"]
    assert voice.quantity == Decimal(1500)
    assert voice.unit == "min"
    assert [d["tier"] for d in voice.details] == [1, 2]


def test_totals_equal_the_sum_of_line_amounts(lines: pl.DataFrame) -> None:
    invoices = assemble_invoices(lines, {}, OCT, "v1", "hash")
    by_invoice = {
        (row["account_id"], row["currency"]): row["amount_minor"]
        for row in lines.group_by("account_id", "currency")
        .agg(pl.col("amount_minor").sum())
        .iter_rows(named=True)
    }
    assert {(i.account_id, i.currency): i.total_minor for i in invoices} == by_invoice
    assert sum(len(i.lines) for i in invoices) == lines.height


def test_as_json(lines: pl.DataFrame) -> None:
    document = assemble_invoices(lines, {}, OCT, "v1", "hash")[0].as_json()
    assert document["total"] == "257.28"
    assert document["total_minor"] == 25728
    assert document["period_end_exclusive"] == "2026-11-01"
    first = document["lines"][0]  # type: ignore[index]
    assert first["amount"] == "199.00"
    assert first["unit_price"] == "199"
    assert first["proration_factor"] == "1"
    (voice,) = [line for line in document["lines"] if line["charge_id"] == "voice"]  # type: ignore[attr-defined]
    assert (voice["quantity"], voice["unit"], voice["amount"]) == ("1500", "min", "6.00")
    assert voice["unit_price"] is None


def test_no_lines_no_invoices(lines: pl.DataFrame) -> None:
    assert assemble_invoices(lines.clear(), {}, OCT, "v1", "hash") == []
