"""Adjustment lines: the difference between two ratings of a closed period."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pricing_rules.adjustments import adjustment_lines
from pricing_rules.catalog import load_catalog
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import CATALOG_PATH, FAST_PROPERTY, at, usage_frame

CATALOG = load_catalog(CATALOG_PATH)
OCTOBER = BillingPeriod.parse("2026-10")
SUBS = subscription_frame(
    [
        {
            "subscription_id": "S1",
            "account_id": "A",
            "plan_id": "ucaas-business-eur",
            "start_date": date(2026, 1, 1),
            "end_date": None,
        },
        {
            "subscription_id": "S2",
            "account_id": "B",
            "plan_id": "ucaas-business-eur",
            "start_date": date(2026, 1, 1),
            "end_date": None,
        },
    ]
)


def rated(sms_a: int, sms_b: int = 0) -> pl.DataFrame:
    rows = [("A", "sms", sms_a, at(5))] if sms_a else []
    rows += [("B", "sms", sms_b, at(6))] if sms_b else []
    return rate(usage_frame(rows), SUBS, CATALOG, OCTOBER).lines


def test_late_usage_becomes_one_adjustment_per_changed_line() -> None:
    # 100 SMS billed; 20,100 after late usage: +20,000 x 0.0072 = +144.00 EUR.
    # The EUR plan has no tax here (no country), so only the SMS line moves.
    lines = adjustment_lines(rated(100), rated(20_100), "2026-10", "Late usage")
    (line,) = lines.iter_rows(named=True)
    assert line["line_id"] == "adjust:2026-10:S1:sms"
    assert (line["account_id"], line["charge_id"], line["charge_kind"]) == (
        "A",
        "sms",
        "adjustment",
    )
    assert line["amount_minor"] == 14_400 and line["amount"] == Decimal("144.00")
    assert line["quantity"] == Decimal(20_000) and line["events"] == 0
    assert line["service_period"] == "2026-10"
    assert line["description"] == (
        "Late usage for 2026-10: SMS, +20,000 message; billed 0.72, now 144.72"
    )
    details = json.loads(line["details"])
    assert sum(Decimal(d["amount"]) for d in details) == line["amount"]


def test_a_line_that_disappears_is_credited_and_unchanged_lines_are_left_out() -> None:
    lines = adjustment_lines(rated(100, 500), rated(0, 500), "2026-10", "Correction")
    (line,) = lines.iter_rows(named=True)
    # A's 100 SMS (0.72) are gone; B's line is unchanged.
    assert (line["account_id"], line["amount_minor"]) == ("A", -72)
    assert line["description"].startswith("Correction for 2026-10: SMS, -100 message")


@FAST_PROPERTY
@given(before=st.integers(0, 50_000), after=st.integers(0, 50_000))
def test_billed_plus_adjustments_equals_the_corrected_total(before: int, after: int) -> None:
    billed, corrected = rated(before, 7), rated(after, 7)
    adjustments = adjustment_lines(billed, corrected, "2026-10", "Late usage")
    total = int(billed["amount_minor"].sum()) + int(adjustments["amount_minor"].sum())
    assert total == int(corrected["amount_minor"].sum())
    assert adjustment_lines(corrected, corrected, "2026-10", "Late usage").is_empty()
