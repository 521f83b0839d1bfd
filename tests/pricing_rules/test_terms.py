"""pricing_rules.terms: commercial terms are validated before they price anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from pricing_rules.catalog import CatalogError, parse_catalog
from pricing_rules.terms import (
    AccountTerms,
    Discount,
    PrepaidCredit,
    PriceOverride,
    TaxRate,
    Window,
)

D = Decimal


def discount(**fields: object) -> Discount:
    return Discount.model_validate(
        {"id": "d", "name": "Deal", "kind": "percentage", "value": "10", **fields}
    )


def override(**fields: object) -> PriceOverride:
    return PriceOverride.model_validate({"plan_id": "p", "charge_id": "c", **fields})


def credit(**fields: object) -> PrepaidCredit:
    return PrepaidCredit.model_validate(
        {"id": "c", "amount": "50", "currency": "USD", "granted_on": date(2026, 1, 1), **fields}
    )


# --- discounts -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "12.5", "100"])
def test_percentage_discount_up_to_100(value: str) -> None:
    assert discount(value=value).value == D(value)


def test_percentage_discount_above_100_is_rejected() -> None:
    with pytest.raises(ValidationError, match="a percentage discount cannot exceed 100"):
        discount(value="100.01")


def test_fixed_discount_may_exceed_100() -> None:
    # a fixed discount is money, not a percentage: 250.00 off is fine
    assert discount(kind="fixed", value="250").value == D(250)


@pytest.mark.parametrize("kind", ["percentage", "fixed"])
def test_negative_discount_is_rejected(kind: str) -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        discount(kind=kind, value="-1")


def test_unknown_discount_kind_is_rejected() -> None:
    with pytest.raises(ValidationError, match="'percentage' or 'fixed'"):
        discount(kind="bogo")


def test_discount_applies_to_the_invoice_by_default() -> None:
    assert discount().applies_to == "invoice"


# --- validity windows ------------------------------------------------------------------


@pytest.mark.parametrize(
    "window",
    [
        {"valid_from": date(2026, 10, 20), "valid_to": date(2026, 10, 10)},  # before
        {"valid_from": date(2026, 10, 20), "valid_to": date(2026, 10, 20)},  # empty
    ],
)
@pytest.mark.parametrize(
    "build", [discount, override, Window], ids=["discount", "override", "window"]
)
def test_valid_to_must_be_after_valid_from(
    build: Callable[..., object], window: dict[str, date]
) -> None:
    with pytest.raises(ValidationError, match="valid_to must be after valid_from"):
        build(**window)


@pytest.mark.parametrize(
    ("window", "days"),
    [
        ({}, 31),  # open on both sides: the whole of October
        ({"valid_from": date(2026, 10, 17)}, 15),  # 17th to 31st
        ({"valid_to": date(2026, 10, 11)}, 10),  # 1st to 10th
        ({"valid_from": date(2026, 10, 5), "valid_to": date(2026, 10, 8)}, 3),
        ({"valid_from": date(2026, 9, 1), "valid_to": date(2026, 10, 1)}, 0),  # September only
        ({"valid_from": date(2026, 11, 1)}, 0),  # after October
    ],
)
def test_covered_days(window: dict[str, date], days: int) -> None:
    assert Window.model_validate(window).covered_days(date(2026, 10, 1), date(2026, 11, 1)) == days


# --- price overrides -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["unit_price", "amount", "block_price"])
def test_negative_override_price_is_rejected(field: str) -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        override(**{field: "-0.01"})


def test_override_tiers_are_checked_like_catalog_tiers() -> None:
    tiers = [{"up_to": "100", "unit_price": "1"}, {"up_to": "50", "unit_price": "0.5"}]
    with pytest.raises(ValidationError, match=r"the last tier \(tier 1\) must be open-ended"):
        override(tiers=tiers)
    with pytest.raises(ValidationError, match="tier 1 ends at 50, not above the previous bound"):
        override(tiers=tiers)


def test_override_changes_only_the_given_fields() -> None:
    assert override(unit_price="0.005").changes() == {"unit_price": D("0.005")}
    assert override().changes() == {}


# --- prepaid credits -------------------------------------------------------------------


def test_negative_credit_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        credit(amount="-5")


def test_credit_expiring_before_it_is_granted_is_rejected() -> None:
    with pytest.raises(ValidationError):
        credit(granted_on=date(2026, 10, 1), expires_on=date(2026, 9, 1))


def test_credit_in_an_unknown_currency_is_rejected() -> None:
    with pytest.raises(ValidationError):
        credit(currency="usd")


# --- account terms ---------------------------------------------------------------------


def test_account_terms_defaults() -> None:
    terms = AccountTerms(account_id="A")
    assert (terms.tax_jurisdiction, terms.tax_exempt) == (None, False)
    assert (terms.overrides, terms.discounts, terms.credits) == ([], [], [])


def test_account_terms_collect_nested_errors() -> None:
    with pytest.raises(ValidationError) as caught:
        AccountTerms.model_validate(
            {
                "account_id": "A",
                "discounts": [{"id": "d", "name": "D", "kind": "percentage", "value": "150"}],
                "credits": [
                    {"id": "c", "amount": "-1", "currency": "USD", "granted_on": "2026-01-01"}
                ],
                "surprise": True,
            }
        )
    locations = {tuple(error["loc"]) for error in caught.value.errors()}
    assert locations == {("discounts", 0), ("credits", 0, "amount"), ("surprise",)}


# --- tax rates -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", ["0", "0.2", "0.999999"])
def test_tax_rate_is_a_fraction(rate: str) -> None:
    assert TaxRate(name="VAT", rate=D(rate)).rate == D(rate)


@pytest.mark.parametrize("rate", ["1", "20", "-0.01"])
def test_tax_rate_outside_0_to_1_is_rejected(rate: str) -> None:
    with pytest.raises(ValidationError, match="a tax rate is a fraction between 0 and 1"):
        TaxRate(name="VAT", rate=D(rate))


# --- the same checks in a catalog, each with its path ----------------------------------


def test_catalog_reports_terms_errors_with_their_paths() -> None:
    text = """
