"""Invoices from rated lines: one per account and currency; the total is the sum of lines."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import polars as pl

from pricing_rules.money import from_minor_units
from pricing_rules.periods import BillingPeriod


@dataclass(frozen=True)
class InvoiceLineDoc:
    line_no: int
    line_id: str
    charge_id: str
    charge_name: str
    charge_kind: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    proration_factor: Decimal | None
    precise_amount: str
    amount: Decimal
    amount_minor: int
    details: list[dict[str, object]]
    service_period: str | None = None  # the closed period an adjustment serves


@dataclass(frozen=True)
class InvoiceDoc:
    invoice_id: str
    account_id: str
    account_name: str
    billing_email: str | None
    period: str
    period_start: date
    period_end: date
    issue_date: date
    currency: str
    rounding: str
    catalog_version: str
    catalog_hash: str
    lines: list[InvoiceLineDoc] = field(default_factory=list)
    title: str = "Invoice"  # or "Credit note", "Debit note"

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def total(self) -> Decimal:
        return from_minor_units(self.total_minor, self.currency)

    def as_json(self) -> dict[str, object]:
        return {
            **({} if self.title == "Invoice" else {"document": self.title}),
            "invoice_id": self.invoice_id,
            "account_id": self.account_id,
            "account_name": self.account_name,
            "period": self.period,
            "period_start": str(self.period_start),
            "period_end_exclusive": str(self.period_end),
            "issue_date": str(self.issue_date),
            "currency": self.currency,
            "rounding": self.rounding,
            "catalog_version": self.catalog_version,
            "catalog_hash": self.catalog_hash,
            "total": str(self.total),
            "total_minor": self.total_minor,
            "lines": [
                {
                    "line_no": line.line_no,
                    "line_id": line.line_id,
                    "charge_id": line.charge_id,
                    "charge": line.charge_name,
                    "kind": line.charge_kind,
                    "description": line.description,
                    "quantity": f"{line.quantity.normalize():f}",
                    "unit": line.unit,
                    "unit_price": None
                    if line.unit_price is None
                    else f"{line.unit_price.normalize():f}",
                    "proration_factor": None
                    if line.proration_factor is None
                    else f"{line.proration_factor.normalize():f}",
                    "precise_amount": line.precise_amount,
                    "amount": str(from_minor_units(line.amount_minor, self.currency)),
                    "amount_minor": line.amount_minor,
                    "details": line.details,
                    **({"service_period": line.service_period} if line.service_period else {}),
                }
                for line in self.lines
            ],
        }


def invoice_id(period: BillingPeriod, account_id: str, currency: str) -> str:
    """Deterministic, so a re-run finds the invoice it already published.

    >>> invoice_id(BillingPeriod.parse("2026-10"), "ACC-0001", "USD")
    'INV-2026-10-ACC-0001-USD'
    """
    return f"INV-{period.label}-{account_id}-{currency}"


def assemble_invoices(
    lines: pl.DataFrame,
    accounts: dict[str, tuple[str, str | None]],
    period: BillingPeriod,
    catalog_version: str,
    catalog_hash: str,
) -> list[InvoiceDoc]:
    """Group rated lines into invoices; `accounts` maps id -> (name, billing email)."""
    invoices: list[InvoiceDoc] = []
    # Lines arrive in invoice order (see `pricing_rules.rating`); keep it within each invoice.
    ordered = lines.with_row_index("_order").sort("account_id", "currency", "_order")
    for (account_id, currency), group in ordered.group_by(
        ["account_id", "currency"], maintain_order=True
    ):
        name, email = accounts.get(str(account_id), (str(account_id), None))
        doc = InvoiceDoc(
            invoice_id=invoice_id(period, str(account_id), str(currency)),
            account_id=str(account_id),
            account_name=name,
            billing_email=email,
            period=period.label,
            period_start=period.start,
            period_end=period.end,
            issue_date=period.end,
            currency=str(currency),
            rounding=str(group["rounding"][0]),
            catalog_version=catalog_version,
            catalog_hash=catalog_hash,
        )
        for number, row in enumerate(group.iter_rows(named=True), start=1):
            doc.lines.append(
                InvoiceLineDoc(
                    line_no=number,
                    line_id=row["line_id"],
                    charge_id=row["charge_id"],
                    charge_name=row["charge_name"],
                    charge_kind=row["charge_kind"],
                    description=row["description"],
                    quantity=row["quantity"],
                    unit=row["unit"],
                    unit_price=row["unit_price"],
                    proration_factor=row["proration_factor"],
                    precise_amount=row["precise_amount"],
                    amount=row["amount"],
                    amount_minor=row["amount_minor"],
                    details=json.loads(row["details"]),
                    service_period=row.get("service_period"),
                )
            )
        invoices.append(doc)
    return invoices
