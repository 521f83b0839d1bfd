"""Billing periods and the day-based proration factor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pricing_rules.money import MONEY_CONTEXT

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")
FACTOR_QUANTUM = Decimal(1).scaleb(-30)


@dataclass(frozen=True, order=True)
class BillingPeriod:
    """A calendar month, `[start, end)` as local dates. `start_at`/`end_at` are its
    bounds in UTC; `local_bounds` gives them in an account's time zone."""

    start: date
    end: date

    @classmethod
    def parse(cls, label: str) -> BillingPeriod:
        """`2026-10` -> October 2026.

        >>> BillingPeriod.parse("2026-02").days
        28
        """
        match = _PERIOD.match(label)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError(f"period must look like YYYY-MM, got {label!r}")
        if not 1900 <= int(match.group(1)) <= 9998:  # a neighbour month must exist too
            raise ValueError(f"period {label} is not between 1900-01 and 9998-12")
        year, month = int(match.group(1)), int(match.group(2))
        start = date(year, month, 1)
        end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
        return cls(start, end)

    def previous(self) -> BillingPeriod:
        """The month before.

        >>> BillingPeriod.parse("2027-01").previous().label
        '2026-12'
        """
        return BillingPeriod((self.start - timedelta(days=1)).replace(day=1), self.start)

    def next(self) -> BillingPeriod:
        """The month after.

        >>> BillingPeriod.parse("2026-12").next().label
        '2027-01'
        """
        end = self.end
        return BillingPeriod(end, date(end.year + end.month // 12, end.month % 12 + 1, 1))

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def edge_days(self) -> tuple[date, date]:
        """The neighbours' days whose partitions may hold this month's usage: the last day
        of the month before and the first day of the month after. A UTC offset is at most
        14 hours, so a local month never reaches further.

        >>> [f"{d}" for d in BillingPeriod.parse("2026-11").edge_days]
        ['2026-10-31', '2026-12-01']
        """
        return self.start - timedelta(days=1), self.end

    def local_bounds(self, zone: str) -> tuple[datetime, datetime]:
        """`[start, end)` of the month in time zone `zone`, as UTC instants.

        # Local midnight in Berlin (UTC+1 in November) is 23:00 UTC the day before.
        >>> start, end = BillingPeriod.parse("2026-11").local_bounds("Europe/Berlin")
        >>> f"{start:%m-%d %H:%M}", f"{end:%m-%d %H:%M}"
        ('10-31 23:00', '11-30 23:00')
        """
        return local_midnight(self.start, zone), local_midnight(self.end, zone)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def start_at(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=offset) for offset in range(self.days)]

    def active_days(self, start: date, end: date | None) -> int:
        """Days of this period inside `[start, end)`; `end=None` means still active."""
        first = max(start, self.start)
        last = self.end if end is None else min(end, self.end)
        return max((last - first).days, 0)

    def proration_factor(self, start: date, end: date | None) -> Decimal:
        """Active days / days in the period (see `proration_ratio`).

        # Signed up on 2026-10-17: 15 of 31 days -> 15/31
        >>> BillingPeriod.parse("2026-10").proration_factor(date(2026, 10, 17), None)
        Decimal('0.483870967741935483870967741935')
        """
        return proration_ratio(self.active_days(start, end), self.days)


def local_midnight(day: date, zone: str) -> datetime:
    """The first instant of local `day` in `zone`, in UTC. Where midnight does not exist
    (a daylight-saving gap at 00:00) the day starts at 01:00."""
    tz = ZoneInfo(zone)
    instant = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    if instant.astimezone(tz).date() != day:
        instant = datetime.combine(day, time(1), tzinfo=tz).astimezone(UTC)
    return instant


def proration_ratio(part: int, whole: int) -> Decimal:
    """`part / whole` to 30 decimal places, exactly 1 when they are equal.

    A fixed number of places makes the factors of a split period add up to exactly 1:
    round(1 - x) = 1 - round(x) whenever x is not a tie, and k/n for the lengths periods
    have never ends in a 5 at the 31st place.

    >>> proration_ratio(15, 31), proration_ratio(15, 31) + proration_ratio(16, 31) == 1
    (Decimal('0.483870967741935483870967741935'), True)
    """
    if part == whole:
        return Decimal(1)
    return MONEY_CONTEXT.divide(Decimal(part), Decimal(whole)).quantize(
        FACTOR_QUANTUM, context=MONEY_CONTEXT
    )
