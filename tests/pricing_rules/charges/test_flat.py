"""pricing_rules.charges.flat: a recurring fee priced by the proration factor."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from pricing_rules.charges import FlatCharge
from pricing_rules.money import RoundingMode, round_money, to_minor_units
from pricing_rules.periods import BillingPeriod


def platform(amount: str = "199.00", timing: str = "advance") -> FlatCharge:
    return FlatCharge.model_validate(
        {
            "id": "platform",
            "name": "Platform fee",
            "model": "flat",
            "amount": amount,
            "timing": timing,
        }
    )


def test_a_whole_period_costs_the_amount() -> None:
    # 1 x 199.00 = 199.00 => 19900 cents
    priced = platform().price(Decimal(1))
    assert priced.amount == Decimal("199.00")
    assert to_minor_units(round_money(priced.amount, "USD", RoundingMode.HALF_UP), "USD") == 19900
    (detail,) = priced.details
    assert detail.label == "Platform fee (advance)"
    assert (detail.quantity, detail.unit_price, detail.amount) == (
        Decimal(1),
        Decimal("199.00"),
        Decimal("199.00"),
    )


def test_a_prorated_period() -> None:
    # Signed up 2026-10-17: 15 of 31 days; 199.00 x 15/31 = 96.2903... => 9629 cents
    factor = BillingPeriod.parse("2026-10").proration_factor(date(2026, 10, 17), None)
    priced = platform().price(factor)
    assert to_minor_units(round_money(priced.amount, "USD", RoundingMode.HALF_UP), "USD") == 9629
    assert priced.quantity == factor


def test_half_a_period() -> None:
    # 0.5 x 199 = 99.5
    assert platform("199").price(Decimal("0.5")).amount == Decimal("99.5")


def test_arrears_timing_is_labelled() -> None:
    assert platform(timing="arrears").price(Decimal(1)).details[0].label == (
        "Platform fee (arrears)"
    )


def test_flat_is_recurring() -> None:
    assert FlatCharge.kind == "recurring"
    assert platform().metric is None


def test_negative_amount_is_an_error() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        platform("-1.00")


def test_unknown_timing_is_an_error() -> None:
    with pytest.raises(ValueError, match="'advance' or 'arrears'"):
        platform(timing="monthly")
