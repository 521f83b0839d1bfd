"""Invoice documents: autoescaped Jinja2 HTML and canonical JSON, with their content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from pricing_rules.invoicing import InvoiceDoc, InvoiceLineDoc
from pricing_rules.money import (
    format_money,
    from_minor_units,
    minor_unit_exponent,
    show_quantity,
)

_ENV = Environment(
    loader=PackageLoader("infra", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class RenderedInvoice:
    invoice: InvoiceDoc
    html: bytes
    json: bytes
    content_sha256: str

    def keys(self, prefix: str = "invoices") -> tuple[str, str]:
        """Content-addressed keys: a different invoice can never overwrite a published one."""
        base = f"{prefix}/{self.invoice.period}/{self.invoice.account_id}/{self.invoice.invoice_id}"
        short = self.content_sha256[:16]
        return f"{base}-{short}.html", f"{base}-{short}.json"


def _plain(value: Decimal | None) -> str:
    return "" if value is None else show_quantity(value)


def show_price(value: Decimal | None, currency: str) -> str:
    """A unit price with at least the currency's decimals: 14.50, 0.0079, 1,650 (JPY)."""
    if value is None:
        return ""
    places = minor_unit_exponent(currency)
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and -exponent < places:
        normal = normal.quantize(Decimal(1).scaleb(-places))
    return f"{normal:,f}"


def _explanation(line: InvoiceLineDoc) -> str:
    if line.charge_kind == "recurring":
        return line.description
    return line.description.split(" — ", 1)[-1]


# Rows that move the amount to a limit: a quantity of 1 would read as "1 min".
_ADJUSTMENTS = ("minimum charge top-up", "maximum charge cap")


def _row_view(row: dict[str, Any], line: InvoiceLineDoc, currency: str) -> dict[str, str]:
    label = str(row["label"])
    if label in _ADJUSTMENTS:
        quantity, unit = "", ""
    else:
        quantity = _plain(Decimal(str(row["quantity"])))
        # a package's rows count blocks, not the line's unit
        unit = "block(s)" if "block(s) of" in label else "" if line.unit == "period" else line.unit
    return {
        "label": label,
        "quantity": quantity,
        "unit": unit,
        "unit_price": show_price(Decimal(str(row["unit_price"])), currency)
        if row.get("unit_price")
        else "",
        "flat_fee": str(row.get("flat_fee") or ""),
        "amount": _plain(Decimal(str(row["amount"]))),
    }


def _shows_rows(line: InvoiceLineDoc) -> bool:
    """Whether the explanation rows say more than the line: several rows, or one usage row
    that is not just the charge again (a call's destination, a package's blocks, a tier)."""
    if len(line.details) > 1:
        return True
    return (
        len(line.details) == 1
        and line.charge_kind == "usage"
        and line.details[0]["label"] != line.charge_name
    )


def _line_view(line: InvoiceLineDoc, currency: str) -> dict[str, Any]:
    return {
        "line_no": line.line_no,
        "charge": line.charge_name,
        "explanation": _explanation(line),
        "quantity": _plain(line.quantity),
        "unit": "" if line.unit == "period" else line.unit,
        "unit_price": f"{_plain(line.unit_price * 100)}%"
        if line.charge_kind == "tax" and line.unit_price is not None
        else show_price(line.unit_price, currency),
        "amount": format_money(from_minor_units(line.amount_minor, currency), currency),
        "rows": [_row_view(row, line, currency) for row in line.details],
        "show_rows": _shows_rows(line),
    }


def render_invoice(invoice: InvoiceDoc) -> RenderedInvoice:
    """Render HTML and JSON deterministically (same invoice -> same bytes)."""
    view = {
        "title": invoice.title,
        "invoice_id": invoice.invoice_id,
        "account_id": invoice.account_id,
        "account_name": invoice.account_name,
        "billing_email": invoice.billing_email,
        "period_start": invoice.period_start,
        "period_end_last": invoice.period_end - timedelta(days=1),
        "issue_date": invoice.issue_date,
        "currency": invoice.currency,
        "rounding": invoice.rounding,
        "catalog_version": invoice.catalog_version,
        "catalog_hash": invoice.catalog_hash,
        "total": format_money(invoice.total, invoice.currency).rsplit(" ", 1)[0],
        "lines": [_line_view(line, invoice.currency) for line in invoice.lines],
    }
    html = _ENV.get_template("invoice.html.j2").render(invoice=view).encode()
    document = json.dumps(invoice.as_json(), indent=2, sort_keys=True).encode()
    digest = hashlib.sha256(document + b"\0" + html).hexdigest()
    return RenderedInvoice(invoice, html, document, digest)
