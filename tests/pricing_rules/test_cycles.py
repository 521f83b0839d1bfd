"""pricing_rules.cycles: periods tile time for any billing day, interval and time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricing_rules.cycles import BillingCycle, proration_factor
from tests.pricing_rules.frames import FAST_PROPERTY

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # half-hour DST shift
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Santiago",  # DST changes at midnight
    "America/Havana",  # midnight does not exist on DST day
]


def cycles() -> st.SearchStrategy[BillingCycle]:
    return st.builds(
        BillingCycle,
        interval=st.sampled_from(["month", "quarter", "year"]),
        alignment=st.sampled_from(["calendar", "anniversary"]),
        anchor=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
        timezone=st.sampled_from(ZONES),
    )


@FAST_PROPERTY
@given(
    cycles(),
    st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(min_value=1, max_value=800),
)
def test_periods_tile_time_without_gaps_or_overlaps(
    cycle: BillingCycle, start: datetime, days: int
) -> None:
    end = start + timedelta(days=days)
    periods = cycle.periods(start, end)
    assert periods[0].start <= start < periods[0].end
    assert periods[-1].start < end <= periods[-1].end
    for before, after in pairwise(periods):
        assert before.end == after.start
        assert before.end_day == after.first_day
    zone = ZoneInfo(cycle.timezone)
    for period in periods:
        assert period.start < period.end
        # Each boundary is the first instant of its local day.
        assert period.start.astimezone(zone).date() == period.first_day
        assert (period.start - timedelta(microseconds=1)).astimezone(zone).date() < period.first_day


@FAST_PROPERTY
@given(
    cycles(),
    st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
)
def test_every_instant_is_in_exactly_the_period_found_for_it(
    cycle: BillingCycle, instant: datetime
) -> None:
    period = cycle.period_of(instant)
    assert instant in period
    assert instant not in cycle.period_of(period.end)


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        # billing day 31: the last day of short months, back to the 31st after them
        (
            date(2026, 1, 31),
            [
                date(2026, 1, 31),
                date(2026, 2, 28),
                date(2026, 3, 31),
                date(2026, 4, 30),
                date(2026, 5, 31),
            ],
        ),
        # billing day 29 in a leap year and the year after
        (
            date(2028, 1, 29),
            [
                date(2028, 1, 29),
                date(2028, 2, 29),
                date(2028, 3, 29),
                date(2028, 4, 29),
                date(2028, 5, 29),
            ],
        ),
        (
            date(2027, 1, 30),
            [
                date(2027, 1, 30),
                date(2027, 2, 28),
                date(2027, 3, 30),
                date(2027, 4, 30),
                date(2027, 5, 30),
            ],
        ),
    ],
)
def test_anniversary_days_in_short_months(anchor: date, expected: list[date]) -> None:
    cycle = BillingCycle(alignment="anniversary", anchor=anchor)
    start = datetime.combine(anchor, datetime.min.time(), tzinfo=UTC)
    firsts = [p.first_day for p in cycle.periods(start, start + timedelta(days=125))]
    assert firsts[:5] == expected


def test_calendar_quarters_and_years() -> None:
    quarter = BillingCycle(interval="quarter").period_of(datetime(2026, 11, 5, tzinfo=UTC))
    assert (quarter.first_day, quarter.end_day, quarter.days) == (
        date(2026, 10, 1),
        date(2027, 1, 1),
        92,
    )
    year = BillingCycle(interval="year").period_of(datetime(2028, 6, 1, tzinfo=UTC))
    assert (year.first_day, year.end_day, year.days) == (date(2028, 1, 1), date(2029, 1, 1), 366)


def test_periods_follow_the_account_time_zone() -> None:
    # 2026-10-31 23:30 in New York is already November in UTC, still October locally.
    cycle = BillingCycle(timezone="America/New_York")
    late = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    period = cycle.period_of(late)
    assert period.first_day == date(2026, 10, 1)
    # New York's October starts at 04:00 UTC (EDT) and ends at 04:00 UTC on Nov 1 ...
    assert period.start == datetime(2026, 10, 1, 4, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 1, 4, tzinfo=UTC)
    # ... and November ends at 05:00 UTC (EST): the DST change lengthens it by an hour.
    november = cycle.period_of(period.end)
    assert november.seconds == 30 * 86400 + 3600


def test_a_missing_local_midnight_starts_the_day_at_its_first_instant() -> None:
    # Havana skips 00:00-01:00 when DST starts (2026-03-08).
    cycle = BillingCycle(
        alignment="anniversary", anchor=date(2026, 1, 8), timezone="America/Havana"
    )
    period = cycle.period_of(datetime(2026, 3, 10, tzinfo=UTC))
    assert period.first_day == date(2026, 3, 8)
    assert period.start.astimezone(ZoneInfo("America/Havana")).hour == 1


@FAST_PROPERTY
@given(cycles(), st.integers(min_value=0, max_value=400), st.sampled_from(["day", "second"]))
def test_split_proration_factors_add_up_to_one(
    cycle: BillingCycle, offset_hours: int, by: str
) -> None:
    period = cycle.period_of(datetime(2026, 6, 15, tzinfo=UTC))
    split = period.start + timedelta(hours=offset_hours)
    if by == "day":  # a day-based split happens at the start of a local day
        local = split.astimezone(ZoneInfo(cycle.timezone)).date()
        split = max(
            period.start,
            cycle.period_of(split).start
            if local == period.first_day
            else datetime.combine(
                local, datetime.min.time(), tzinfo=ZoneInfo(cycle.timezone)
            ).astimezone(UTC),
        )
    if not period.start <= split <= period.end:
        return
    first = proration_factor(period, period.start, split, by)
    second = proration_factor(period, split, None, by)
    assert first + second == 1


def test_proration_by_day_and_by_second() -> None:
    october = BillingCycle().period_of(datetime(2026, 10, 1, tzinfo=UTC))
    noon_17th = datetime(2026, 10, 17, 12, tzinfo=UTC)
    # by day the 17th counts whole: 15 of 31 days
    by_day = proration_factor(october, noon_17th, None)
    assert by_day == Decimal("0.483870967741935483870967741935")  # 15/31 to 30 places
    # by second: 14.5 days of 31 = 14.5 / 31
    by_second = proration_factor(october, noon_17th, None, "second")
    assert abs(Fraction(by_second) - Fraction(29, 62)) <= Fraction(1, 2 * 10**30)
    with pytest.raises(ValueError, match="by day or by second"):
        proration_factor(october, noon_17th, None, "hour")
