"""Telecom call rating from rate decks: longest-prefix match, billing increments, time bands.

A rate deck is a CSV of destination prefixes and per-minute rates (`prefix,destination,
band,rate_per_minute`) plus the deck's rules: billing increments ("60/60", "30/6"...),
connect fee, minimum charge, rounding and time bands. `rate_calls` prices every call of a
Polars frame at once, in `Decimal` from end to end: no float ever touches an amount.

Money columns have a fixed scale, the deck's `rounding_decimals`; the per-call amount is
`usage_amount + connect_fee + minimum_adjustment`, each already rounded, so explanation
rows built from them add up exactly.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, Final, Literal, cast

import polars as pl

from pricing_rules.money import MONEY_CONTEXT, RoundingMode, is_currency

Rounding = Literal["per_call", "per_increment"]

BANDS: Final = ("all", "peak", "offpeak", "weekend")
TIME_BANDS: Final = ("peak", "offpeak", "weekend")
ROUNDINGS: Final = ("per_call", "per_increment")
UNRATED_REASONS: Final = (
    "invalid_duration",  # duration is null or negative
    "no_rate_for_destination",  # no deck prefix matches the number
    "no_local_time",  # the rate depends on the band, but timestamp or time zone is unusable
    "no_rate_for_band",  # the prefix has band rates, but none for the call's band
)

RATE_SCALE: Final = 6
RATE_DTYPE: Final = pl.Decimal(38, RATE_SCALE)
# Intermediate scale for exact products before the single rounding (see `_usage_exact`).
EXACT_SCALE: Final = 18
EXACT_DTYPE: Final = pl.Decimal(38, EXACT_SCALE)
MAX_ROUNDING_DECIMALS: Final = 12
# E.164 numbers have at most 15 digits; numbers and prefixes are keyed at that width.
KEY_DIGITS: Final = 15
_HEAD_DIGITS: Final = 6
_SEARCH: Final = -2  # a head whose numbers must be searched (see `RateDeck._head_rows`)
_POWERS_OF_TEN: Final = pl.Series([10**i for i in range(KEY_DIGITS + 1)], dtype=pl.Int64)

RATES_SCHEMA: Final[dict[str, pl.DataType]] = {
    "prefix": pl.String(),
    "destination": pl.String(),
    "band": pl.String(),
    "rate_per_minute": RATE_DTYPE,
}

OUTPUT_COLUMNS: Final = (
    "prefix",
    "deck_destination",
    "band",
    "rate_per_minute",
    "billed_seconds",
    "increments",
    "usage_amount",
    "connect_fee",
    "minimum_adjustment",
    "amount",
    "unrated_reason",
)

_DIGITS = re.compile(r"[0-9]{1,15}")
_INCREMENTS = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")
_TMP = "__deck_"  # prefix of the helper columns rate_calls adds and drops again


class DeckError(ValueError):
    """Every problem found in a deck, each with its location (`"intl-voice row 12: ..."`)."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = list(issues)
        super().__init__(f"{len(self.issues)} problem(s) in rate deck:\n" + "\n".join(self.issues))


@dataclass(frozen=True)
class TimeBands:
    """Peak, off-peak and weekend, read on the account's local wall clock.

    `band(t)` is "weekend" if t's ISO weekday is in `weekend_days`; "peak" if the weekday
    is in `peak_days` and `peak_from <= t.time() < peak_to`; otherwise "offpeak".

    >>> from datetime import datetime
    >>> bands = TimeBands()
    >>> [bands.band(datetime(2026, 3, 6, h, m)) for h, m in [(7, 59), (8, 0), (17, 59), (18, 0)]]
    ['offpeak', 'peak', 'peak', 'offpeak']
    >>> bands.band(datetime(2026, 3, 7, 12, 0))  # a Saturday
    'weekend'
    """

    peak_days: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    peak_from: time = time(8, 0)
    peak_to: time = time(18, 0)
    weekend_days: frozenset[int] = frozenset({6, 7})

    def __post_init__(self) -> None:
        problems: list[str] = []
        for label, days in (("peak_days", self.peak_days), ("weekend_days", self.weekend_days)):
            wrong = sorted(d for d in days if not (isinstance(d, int) and 1 <= d <= 7))
            if wrong:
                problems.append(f"{label} must be ISO weekdays 1 (Mon) to 7 (Sun), got {wrong}")
        if self.peak_from.tzinfo is not None or self.peak_to.tzinfo is not None:
            problems.append("peak_from and peak_to are local wall-clock times, without a zone")
        elif self.peak_from >= self.peak_to:
            problems.append(f"peak_from {self.peak_from} is not before peak_to {self.peak_to}")
        both = sorted(self.peak_days & self.weekend_days)
        if both:
            problems.append(f"day(s) {both} are in both peak_days and weekend_days")
        if problems:
            raise ValueError("; ".join(problems))

    def reachable(self) -> tuple[str, ...]:
        """The bands some local time falls in, in `BANDS` order. A peak day is off-peak
        outside its peak hours, and `peak_to` is exclusive, so off-peak is reachable
        unless every day is a weekend day.

        >>> TimeBands().reachable()
        ('peak', 'offpeak', 'weekend')
        >>> TimeBands(peak_days=frozenset(), weekend_days=frozenset()).reachable()
        ('offpeak',)
        """
        found = {
            "peak": bool(self.peak_days),
            "offpeak": len(self.weekend_days) < 7,
            "weekend": bool(self.weekend_days),
        }
        return tuple(band for band in BANDS if found.get(band))

    def band(self, local: datetime) -> str:
        """The band of one local wall-clock `datetime` (the vector form is in `rate_calls`)."""
        weekday = local.isoweekday()
        if weekday in self.weekend_days:
            return "weekend"
        if weekday in self.peak_days and self.peak_from <= local.time() < self.peak_to:
            return "peak"
        return "offpeak"