version: "bad-terms"
metrics:
  sms: {name: SMS, unit: message, aggregation: sum}
taxes:
  GB: {name: VAT, rate: "20"}
plans:
  p:
    name: P
    currency: USD
    minimum_commitment: "-5"
    discounts:
      - {id: d, name: Deal, kind: percentage, value: "150"}
      - {id: e, name: Window, kind: fixed, value: "5", valid_from: 2026-10-20,
         valid_to: 2026-10-01}
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.01"}
"""
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="bad.yaml")
    assert {(issue.path, issue.message) for issue in caught.value.issues} == {
        ("plans.p.minimum_commitment", "must not be negative"),
        ("plans.p.discounts[0]", "a percentage discount cannot exceed 100"),
        ("plans.p.discounts[1]", "valid_to must be after valid_from"),
        ("taxes.GB.rate", "a tax rate is a fraction between 0 and 1, e.g. 0.20"),
    }


def test_catalog_rejects_a_float_tax_rate() -> None:
    text = """
version: "float"
metrics:
  sms: {name: SMS, unit: message, aggregation: sum}
taxes:
  GB: {name: VAT, rate: 0.2}
plans:
  p:
    name: P
    currency: USD
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.01"}
"""
    with pytest.raises(CatalogError, match=r"taxes\.GB\.rate: write money as a quoted string"):
        parse_catalog(text)


@pytest.mark.parametrize(
    ("cycle", "shown"),
    [("interval: quarter", "calendar quarter"), ("alignment: anniversary", "anniversary month")],
)
def test_a_commitment_is_refused_on_a_plan_billed_on_its_own_cycle(cycle: str, shown: str) -> None:
    # Weighed per monthly run, it would count a quarter's fees billed in advance against
    # one month, and find the other months short.
    text = f"""
version: "cycle"
metrics: {{}}
plans:
  q:
    name: Q
    currency: USD
    {cycle}
    minimum_commitment: "300"
    charges: [{{id: fee, name: Fee, model: flat, amount: "900"}}]
"""
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    ((path, message),) = [(issue.path, issue.message) for issue in caught.value.issues]
    assert path == "plans.q"
    assert message.startswith("minimum_commitment is only for plans billed by calendar month")
    assert message.endswith(f"this plan bills by {shown}")


@pytest.mark.parametrize(
    ("amount", "currency", "fits"),
    [
        ("1.0005", "BHD", False),
        ("1.005", "BHD", True),
        ("10.005", "USD", False),
        ("100.5", "JPY", False),
        ("100", "JPY", True),
    ],
)
def test_a_credit_is_whole_minor_units_of_its_currency(
    amount: str, currency: str, fits: bool
) -> None:
    # a credit of 1.0005 BHD would draw 1.000 and say 1.0005 was drawn; import refuses it
    # (infra.directory.read_terms), terms stored before still load
    fields = {"id": "c", "amount": amount, "currency": currency, "granted_on": "2026-01-01"}
    why = PrepaidCredit.model_validate(fields).finer_than_currency()
    if fits:
        assert why is None
    else:
        assert why is not None
        assert f"more decimal places than {currency} has" in why


def test_a_plan_discount_in_another_currency_is_refused() -> None:
    text = """
version: "d"
metrics: {}
plans:
  p:
    name: P
    currency: USD
    discounts: [{id: d, name: D, kind: fixed, value: "30", currency: EUR}]
    charges: [{id: fee, name: Fee, model: flat, amount: "100"}]
"""
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    assert [(i.path, i.message) for i in caught.value.issues] == [
        ("plans.p", "discount(s) d name another currency than the plan's USD")
    ]
