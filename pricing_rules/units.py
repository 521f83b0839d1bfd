"""Units of measure and exact conversion between units of one dimension."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import cache
from typing import NamedTuple


class Unit(NamedTuple):
    dimension: str
    factor: Fraction  # size of one unit in the dimension's base unit


# Data sizes are SI (1 GB = 1000 MB); binary sizes use the IEC names (GiB).
UNITS: dict[str, Unit] = {
    "s": Unit("duration", Fraction(1)),
    "min": Unit("duration", Fraction(60)),
    "h": Unit("duration", Fraction(3600)),
    "B": Unit("data", Fraction(1)),
    "KB": Unit("data", Fraction(10**3)),
    "MB": Unit("data", Fraction(10**6)),
    "GB": Unit("data", Fraction(10**9)),
    "TB": Unit("data", Fraction(10**12)),
    "KiB": Unit("data", Fraction(2**10)),
    "MiB": Unit("data", Fraction(2**20)),
    "GiB": Unit("data", Fraction(2**30)),
    "TiB": Unit("data", Fraction(2**40)),
    "bps": Unit("bitrate", Fraction(1)),
    "kbps": Unit("bitrate", Fraction(10**3)),
    "Mbps": Unit("bitrate", Fraction(10**6)),
    "Gbps": Unit("bitrate", Fraction(10**9)),
    "message": Unit("messages", Fraction(1)),
    "call": Unit("calls", Fraction(1)),
    "seat": Unit("seats", Fraction(1)),
    "licence": Unit("licences", Fraction(1)),
    "event": Unit("events", Fraction(1)),
}

# Quantities are held as Decimal(38, 12) in frames.
QUANTITY_SCALE = 12


class UnitError(ValueError):
    pass


def is_unit(name: str) -> bool:
    return name in UNITS


@cache
def conversion_factor(source: str, target: str) -> Fraction:
    """Exact factor that turns a quantity in `source` into `target`.

    >>> conversion_factor("min", "s"), conversion_factor("MB", "GB")
    (Fraction(60, 1), Fraction(1, 1000))
    """
    if source not in UNITS:
        raise UnitError(f"unknown unit {source!r}")
    if target not in UNITS:
        raise UnitError(f"unknown unit {target!r}")
    src, dst = UNITS[source], UNITS[target]
    if src.dimension != dst.dimension:
        raise UnitError(f"cannot convert {source} ({src.dimension}) to {target} ({dst.dimension})")
    return src.factor / dst.factor


def exact_decimal(value: Fraction, scale: int = QUANTITY_SCALE) -> Decimal | None:
    """The fraction as a Decimal when it terminates within `scale` digits, else None.

    >>> exact_decimal(Fraction(1, 1000)), exact_decimal(Fraction(1, 60))
    (Decimal('0.001'), None)
    """
    scaled = value * 10**scale
    if scaled.denominator != 1:
        return None
    return Decimal(scaled.numerator).scaleb(-scale).normalize()


def convertible_units(target: str) -> list[str]:
    """Units whose quantities convert exactly (at frame scale) into `target`."""
    dimension = UNITS[target].dimension
    return sorted(
        name
        for name, unit in UNITS.items()
        if unit.dimension == dimension
        and exact_decimal(conversion_factor(name, target)) is not None
    )
