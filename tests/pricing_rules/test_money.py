"""pricing_rules.money: ISO 4217 minor units, rounding modes, minor-unit conversion."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing_rules.money import (
    RoundingMode,
    format_money,
    from_minor_units,
    is_currency,
    minor_unit_exponent,
    round_money,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("USD", 2),  # cents
        ("EUR", 2),
        ("JPY", 0),  # no minor unit
        ("BHD", 3),  # fils: 1 BHD = 1000 fils
    ],
)
def test_minor_unit_exponent(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize("code", ["ABC", "usd", "", "US"])
def test_unknown_currency_is_an_error(code: str) -> None:
    assert not is_currency(code)
    with pytest.raises(ValueError, match="unknown ISO 4217 currency"):
        minor_unit_exponent(code)
    with pytest.raises(ValueError, match="unknown ISO 4217 currency"):
        round_money(Decimal("1.00"), code, RoundingMode.HALF_UP)
    with pytest.raises(ValueError, match="unknown ISO 4217 currency"):
        to_minor_units(Decimal("1"), code)
    with pytest.raises(ValueError, match="unknown ISO 4217 currency"):
        from_minor_units(1, code)


# A tie sits exactly half a minor unit from both neighbours: 12.345 USD lies between
# 12.34 and 12.35. The sign matters for up/down (magnitude) versus ceiling/floor (value).
@pytest.mark.parametrize(
    ("mode", "positive", "negative"),
    [
        (RoundingMode.HALF_UP, "12.35", "-12.35"),  # ties away from zero
        (RoundingMode.HALF_EVEN, "12.34", "-12.34"),  # ties to the even cent (4)
        (RoundingMode.HALF_DOWN, "12.34", "-12.34"),  # ties toward zero
        (RoundingMode.UP, "12.35", "-12.35"),  # away from zero
        (RoundingMode.DOWN, "12.34", "-12.34"),  # toward zero
        (RoundingMode.CEILING, "12.35", "-12.34"),  # toward +infinity
        (RoundingMode.FLOOR, "12.34", "-12.35"),  # toward -infinity
    ],
)
def test_each_rounding_mode_on_a_tie(mode: RoundingMode, positive: str, negative: str) -> None:
    assert round_money(Decimal("12.345"), "USD", mode) == Decimal(positive)
    assert round_money(Decimal("-12.345"), "USD", mode) == Decimal(negative)


def test_half_even_rounds_ties_to_the_even_neighbour_both_ways() -> None:
    # 12.345 -> 12.34 (4 is even); 12.355 -> 12.36 (6 is even)
    assert round_money(Decimal("12.345"), "USD", RoundingMode.HALF_EVEN) == Decimal("12.34")
    assert round_money(Decimal("12.355"), "USD", RoundingMode.HALF_EVEN) == Decimal("12.36")


@pytest.mark.parametrize(
    ("amount", "currency", "mode", "expected"),
    [
        ("1234.5", "JPY", RoundingMode.HALF_UP, "1235"),  # yen: tie -> 1235 yen
        ("1234.5", "JPY", RoundingMode.HALF_EVEN, "1234"),  # 4 is even
        ("1.2345", "BHD", RoundingMode.HALF_UP, "1.235"),  # fils: tie -> 1.235
        ("1.2345", "BHD", RoundingMode.HALF_EVEN, "1.234"),
        ("1.2341", "BHD", RoundingMode.UP, "1.235"),  # any remainder goes up
        ("0.001", "USD", RoundingMode.CEILING, "0.01"),
        ("0.009", "USD", RoundingMode.FLOOR, "0.00"),
    ],
)
def test_rounding_follows_the_currency_exponent(
    amount: str, currency: str, mode: RoundingMode, expected: str
) -> None:
    rounded = round_money(Decimal(amount), currency, mode)
    assert rounded == Decimal(expected)
    # the result carries exactly the currency's number of decimals
    assert rounded.as_tuple().exponent == -minor_unit_exponent(currency)


def test_precise_amounts_beyond_28_digits_round_once() -> None:
    # 96.290322580645161290... (199 x 15/31, 50 significant digits) -> 96.29
    precise = Decimal("96.290322580645161290322580645161290322580645161290")
    assert round_money(precise, "USD", RoundingMode.HALF_UP) == Decimal("96.29")


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.35", "USD", 1235),  # 12.35 x 100 = 1235 cents
        ("12.3", "USD", 1230),  # 12.30 x 100 = 1230 cents
        ("0", "USD", 0),
        ("-4.05", "USD", -405),
        ("1235", "JPY", 1235),  # yen have no minor unit
        ("1.235", "BHD", 1235),  # 1.235 x 1000 = 1235 fils
    ],
)
def test_to_and_from_minor_units(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(1235, "USD", "12.35"), (5, "BHD", "0.005"), (1235, "JPY", "1235"), (-1, "USD", "-0.01")],
)
def test_from_minor_units_keeps_the_currency_scale(minor: int, currency: str, text: str) -> None:
    assert str(from_minor_units(minor, currency)) == text


@pytest.mark.parametrize(
    ("amount", "currency"), [("12.345", "USD"), ("1234.5", "JPY"), ("1.2345", "BHD")]
)
def test_to_minor_units_refuses_an_unrounded_amount(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match="is not rounded to the minor unit"):
        to_minor_units(Decimal(amount), currency)


def test_format_money() -> None:
    assert format_money(Decimal("1234.5"), "USD") == "1,234.50 USD"
    assert format_money(Decimal("1234567"), "JPY") == "1,234,567 JPY"
    assert format_money(Decimal("1.5"), "BHD") == "1.500 BHD"


def test_rounding_mode_names_are_the_catalog_words() -> None:
    assert {mode.value for mode in RoundingMode} == {
        "half_up",
        "half_even",
        "half_down",
        "up",
        "down",
        "ceiling",
        "floor",
    }
    assert RoundingMode("half_even") is RoundingMode.HALF_EVEN
