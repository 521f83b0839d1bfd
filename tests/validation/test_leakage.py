"""validation.leakage: usage or subscriptions that would go unbilled, valued at list price."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from pricing_rules.catalog import Catalog, parse_catalog
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import RatingResult, rate, subscription_frame
from tests.pricing_rules.frames import CATALOG_YAML, at, usage_frame
from validation.leakage import (
    FINDING_SCHEMA,
    detect_leakage,
    finding_id,
    list_price_value,
)
from validation.schemas import Findings, full_depth

OCT = BillingPeriod.parse("2026-10")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    # the test catalog (list price plan `usd`) plus a plan with no recurring fee
    return parse_catalog(
        CATALOG_YAML
        + """
  payg:
    name: Pay as you go
    currency: USD
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.0100"}
"""
    )


def sub(
    subscription_id: str, account_id: str, plan_id: str, start: date = date(2026, 1, 1)
) -> dict[str, object]:
    return {
        "subscription_id": subscription_id,
        "account_id": account_id,
        "plan_id": plan_id,
        "start_date": start,
        "end_date": None,
    }


SUBS = subscription_frame(
    [
        sub("S-A", "A", "usd"),
        sub("S-G", "GHOST", "retired-plan", start=date(2026, 10, 17)),
        sub("S-P", "PAYG", "payg"),
    ]
)
USAGE = usage_frame(
    [
        ("NOSUB", "voice", 90_000, at(3)),
        ("NOSUB", "voice", 1_170_000, at(4)),
        ("SMALL", "sms", 10, at(5)),
        ("GHOST", "sms", 3_200, at(20)),
        ("A", "video", 600, at(6)),
        ("PAYG", "sms", 5, at(7)),
    ]
)


@pytest.fixture(scope="module")
def rating(catalog: Catalog) -> RatingResult:
    return rate(USAGE, SUBS, catalog, OCT)


@pytest.fixture(scope="module")
def findings(rating: RatingResult, catalog: Catalog) -> pl.DataFrame:
    return detect_leakage(rating, SUBS, catalog, OCT)


def by_rule(findings: pl.DataFrame, rule: str, account: str) -> dict[str, object]:
    return findings.filter((pl.col("rule") == rule) & (pl.col("account_id") == account)).row(
        0, named=True
    )


def test_usage_without_subscription(findings: pl.DataFrame) -> None:
    finding = by_rule(findings, "usage_without_subscription", "NOSUB")
    # 90,000 + 1,170,000 = 1,260,000 s / 60 = 21,000 min at the list price (plan usd):
    # 1,000 x 0 + 19,000 x 0.0120 + 1,000 x 0.0085 = 228 + 8.50 = 236.50 USD
    assert finding["amount_at_risk"] == Decimal("236.50")
    assert finding["currency"] == "USD"
    assert finding["severity"] == "high"  # 236.50 >= 100
    assert finding["subscription_id"] is None
    assert finding["metric"] == "voice"
    assert finding["message"] == (
        "2 voice events from account NOSUB have no active subscription and were not billed"
    )
    evidence = json.loads(str(finding["evidence"]))
    assert evidence == {
        "reason": "no_subscription",
        "events": 2,
        "quantity": "1260000",
        "unit": "s",
        "first_day": "2026-10-03",
        "last_day": "2026-10-04",
        "plan_id": None,
        "valued_at": "usd",
    }


def test_small_unbilled_usage_is_medium(findings: pl.DataFrame) -> None:
    finding = by_rule(findings, "usage_without_subscription", "SMALL")
    # 10 x 0.0079 = 0.079 => half_up 0.08 USD; below 100 => medium
    assert finding["amount_at_risk"] == Decimal("0.08")
    assert finding["severity"] == "medium"


def test_usage_on_an_unknown_plan(findings: pl.DataFrame) -> None:
    finding = by_rule(findings, "usage_not_priced", "GHOST")
    # 3,200 x 0.0079 = 25.28 USD at list price; an unknown plan is always high
    assert finding["amount_at_risk"] == Decimal("25.28")
    assert finding["severity"] == "high"
    assert finding["subscription_id"] == "S-G"
    assert finding["message"] == (
        "subscription S-G is on plan 'retired-plan', which the catalog does not define; "
        "1 sms events were not billed"
    )
    assert json.loads(str(finding["evidence"]))["reason"] == "unknown_plan"


def test_usage_of_a_metric_the_plan_does_not_price(findings: pl.DataFrame) -> None:
    finding = by_rule(findings, "usage_not_priced", "A")
    # no plan prices video, so there is no list price: the amount at risk is unknown
    assert finding["amount_at_risk"] is None
    assert finding["currency"] is None
    # usage that cannot be valued is high: a policy must not wave it through
    assert finding["severity"] == "high"
    assert finding["message"] == (
        "plan usd has no charge for metric 'video'; 1 events were not billed"
    )
    evidence = json.loads(str(finding["evidence"]))
    assert evidence["valued_at"] == "no list price for this metric"


def test_missing_recurring_charge_on_an_unknown_plan(findings: pl.DataFrame) -> None:
    finding = by_rule(findings, "missing_recurring_charge", "GHOST")
    # from 2026-10-17: 15 of 31 days of the list-price platform fee:
    # 199.00 x 15/31 = 96.2903... => 96.29 USD; a missing fee is always high
    assert finding["amount_at_risk"] == Decimal("96.29")
    assert finding["severity"] == "high"
    assert finding["message"] == (
        "active subscription S-G of account GHOST has no recurring charge this period: "
        "plan 'retired-plan' is not in the catalog"
    )
    assert json.loads(str(finding["evidence"])) == {
        "plan_id": "retired-plan",
        "start_date": "2026-10-17",
        "end_date": None,
        "valued_at": "usd",
    }


def test_missing_recurring_charge_on_a_plan_without_one(findings: pl.DataFrame) -> None:
    finding = by_rule(findings, "missing_recurring_charge", "PAYG")
    assert finding["amount_at_risk"] is None  # the plan has no fee to value it by
    assert finding["severity"] == "high"
    assert finding["message"].endswith("plan 'payg' has no recurring charge")


def test_billed_subscriptions_and_usage_raise_nothing(findings: pl.DataFrame) -> None:
    assert findings.filter(pl.col("subscription_id") == "S-A")["rule"].to_list() == [
        "usage_not_priced"  # only the video usage
    ]
    assert findings.filter(pl.col("account_id") == "PAYG")["rule"].to_list() == [
        "missing_recurring_charge"  # PAYG's sms was billed
    ]


def test_findings_are_sorted_by_amount_at_risk(findings: pl.DataFrame) -> None:
    assert findings.select("rule", "account_id", "amount_at_risk").rows()[:4] == [
        ("usage_without_subscription", "NOSUB", Decimal("236.50")),
        ("missing_recurring_charge", "GHOST", Decimal("96.29")),
        ("usage_not_priced", "GHOST", Decimal("25.28")),
        ("usage_without_subscription", "SMALL", Decimal("0.08")),
    ]
    assert findings["amount_at_risk"][4:].is_null().all()
    assert findings.height == 6


def test_findings_match_their_schema(findings: pl.DataFrame) -> None:
    assert findings.schema == pl.Schema(FINDING_SCHEMA)
    with full_depth():
        Findings.validate(findings, lazy=True)


def test_finding_ids_are_stable(
    rating: RatingResult, catalog: Catalog, findings: pl.DataFrame
) -> None:
    again = detect_leakage(rating, SUBS, catalog, OCT)
    assert again["finding_id"].to_list() == findings["finding_id"].to_list()
    assert findings["finding_id"].n_unique() == findings.height
    finding = by_rule(findings, "usage_without_subscription", "NOSUB")
    assert finding["finding_id"] == finding_id(
        OCT, "usage_without_subscription", "NOSUB", None, "voice", "no_subscription"
    )
    assert len(str(finding["finding_id"])) == 24


def test_finding_id_depends_on_period_rule_and_keys() -> None:
    base = finding_id(OCT, "usage_not_priced", "A", "S-A", "video")
    assert base == finding_id(OCT, "usage_not_priced", "A", "S-A", "video")
    assert base != finding_id(
        BillingPeriod.parse("2026-11"), "usage_not_priced", "A", "S-A", "video"
    )
    assert base != finding_id(OCT, "usage_without_subscription", "A", "S-A", "video")
    assert base != finding_id(OCT, "usage_not_priced", "A", "S-A", "voice")


def test_list_price_value(catalog: Catalog) -> None:
    # 3,200 messages x 0.0079 = 25.28 USD
    assert list_price_value(catalog, "sms", Decimal(3200)) == (Decimal("25.28"), "USD")
    # 150 GB in (100, 1000] at 0.18 = 27.00 USD
    assert list_price_value(catalog, "storage", Decimal(150)) == (Decimal("27.00"), "USD")
    assert list_price_value(catalog, "video", Decimal(60)) is None


def test_nothing_to_find() -> None:
    catalog = parse_catalog(CATALOG_YAML)
    subs = subscription_frame([sub("S-A", "A", "usd")])
    rating = rate(usage_frame([("A", "sms", 1, at(2))]), subs, catalog, OCT)
    findings = detect_leakage(rating, subs, catalog, OCT)
    assert findings.height == 0
    assert findings.schema == pl.Schema(FINDING_SCHEMA)


def test_high_severity_starts_at_ten_thousand_minor_units_in_any_currency() -> None:
    from validation.leakage import _severity

    # 10,000 minor units: 100.00 USD, 10,000 JPY, 10.000 BHD
    assert _severity(Decimal("100.00"), "USD") == "high"
    assert _severity(Decimal("99.99"), "USD") == "medium"
    assert _severity(Decimal("5000"), "JPY") == "medium"
    assert _severity(Decimal("10000"), "JPY") == "high"
    assert _severity(Decimal("10.000"), "BHD") == "high"
    assert _severity(None, None, "medium") == "high"  # unknown value: never low risk


def test_a_published_invoice_that_no_longer_matches_its_usage_is_a_finding(
    rating: RatingResult, catalog: Catalog
) -> None:
    totals = dict(
        ((a, c), int(m))
        for a, c, m in rating.lines.group_by("account_id", "currency")
        .agg(pl.col("amount_minor").sum())
        .rows()
    )
    (key,) = [k for k in totals if k[0] == "A"]
    # Published 123.45 less than the usage now rates: late usage that nothing bills.
    published = {key: totals[key] - 12345}
    findings = detect_leakage(rating, SUBS, catalog, OCT, published)
    (finding,) = findings.filter(pl.col("rule") == "published_invoice_differs").iter_rows(
        named=True
    )
    assert finding["account_id"] == "A"
    assert finding["amount_at_risk"] == Decimal("123.45")
    assert finding["severity"] == "high"  # 12,345 minor units >= 10,000
    assert "late or corrected usage is not billed" in finding["message"]
    # Matching totals raise nothing.
    same = detect_leakage(rating, SUBS, catalog, OCT, totals)
    assert same.filter(pl.col("rule") == "published_invoice_differs").height == 0