@dataclass(frozen=True)
class Increments:
    """Billing increments "first/then" in seconds: the first increment, then each next one.

    >>> inc = Increments.parse("60/10")
    >>> inc.billed_seconds(0), inc.billed_seconds(1), inc.billed_seconds(60), inc.billed_seconds(61)
    (0, 60, 60, 70)
    """

    first: int
    then: int

    def __post_init__(self) -> None:
        if self.first <= 0 or self.then <= 0:
            raise ValueError(f"increments must be positive seconds, got {self.first}/{self.then}")

    @classmethod
    def parse(cls, text: str) -> Increments:
        """Parse "first/then", e.g. "60/60", "30/6", "1/1"; ValueError on anything else."""
        found = _INCREMENTS.fullmatch(text) if isinstance(text, str) else None
        if found is None:
            raise ValueError(f"increments {text!r} are not 'first/then' seconds, e.g. '60/60'")
        return cls(int(found.group(1)), int(found.group(2)))

    def billed_seconds(self, duration: int) -> int:
        """0 -> 0; up to `first` -> `first`; beyond, `first` plus whole `then` increments."""
        if duration < 0:
            raise ValueError(f"duration {duration} is negative")
        if duration == 0:
            return 0
        if duration <= self.first:
            return self.first
        return self.first + -(-(duration - self.first) // self.then) * self.then

    def __str__(self) -> str:
        return f"{self.first}/{self.then}"


@dataclass(frozen=True, eq=False)
class RateDeck:
    """A parsed, validated rate deck (see `parse_deck`). Compared by identity: the `rates`
    frame is not hashable, and the disjoint prefix ranges are cached on the instance."""

    name: str
    currency: str
    increments: Increments
    connect_fee: Decimal
    minimum_charge: Decimal
    rounding: Rounding
    rounding_decimals: int
    rounding_mode: RoundingMode
    time_bands: TimeBands
    rates: pl.DataFrame = field(repr=False)

    @property
    def amount_dtype(self) -> pl.Decimal:
        return pl.Decimal(38, self.rounding_decimals)

    @cached_property
    def prefix_table(self) -> pl.DataFrame:
        """One row per prefix, by destination then prefix: `prefix`, `destination` and
        its rate per band, `rate_all`, `rate_peak`... (null where it has none). The
        `range_column` of `rate_calls` is a row of this table."""
        by_prefix: dict[str, dict[str, Any]] = {}
        for prefix, destination, band, rate in self.rates.select(list(RATES_SCHEMA)).iter_rows():
            entry = by_prefix.setdefault(prefix, {"destination": destination})
            entry[band] = rate
        listed = sorted(by_prefix, key=lambda p: (by_prefix[p]["destination"], p))
        return pl.DataFrame(
            {
                "prefix": listed,
                "destination": [by_prefix[p]["destination"] for p in listed],
                **{f"rate_{band}": [by_prefix[p].get(band) for p in listed] for band in BANDS},
            },
            schema={
                "prefix": pl.String,
                "destination": pl.String,
                **{f"rate_{band}": RATE_DTYPE for band in BANDS},
            },
        )

    @property
    def has_time_bands(self) -> bool:
        return bool(self._prefix_ranges[f"{_TMP}rate_all"].null_count())

    @cached_property
    def _prefix_ranges(self) -> pl.DataFrame:
        """The deck's prefixes flattened into disjoint key ranges: `__deck_range_start`,
        `__deck_range_end`, `__deck_prefix_row` (the prefix's row in `prefix_table`) and
        that row's columns (`__deck_prefix`, `__deck_destination`, `__deck_rate_all`...).

        A number (digits d, length m) has the key `int(d padded with 0 to 15) * 16 + m`.
        Prefix P (length L) covers exactly the keys of the numbers that start with P:
        `[int(P + "0"*(15-L)) * 16 + L, int(P + "9"*(15-L)) * 16 + 15]`. The length term
        keeps the number "44" out of prefix "440" (both pad to 440000000000000). Two
        prefixes' ranges are nested when one starts with the other and disjoint otherwise,
        so a sweep splits each parent range around its children: every key then lies in
        at most one range, that of its longest matching prefix.
        """
        table = self.prefix_table
        row_of = {prefix: row for row, prefix in enumerate(table["prefix"])}
        # By start; no two prefixes share a start, and a parent starts before its children.
        spans = sorted((_key_range(prefix), prefix) for prefix in row_of)
        ranges: list[tuple[int, int, str]] = []
        stack: list[tuple[int, str]] = []  # (end, prefix) of the open ranges, innermost last
        cursor = 0

        def emit(low: int, high: int, prefix: str) -> None:
            if low <= high:
                ranges.append((low, high, prefix))

        for (start, end), prefix in spans:
            while stack and stack[-1][0] < start:
                top_end, top = stack.pop()
                emit(cursor, top_end, top)
                cursor = top_end + 1
            if stack:
                emit(cursor, start - 1, stack[-1][1])
            stack.append((end, prefix))
            cursor = start
        while stack:
            top_end, top = stack.pop()
            emit(cursor, top_end, top)
            cursor = top_end + 1
        row = pl.col(f"{_TMP}prefix_row")
        return (
            pl.DataFrame(
                {
                    f"{_TMP}range_start": [r[0] for r in ranges],
                    f"{_TMP}range_end": [r[1] for r in ranges],
                    f"{_TMP}prefix_row": [row_of[r[2]] for r in ranges],
                },
                schema={
                    f"{_TMP}range_start": pl.Int64,
                    f"{_TMP}range_end": pl.Int64,
                    f"{_TMP}prefix_row": pl.Int64,
                },
            )
            .with_columns(pl.lit(table[c]).gather(row).alias(f"{_TMP}{c}") for c in table.columns)
            .set_sorted(f"{_TMP}range_start")
        )

    @cached_property
    def _head_rows(self) -> tuple[int, pl.Series]:
        """(width w, the range row of each w-digit head): a look-up that spares most calls
        the binary search. Every number of w digits or more that starts with head h lies
        in range row `rows[h]`, or in no range when it is -1; -2 means the numbers of h
        span several ranges (a longer prefix starts with h) and must be searched. A width
        of at most 6 keeps the table at a million rows."""
        ranges = self._prefix_ranges
        if ranges.height == 0:
            return 1, pl.Series("row", [-1] * 10, dtype=pl.Int64)
        width = min(_HEAD_DIGITS, max(len(p) for p in ranges[f"{_TMP}prefix"]))
        step = 10 ** (KEY_DIGITS - width)
        head = pl.int_range(0, 10**width, dtype=pl.Int64, eager=True)
        starts = pl.lit(ranges[f"{_TMP}range_start"])
        ends = pl.lit(ranges[f"{_TMP}range_end"])
        # The lowest and highest keys of the head's numbers of w digits or more.
        low, high = pl.col("low"), pl.col("high")
        first = starts.search_sorted(low, side="right").cast(pl.Int64) - 1
        last = starts.search_sorted(high, side="right").cast(pl.Int64) - 1
        end = ends.gather(pl.col("first").clip(0))
        rows = (
            pl.DataFrame({"head": head})
            .with_columns(
                (pl.col("head") * step * 16 + width).alias("low"),
                (((pl.col("head") + 1) * step - 1) * 16 + 15).alias("high"),
            )
            .with_columns(first.alias("first"), last.alias("last"))
            .select(
                pl.when(pl.col("first") != pl.col("last"))
                .then(pl.lit(_SEARCH))
                .when((pl.col("first") < 0) | (low > end))
                .then(pl.lit(-1))
                .when(high <= end)
                .then(pl.col("first"))
                .otherwise(pl.lit(_SEARCH))
                .cast(pl.Int64)
                .alias("row")
            )
        )
        return width, rows["row"]


def _key_range(prefix: str) -> tuple[int, int]:
    pad = KEY_DIGITS - len(prefix)
    return (
        int(prefix + "0" * pad) * 16 + len(prefix),
        int(prefix + "9" * pad) * 16 + 15,
    )


# ---------------------------------------------------------------------------------------
# Parsing and validation
# ---------------------------------------------------------------------------------------


def parse_deck(
    name: str,
    csv_text: str,
    *,
    currency: str,
    increments: str,
    connect_fee: str = "0",
    minimum_charge: str = "0",
    rounding: str = "per_call",
    rounding_decimals: int = 4,
    rounding_mode: str = "half_up",
    time_bands: dict[str, Any] | None = None,
    complete_bands: bool = True,
) -> RateDeck:
    """Parse and validate a rate deck; raise `DeckError` listing every problem at once.

    The CSV has the columns `prefix,destination,rate_per_minute` and optionally `band`
    (`all`, `peak`, `offpeak` or `weekend`; missing or empty means `all`). A prefix is the
    digits of an E.164 number's start, without "+". Row numbers in messages are file line
    numbers, the header being row 1.

    Nested prefixes (44, 447, 4479) are normal in decks and are not errors: a number is
    rated by its longest matching prefix. Only an exact duplicate (the same prefix and
    band twice) is an error, as is a prefix with both an `all` rate and band rates, since
    either would make the rate of a call ambiguous.

    `time_bands` may set `peak_days` and `weekend_days` (ISO weekdays, 1 = Monday) and
    `peak_from` / `peak_to` ("HH:MM", local time; `peak_to` is exclusive). A prefix with
    band rates must rate every band a call can fall in, unless `complete_bands` is False
    (the catalog's `time_bands` were in error, so those bands are not known).

    >>> deck = parse_deck(
    ...     "intl-voice", "prefix,destination,rate_per_minute\\n44,United Kingdom,0.0120\\n"
    ...     "447,United Kingdom - Mobile,0.0250\\n", currency="USD", increments="60/60")
    >>> deck.rates.height, str(deck.increments), deck.rounding_mode.value
    (2, '60/60', 'half_up')
    >>> parse_deck("d", "prefix,destination,rate_per_minute\\n+44,UK,-1\\n",
    ...     currency="XXY", increments="60")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    pricing_rules.decks.DeckError: 4 problem(s) in rate deck:
    d: unknown ISO 4217 currency 'XXY'
    d: increments '60' are not 'first/then' seconds, e.g. '60/60'
    d row 2: prefix '+44' must be 1 to 15 digits (no '+', spaces or dashes)
    d row 2: rate_per_minute -1 is negative
    """
    issues: list[str] = []

    def problem(message: str) -> None:
        issues.append(f"{name}: {message}")

    if not is_currency(currency):
        problem(f"unknown ISO 4217 currency {currency!r}")
    parsed_increments: Increments | None = None
    try:
        parsed_increments = Increments.parse(increments)
    except ValueError as exc:
        problem(str(exc))
    if rounding not in ROUNDINGS:
        problem(f"rounding {rounding!r} is not one of {', '.join(ROUNDINGS)}")
    mode: RoundingMode | None = None
    try:
        mode = RoundingMode(rounding_mode)
    except ValueError:
        problem(
            f"rounding_mode {rounding_mode!r} is not one of "
            f"{', '.join(m.value for m in RoundingMode)}"
        )
    decimals_ok = (
        isinstance(rounding_decimals, int)
        and not isinstance(rounding_decimals, bool)
        and 0 <= rounding_decimals <= MAX_ROUNDING_DECIMALS
    )
    if not decimals_ok:
        problem(f"rounding_decimals {rounding_decimals!r} must be 0 to {MAX_ROUNDING_DECIMALS}")
    fees: dict[str, Decimal] = {}
    for label, text in (("connect_fee", connect_fee), ("minimum_charge", minimum_charge)):
        value = _decimal(text)
        if value is None:
            problem(f"{label} {text!r} is not a number")
        elif value < 0:
            problem(f"{label} {text} is negative")
        elif decimals_ok and value != value.quantize(Decimal(1).scaleb(-rounding_decimals)):
            problem(
                f"{label} {text} has more decimal places than rounding_decimals "
                f"({rounding_decimals})"
            )
        else:
            fees[label] = value
    bands = _parse_time_bands(time_bands, problem)
    reachable = bands.reachable() if bands and complete_bands else None
    rows = _parse_rows(name, csv_text, issues, reachable)
    if issues or parsed_increments is None or mode is None or bands is None:
        raise DeckError(issues)
    rates = pl.DataFrame(rows, schema=RATES_SCHEMA, orient="row").sort("prefix", "band")
    return RateDeck(
        name=name,
        currency=currency,
        increments=parsed_increments,
        connect_fee=fees["connect_fee"],
        minimum_charge=fees["minimum_charge"],
        rounding=cast(Rounding, rounding),
        rounding_decimals=rounding_decimals,
        rounding_mode=mode,
        time_bands=bands,
        rates=rates,
    )


def _decimal(text: object) -> Decimal | None:
    if isinstance(text, Decimal):
        value = text
    elif isinstance(text, str | int) and not isinstance(text, bool):
        try:
            value = Decimal(str(text).strip())
        except InvalidOperation:
            return None
    else:
        return None
    return value if value.is_finite() else None


def _parse_rows(
    name: str, csv_text: str, issues: list[str], reachable: tuple[str, ...] | None
) -> list[tuple[str, str, str, Decimal]]:
    """The deck's rows; each problem goes to `issues`. A prefix with band rates must have
    one for every band in `reachable` (the bands the deck's time bands give calls), or
    some of its calls would have no rate."""
    reader = csv.reader(io.StringIO(csv_text.removeprefix("\ufeff")))
    header = next(reader, None)
    if header is None:
        issues.append(f"{name}: the deck is empty (expected a header row)")
        return []
    columns = [c.strip().lower() for c in header]
    missing = [c for c in ("prefix", "destination", "rate_per_minute") if c not in columns]
    unknown = [c for c in columns if c not in RATES_SCHEMA]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if missing:
        issues.append(f"{name} row 1: missing column(s) {', '.join(missing)}")
    if unknown:
        issues.append(
            f"{name} row 1: unknown column(s) {', '.join(unknown)} (a deck has prefix, "
            "destination, band and rate_per_minute)"
        )
    if repeated:
        issues.append(f"{name} row 1: repeated column(s) {', '.join(repeated)}")
    if missing or repeated:
        return []
    where = {c: columns.index(c) for c in columns}

    rows: list[tuple[str, str, str, Decimal]] = []
    first_row: dict[tuple[str, str], int] = {}  # (prefix, band) -> row
    bands_of: dict[str, dict[str, int]] = {}  # prefix -> band -> row
    destination_of: dict[str, tuple[str, int]] = {}
    faulty: set[str] = set()  # prefixes with a row in error: their bands are not all known
    for record in reader:
        row = reader.line_num
        at = f"{name} row {row}"
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) != len(columns):
            issues.append(f"{at}: has {len(record)} field(s), the header has {len(columns)}")
            continue
        prefix = record[where["prefix"]].strip()
        destination = record[where["destination"]].strip()
        band = record[where["band"]].strip().lower() if "band" in where else ""
        band = band or "all"
        rate_text = record[where["rate_per_minute"]].strip()
        ok = True
        if not _DIGITS.fullmatch(prefix):
            issues.append(
                f"{at}: prefix {prefix!r} must be 1 to {KEY_DIGITS} digits "
                "(no '+', spaces or dashes)"
            )
            ok = False
        elif prefix.startswith("0"):
            issues.append(
                f"{at}: prefix {prefix} starts with 0, which no E.164 number does (country "
                f"codes start 1-9): write {prefix.lstrip('0') or 'the country code'}"
            )
            ok = False
        if not destination:
            issues.append(f"{at}: destination is empty")
            ok = False
        if band not in BANDS:
            issues.append(f"{at}: band {band!r} is not one of {', '.join(BANDS)}")
            ok = False
        rate = _decimal(rate_text)
        if not rate_text:
            issues.append(f"{at}: rate_per_minute is empty")
            ok = False
        elif rate is None:
            issues.append(f"{at}: rate_per_minute {rate_text!r} is not a number")
            ok = False
        elif rate < 0:
            issues.append(f"{at}: rate_per_minute {rate_text} is negative")
            ok = False
        elif rate != rate.quantize(Decimal(1).scaleb(-RATE_SCALE), context=MONEY_CONTEXT):
            issues.append(
                f"{at}: rate_per_minute {rate_text} has more than {RATE_SCALE} decimal places"
            )
            ok = False
        elif rate >= Decimal(10) ** 20:
            issues.append(f"{at}: rate_per_minute {rate_text} is too large")
            ok = False
        if not ok or rate is None:
            faulty.add(prefix)
            continue
        if (prefix, band) in first_row:
            issues.append(
                f"{at}: duplicate prefix {prefix} band {band} (first on row "
                f"{first_row[prefix, band]})"
            )
            continue
        first_row[prefix, band] = row
        seen = bands_of.setdefault(prefix, {})
        if band == "all" and seen:
            other, other_row = next(iter(seen.items()))
            issues.append(
                f"{at}: prefix {prefix} has an 'all' rate and a '{other}' rate (row "
                f"{other_row}); give either one 'all' rate or rates per band"
            )
        elif band != "all" and "all" in seen:
            issues.append(
                f"{at}: prefix {prefix} has a '{band}' rate and an 'all' rate (row "
                f"{seen['all']}); give either one 'all' rate or rates per band"
            )
        seen[band] = row
        known = destination_of.setdefault(prefix, (destination, row))
        if known[0] != destination:
            issues.append(
                f"{at}: prefix {prefix} is {destination!r} here but {known[0]!r} on row {known[1]}"
            )
        rows.append((prefix, destination, band, rate))
    for prefix, seen in bands_of.items():
        if prefix in faulty:
            continue
        lacking = [b for b in reachable or () if "all" not in seen and b not in seen]
        if lacking:
            issues.append(
                f"{name} row {min(seen.values())}: prefix {prefix} has band rates but none "
                f"for {', '.join(lacking)}; give every band a rate, or one 'all' rate"
            )
    if not rows and not any(i.startswith(f"{name} row") for i in issues):
        issues.append(f"{name}: the deck has no rates")
    return rows


