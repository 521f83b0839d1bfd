"""Effective-dated plan versions: grandfathering, migration with an explicit split."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from pricing_rules.catalog import CatalogError, parse_catalog
from pricing_rules.lifecycle import History, migrate_history
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import usage_frame

VERSIONS = """
version: versions
metrics: {}
plans:
  voice-2026:
    name: Voice (2026 prices)
    family: voice
    effective_to: 2027-01-01
    currency: USD
    charges: [{id: line, name: Line rental, model: flat, amount: "30.00"}]
  voice-2027:
    name: Voice (2027 prices)
    family: voice
    effective_from: 2027-01-01
    currency: USD
    charges: [{id: line, name: Line rental, model: flat, amount: "36.00"}]
"""
CATALOG = parse_catalog(VERSIONS)


def sub(start: date, plan: str, history: History | None = None) -> dict[str, object]:
    return {
        "subscription_id": "S1",
        "account_id": "A",
        "plan_id": plan,
        "start_date": start,
        "end_date": None,
        "history": None if history is None else history.model_dump_json(),
    }


def test_versions_of_a_family_may_not_overlap_and_must_be_ordered() -> None:
    overlapping = VERSIONS.replace("effective_from: 2027-01-01", "effective_from: 2026-12-01")
    with pytest.raises(CatalogError, match=r"plans\.voice-2027\.effective_from.*overlaps"):
        parse_catalog(overlapping)
    backwards = VERSIONS.replace(
        "effective_to: 2027-01-01", "effective_to: 2026-01-01\n    effective_from: 2026-06-01"
    )
    with pytest.raises(CatalogError, match="effective_to must be after effective_from"):
        parse_catalog(backwards)
    assert CATALOG.plan_version("voice", date(2026, 12, 31)) == "voice-2026"
    assert CATALOG.plan_version("voice", date(2027, 1, 1)) == "voice-2027"


def test_existing_subscriptions_keep_the_version_they_signed() -> None:
    # Signed in 2026: still 30.00 in 2027 (grandfathered), no notice.
    grandfathered = rate(
        usage_frame([]),
        subscription_frame([sub(date(2026, 3, 1), "voice-2026")]),
        CATALOG,
        BillingPeriod.parse("2027-02"),
    )
    assert grandfathered.lines["amount"].to_list() == [Decimal("30.00")]
    assert grandfathered.notices.is_empty()
    # Signed in 2027 on the retired version: billed as signed, and a notice says so.
    late = rate(
        usage_frame([]),
        subscription_frame([sub(date(2027, 2, 1), "voice-2026")]),
        CATALOG,
        BillingPeriod.parse("2027-02"),
    )
    (notice,) = late.notices.iter_rows(named=True)
    assert notice["kind"] == "plan_version_not_effective"
    assert "voice-2026" in notice["message"] and "voice-2027" in notice["message"]


def test_migrating_to_a_new_version_splits_the_period_and_says_so() -> None:
    # Migrated from 2026 to 2027 prices on February 15, 2027 (28 days): a running
    # subscription moved onto its history, so February is charged whole here:
    # 14/28 x 30.00 = 15.00 on the 2026 version, 14/28 x 36.00 = 18.00 on 2027; March
    # in advance at 36.00.
    history = migrate_history(
        None,
        subscription_id="S1",
        start=date(2026, 3, 1),
        plan="voice-2026",
        seats=1,
        to_plan="voice-2027",
        day=date(2027, 2, 15),
    )
    assert history.billing_from == date(2027, 2, 1)
    result = rate(
        usage_frame([]),
        subscription_frame([sub(date(2026, 3, 1), "voice-2026", history)]),
        CATALOG,
        BillingPeriod.parse("2027-02"),
    )
    lines = [
        (r["plan_id"], r["amount"], r["description"]) for r in result.lines.iter_rows(named=True)
    ]
    assert [(plan, amount) for plan, amount, _ in lines] == [
        ("voice-2026", Decimal("15.00")),
        ("voice-2027", Decimal("18.00")),
        ("voice-2027", Decimal("36.00")),
    ]
    assert "Voice (2026 prices)" in lines[0][2] and "2027-02-01 to 2027-02-14" in lines[0][2]
    assert "Voice (2027 prices)" in lines[1][2] and "2027-02-15 to 2027-02-28" in lines[1][2]
    # Migrating again appends to the history; an earlier day than its last change is refused.
    again = migrate_history(
        history, "S1", date(2026, 3, 1), "voice-2027", 1, "voice-2026", date(2027, 3, 1)
    )
    assert [c.action for c in again.changes] == ["start", "change_plan", "change_plan"]
    with pytest.raises(ValueError, match="date order"):
        migrate_history(
            history, "S1", date(2026, 3, 1), "voice-2027", 1, "voice-2026", date(2027, 1, 1)
        )
