"""Billing cycles: monthly, quarterly or annual periods, aligned to the calendar or to a
subscription's anniversary, with boundaries at local midnight in the account's time zone.

A period is `[start, end)` in UTC instants. Boundaries are computed as local calendar
dates first and turned into instants last, so daylight-saving changes move an instant,
never a date, and consecutive periods always tile time.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pricing_rules.periods import local_midnight, proration_ratio

Interval = Literal["month", "quarter", "year"]
MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True, order=True)
class Period:
    """`[start, end)` in UTC, with the local dates it spans."""

    start: datetime
    end: datetime
    first_day: date
    end_day: date  # exclusive
    timezone: str = "UTC"

    def local_day(self, instant: datetime) -> date:
        return instant.astimezone(ZoneInfo(self.timezone)).date()

    @property
    def days(self) -> int:
        return (self.end_day - self.first_day).days

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, datetime) and self.start <= instant < self.end


def _add_months(day: date, months: int, billing_day: int) -> date:
    """The date `months` after `day`'s month, on `billing_day` or the month's last day.

    >>> _add_months(date(2026, 1, 31), 1, 31), _add_months(date(2026, 1, 31), 2, 31)
    (datetime.date(2026, 2, 28), datetime.date(2026, 3, 31))
    """
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(billing_day, last))


@dataclass(frozen=True)
class BillingCycle:
    """How a subscription's periods fall.

    `calendar` periods start on the 1st of a month (January, April, July, October for
    quarters; January for years). `anniversary` periods start on `billing_day` of the
    anchor month and every `interval` after it; in a month without that day (29, 30, 31)
    the period starts on the month's last day, and the next one returns to the billing
    day: billing day 31 gives Jan 31, Feb 28, Mar 31, Apr 30.
    """

    interval: Interval = "month"
    alignment: Literal["calendar", "anniversary"] = "calendar"
    anchor: date = date(2000, 1, 1)  # the anniversary: billing day and month to count from
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.interval not in MONTHS:
            raise ValueError(f"interval must be month, quarter or year, got {self.interval!r}")
        if self.alignment not in ("calendar", "anniversary"):
            raise ValueError(f"alignment must be calendar or anniversary, got {self.alignment!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _boundary(self, index: int) -> date:
        """The start date of period number `index` (0 = the one starting at the anchor)."""
        step = MONTHS[self.interval]
        if self.alignment == "anniversary":
            return _add_months(self.anchor, index * step, self.anchor.day)
        first = date(self.anchor.year, 1, 1)
        return _add_months(first, index * step, 1)

    def _index_of(self, day: date) -> int:
        step = MONTHS[self.interval]
        base = self._boundary(0)
        guess = ((day.year - base.year) * 12 + day.month - base.month) // step
        while self._boundary(guess) > day:
            guess -= 1
        while self._boundary(guess + 1) <= day:
            guess += 1
        return guess

    def start_of(self, day: date) -> datetime:
        """The first instant of a local day, in UTC (see `local_midnight`)."""
        return local_midnight(day, self.timezone)

    def period_of(self, instant: datetime) -> Period:
        """The period an instant falls in (by its local date)."""
        if instant.tzinfo is None:
            raise ValueError("instants must be time-zone aware")
        local_day = instant.astimezone(self.zone).date()
        index = self._index_of(local_day)
        first, end = self._boundary(index), self._boundary(index + 1)
        return Period(self.start_of(first), self.start_of(end), first, end, self.timezone)

    def periods_overlapping(self, first_day: date, end_day: date) -> list[Period]:
        """Every period sharing a local day with `[first_day, end_day)`, in order.

        >>> quarters = BillingCycle(interval="quarter")
        >>> [(p.first_day.month, p.end_day.month)
        ...  for p in quarters.periods_overlapping(date(2026, 3, 1), date(2026, 8, 1))]
        [(1, 4), (4, 7), (7, 10)]
        """
        found = []
        period = self.period_of(self.start_of(first_day))
        while period.first_day < end_day:
            found.append(period)
            period = self.period_of(self.start_of(period.end_day))
        return found

    def periods(self, start: datetime, end: datetime) -> list[Period]:
        """Every period that overlaps `[start, end)`, in order; they tile time."""
        if end <= start:
            return []
        found = [self.period_of(start)]
        while found[-1].end < end:
            found.append(self.period_of(found[-1].end))
        return found


def proration_factor(
    period: Period, active_from: datetime, active_to: datetime | None, by: str = "day"
) -> Decimal:
    """Share of the period a subscription is active, to 30 decimal places.

    By `day`: local days, a day counting when the subscription is active at any time of
    it. By `second`: exact seconds. Either way the factors of a split period add up to 1.

    # Active from the 17th of a 31-day month: 15 / 31
    >>> from datetime import UTC
    >>> cycle = BillingCycle()
    >>> october = cycle.period_of(datetime(2026, 10, 5, tzinfo=UTC))
    >>> proration_factor(october, datetime(2026, 10, 17, tzinfo=UTC), None)
    Decimal('0.483870967741935483870967741935')
    """
    start = max(active_from, period.start)
    stop = period.end if active_to is None else min(active_to, period.end)
    if stop <= start:
        return Decimal(0)
    if by == "second":
        # whole microseconds, never a float
        micro = timedelta(microseconds=1)
        part, whole = (stop - start) // micro, (period.end - period.start) // micro
    elif by == "day":
        last_active = period.local_day(stop - timedelta(microseconds=1))
        part = (last_active - period.local_day(start)).days + 1
        whole = period.days
    else:
        raise ValueError(f"proration is by day or by second, got {by!r}")
    return proration_ratio(part, whole)