def _parse_time_bands(raw: Mapping[str, Any] | None, problem: Any) -> TimeBands | None:
    if raw is None:
        return TimeBands()
    if not isinstance(raw, Mapping):
        problem(f"time_bands must be a mapping, got {type(raw).__name__}")
        return None
    fields: dict[str, Any] = {}
    ok = True
    for key, value in raw.items():
        if key in ("peak_days", "weekend_days"):
            if not isinstance(value, list | tuple | set | frozenset) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in value
            ):
                problem(f"time_bands.{key} must be a list of ISO weekdays 1-7, got {value!r}")
                ok = False
            else:
                fields[key] = frozenset(value)
        elif key in ("peak_from", "peak_to"):
            if isinstance(value, time):
                fields[key] = value
            elif isinstance(value, str):
                try:
                    fields[key] = time.fromisoformat(value.strip())
                except ValueError:
                    problem(f"time_bands.{key} {value!r} is not a time like '08:00'")
                    ok = False
            else:
                # YAML 1.1 reads an unquoted 18:00 as the integer 1080 (base 60).
                problem(f"time_bands.{key} must be a quoted time like '18:00', got {value!r}")
                ok = False
        else:
            problem(
                f"time_bands has an unknown key {key!r} (known: peak_days, peak_from, "
                "peak_to, weekend_days)"
            )
            ok = False
    if not ok:
        return None
    try:
        return TimeBands(**fields)
    except ValueError as exc:
        problem(f"time_bands: {exc}")
        return None


