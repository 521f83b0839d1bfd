"""pricing_rules.units: exact factors between units of one dimension."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from pricing_rules.units import (
    QUANTITY_SCALE,
    UNITS,
    UnitError,
    conversion_factor,
    convertible_units,
    exact_decimal,
    is_unit,
)


@pytest.mark.parametrize(
    ("source", "target", "factor"),
    [
        ("min", "s", Fraction(60)),  # 1 min = 60 s
        ("h", "s", Fraction(3600)),  # 1 h = 60 x 60 s
        ("s", "min", Fraction(1, 60)),
        ("h", "min", Fraction(60)),
        ("MB", "GB", Fraction(1, 1000)),  # SI: 1 GB = 1000 MB
        ("GB", "MB", Fraction(1000)),
        ("TB", "GB", Fraction(1000)),
        ("B", "GB", Fraction(1, 10**9)),
        ("GiB", "MiB", Fraction(1024)),  # IEC: 1 GiB = 1024 MiB
        ("GiB", "GB", Fraction(2**30, 10**9)),  # 1 GiB = 1.073741824 GB
        ("kbps", "Mbps", Fraction(1, 1000)),
        ("Gbps", "Mbps", Fraction(1000)),
        ("seat", "seat", Fraction(1)),
    ],
)
def test_exact_factors(source: str, target: str, factor: Fraction) -> None:
    assert conversion_factor(source, target) == factor
    assert isinstance(conversion_factor(source, target), Fraction)


def test_factors_compose_exactly() -> None:
    # h -> min -> s equals h -> s with no rounding anywhere: 60 x 60 = 3600
    assert conversion_factor("h", "min") * conversion_factor("min", "s") == conversion_factor(
        "h", "s"
    )
    assert conversion_factor("s", "min") * conversion_factor("min", "s") == 1


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("s", "GB", r"cannot convert s \(duration\) to GB \(data\)"),
        ("Mbps", "MB", r"cannot convert Mbps \(bitrate\) to MB \(data\)"),
        ("message", "call", r"cannot convert message \(messages\) to call \(calls\)"),
    ],
)
def test_dimension_mismatch_is_an_error(source: str, target: str, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        conversion_factor(source, target)


def test_unknown_unit_is_an_error_and_a_value_error() -> None:
    assert not is_unit("furlong")
    assert is_unit("GB")
    with pytest.raises(UnitError, match="unknown unit 'furlong'"):
        conversion_factor("furlong", "s")
    with pytest.raises(UnitError, match="unknown unit 'mb'"):
        conversion_factor("MB", "mb")  # unit names are case-sensitive
    assert issubclass(UnitError, ValueError)


@pytest.mark.parametrize(
    ("fraction", "decimal"),
    [
        (Fraction(60), Decimal("60")),
        (Fraction(1, 1000), Decimal("0.001")),
        (Fraction(1, 1024), Decimal("0.0009765625")),  # 10 decimals, fits in 12
        (Fraction(2**30, 10**9), Decimal("1.073741824")),
        (Fraction(1, 10**12), Decimal("1E-12")),  # exactly at frame scale
    ],
)
def test_exact_decimal_when_the_factor_terminates(fraction: Fraction, decimal: Decimal) -> None:
    assert exact_decimal(fraction) == decimal


@pytest.mark.parametrize(
    "fraction",
    [
        Fraction(1, 60),  # 0.01666... never terminates
        Fraction(1, 3600),
        Fraction(1, 2**20),  # terminates, but needs 20 decimals > 12
        Fraction(1, 10**13),  # one digit beyond frame scale
    ],
)
def test_exact_decimal_is_none_when_the_factor_does_not_fit(fraction: Fraction) -> None:
    assert exact_decimal(fraction) is None


def test_exact_decimal_scale_is_a_parameter() -> None:
    assert exact_decimal(Fraction(1, 10**13), scale=13) == Decimal("1E-13")


def test_quantity_scale_is_frame_scale() -> None:
    assert QUANTITY_SCALE == 12


@pytest.mark.parametrize(
    ("target", "units"),
    [
        # s <- min x 60, h x 3600
        ("s", ["h", "min", "s"]),
        # s -> min is x 1/60 (0.0166...): excluded
        ("min", ["h", "min"]),
        ("h", ["h"]),
        # every data unit converts to GB within 12 decimals (B -> 0.000000001 GB,
        # KiB -> 0.000001024 GB)
        ("GB", ["B", "GB", "GiB", "KB", "KiB", "MB", "MiB", "TB", "TiB"]),
        # x -> GiB divides by 2^30: only MiB (1/1024 = 0.0009765625), GiB and TiB terminate
        # within 12 decimals; B (30 decimals) and KB (1000/2^30, 27 decimals) do not
        ("GiB", ["GiB", "MiB", "TiB"]),
        ("Mbps", ["Gbps", "Mbps", "bps", "kbps"]),
        ("message", ["message"]),
        ("seat", ["seat"]),
    ],
)
def test_convertible_units_excludes_non_terminating_factors(target: str, units: list[str]) -> None:
    assert convertible_units(target) == units


def test_every_convertible_unit_has_an_exact_decimal_factor() -> None:
    for target in UNITS:
        for source in convertible_units(target):
            factor = conversion_factor(source, target)
            exact = exact_decimal(factor)
            assert exact is not None
            assert Fraction(exact) == factor
