"""Exact money: ISO 4217 minor units and the rounding modes a catalog may name."""

from __future__ import annotations

import decimal
from decimal import Decimal
from enum import StrEnum
from functools import cache

from babel.core import Locale
from babel.numbers import get_currency_precision, list_currencies


class RoundingMode(StrEnum):
    """Rounding modes a plan may name; each maps to a `decimal` rounding constant."""

    HALF_UP = "half_up"
    HALF_EVEN = "half_even"
    HALF_DOWN = "half_down"
    UP = "up"
    DOWN = "down"
    CEILING = "ceiling"
    FLOOR = "floor"

    @property
    def decimal_rounding(self) -> str:
        return _DECIMAL_ROUNDING[self.value]


_DECIMAL_ROUNDING = {
    "half_up": decimal.ROUND_HALF_UP,
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_down": decimal.ROUND_HALF_DOWN,
    "up": decimal.ROUND_UP,
    "down": decimal.ROUND_DOWN,
    "ceiling": decimal.ROUND_CEILING,
    "floor": decimal.ROUND_FLOOR,
}

# Intermediate precision: wide enough that no precise amount is ever rounded before
# the single per-line rounding to the minor unit.
MONEY_CONTEXT = decimal.Context(prec=50, rounding=decimal.ROUND_HALF_EVEN)


@cache
def known_currencies() -> frozenset[str]:
    return frozenset(list_currencies(locale=Locale("en")))


def is_currency(code: str) -> bool:
    return code in known_currencies()


@cache
def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 currency.

    >>> minor_unit_exponent("USD"), minor_unit_exponent("JPY"), minor_unit_exponent("BHD")
    (2, 0, 3)
    """
    if not is_currency(currency):
        raise ValueError(f"unknown ISO 4217 currency {currency!r}")
    return int(get_currency_precision(currency))


def round_money(amount: Decimal, currency: str, mode: RoundingMode) -> Decimal:
    """Round a precise amount once, to the currency's minor unit.

    >>> round_money(Decimal("12.345"), "USD", RoundingMode.HALF_UP)
    Decimal('12.35')
    >>> round_money(Decimal("12.345"), "USD", RoundingMode.HALF_EVEN)
    Decimal('12.34')
    >>> round_money(Decimal("1234.5"), "JPY", RoundingMode.HALF_UP)
    Decimal('1235')
    """
    quantum = Decimal(1).scaleb(-minor_unit_exponent(currency))
    return amount.quantize(quantum, rounding=mode.decimal_rounding, context=MONEY_CONTEXT)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Integer minor units of an already rounded amount.

    >>> to_minor_units(Decimal("12.35"), "USD"), to_minor_units(Decimal("1235"), "JPY")
    (1235, 1235)
    """
    scaled = amount.scaleb(minor_unit_exponent(currency), context=MONEY_CONTEXT)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not rounded to the minor unit")
    return int(scaled)


def from_minor_units(minor: int, currency: str) -> Decimal:
    """Inverse of `to_minor_units`.

    >>> from_minor_units(1235, "USD")
    Decimal('12.35')
    """
    return Decimal(minor).scaleb(-minor_unit_exponent(currency), context=MONEY_CONTEXT)


def plain(value: Decimal) -> str:
    """The exact value in plain notation without trailing zeros: how explanation rows and
    precise amounts are written, whatever arithmetic produced the value.

    >>> plain(Decimal("0E-12")), plain(Decimal("-0.00")), plain(Decimal("6.000"))
    ('0', '0', '6')
    """
    if not value:
        return "0"  # a negated zero is still zero
    return f"{value.normalize(context=MONEY_CONTEXT):f}"


def show_quantity(value: Decimal) -> str:
    """A figure for people: thousands separated, at most 4 decimal places (the line's
    explanation rows keep the exact value).

    >>> show_quantity(Decimal("20298.466666666667")), show_quantity(Decimal("1500.000"))
    ('20,298.4667', '1,500')
    """
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        value = value.quantize(Decimal("0.0001"), context=MONEY_CONTEXT)
    return f"{value.normalize():,f}"


def format_money(amount: Decimal, currency: str) -> str:
    """Human form with the currency code, e.g. `1,234.50 USD`."""
    exponent = minor_unit_exponent(currency)
    return f"{amount:,.{exponent}f} {currency}"