# ---------------------------------------------------------------------------------------
# Longest-prefix match
# ---------------------------------------------------------------------------------------


def _with_number_key(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """Add `__deck_key`, the range key of an E.164 number (see `RateDeck._prefix_ranges`);
    null when the text is not 1 to 15 digits after an optional leading "+".

    The number is measured and parsed once each, in steps: as one expression each part
    would be computed again for every use. Polars' text-to-integer cast refuses anything
    but ASCII digits after one optional "+" (the property tests feed it spaces, signs,
    separators and other scripts' digits), so the text is parsed as it is, never copied
    without its "+"."""
    length, value = pl.col(f"{_TMP}length"), pl.col(f"{_TMP}value")
    number = pl.col(column)
    valid = value.is_not_null() & length.is_between(1, KEY_DIGITS)
    pad = pl.lit(_POWERS_OF_TEN).gather((KEY_DIGITS - length).clip(0, KEY_DIGITS))
    return (
        frame.with_columns(
            (
                number.str.len_bytes().cast(pl.Int64) - number.str.starts_with("+").cast(pl.Int64)
            ).alias(f"{_TMP}length"),
            number.cast(pl.UInt64, strict=False).cast(pl.Int64, strict=False).alias(f"{_TMP}value"),
        )
        .with_columns(
            pl.when(valid).then(value * pad * 16 + length).alias(f"{_TMP}key"),
        )
        .drop(f"{_TMP}length", f"{_TMP}value")
    )


def _join_ranges(frame: pl.LazyFrame, deck: RateDeck, column: str) -> pl.LazyFrame:
    """Find each number's range: by its first digits in `RateDeck._head_rows` or, where
    those leave it open, by binary search over the sorted range starts (the last start
    at or before its key), kept only if the key is also inside that range. Row order is
    kept and nothing is sorted. Adds `__deck_hit` (false when nothing matches) and the
    `__deck_*` range columns (their values are meaningless on a miss)."""
    key = pl.col(f"{_TMP}key")
    ranges = deck._prefix_ranges
    columns = [c for c in ranges.columns if c != f"{_TMP}range_start"]
    keyed = _with_number_key(frame, column)
    if ranges.height == 0:
        return keyed.with_columns(
            pl.lit(False).alias(f"{_TMP}hit"),
            *(pl.lit(None, ranges.schema[c]).alias(c) for c in columns),
        )
    starts = ranges[f"{_TMP}range_start"]
    width, heads = deck._head_rows
    head = pl.col(f"{_TMP}head")
    looked_up = (
        pl.when(key % 16 >= width)
        .then(pl.lit(heads).gather(key // (16 * 10 ** (KEY_DIGITS - width))))
        .otherwise(pl.lit(_SEARCH, pl.Int64))
    )
    # Only the numbers the look-up leaves open are searched; the rest search a null.
    searched = pl.lit(starts).search_sorted(pl.when(head == _SEARCH).then(key), side="right")
    found = pl.when(head == _SEARCH).then(searched.cast(pl.Int64) - 1).otherwise(head)
    row = pl.col(f"{_TMP}row")
    return (
        keyed.with_columns(looked_up.alias(f"{_TMP}head"))
        .with_columns(found.alias(f"{_TMP}found"))
        .with_columns(pl.col(f"{_TMP}found").clip(0).alias(f"{_TMP}row"))
        .with_columns(*(pl.lit(ranges[c]).gather(row).alias(c) for c in columns))
        .with_columns(
            (
                key.is_not_null()
                & (pl.col(f"{_TMP}found") >= 0)
                & (key <= pl.col(f"{_TMP}range_end"))
            ).alias(f"{_TMP}hit")
        )
        .drop(f"{_TMP}head", f"{_TMP}found", f"{_TMP}row")
    )


def match_prefixes(
    numbers: pl.LazyFrame, deck: RateDeck, column: str = "destination"
) -> pl.LazyFrame:
    """Add `prefix` and `deck_destination`: the deck's longest prefix of each number.

    The number is E.164 text; a leading "+" is dropped, and anything that is not then 1 to
    15 digits matches nothing. Unmatched rows get nulls. Row order is kept.

    >>> deck = parse_deck("d", "prefix,destination,rate_per_minute\\n44,UK,0.01\\n"
    ...     "447,UK - Mobile,0.02\\n4479,UK - Mobile (Jersey),0.05\\n",
    ...     currency="USD", increments="60/60")
    >>> numbers = pl.LazyFrame({"destination": ["+442071234567", "+447700900123",
    ...     "447924123456", "+15551234567", "+44 20"]})
    >>> match_prefixes(numbers, deck).sort("destination").collect().rows()
    [('+15551234567', None, None), ('+44 20', None, None), ('+442071234567', '44', 'UK'), \
('+447700900123', '447', 'UK - Mobile'), ('447924123456', '4479', 'UK - Mobile (Jersey)')]
    """
    names = numbers.collect_schema().names()
    clash = [c for c in names if c in ("prefix", "deck_destination") or c.startswith(_TMP)]
    if clash:
        raise ValueError(f"the frame already has column(s) {', '.join(clash)}")
    hit = pl.col(f"{_TMP}hit")
    return (
        _join_ranges(numbers, deck, column)
        .with_columns(
            pl.when(hit).then(pl.col(f"{_TMP}prefix")).alias("prefix"),
            pl.when(hit).then(pl.col(f"{_TMP}destination")).alias("deck_destination"),
        )
        .select(*names, "prefix", "deck_destination")
    )


# ---------------------------------------------------------------------------------------
# Rating
# ---------------------------------------------------------------------------------------


def local_wall_clock(batch: pl.Series) -> pl.Series:
    """UTC instants to naive local wall-clock times, one vectorized conversion per distinct
    time zone in the batch. A null, empty or unknown zone gives a null time."""
    local = pl.Series("local", dtype=pl.Datetime("us")).extend_constant(None, batch.len())
    # The rows of each zone, found in one pass (not one comparison of every row per zone).
    groups = (
        pl.DataFrame({"zone": batch.struct.field("zone")})
        .with_row_index("row")
        .filter(pl.col("zone").is_not_null() & (pl.col("zone").str.strip_chars() != ""))
        .group_by("zone")
        .agg("row")
    )
    instants = batch.struct.field("instant")
    found: list[pl.DataFrame] = []
    for zone, rows in zip(groups["zone"], groups["row"], strict=True):  # rows: a Series
        try:
            wall = instants.gather(rows).dt.convert_time_zone(zone).dt.replace_time_zone(None)
        except pl.exceptions.ComputeError:
            continue  # unknown zone: the calls stay unrated with "no_local_time"
        found.append(pl.DataFrame({"row": rows, "wall": wall}))
    if found:
        placed = pl.concat(found)
        local = local.scatter(placed["row"], placed["wall"])
    return local


def _time_band(local: pl.Expr, bands: TimeBands) -> pl.Expr:
    weekday = local.dt.weekday()  # ISO: Monday 1 .. Sunday 7
    clock = local.dt.time()

    def on(days: frozenset[int]) -> pl.Expr:
        return weekday.is_in(sorted(days)) if days else pl.lit(False)

    return (
        pl.when(local.is_null())
        .then(pl.lit(None, pl.String))
        .when(on(bands.weekend_days))
        .then(pl.lit("weekend"))
        .when(on(bands.peak_days) & (clock >= bands.peak_from) & (clock < bands.peak_to))
        .then(pl.lit("peak"))
        .otherwise(pl.lit("offpeak"))
    )


def _usage_exact(rate: pl.Expr, seconds: pl.Expr | int) -> pl.Expr:
    """rate_per_minute x seconds / 60, at scale 18.

    `rate x seconds` is exact: Decimal(38, 6) times an integer keeps scale 6. It is cast up
    to scale 18 before dividing, because Polars divides to the larger input scale
    (FACTS.md); the quotient is then within 1e-18 of the exact value v = k / (6 x 10^7),
    k an integer (a multiple of 1e-6 / 60). That 1e-18 cannot change a rounding at
    n <= 12 decimals. Every rounding boundary b (a multiple of 10^-n, or a tie halfway
    between two) is a multiple of 1 / (2 x 10^n), so v - b is a whole multiple of
    1 / lcm(6 x 10^7, 2 x 10^n) = 1 / (6 x 10^max(7, n)). Either v is exactly on a
    boundary, and then it has at most n + 1 <= 13 decimals and scale 18 holds it exactly,
    or it is at least 1 / (6 x 10^12) ~ 1.7e-13 away from every boundary, far beyond the
    1e-18 error: the rounded result is that of the exact value.
    """
    return (rate * seconds).cast(EXACT_DTYPE) / pl.lit(60, pl.Int64)


def _round(value: pl.Expr, decimals: int, mode: RoundingMode) -> pl.Expr:
    """Round a Decimal(38, 18) expression to `decimals` places, exactly, in `mode`.

    half_up and half_even are Polars' own exact Decimal rounding (half away from zero, half
    to even). The others start from that and step one unit toward the right neighbour;
    every step is Decimal add, subtract or compare, which are exact.
    """
    if mode is RoundingMode.HALF_EVEN:
        return value.round(decimals, mode="half_to_even")
    if mode is RoundingMode.HALF_UP:
        return value.round(decimals, mode="half_away_from_zero")
    unit = pl.lit(Decimal(1).scaleb(-decimals), EXACT_DTYPE)
    zero = pl.lit(Decimal(0), EXACT_DTYPE)
    nearest = value.round(decimals, mode="half_to_even")
    floor = pl.when(nearest > value).then(nearest - unit).otherwise(nearest)
    ceiling = pl.when(nearest < value).then(nearest + unit).otherwise(nearest)
    if mode is RoundingMode.FLOOR:
        return floor
    if mode is RoundingMode.CEILING:
        return ceiling
    if mode is RoundingMode.DOWN:
        return pl.when(value >= zero).then(floor).otherwise(ceiling)
    if mode is RoundingMode.UP:
        return pl.when(value >= zero).then(ceiling).otherwise(floor)
    if mode is RoundingMode.HALF_DOWN:
        away = value.round(decimals, mode="half_away_from_zero")
        tie = (away - value).abs() == pl.lit(Decimal(5).scaleb(-decimals - 1), EXACT_DTYPE)
        return (
            pl.when(tie & (value > zero))
            .then(away - unit)
            .when(tie & (value < zero))
            .then(away + unit)
            .otherwise(away)
        )
    raise ValueError(f"rounding mode {mode!r} is not supported in vector form")


def rate_calls(
    calls: pl.LazyFrame,
    deck: RateDeck,
    *,
    timezone_column: str = "timezone",
    range_column: str | None = None,
) -> pl.LazyFrame:
    """Price each call from the deck: longest-prefix match, time band, billing increments,
    connect fee, minimum charge and the deck's rounding, all in exact Decimal.

    Reads `destination` (E.164 text), `duration` (Int64 whole seconds; round fractional
    seconds up before), `timestamp` (time-zone aware, normally UTC) and the IANA time
    zone in `timezone_column`; other columns (`event_id`, `account_id`...) pass through.
    Adds `prefix`, `deck_destination`, `band` (`all`, or the call's local time band when
    the prefix has band rates), `rate_per_minute`, `billed_seconds`, `increments` (count,
    the first included), `usage_amount`, `connect_fee`, `minimum_adjustment`, `amount` and
    `unrated_reason`. Amounts are Decimal(38, rounding_decimals) and
    `amount = usage_amount + connect_fee + minimum_adjustment`. With `range_column`, each
    call also carries the row of `deck.prefix_table` it matched (null when none): an
    integer to group millions of calls on, far cheaper than the prefix text.

    An unrated call has null amounts and a reason (see `UNRATED_REASONS`), never a zero.
    A zero-second call is billed 0, with no connect fee and no minimum. Row order is
    kept.

    # 60/10 increments, 0.0100/min, connect fee 0.0050, minimum 0.0200, per call to 4 dp:
    # 61 s bills 60 + 1 x 10 = 70 s; 0.0100 x 70 / 60 = 0.011666.. -> 0.0117
    # 0.0117 + 0.0050 = 0.0167, topped up by 0.0033 to the minimum 0.0200
    >>> from datetime import UTC, datetime
    >>> deck = parse_deck("d", "prefix,destination,rate_per_minute\\n44,UK,0.0100\\n",
    ...     currency="USD", increments="60/10", connect_fee="0.0050", minimum_charge="0.0200")
    >>> calls = pl.LazyFrame({"event_id": ["e1"], "destination": ["+442071234567"],
    ...     "duration": [61], "timestamp": [datetime(2026, 3, 6, 12, tzinfo=UTC)],
    ...     "timezone": ["Europe/London"]})
    >>> row = rate_calls(calls, deck).collect().row(0, named=True)
    >>> [str(row[c]) for c in ("billed_seconds", "increments", "usage_amount", "connect_fee",
    ...     "minimum_adjustment", "amount")]
    ['70', '2', '0.0117', '0.0050', '0.0033', '0.0200']
    """
    schema = calls.collect_schema()
    names = schema.names()
    needed = ["destination", "duration", "timestamp", timezone_column]
    missing = [c for c in needed if c not in names]
    if missing:
        raise ValueError(f"calls lack column(s) {', '.join(missing)}")
    added = [*OUTPUT_COLUMNS, *([range_column] if range_column else [])]
    clash = [c for c in added if c in names] + [c for c in names if c.startswith(_TMP)]
    if clash:
        raise ValueError(f"calls already have column(s) {', '.join(clash)}")
    stamp = schema["timestamp"]
    if not isinstance(stamp, pl.Datetime) or stamp.time_zone is None:
        raise ValueError(f"timestamp must be a time-zone aware Datetime (UTC), got {stamp}")
    if not schema["duration"].is_integer():
        raise ValueError(f"duration must be whole seconds (Int64), got {schema['duration']}")

    n = deck.rounding_decimals
    money = deck.amount_dtype
    first, then = deck.increments.first, deck.increments.then
    _round(pl.lit(Decimal(0), EXACT_DTYPE), n, deck.rounding_mode)  # unsupported mode: fail now

    hit = pl.col(f"{_TMP}hit")
    rate_all = pl.when(hit).then(pl.col(f"{_TMP}rate_all"))
    if deck.has_time_bands:
        # Only calls whose prefix has band rates need their local time.
        zone = pl.when(hit & pl.col(f"{_TMP}rate_all").is_null()).then(pl.col(timezone_column))
        local = pl.struct(
            pl.col("timestamp").dt.cast_time_unit("us").alias("instant"),
            zone.cast(pl.String).alias("zone"),
        ).map_batches(local_wall_clock, pl.Datetime("us"), is_elementwise=True)
        # A column, so that the conversion runs once and not once per use in `_time_band`.
        time_band = _time_band(pl.col(f"{_TMP}local"), deck.time_bands)
    else:
        local = pl.lit(None, pl.Datetime("us"))
        time_band = pl.lit(None, pl.String)
    banded = pl.col(f"{_TMP}time_band")
    band_rate = (
        pl.when(banded == "peak")
        .then(pl.col(f"{_TMP}rate_peak"))
        .when(banded == "offpeak")
        .then(pl.col(f"{_TMP}rate_offpeak"))
        .when(banded == "weekend")
        .then(pl.col(f"{_TMP}rate_weekend"))
        if deck.has_time_bands
        else pl.lit(None, RATE_DTYPE)
    )

    duration = pl.col("duration").cast(pl.Int64)
    valid = duration.is_not_null() & (duration >= 0)
    billed = (
        pl.when(~valid)
        .then(pl.lit(None, pl.Int64))
        .when(duration == 0)
        .then(pl.lit(0, pl.Int64))
        .when(duration <= first)
        .then(pl.lit(first, pl.Int64))
        .otherwise(first + (duration - first + (then - 1)) // then * then)
    )
    increments = (
        pl.when(pl.col("billed_seconds") > 0)
        .then(1 + (pl.col("billed_seconds") - first) // then)
        .when(pl.col("billed_seconds") == 0)
        .then(pl.lit(0, pl.Int64))
    )

    rate = pl.col("rate_per_minute")
    if deck.rounding == "per_call":
        usage = _round(_usage_exact(rate, pl.col("billed_seconds")), n, deck.rounding_mode)
        usage = usage.cast(money)
    else:
        # Each increment's price is rounded once; whole increments then multiply exactly.
        first_price = _round(_usage_exact(rate, first), n, deck.rounding_mode).cast(money)
        then_price = _round(_usage_exact(rate, then), n, deck.rounding_mode).cast(money)
        usage = (
            pl.when(pl.col("increments") > 0)
            .then(first_price + then_price * (pl.col("increments") - 1))
            .otherwise(pl.lit(Decimal(0), money))
        )
    rated = pl.col("unrated_reason").is_null()
    answered = pl.col("billed_seconds") > 0
    zero = pl.lit(Decimal(0), money)
    subtotal = pl.col("usage_amount") + pl.col("connect_fee")
    minimum = pl.lit(deck.minimum_charge, money)

    return (
        _join_ranges(calls, deck, "destination")
        .with_columns(local.alias(f"{_TMP}local"))
        .with_columns(
            pl.when(hit).then(pl.col(f"{_TMP}prefix")).alias("prefix"),
            pl.when(hit).then(pl.col(f"{_TMP}destination")).alias("deck_destination"),
            rate_all.alias(f"{_TMP}all"),
            time_band.alias(f"{_TMP}time_band"),
            billed.alias("billed_seconds"),
        )
        .with_columns(
            pl.coalesce(pl.col(f"{_TMP}all"), pl.when(hit).then(band_rate)).alias(
                "rate_per_minute"
            ),
            pl.when(pl.col(f"{_TMP}all").is_not_null())
            .then(pl.lit("all"))
            .otherwise(pl.col(f"{_TMP}time_band"))
            .alias("band"),
            increments.alias("increments"),
        )
        .with_columns(
            pl.when(~valid)
            .then(pl.lit("invalid_duration"))
            .when(~hit)
            .then(pl.lit("no_rate_for_destination"))
            .when(pl.col("rate_per_minute").is_null() & pl.col(f"{_TMP}time_band").is_null())
            .then(pl.lit("no_local_time"))
            .when(pl.col("rate_per_minute").is_null())
            .then(pl.lit("no_rate_for_band"))
            .otherwise(pl.lit(None, pl.String))
            .alias("unrated_reason")
        )
        .with_columns(
            pl.when(rated).then(usage).alias("usage_amount"),
            pl.when(rated)
            .then(pl.when(answered).then(pl.lit(deck.connect_fee, money)).otherwise(zero))
            .alias("connect_fee"),
        )
        .with_columns(
            pl.when(rated)
            .then(pl.when(answered & (subtotal < minimum)).then(minimum - subtotal).otherwise(zero))
            .alias("minimum_adjustment"),
        )
        .with_columns(
            (pl.col("usage_amount") + pl.col("connect_fee") + pl.col("minimum_adjustment"))
            .cast(money)
            .alias("amount"),
        )
        .select(
            *names,
            *OUTPUT_COLUMNS,
            *(
                [pl.when(hit).then(pl.col(f"{_TMP}prefix_row")).alias(range_column)]
                if range_column
                else []
            ),
        )
        .cast(
            {
                "billed_seconds": pl.Int64,
                "increments": pl.Int64,
                "rate_per_minute": RATE_DTYPE,
                "usage_amount": money,
                "connect_fee": money,
                "minimum_adjustment": money,
                "amount": money,
            }
        )
    )


SUMMARY_KEYS: Final = ("account_id", "prefix", "deck_destination", "band", "rate_per_minute")


def summarize_calls(rated: pl.DataFrame) -> pl.DataFrame:
    """One explanation row per (account, prefix, destination, band, rate): `calls`,
    `billed_seconds` and the sums of `usage_amount`, `connect_fee`, `minimum_adjustment`
    and `amount`. Decimal sums are exact, so the rows add up to the calls' total.

    Unrated calls have no amount to explain: report them as findings and pass only rated
    calls (a ValueError says how many were passed).
    """
    unrated = rated.filter(pl.col("unrated_reason").is_not_null()).height
    if unrated:
        raise ValueError(
            f"{unrated} unrated call(s) passed to summarize_calls; report them as findings "
            "and summarize only rated calls"
        )
    return (
        rated.group_by(list(SUMMARY_KEYS))
        .agg(
            pl.len().cast(pl.Int64).alias("calls"),
            pl.col("billed_seconds").sum().cast(pl.Int64),
            pl.col("usage_amount").sum(),
            pl.col("connect_fee").sum(),
            pl.col("minimum_adjustment").sum(),
            pl.col("amount").sum(),
        )
        .sort(list(SUMMARY_KEYS))
    )
