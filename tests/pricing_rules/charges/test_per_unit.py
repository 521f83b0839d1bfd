"""pricing_rules.charges.per_unit: every unit at one price."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing_rules.charges import PerUnitCharge
from pricing_rules.money import RoundingMode, round_money, to_minor_units


def per_unit(unit_price: str) -> PerUnitCharge:
    return PerUnitCharge.model_validate(
        {"id": "sms", "name": "SMS", "model": "per_unit", "metric": "sms", "unit_price": unit_price}
    )


@pytest.mark.parametrize(
    ("quantity", "unit_price", "currency", "mode", "expected_minor"),
    [
        # 3,200 messages x 0.0079 = 25.28 => 2528 cents
        ("3200", "0.0079", "USD", RoundingMode.HALF_UP, 2528),
        # 12 seats x 14.50 = 174.00 => 17400 cents
        ("12", "14.50", "USD", RoundingMode.HALF_UP, 17400),
        # 5 messages x 0.0079 = 0.0395 => half_up 0.04 => 4 cents
        ("5", "0.0079", "USD", RoundingMode.HALF_UP, 4),
        # 3 messages x 0.0072 = 0.0216 => half_even 0.02 => 2 cents
        ("3", "0.0072", "EUR", RoundingMode.HALF_EVEN, 2),
        # 15 messages x 1.1 = 16.5 yen => half_up 17 yen
        ("15", "1.1", "JPY", RoundingMode.HALF_UP, 17),
        # 15 messages x 1.1 = 16.5 yen => half_even 16 yen
        ("15", "1.1", "JPY", RoundingMode.HALF_EVEN, 16),
    ],
)
def test_golden_amounts(
    quantity: str, unit_price: str, currency: str, mode: RoundingMode, expected_minor: int
) -> None:
    priced = per_unit(unit_price).price(Decimal(quantity))
    assert to_minor_units(round_money(priced.amount, currency, mode), currency) == expected_minor


def test_precise_amount_and_detail() -> None:
    # 3,200 x 0.0079 = 25.2800 (kept precise; rounded only where the line is built)
    priced = per_unit("0.0079").price(Decimal(3200))
    assert priced.amount == Decimal("25.2800")
    assert str(priced.amount) == "25.2800"
    assert priced.unit_price == Decimal("0.0079")
    (detail,) = priced.details
    assert (detail.label, detail.quantity, detail.unit_price, detail.amount) == (
        "SMS",
        Decimal(3200),
        Decimal("0.0079"),
        Decimal("25.2800"),
    )
    assert detail.tier is None


def test_fractional_quantity_is_exact() -> None:
    # 1.5 GB x 0.25 = 0.375 (not 0.37499999... as a float would be)
    assert per_unit("0.25").price(Decimal("1.5")).amount == Decimal("0.375")


def test_negative_unit_price_is_an_error() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        per_unit("-0.01")


def test_per_unit_is_usage() -> None:
    assert PerUnitCharge.kind == "usage"
