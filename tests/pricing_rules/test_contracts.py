"""Multi-year contracts: ramps, commitments with true-ups, renewal and termination fees."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from pricing_rules.catalog import load_catalog
from pricing_rules.contracts import Contract
from pricing_rules.money import RoundingMode, round_money
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import RatingResult, rate, subscription_frame
from pricing_rules.terms import AccountTerms
from tests.pricing_rules.frames import CATALOG_PATH, usage_frame

CATALOG = load_catalog(CATALOG_PATH)
SUBS = subscription_frame(
    [
        {
            "subscription_id": "S1",
            "account_id": "A",
            "plan_id": "ucaas-business-eur",
            "start_date": date(2026, 1, 1),
            "end_date": None,
        }
    ]
)


def contract(**fields: Any) -> Contract:
    base: dict[str, Any] = {
        "id": "C1",
        "currency": "EUR",
        "start": "2026-01-01",
        "term_months": 36,
        "ramps": [
            {"from_month": 1, "discount_percent": "20"},
            {"from_month": 13, "discount_percent": "10"},
            {"from_month": 25},
        ],
    }
    return Contract.model_validate(base | fields)


def bill(period: str, terms: Contract, spent: Decimal = Decimal(0)) -> RatingResult:
    account = AccountTerms(account_id="A", tax_exempt=True, contracts=[terms])
    return rate(
        usage_frame([]),
        SUBS,
        CATALOG,
        BillingPeriod.parse(period),
        terms={"A": account},
        contract_spend={("A", terms.id): spent},
    )


def amounts(result: RatingResult) -> dict[str, Decimal]:
    return {row["charge_id"]: row["amount"] for row in result.lines.iter_rows(named=True)}


@pytest.mark.parametrize(
    ("period", "discount"),
    [
        # EUR platform fee 185.00; year 1 20% off: -37.00; year 2 10%: -18.50; year 3 none
        ("2026-06", Decimal("-37.00")),
        ("2027-06", Decimal("-18.50")),
        ("2028-06", None),
    ],
)
def test_ramp_phases_price_each_contract_year(period: str, discount: Decimal | None) -> None:
    got = amounts(bill(period, contract()))
    assert got["platform"] == Decimal("185.00")
    assert got.get("discount:C1-phase-1", got.get("discount:C1-phase-2")) == discount


def test_ramp_phase_prices_override_the_list_price() -> None:
    # Year 2 at 150.00 instead of the 185.00 list price.
    phases = [
        {"from_month": 1},
        {
            "from_month": 13,
            "overrides": [
                {"plan_id": "ucaas-business-eur", "charge_id": "platform", "amount": "150"}
            ],
        },
    ]
    assert amounts(bill("2027-03", contract(ramps=phases)))["platform"] == Decimal("150.00")
    assert amounts(bill("2026-03", contract(ramps=phases)))["platform"] == Decimal("185.00")


def test_a_yearly_commitment_is_trued_up_on_the_years_last_invoice() -> None:
    # 3,000 a contract year; earlier months of 2026 billed 1,850.00 and December bills the
    # 185.00 platform fee: 3,000 - (1,850.00 + 185.00) = 965.00, on December's invoice
    # only (the year's last month). Spend counts charges before discounts and tax.
    terms = contract(ramps=[], commitment="3000")
    assert "contract:C1:commitment" not in amounts(bill("2026-11", terms, Decimal("1665")))
    december = amounts(bill("2026-12", terms, Decimal("1850")))
    assert december["contract:C1:commitment"] == Decimal("965.00")
    assert amounts(bill("2026-12", terms, Decimal("2900"))).get("contract:C1:commitment") is None


def test_a_monthly_commitment_is_trued_up_every_period() -> None:
    # 250 a period, 185.00 billed: true-up 65.00
    got = amounts(bill("2026-04", contract(ramps=[], commitment="250", commitment_per="period")))
    assert got["contract:C1:commitment"] == Decimal("65.00")


def test_early_termination_fee_and_nothing_committed_after() -> None:
    # 36 months from January 2026, terminated on 2027-03-10: the commitment left is the
    # 21 months April 2027 - December 2028 at 3,000 / 12 = 250 a month: 5,250;
    # fee 500 + 50% x 5,250 = 3,125.00. The contract ends on the 10th.
    terms = contract(
        ramps=[],
        commitment="3000",
        termination_fee="500",
        termination_fee_percent="50",
        terminated_on="2027-03-10",
    )
    march = amounts(bill("2027-03", terms))
    assert march["contract:C1:termination"] == Decimal("3125.00")
    assert "contract:C1:termination" not in amounts(bill("2027-04", terms))
    assert "contract:C1:commitment" not in amounts(bill("2027-12", terms, Decimal(0)))


def test_a_year_cut_short_by_a_termination_is_trued_up_pro_rata() -> None:
    # 3,000 a contract year; terminated on 2027-03-10, so year 2 (2027) stops after 68 of
    # its 365 days: 3,000 x 68/365 = 558.904...; January and February billed 370.00 and
    # March bills 185.00: true-up 558.904... - 555.00 = 3.904... => 3.90, with March.
    terms = contract(ramps=[], commitment="3000", terminated_on="2027-03-10")
    march = amounts(bill("2027-03", terms, Decimal("370")))
    assert march["contract:C1:commitment"] == Decimal("3.90")
    assert "contract:C1:commitment" not in amounts(bill("2027-02", terms, Decimal("185")))
    assert "contract:C1:commitment" not in amounts(bill("2027-04", terms, Decimal(0)))


def test_a_last_year_shorter_than_twelve_months_is_trued_up_when_the_term_ends() -> None:
    # 18 months from January 2026, then the contract ends: year 2 is January - June 2027,
    # 181 of 365 days: 3,000 x 181/365 = 1,487.671...; 925.00 billed January - May and
    # 185.00 in June: true-up 1,487.671... - 1,110.00 = 377.671... => 377.67, with June.
    terms = contract(ramps=[], commitment="3000", term_months=18, renewal="end")
    june = bill("2027-06", terms, Decimal("925"))
    assert amounts(june)["contract:C1:commitment"] == Decimal("377.67")
    assert (
        "prorated 181/365 days"
        in june.lines.filter(june.lines["charge_id"] == "contract:C1:commitment")["description"][0]
    )
    # Whole years are unchanged: a 24-month term trues up year 2 with December 2027.
    whole = contract(ramps=[], commitment="3000", term_months=24, renewal="end")
    assert "contract:C1:commitment" not in amounts(bill("2027-06", whole, Decimal("925")))


def test_renewal_keeps_the_last_phase_or_ends_the_contract() -> None:
    # After the 36-month term, auto-renew keeps the last phase and the commitment:
    # 185.00 billed, true-up 65.00 to the 250 committed, then 5% off the invoice's
    # charges, commitment included (docs/decisions/0016): 5% of 250.00 = 12.50.
    # `end` drops both.
    renewing = contract(
        ramps=[{"from_month": 1}, {"from_month": 25, "discount_percent": "5"}],
        commitment="250",
        commitment_per="period",
    )
    after = amounts(bill("2029-02", renewing))
    assert after["discount:C1-phase-2"] == Decimal("-12.50")
    assert after["contract:C1:commitment"] == Decimal("65.00")
    ended = amounts(bill("2029-02", renewing.model_copy(update={"renewal": "end"})))
    assert "discount:C1-phase-2" not in ended and "contract:C1:commitment" not in ended


def test_contract_year_boundaries_and_validation() -> None:
    terms = contract(start="2026-07-01")
    assert terms.year_of(date(2027, 6, 1)) == (date(2026, 7, 1), date(2027, 7, 1))
    assert terms.year_of(date(2027, 7, 1)) == (date(2027, 7, 1), date(2028, 7, 1))
    with pytest.raises(ValidationError, match="first day of a month"):
        contract(start="2026-07-15")
    with pytest.raises(ValidationError, match="start at month 1"):
        contract(ramps=[{"from_month": 2}])
    with pytest.raises(ValidationError, match="within the term"):
        contract(ramps=[{"from_month": 1}, {"from_month": 40}])
    with pytest.raises(ValidationError, match="unique"):
        AccountTerms(account_id="A", contracts=[contract(), contract()])


def test_a_true_up_is_rounded_once_like_any_line() -> None:
    # 1,000 a period, prorated to 10 of 31 days by a termination on the 11th:
    # 1,000 x 10/31 = 322.580.. ; billed 185.00 -> true-up 137.580.. -> 137.58
    terms = contract(
        ramps=[], commitment="1000", commitment_per="period", terminated_on="2026-05-11"
    )
    got = bill("2026-05", terms)
    line = next(r for r in got.lines.iter_rows(named=True) if r["charge_id"].endswith("commitment"))
    exact = Decimal(1000) * Decimal(10) / Decimal(31) - Decimal("185.00")
    assert line["amount"] == round_money(exact, "EUR", RoundingMode.HALF_UP)
