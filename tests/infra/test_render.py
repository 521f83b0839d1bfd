"""infra.render: autoescaped HTML, canonical JSON, and content-addressed keys."""

from __future__ import annotations

import dataclasses
import html as html_text
import json
import re
from datetime import date
from decimal import Decimal

from infra.render import render_invoice
from pricing_rules.invoicing import InvoiceDoc, InvoiceLineDoc

XSS = "<script>alert(1)</script> & \"Sons\" 'Co'"


def usage_line(
    line_no: int = 2, amount_minor: int = 1_250, name: str = "Voice minutes"
) -> InvoiceLineDoc:
    # 1,250 min x 0.01 = 12.50 USD => 1250 cents
    return InvoiceLineDoc(
        line_no=line_no,
        line_id=f"ACC-1:USD:voice:{line_no}",
        charge_id="voice",
        charge_name=name,
        charge_kind="usage",
        description=f"{name} — 1,250 min at 0.01",
        quantity=Decimal("1250"),
        unit="min",
        unit_price=Decimal("0.01"),
        proration_factor=None,
        precise_amount="12.5000",
        amount=Decimal(amount_minor) / 100,
        amount_minor=amount_minor,
        details=[
            {"label": "first 1,000", "quantity": "1000", "unit_price": "0.01", "amount": "10.00"},
            {"label": "next 250", "quantity": "250", "unit_price": "0.01", "amount": "2.50"},
        ],
    )


def base_line() -> InvoiceLineDoc:
    return InvoiceLineDoc(
        line_no=1,
        line_id="ACC-1:USD:base",
        charge_id="base",
        charge_name="Business plan",
        charge_kind="recurring",
        description="Business plan, October",
        quantity=Decimal("1"),
        unit="period",
        unit_price=Decimal("49.00"),
        proration_factor=Decimal("1"),
        precise_amount="49.00",
        amount=Decimal("49.00"),
        amount_minor=4_900,
        details=[{"label": "October", "quantity": "1", "unit_price": "49.00", "amount": "49.00"}],
    )


def tax_line() -> InvoiceLineDoc:
    # 20% of (49.00 + 12.50) = 12.30 USD => 1230 cents
    return InvoiceLineDoc(
        line_no=3,
        line_id="ACC-1:USD:tax",
        charge_id="tax:GB",
        charge_name="VAT",
        charge_kind="tax",
        description="VAT (GB) 20% of 61.50 USD",
        quantity=Decimal("61.50"),
        unit="USD",
        unit_price=Decimal("0.20"),
        proration_factor=None,
        precise_amount="12.300",
        amount=Decimal("12.30"),
        amount_minor=1_230,
        details=[{"label": "VAT on the subtotal", "quantity": "61.50", "amount": "12.300"}],
    )


def invoice(*lines: InvoiceLineDoc, account_name: str = "Acme Ltd") -> InvoiceDoc:
    return InvoiceDoc(
        invoice_id="INV-2026-10-ACC-1-USD",
        account_id="ACC-1",
        account_name=account_name,
        billing_email="billing@acme.test",
        period="2026-10",
        period_start=date(2026, 10, 1),
        period_end=date(2026, 11, 1),
        issue_date=date(2026, 11, 1),
        currency="USD",
        rounding="half_up",
        catalog_version="2026.10",
        catalog_hash="f" * 64,
        lines=list(lines) or [base_line(), usage_line(), tax_line()],
    )


def test_names_are_escaped_in_the_html() -> None:
    usage = usage_line(name=XSS)
    usage.details[0]["label"] = XSS
    doc = invoice(base_line(), usage, account_name=XSS)

    html = render_invoice(doc).html.decode()

    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Sons&#34; &#39;Co&#39;" in html
    assert html.count("&lt;script&gt;") == 3  # account name, charge name, detail row


def test_the_json_keeps_names_as_given() -> None:
    doc = invoice(usage_line(name=XSS), account_name=XSS)

    document = json.loads(render_invoice(doc).json)

    assert document["account_name"] == XSS
    assert document["lines"][0]["charge"] == XSS


def test_rendering_is_deterministic() -> None:
    first, second = render_invoice(invoice()), render_invoice(invoice())

    assert first.html == second.html
    assert first.json == second.json
    assert first.content_sha256 == second.content_sha256
    assert first.keys() == second.keys()


def test_one_changed_amount_changes_the_hash_and_the_keys() -> None:
    before = render_invoice(invoice(base_line(), usage_line(amount_minor=1_250)))
    after = render_invoice(invoice(base_line(), usage_line(amount_minor=1_251)))

    assert after.content_sha256 != before.content_sha256
    assert set(after.keys()).isdisjoint(before.keys())


