"""pricing_rules.periods: calendar-month periods and the day-based proration factor."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pricing_rules.periods import BillingPeriod
from tests.pricing_rules.frames import FAST_PROPERTY

OCT = BillingPeriod.parse("2026-10")


@pytest.mark.parametrize(
    ("label", "days"),
    [
        ("2026-01", 31),
        ("2026-02", 28),
        ("2028-02", 29),  # leap year
        ("2100-02", 28),  # divisible by 100, not by 400: not a leap year
        ("2000-02", 29),  # divisible by 400: leap year
        ("2026-04", 30),
        ("2026-10", 31),
        ("2026-12", 31),
    ],
)
def test_month_lengths(label: str, days: int) -> None:
    period = BillingPeriod.parse(label)
    assert period.days == days
    assert len(period.dates()) == days
    assert period.label == label


def test_december_ends_on_the_first_of_january() -> None:
    period = BillingPeriod.parse("2026-12")
    assert (period.start, period.end) == (date(2026, 12, 1), date(2027, 1, 1))
    assert period.end_at == datetime(2027, 1, 1, tzinfo=UTC)


def test_period_bounds_are_utc_and_half_open() -> None:
    assert OCT.start_at == datetime(2026, 10, 1, tzinfo=UTC)
    assert OCT.end_at == datetime(2026, 11, 1, tzinfo=UTC)
    assert OCT.dates()[0] == date(2026, 10, 1)
    assert OCT.dates()[-1] == date(2026, 10, 31)


@pytest.mark.parametrize("label", ["2026-13", "2026-00", "2026-1", "26-10", "2026/10", "", "x"])
def test_bad_labels_are_errors(label: str) -> None:
    with pytest.raises(ValueError, match="period must look like YYYY-MM"):
        BillingPeriod.parse(label)


def test_periods_order_by_start() -> None:
    assert BillingPeriod.parse("2026-09") < OCT < BillingPeriod.parse("2027-01")


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (date(2025, 1, 1), None, 31),  # active before and after: the whole month
        (date(2026, 10, 1), None, 31),
        (date(2026, 10, 17), None, 15),  # 17th..31st inclusive = 15 days
        (date(2026, 10, 31), None, 1),
        (date(2026, 11, 1), None, 0),  # starts when the period ends
        (date(2026, 12, 1), None, 0),  # starts after the period
        (date(2025, 1, 1), date(2026, 10, 1), 0),  # ended when the period started
        (date(2025, 1, 1), date(2026, 9, 1), 0),  # ended before the period
        (date(2025, 1, 1), date(2026, 10, 11), 10),  # end is exclusive: 1st..10th
        (date(2026, 10, 5), date(2026, 10, 5), 0),  # empty range
        (date(2026, 10, 5), date(2026, 10, 6), 1),
        (date(2026, 10, 5), date(2027, 3, 1), 27),  # 5th..31st
        (date(2026, 10, 20), date(2026, 10, 10), 0),  # end before start never goes negative
    ],
)
def test_active_days(start: date, end: date | None, days: int) -> None:
    assert OCT.active_days(start, end) == days


def test_proration_factor_whole_period_is_exactly_one() -> None:
    factor = OCT.proration_factor(date(2026, 1, 1), None)
    assert factor == 1
    assert str(factor) == "1"


def test_proration_factor_mid_period_start() -> None:
    # signed up on 2026-10-17: 15 of 31 days = 0.483870967741935..., kept to 30 places
    factor = OCT.proration_factor(date(2026, 10, 17), None)
    assert factor == Decimal("0.483870967741935483870967741935")
    assert abs(Fraction(factor) - Fraction(15, 31)) <= Fraction(1, 2 * 10**30)


def test_proration_factor_leap_february() -> None:
    # 2028-02 has 29 days; from the 15th: 15 of 29 days
    factor = BillingPeriod.parse("2028-02").proration_factor(date(2028, 2, 15), None)
    assert abs(Fraction(factor) - Fraction(15, 29)) <= Fraction(1, 2 * 10**30)
    # February 2026 (28 days), from the 15th: 14 of 28 days = exactly 0.5
    assert BillingPeriod.parse("2026-02").proration_factor(date(2026, 2, 15), None) == Decimal(
        "0.5"
    )


def test_proration_factor_outside_the_period_is_zero() -> None:
    assert OCT.proration_factor(date(2026, 11, 1), None) == 0


periods = st.builds(
    lambda year, month: BillingPeriod.parse(f"{year:04d}-{month:02d}"),
    st.integers(2000, 2100),
    st.integers(1, 12),
)


@st.composite
def period_and_split(draw: st.DrawFn) -> tuple[BillingPeriod, date]:
    period = draw(periods)
    offset = draw(st.integers(1, period.days - 1))  # strictly inside the period
    return period, period.start + timedelta(days=offset)


@FAST_PROPERTY
@given(period_and_split())
def test_split_factors_sum_to_one_within_context_precision(
    case: tuple[BillingPeriod, date],
) -> None:
    # A plan change on `split`: the old subscription covers [start, split), the new one
    # [split, end). Each factor is active days / days, computed to 50 significant digits.
    period, split = case
    before = period.proration_factor(period.start, split)
    after = period.proration_factor(split, None)
    assert 0 < before < 1
    assert 0 < after < 1
    assert period.active_days(period.start, split) + period.active_days(split, None) == (
        period.days
    )
    assert abs(Fraction(before) + Fraction(after) - 1) <= Fraction(1, 10**49)


@FAST_PROPERTY
@given(period_and_split())
# November 2026, split on the 30th: 29/30 + 1/30 = 1 exactly (factors have 30 places)
@example((BillingPeriod.parse("2026-11"), date(2026, 11, 30)))
def test_split_factors_sum_to_exactly_one(case: tuple[BillingPeriod, date]) -> None:
    period, split = case
    before = period.proration_factor(period.start, split)
    after = period.proration_factor(split, None)
    assert Fraction(before) + Fraction(after) == 1


@pytest.mark.parametrize(
    ("label", "before", "after"),
    [
        ("2026-01", "2025-12", "2026-02"),
        ("2026-12", "2026-11", "2027-01"),
        ("1900-01", "1899-12", "1900-02"),  # the first period accepted has neighbours
        ("9998-12", "9998-11", "9999-01"),  # and so has the last
    ],
)
def test_neighbour_months(label: str, before: str, after: str) -> None:
    period = BillingPeriod.parse(label)
    assert (period.previous().label, period.next().label) == (before, after)
    assert period.previous().end == period.start and period.next().start == period.end