def test_keys_are_content_addressed() -> None:
    rendered = render_invoice(invoice())

    html_key, json_key = rendered.keys()

    pattern = r"invoices/2026-10/ACC-1/INV-2026-10-ACC-1-USD-([0-9a-f]{16})\.(html|json)"
    html_match, json_match = re.fullmatch(pattern, html_key), re.fullmatch(pattern, json_key)
    assert html_match and html_match[2] == "html"
    assert json_match and json_match[2] == "json"
    assert html_match[1] == json_match[1] == rendered.content_sha256[:16]
    assert re.fullmatch(r"[0-9a-f]{64}", rendered.content_sha256)
    assert rendered.keys("archive")[0].startswith("archive/2026-10/ACC-1/")


def test_json_total_is_the_sum_of_the_lines() -> None:
    document = json.loads(render_invoice(invoice()).json)

    # 4900 + 1250 + 1230 = 7380 cents = 73.80 USD
    assert [item["amount_minor"] for item in document["lines"]] == [4_900, 1_250, 1_230]
    assert document["total_minor"] == 7_380
    assert document["total"] == "73.80"
    assert document["total_minor"] == sum(item["amount_minor"] for item in document["lines"])


def test_html_shows_amounts_and_the_total() -> None:
    html = render_invoice(invoice()).html.decode()

    assert "12.50 USD" in html
    assert "73.80 USD" in html
    assert "2026-10-01 to 2026-10-31" in html


def test_a_tax_line_shows_its_rate_as_a_percentage() -> None:
    html = render_invoice(invoice()).html.decode()

    # unit_price 0.20 x 100 = 20%
    assert '<td class="num">20%</td>' in html
    assert '<td class="num">0.2</td>' not in html


def test_a_fractional_tax_rate_keeps_its_decimals() -> None:
    doc = invoice(dataclasses.replace(tax_line(), unit_price=Decimal("0.0825")))

    html = render_invoice(doc).html.decode()

    assert '<td class="num">8.25%</td>' in html


def test_unit_prices_show_at_least_the_currency_decimals() -> None:
    from infra.render import show_price

    # a price keeps its own precision, padded to the currency's minor unit
    assert show_price(Decimal("14.5"), "USD") == "14.50"
    assert show_price(Decimal("0.0079"), "USD") == "0.0079"
    assert show_price(Decimal("1650"), "JPY") == "1,650"
    assert show_price(Decimal("199.000000000000"), "USD") == "199.00"


def _explanation_rows(html: str) -> list[str]:
    rows = re.findall(r'<div class="explain"><table>(.*?)</table></div>', html, re.S)
    return [
        re.sub(r"\s+", " ", html_text.unescape(re.sub(r"<[^>]+>", " ", row))).strip()
        for row in rows
    ]


def test_package_rows_count_blocks_and_a_top_up_shows_no_quantity() -> None:
    # 2,350 messages in blocks of 1,000, 1 free: 3 blocks, 2 paid x 5.00 = 10.00, topped up
    # by 2.00 to a 12.00 minimum
    line = dataclasses.replace(
        usage_line(amount_minor=1_200, name="SMS bundle"),
        unit="message",
        quantity=Decimal("2350"),
        details=[
            {"label": "1 free block(s) of 1000", "quantity": "1", "amount": "0"},
            {
                "label": "2 block(s) of 1000",
                "quantity": "2",
                "unit_price": "5.00",
                "amount": "10.00",
            },
            {"label": "minimum charge top-up", "quantity": "1", "amount": "2.00"},
        ],
    )
    (rows,) = _explanation_rows(render_invoice(invoice(line)).html.decode())
    assert "2 block(s) of 1000 2 block(s) × 5.00 = 10" in rows
    assert "message" not in rows
    assert "minimum charge top-up = 2" in rows


def test_one_call_row_is_shown_but_a_row_that_repeats_the_line_is_not() -> None:
    # one destination: 10 min to +336 at peak, 0.0420/min = 0.42
    call = dataclasses.replace(
        usage_line(amount_minor=42, name="Outbound calls"),
        quantity=Decimal("10"),
        details=[
            {
                "label": "France - Mobile (+336, peak): 1 call(s), 600 s billed",
                "quantity": "10",
                "unit_price": "0.0420",
                "amount": "0.4200",
            }
        ],
    )
    # 100 messages x 0.0072 = 0.72: its one row is the charge itself
    sms = dataclasses.replace(
        usage_line(line_no=3, amount_minor=72, name="SMS"),
        details=[{"label": "SMS", "quantity": "100", "unit_price": "0.0072", "amount": "0.72"}],
    )
    html = render_invoice(invoice(base_line(), call, sms)).html.decode()
    (rows,) = _explanation_rows(html)
    assert "France - Mobile (+336, peak): 1 call(s), 600 s billed 10 min × 0.042 = 0.42" in rows
