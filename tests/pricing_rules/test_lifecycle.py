"""Subscription lifecycle: histories priced into prorated lines and credits."""

from __future__ import annotations

import json
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pricing_rules.catalog import parse_catalog
from pricing_rules.cycles import BillingCycle, Period
from pricing_rules.lifecycle import (
    History,
    LifecycleError,
    ProratedLine,
    closing_lines,
    cycle_for,
    describe,
    fixed_fee_lines,
    migrate_history,
    timeline,
)
from pricing_rules.money import RoundingMode, round_money
from pricing_rules.periods import BillingPeriod, proration_ratio
from pricing_rules.rating import RatingError, rate, subscription_frame
from tests.pricing_rules.frames import usage_frame

CATALOG = parse_catalog(
    """
version: lifecycle
metrics: {}
plans:
  basic:
    name: Basic
    currency: USD
    charges: [{id: fee, name: Subscription, model: flat, amount: "10.00"}]
  plus:
    name: Plus
    currency: USD
    charges: [{id: fee, name: Subscription, model: flat, amount: "20.00"}]
  team:
    name: Team
    currency: USD
    charges:
      - {id: platform, name: Platform, model: flat, amount: "49.00"}
      - {id: seats, name: Seats, model: per_seat, unit_price: "14.50"}
  voice:
    name: Voice
    currency: USD
    charges: [{id: fee, name: Line rental, model: flat, amount: "29.95"}]
  plan_a:
    name: Plan A
    currency: EUR
    charges: [{id: fee, name: Subscription, model: flat, amount: "100", timing: arrears}]
  plan_b:
    name: Plan B
    currency: EUR
    charges: [{id: fee, name: Subscription, model: flat, amount: "200", timing: arrears}]
  plan_a_renamed:
    name: Plan A (renamed)
    currency: EUR
    charges: [{id: fee, name: Subscription, model: flat, amount: "100", timing: arrears}]
  quarterly:
    name: Quarterly
    currency: USD
    interval: quarter
    charges: [{id: fee, name: Subscription, model: flat, amount: "90.00"}]
  quarterly_plus:
    name: Quarterly Plus
    currency: USD
    interval: quarter
    charges:
      - {id: fee, name: Subscription, model: flat, amount: "180.00"}
      - {id: seats, name: Seats, model: per_seat, unit_price: "30.00"}
      - {id: support, name: Support, model: flat, amount: "15.00", timing: arrears}
  anniversary_seats:
    name: Anniversary seats
    currency: USD
    alignment: anniversary
    charges: [{id: seats, name: Seats, model: per_seat, unit_price: "10.00"}]
  annual:
    name: Annual
    currency: USD
    interval: year
    alignment: anniversary
    charges: [{id: fee, name: Subscription, model: flat, amount: "1200.00"}]
  euro:
    name: Euro
    currency: EUR
    charges: [{id: fee, name: Subscription, model: flat, amount: "10.00"}]
"""
)
CYCLE = BillingCycle()


def month(year: int, number: int, cycle: BillingCycle = CYCLE) -> Period:
    return cycle.period_of(cycle.start_of(date(year, number, 1)))


def history(*changes: dict[str, Any]) -> History:
    return History.model_validate({"subscription_id": "S1", "changes": list(changes)})


def start(on: str, plan: str = "basic", **extra: Any) -> dict[str, Any]:
    return {"action": "start", "day": on, "plan": plan, **extra}


def lines_of(h: History, period: Period, **kw: Any) -> list[ProratedLine]:
    return fixed_fee_lines(h, CATALOG, CYCLE, period, **kw)


def cents(lines: list[ProratedLine], currency: str = "USD") -> list[tuple[str, str, Decimal]]:
    return [
        (line.role, line.plan_id, round_money(line.amount, currency, RoundingMode.HALF_UP))
        for line in lines
    ]


# --------------------------------------------------------------------------------------
# Golden cases from public documentation
# --------------------------------------------------------------------------------------


def test_stripe_upgrade_halfway_through_the_period() -> None:
    # Stripe, "Prorations": 10 USD a month, upgraded to 20 USD halfway through the
    # period -> -5 USD unused time, +10 USD remaining time; the renewal bills 20 USD.
    # November 2026 has 30 days; effective on the 16th, 15 days remain:
    # unused 10.00 x 15/30 = -5.00; remaining 20.00 x 15/30 = 10.00; December 20.00
    # The invoice closing November: -5.00 + 10.00 + 20.00 = 25.00 (Stripe's "$25")
    h = history(start("2026-10-01"), {"action": "change_plan", "day": "2026-11-16", "plan": "plus"})
    got = cents(lines_of(h, month(2026, 11)))
    assert got == [
        ("unused", "basic", Decimal("-5.00")),
        ("remaining", "plus", Decimal("10.00")),
        ("advance", "plus", Decimal("20.00")),
    ]
    assert sum(amount for *_, amount in got) == Decimal("25.00")


def test_lago_upgrade_of_a_plan_paid_in_arrears() -> None:
    # Lago, "Upgrades and downgrades", arrears: Plan A 100 EUR from January 1, upgraded
    # to Plan B 200 EUR on January 15 (calendar billing).
    # Plan A, January 1-14: 14/31 x 100 = 45.161.. -> 45.16
    # Plan B, January 15-31: 17/31 x 200 = 109.677.. -> 109.68
    h = history(
        start("2026-01-01", "plan_a"),
        {"action": "change_plan", "day": "2026-01-15", "plan": "plan_b"},
    )
    got = cents(lines_of(h, month(2026, 1)), "EUR")
    assert got == [
        ("arrears", "plan_a", Decimal("45.16")),
        ("arrears", "plan_b", Decimal("109.68")),
    ]


def test_kill_bill_in_advance_first_invoice_is_prorated_to_the_billing_day() -> None:
    # Kill Bill bills in advance up to the bill cycle day (BCD 1 here): a subscription
    # created mid-month pays the rest of that month, then whole months in advance.
    # 29.95 a month from October 17: 15/31 x 29.95 = 14.4919.. -> 14.49;
    # November in advance: 29.95
    h = history(start("2026-10-17", "voice"))
    assert cents(lines_of(h, month(2026, 10))) == [
        ("remaining", "voice", Decimal("14.49")),
        ("advance", "voice", Decimal("29.95")),
    ]
    # A subscription created on the 1st was billed for that month by the invoice issued
    # that day (the one closing September) and is not billed for it again.
    on_the_first = history(start("2026-10-01", "voice"))
    assert cents(lines_of(on_the_first, month(2026, 9))) == [("advance", "voice", Decimal("29.95"))]
    assert cents(lines_of(on_the_first, month(2026, 10))) == [
        ("advance", "voice", Decimal("29.95"))
    ]


def test_stripe_same_day_upgrade_and_back_bills_nothing_extra() -> None:
    h = history(
        start("2026-10-01"),
        {"action": "change_plan", "day": "2026-11-10", "plan": "plus"},
        {"action": "change_plan", "day": "2026-11-10", "plan": "basic", "timing": "immediate"},
    )
    assert cents(lines_of(h, month(2026, 11))) == [("advance", "basic", Decimal("10.00"))]


# --------------------------------------------------------------------------------------
# Each lifecycle event
# --------------------------------------------------------------------------------------


def test_cancel_immediately_credits_the_unused_days() -> None:
    # 10.00 billed for November in advance; cancelled on the 21st: 10 of 30 days unused
    # -> -10.00 x 10/30 = -3.33; nothing for December
    h = history(
        start("2026-10-01"), {"action": "cancel", "day": "2026-11-21", "timing": "immediate"}
    )
    assert cents(lines_of(h, month(2026, 11))) == [("unused", "basic", Decimal("-3.33"))]


def test_cancel_at_period_end_has_no_credit_and_no_renewal() -> None:
    h = history(start("2026-10-01"), {"action": "cancel", "day": "2026-11-21"})
    assert lines_of(h, month(2026, 11)) == []
    assert [s.end for s in timeline(h, CATALOG, CYCLE)] == [date(2026, 12, 1)]


def test_downgrade_waits_for_the_period_end_unless_the_policy_says_now() -> None:
    deferred = history(
        start("2026-10-01", "plus"), {"action": "change_plan", "day": "2026-11-16", "plan": "basic"}
    )
    assert cents(lines_of(deferred, month(2026, 11))) == [("advance", "basic", Decimal("10.00"))]
    immediate = history(
        start("2026-10-01", "plus"),
        {"action": "change_plan", "day": "2026-11-16", "plan": "basic", "timing": "immediate"},
    )
    # unused 20.00 x 15/30 = -10.00; remaining 10.00 x 15/30 = 5.00
    assert cents(lines_of(immediate, month(2026, 11))) == [
        ("unused", "plus", Decimal("-10.00")),
        ("remaining", "basic", Decimal("5.00")),
        ("advance", "basic", Decimal("10.00")),
    ]


def test_seat_change_credits_old_seats_and_charges_new_ones() -> None:
    # 10 -> 15 seats on November 16 (15 of 30 days left); the platform fee is unchanged:
    # unused 10 x 14.50 x 15/30 = -72.50; remaining 15 x 14.50 x 15/30 = 108.75
    # December in advance: 49.00 + 15 x 14.50 = 49.00 + 217.50
    h = history(
        start("2026-10-01", "team", seats=10),
        {"action": "change_seats", "day": "2026-11-16", "seats": 15},
    )
    lines = lines_of(h, month(2026, 11))
    assert [(line.role, line.charge_key, line.seats) for line in lines] == [
        ("unused", "seats", 10),
        ("remaining", "seats", 15),
        ("advance", "platform", 1),
        ("advance", "seats", 15),
    ]
    assert [a for *_, a in cents(lines)] == [
        Decimal("-72.50"),
        Decimal("108.75"),
        Decimal("49.00"),
        Decimal("217.50"),
    ]
    assert "Unused time on Team: Seats, 10 seat(s), 2026-11-16 to 2026-11-30" in describe(
        lines[0], CATALOG
    )


def test_trial_days_are_free_then_prorated() -> None:
    # 14 free days from October 1; billed from October 15: 17/31 x 10.00 = 5.48, on the
    # invoice issued October 1 (closing September), in advance. October's own invoice
    # then has nothing to settle and bills November.
    h = history(start("2026-10-01", trial_days=14))
    assert cents(lines_of(h, month(2026, 9))) == [("advance", "basic", Decimal("5.48"))]
    assert cents(lines_of(h, month(2026, 10))) == [("advance", "basic", Decimal("10.00"))]
    assert [s.state.status for s in timeline(h, CATALOG, CYCLE)] == ["trial", "active"]


def test_pause_credits_the_paused_days_and_resume_charges_again() -> None:
    # Paused November 11-20 (10 of 30 days): -10.00 x 10/30 = -3.33
    h = history(
        start("2026-10-01"),
        {"action": "pause", "day": "2026-11-11"},
        {"action": "resume", "day": "2026-11-21"},
    )
    assert cents(lines_of(h, month(2026, 11))) == [
        ("unused", "basic", Decimal("-3.33")),
        ("advance", "basic", Decimal("10.00")),
    ]


def test_a_subscription_moved_onto_a_history_is_charged_its_first_period_whole() -> None:
    # Billed another way until September; October is the first invoice from the history.
    # Nothing was billed in advance for October, so it is charged here: paused October
    # 11-20, the 21 active days are 1-10 (10/31 x 10.00 = 3.23) and 21-31 (11/31 x 10.00
    # = 3.55); then November in advance, 10.00.
    changes = [
        start("2026-01-01"),
        {"action": "pause", "day": "2026-10-11"},
        {"action": "resume", "day": "2026-10-21"},
    ]
    moved = History.model_validate(
        {"subscription_id": "S1", "changes": changes, "billing_from": "2026-10-01"}
    )
    assert cents(lines_of(moved, month(2026, 10))) == [
        ("remaining", "basic", Decimal("3.23")),
        ("remaining", "basic", Decimal("3.55")),
        ("advance", "basic", Decimal("10.00")),
    ]
    # From the start: October was billed in advance by September's invoice; only the
    # paused days come back, 10/31 x 10.00 = 3.23.
    assert cents(lines_of(history(*changes), month(2026, 10))) == [
        ("unused", "basic", Decimal("-3.23")),
        ("advance", "basic", Decimal("10.00")),
    ]
    # November's invoice is the second from the history: nothing is charged twice.
    assert cents(lines_of(moved, month(2026, 11))) == [("advance", "basic", Decimal("10.00"))]


def test_per_second_proration_counts_the_short_dst_day() -> None:
    # New York, March 2026: 31 days, but March 8 has 23 hours (743 hours in all).
    # From March 8 on, by day: 24/31; by second: (743 - 7 x 24) / 743 = 575/743
    cycle = BillingCycle(timezone="America/New_York")
    h = history(start("2026-03-08"))
    march = month(2026, 3, cycle)
    by_day = fixed_fee_lines(h, CATALOG, cycle, march)[0].factor
    by_second = fixed_fee_lines(h, CATALOG, cycle, march, by="second")[0].factor
    assert by_day == proration_ratio(24, 31)
    assert by_second == proration_ratio(575, 743)


def test_anniversary_cycles_prorate_against_their_own_periods() -> None:
    # Billing day 15: the period is October 15 - November 14 (31 days). An upgrade on
    # November 1 leaves 14 days: unused -10.00 x 14/31 = -4.52, remaining 20 x 14/31 = 9.03
    cycle = BillingCycle(alignment="anniversary", anchor=date(2026, 10, 15))
    h = history(start("2026-10-15"), {"action": "change_plan", "day": "2026-11-01", "plan": "plus"})
    period = cycle.period_of(cycle.start_of(date(2026, 10, 20)))
    assert (period.first_day, period.end_day) == (date(2026, 10, 15), date(2026, 11, 15))
    got = [
        (line.role, round_money(line.amount, "USD", RoundingMode.HALF_UP))
        for line in fixed_fee_lines(h, CATALOG, cycle, period)
    ]
    assert got == [
        ("unused", Decimal("-4.52")),
        ("remaining", Decimal("9.03")),
        ("advance", Decimal("20.00")),
    ]


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([{"action": "cancel", "day": "2026-10-01"}], "exactly one start"),
        (
            [start("2026-10-05"), {"action": "change_seats", "day": "2026-10-01", "seats": 2}],
            "date order",
        ),
        ([start("2026-10-01"), {"action": "resume", "day": "2026-10-02"}], "without a pause"),
        ([start("2026-10-01"), {"action": "change_plan", "day": "2026-10-02"}], "needs a plan"),
        (
            [start("2026-10-01"), {"action": "cancel", "day": "2026-10-02"}, start("2026-11-01")],
            "nothing can follow a cancel",
        ),
        (
            [start("2026-10-01"), {"action": "pause", "day": "2026-10-02", "timing": "immediate"}],
            "only change_plan and cancel take a timing",
        ),
    ],
)
def test_incoherent_histories_are_refused(changes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        history(*changes)


def test_unknown_plans_and_mixed_currencies_are_refused() -> None:
    h = history(
        start("2026-10-01"),
        {"action": "change_plan", "day": "2026-10-02", "plan": "euro"},
        {"action": "change_plan", "day": "2026-10-03", "plan": "gold"},
    )
    with pytest.raises(LifecycleError, match=r"'gold' is not in the catalog.*EUR, USD"):
        timeline(h, CATALOG, CYCLE)


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

days_in = st.integers(min_value=1, max_value=27)


@settings(max_examples=120, deadline=None, database=None)
@given(cuts=st.lists(days_in, min_size=1, max_size=5, unique=True), timing=st.booleans())
def test_prorated_pieces_of_a_split_period_add_up_to_the_full_price(
    cuts: list[int], timing: bool
) -> None:
    # Moves between two plans at the same price split November into pieces; each piece
    # is rounded on its own, so together they are within one cent per split of 100.00.
    plans = ["plan_a", "plan_a_renamed"]
    changes: list[dict[str, Any]] = [start("2026-11-01", "plan_a")]
    for n, day in enumerate(sorted(cuts)):
        on = f"2026-11-{day + 1:02d}"
        change = {"action": "change_plan", "day": on, "plan": plans[(n + 1) % 2]}
        changes.append(change | ({"timing": "immediate"} if timing else {}))
    lines = lines_of(history(*changes), month(2026, 11))
    assert len(lines) == len(changes)  # one arrears line per piece
    exact = sum((line.amount for line in lines), Decimal(0))
    assert abs(exact - Decimal(100)) < Decimal("1e-25")
    rounded = sum(round_money(line.amount, "EUR", RoundingMode.HALF_UP) for line in lines)
    assert abs(rounded - Decimal("100.00")) <= Decimal("0.01") * (len(lines) - 1)


@settings(max_examples=60, deadline=None, database=None)
@given(day=st.integers(min_value=1, max_value=30), plan=st.sampled_from(["plus", "team"]))
def test_an_upgrade_and_a_downgrade_back_on_the_same_day_net_to_zero(day: int, plan: str) -> None:
    on = f"2026-11-{day:02d}"
    h = history(
        start("2026-10-01"),
        {"action": "change_plan", "day": on, "plan": plan, "timing": "immediate"},
        {"action": "change_plan", "day": on, "plan": "basic", "timing": "immediate"},
    )
    assert lines_of(h, month(2026, 11)) == lines_of(history(start("2026-10-01")), month(2026, 11))


change_strategy = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["change_plan", "change_seats", "pause", "resume", "cancel"]),
        "offset": st.integers(min_value=0, max_value=80),
        "plan": st.sampled_from(["basic", "plus", "team"]),
        "seats": st.integers(1, 9),
        "timing": st.sampled_from(["immediate", "period_end"]),
    }
)


def _random_history(first: int, trial: int, raw: list[dict[str, Any]]) -> History:
    changes: list[dict[str, Any]] = [
        start((date(2026, 9, 1) + timedelta(days=first)).isoformat(), "team", trial_days=trial)
    ]
    paused = False
    on = date(2026, 9, 1) + timedelta(days=first)
    for item in sorted(raw, key=lambda c: c["offset"]):
        on = max(on, date(2026, 9, 1) + timedelta(days=first + item["offset"]))
        action = item["action"]
        if (action == "pause" and paused) or (action == "resume" and not paused):
            continue
        change: dict[str, Any] = {"action": action, "day": on.isoformat()}
        if action == "change_plan":
            change |= {"plan": item["plan"], "timing": item["timing"]}
        elif action == "change_seats":
            change["seats"] = item["seats"]
        elif action == "cancel":
            change["timing"] = item["timing"]
        paused = action == "pause" or (paused and action != "resume")
        changes.append(change)
        if action == "cancel":
            break
    return history(*changes)


@settings(max_examples=120, deadline=None, database=None)
@given(
    first=st.integers(0, 40),
    trial=st.sampled_from([0, 0, 7, 30]),
    raw=st.lists(change_strategy, max_size=6),
)
def test_every_period_is_billed_exactly_once_across_invoices(
    first: int, trial: int, raw: list[dict[str, Any]]
) -> None:
    # For any history, what the invoices bill for a month (in advance on the invoice
    # before, settled on its own) equals what the month actually cost.
    h = _random_history(first, trial, raw)
    actual = timeline(h, CATALOG, CYCLE)
    for number in (10, 11, 12):
        period = month(2026, number)
        before = month(2026, number - 1)
        billed = sum(
            (line.amount for line in lines_of(h, before) if line.role == "advance"), Decimal(0)
        )
        settled = sum(
            (line.amount for line in lines_of(h, period) if line.role in ("unused", "remaining")),
            Decimal(0),
        )
        cost = Decimal(0)
        for segment in actual:
            first_day = max(segment.start, period.first_day)
            end_day = period.end_day if segment.end is None else min(segment.end, period.end_day)
            if first_day >= end_day or segment.state.status != "active":
                continue
            days = Decimal((end_day - first_day).days) / Decimal(period.days)
            for _, charge in CATALOG.plan_charges(segment.state.plan):
                per_seat = charge.id == "seats"
                price = charge.unit_price if per_seat else charge.amount  # type: ignore[attr-defined]
                cost += price * (segment.state.seats if per_seat else 1) * days
        assert abs(billed + settled - cost) < Decimal("1e-20"), (period, h)


# --------------------------------------------------------------------------------------
# In a rating
# --------------------------------------------------------------------------------------


def test_rate_bills_fixed_fees_from_histories_and_keeps_plain_subscriptions_as_before() -> None:
    upgraded = History.model_validate(
        {
            "subscription_id": "S-UP",
            "changes": [
                start("2026-10-01"),
                {"action": "change_plan", "day": "2026-11-16", "plan": "plus"},
            ],
        }
    )
    upcoming = History.model_validate(
        {"subscription_id": "S-NEW", "changes": [start("2026-12-01", "team", seats=3)]}
    )
    subs = subscription_frame(
        [
            {
                "subscription_id": "S-UP",
                "account_id": "A",
                "plan_id": "plus",
                "start_date": date(2026, 10, 1),
                "end_date": None,
            },
            {
                "subscription_id": "S-NEW",
                "account_id": "B",
                "plan_id": "team",
                "start_date": date(2026, 12, 1),
                "end_date": None,
                "quantity": 3,
            },
            {
                "subscription_id": "S-PLAIN",
                "account_id": "C",
                "plan_id": "basic",
                "start_date": date(2026, 11, 11),
                "end_date": None,
            },
        ]
    )
    result = rate(
        usage_frame([]),
        subs,
        CATALOG,
        BillingPeriod.parse("2026-11"),
        histories={"S-UP": upgraded, "S-NEW": upcoming},
    )
    got: dict[tuple[str, str], Decimal] = {}
    for row in result.lines.filter(pl.col("charge_kind") == "recurring").iter_rows(named=True):
        role = row["line_id"].split(":")[2] if row["subscription_id"] != "S-PLAIN" else "plain"
        key = (row["subscription_id"], role)
        got[key] = got.get(key, Decimal(0)) + row["amount"]
    # S-UP: the Stripe case above. S-NEW starts December 1: billed in advance now,
    # 49.00 + 3 x 14.50 = 92.50. S-PLAIN has no history: November 11-30, 20/30 x 10.00
    assert got == {
        ("S-UP", "unused"): Decimal("-5.00"),
        ("S-UP", "remaining"): Decimal("10.00"),
        ("S-UP", "advance"): Decimal("20.00"),
        ("S-NEW", "advance"): Decimal("92.50"),
        ("S-PLAIN", "plain"): Decimal("6.67"),
    }
    credit = result.lines.filter(pl.col("amount") < 0).row(0, named=True)
    details = json.loads(credit["details"])
    assert sum(Decimal(d["amount"]) for d in details) == Decimal(credit["precise_amount"])
    assert details[0]["service"] == "2026-11-16 to 2026-11-30"
    assert credit["description"].startswith("Unused time on Basic: Subscription")


def test_histories_stored_on_subscription_rows_drive_rating_and_leakage() -> None:
    from validation.leakage import detect_leakage

    trial = History.model_validate(
        {"subscription_id": "S-T", "changes": [start("2026-11-01", "team", trial_days=61)]}
    )
    changed = History.model_validate(
        {
            "subscription_id": "S-C",
            "changes": [
                start("2026-10-01", "basic"),
                {"action": "change_plan", "day": "2026-11-20", "plan": "team", "seats": 2},
            ],
        }
    )
    subs = subscription_frame(
        [
            {
                "subscription_id": "S-T",
                "account_id": "T",
                "plan_id": "team",
                "start_date": date(2026, 11, 1),
                "end_date": None,
                "history": trial.model_dump_json(),
            },
            {
                "subscription_id": "S-C",
                "account_id": "C",
                "plan_id": "basic",
                "start_date": date(2026, 10, 1),
                "end_date": None,
                "history": changed.model_dump_json(),
            },
        ]
    )
    november = BillingPeriod.parse("2026-11")
    result = rate(usage_frame([]), subs, CATALOG, november)
    roles = {
        (row["subscription_id"], row["line_id"].split(":")[2], row["plan_id"])
        for row in result.lines.iter_rows(named=True)
    }
    # S-T is in its trial all of November and December: no fixed fee, and no finding.
    # S-C moved to Team (2 seats) on November 20: Basic's unused days are credited and
    # Team's charged, then December in advance on Team.
    assert roles == {
        ("S-C", "unused", "basic"),
        ("S-C", "remaining", "team"),
        ("S-C", "advance", "team"),
    }
    findings = detect_leakage(result, subs, CATALOG, november)
    assert "missing_recurring_charge" not in findings["rule"].to_list()
    # Without its history the same trial subscription would have been billed: the plain
    # rating prorates it from November 1.
    plain = rate(usage_frame([]), subs.with_columns(history=None), CATALOG, november)
    assert "S-T" in plain.lines["subscription_id"].to_list()


# --------------------------------------------------------------------------------------
# Plans on their own cycle (quarterly, annual, anniversary), billed by monthly runs
# --------------------------------------------------------------------------------------


def runs(
    h: History, months: list[tuple[int, int]], zone: str = "UTC"
) -> list[list[tuple[str, Decimal]]]:
    cycle = cycle_for(h, CATALOG, zone)
    billed: list[list[tuple[str, Decimal]]] = []
    for year, number in months:
        first = date(year, number, 1)
        end = date(year + (number == 12), number % 12 + 1, 1)
        lines = closing_lines(h, CATALOG, cycle, first, end)
        billed.append(
            [(line.role, round_money(line.amount, "USD", RoundingMode.HALF_UP)) for line in lines]
        )
    return billed


def row(
    plan_id: str,
    start: date,
    end: date | None = None,
    *,
    subscription_id: str = "S",
    history: History | None = None,
) -> dict[str, object]:
    """One subscription row of account A."""
    return {
        "subscription_id": subscription_id,
        "account_id": "A",
        "plan_id": plan_id,
        "start_date": start,
        "end_date": end,
        **({"history": history.model_dump_json()} if history is not None else {}),
    }


def test_a_quarterly_plan_bills_its_first_part_quarter_then_whole_quarters_ahead() -> None:
    # Q1 2026 has 90 days; from February 10 the rest is 50 days: 90.00 x 50/90 = 50.00 on
    # February's invoice; Q2 (90.00) on March's, in advance; nothing in April or May.
    h = history(start("2026-02-10", "quarterly"))
    assert runs(h, [(2026, 1), (2026, 2), (2026, 3), (2026, 4), (2026, 5), (2026, 6)]) == [
        [],
        [("remaining", Decimal("50.00"))],
        [("advance", Decimal("90.00"))],
        [],
        [],
        [("advance", Decimal("90.00"))],
    ]


def test_an_annual_anniversary_plan_is_credited_in_the_month_it_is_cancelled() -> None:
    # 1,200.00 a year from March 15, 2026, billed on March's invoice. Cancelled at once on
    # September 15: 181 of the year's 365 days unused, 1,200.00 x 181/365 = 595.07, on
    # September's invoice, not the year's end.
    h = history(
        start("2026-03-15", "annual"),
        {"action": "cancel", "day": "2026-09-15", "timing": "immediate"},
    )
    billed = runs(h, [(2026, m) for m in range(3, 13)] + [(2027, m) for m in range(1, 4)])
    assert billed[0] == [("advance", Decimal("1200.00"))]
    assert billed[6] == [("unused", Decimal("-595.07"))]
    assert all(lines == [] for n, lines in enumerate(billed) if n not in (0, 6))


def test_plans_on_different_cycles_cannot_share_a_history() -> None:
    h = history(
        start("2026-01-01", "quarterly"),
        {"action": "change_plan", "day": "2026-02-01", "plan": "annual"},
    )
    with pytest.raises(LifecycleError, match="different cycles"):
        timeline(h, CATALOG, CYCLE)


quarter_change = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["change_plan", "change_seats", "pause", "resume", "cancel"]),
        "offset": st.integers(min_value=0, max_value=300),
        "plan": st.sampled_from(["quarterly", "quarterly_plus"]),
        "seats": st.integers(1, 9),
        "timing": st.sampled_from(["immediate", "period_end"]),
    }
)


def _quarterly_history(first: int, raw: list[dict[str, Any]]) -> History:
    """A quarterly history starting `first` days into 2026 with `raw` changes after it."""
    changes: list[dict[str, Any]] = [
        start((date(2026, 1, 1) + timedelta(days=first)).isoformat(), "quarterly_plus", seats=2)
    ]
    paused, on = False, date(2026, 1, 1) + timedelta(days=first)
    for item in sorted(raw, key=lambda c: c["offset"]):
        on = max(on, date(2026, 1, 1) + timedelta(days=first + item["offset"] % 150))
        action = item["action"]
        if (action == "pause" and paused) or (action == "resume" and not paused):
            continue
        change: dict[str, Any] = {"action": action, "day": on.isoformat()}
        if action == "change_plan":
            change |= {"plan": item["plan"], "timing": item["timing"]}
        elif action == "change_seats":
            change["seats"] = item["seats"]
        elif action == "cancel":
            change["timing"] = item["timing"]
        paused = action == "pause" or (paused and action != "resume")
        changes.append(change)
        if action == "cancel":
            break
    return history(*changes)


CANCEL_AT_QUARTER_END = {
    "action": "cancel",
    "plan": "quarterly",
    "seats": 1,
    "timing": "period_end",
}

# December 2025 (which bills Q1 in advance) to January 2027 (which settles Q4)
QUARTER_RUNS = [date(2025, 12, 1), *(date(2026, m, 1) for m in range(1, 13)), date(2027, 1, 1)]


def _assert_each_quarter_billed_its_cost(
    h: History, cycle: BillingCycle, billed: dict[date, Decimal]
) -> None:
    """`billed` (by the first day of the quarter a line serves) is what each quarter of
    2026 actually cost, to the last decimal."""
    actual = timeline(h, CATALOG, cycle)
    for quarter in cycle.periods_overlapping(date(2026, 1, 1), date(2027, 1, 1)):
        cost = Decimal(0)
        for segment in _clip_for_test(actual, quarter.first_day, quarter.end_day):
            days = Decimal((segment[1] - segment[0]).days) / Decimal(quarter.days)
            state = segment[2]
            for _, charge in CATALOG.plan_charges(state.plan):
                per_seat = charge.id == "seats"
                price = charge.unit_price if per_seat else charge.amount  # type: ignore[attr-defined]
                cost += price * (state.seats if per_seat else 1) * days
        assert abs(billed.get(quarter.first_day, Decimal(0)) - cost) < Decimal("1e-20"), (
            quarter,
            h,
        )


@settings(max_examples=60, deadline=None, database=None)
@given(first=st.integers(0, 200), raw=st.lists(quarter_change, max_size=5))
def test_monthly_runs_bill_every_quarter_exactly_once(
    first: int, raw: list[dict[str, Any]]
) -> None:
    # Over the monthly runs, what all invoices bill for each quarter of 2026 adds up to
    # what it actually cost, however its changes fell.
    h = _quarterly_history(first, raw)
    cycle = cycle_for(h, CATALOG)
    billed: dict[date, Decimal] = {}
    for first_day in QUARTER_RUNS:
        end = BillingPeriod.parse(f"{first_day:%Y-%m}").end
        for line in closing_lines(h, CATALOG, cycle, first_day, end):
            starts = cycle.period_of(cycle.start_of(line.first_day)).first_day
            billed[starts] = billed.get(starts, Decimal(0)) + line.amount
    _assert_each_quarter_billed_its_cost(h, cycle, billed)


@settings(max_examples=25, deadline=None, database=None)
@given(first=st.integers(0, 200), raw=st.lists(quarter_change, max_size=5))
# cancelled on April 11 at the end of Q2: the row ends on May 1, the service on July 1
@example(first=0, raw=[{**CANCEL_AT_QUARTER_END, "offset": 100}])
def test_monthly_runs_bill_every_quarter_of_an_imported_history_exactly_once(
    first: int, raw: list[dict[str, Any]]
) -> None:
    # As above, through `rate` and the subscription row `import --histories-file` writes.
    # That row ends a cancellation at the quarter's end with the cancel's calendar month,
    # before the service ends: the runs after it still bill the quarter's arrears.
    from infra.directory import read_histories

    h = _quarterly_history(first, raw)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "histories.yaml"
        path.write_text(json.dumps([{"account_id": "Q", **h.model_dump(mode="json")}]))
        subs = read_histories(path)
    cycle = cycle_for(h, CATALOG)
    billed: dict[date, Decimal] = {}
    for first_day in QUARTER_RUNS:
        result = rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse(f"{first_day:%Y-%m}"))
        for line_id, precise in result.lines.select("line_id", "precise_amount").iter_rows():
            # <subscription>:<charge>:<role>:<plan>:<first day>:<end day>:<seats>
            served = date.fromisoformat(line_id.split(":")[4])
            starts = cycle.period_of(cycle.start_of(served)).first_day
            billed[starts] = billed.get(starts, Decimal(0)) + Decimal(precise)
    _assert_each_quarter_billed_its_cost(h, cycle, billed)


def _clip_for_test(segments: list[Any], first: date, end: date) -> list[tuple[date, date, Any]]:
    found = []
    for segment in segments:
        a = max(segment.start, first)
        b = end if segment.end is None else min(segment.end, end)
        if a < b and segment.state.status == "active":
            found.append((a, b, segment.state))
    return found


def test_a_plain_subscription_on_a_quarterly_plan_is_billed_on_its_own_cycle() -> None:
    from validation.leakage import detect_leakage

    subs = subscription_frame(
        [
            {
                "subscription_id": "S-Q",
                "account_id": "Q",
                "plan_id": "quarterly",
                "start_date": date(2026, 2, 10),
                "end_date": None,
            }
        ]
    )
    # February: the rest of Q1, 50/90 x 90.00 = 50.00; April: nothing (Q2 was billed in
    # advance in March), and no finding about a missing recurring charge either.
    february = rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse("2026-02"))
    assert february.lines["amount"].to_list() == [Decimal("50.00")]
    april_period = BillingPeriod.parse("2026-04")
    april = rate(usage_frame([]), subs, CATALOG, april_period)
    assert april.lines.is_empty()
    assert (
        "missing_recurring_charge"
        not in detect_leakage(april, subs, CATALOG, april_period)["rule"].to_list()
    )


def test_a_reversal_and_a_new_charge_for_the_same_days_are_separate_lines() -> None:
    from validation.schemas import full_depth, rated_lines_schema

    # Billing day 15: seats 5 -> 8 on October 20 was settled in October; 8 -> 10 on
    # November 5 makes November reverse part of it and charge anew from October 20.
    h = History.model_validate(
        {
            "subscription_id": "S-A",
            "changes": [
                start("2026-10-15", "anniversary_seats", seats=5),
                {"action": "change_seats", "day": "2026-10-20", "seats": 8},
                {"action": "change_seats", "day": "2026-11-05", "seats": 10},
            ],
        }
    )
    subs = subscription_frame(
        [
            {
                "subscription_id": "S-A",
                "account_id": "A",
                "plan_id": "anniversary_seats",
                "start_date": date(2026, 10, 15),
                "end_date": None,
                "history": h.model_dump_json(),
            }
        ]
    )
    lines = rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse("2026-11")).lines
    assert lines["line_id"].n_unique() == lines.height > 1
    with full_depth():
        rated_lines_schema().validate(lines, lazy=True)


def test_an_upgrade_replaces_a_downgrade_still_waiting_for_the_period_end() -> None:
    # Plus -> Basic (a downgrade) asked on Nov 10 waits for Dec 1. Plus -> Team on Nov 20
    # is an upgrade (49.00 + 14.50 >= 20.00): immediate, and the pending Basic is dropped.
    h = history(
        start("2026-10-01", "plus"),
        {"action": "change_plan", "day": "2026-11-10", "plan": "basic"},
        {"action": "change_plan", "day": "2026-11-20", "plan": "team"},
    )
    plans = [(s.start, s.state.plan) for s in timeline(h, CATALOG, CYCLE)]
    assert plans == [(date(2026, 10, 1), "plus"), (date(2026, 11, 20), "team")]
    # What November's invoice knew on the 15th: the downgrade, still pending.
    known = timeline(h, CATALOG, CYCLE, known_on=date(2026, 11, 15))
    assert [(s.start, s.state.plan) for s in known] == [
        (date(2026, 10, 1), "plus"),
        (date(2026, 12, 1), "basic"),
    ]


def test_a_second_downgrade_replaces_the_first() -> None:
    h = history(
        start("2026-10-01", "team"),
        {"action": "change_plan", "day": "2026-11-10", "plan": "plus"},
        {"action": "change_plan", "day": "2026-11-12", "plan": "basic"},
    )
    plans = [(s.start, s.state.plan) for s in timeline(h, CATALOG, CYCLE)]
    assert plans == [(date(2026, 10, 1), "team"), (date(2026, 12, 1), "basic")]


def test_a_change_after_the_pending_one_took_effect_replaces_nothing() -> None:
    h = history(
        start("2026-10-01", "plus"),
        {"action": "change_plan", "day": "2026-11-10", "plan": "basic"},  # from Dec 1
        {"action": "change_plan", "day": "2026-12-05", "plan": "plus"},  # upgrade, Dec 5
    )
    plans = [(s.start, s.state.plan) for s in timeline(h, CATALOG, CYCLE)]
    assert plans == [
        (date(2026, 10, 1), "plus"),
        (date(2026, 12, 1), "basic"),
        (date(2026, 12, 5), "plus"),
    ]


def test_arrears_of_a_quarter_cut_short_are_billed_when_the_service_ends() -> None:
    # Quarterly Plus from October 1 (Q4: 92 days), 1 seat, cancelled at once on November
    # 16. Support (15.00 a quarter, in arrears) ran 46 days: 15.00 x 46/92 = 7.50, due on
    # November's invoice, when the service ends, not on December's with the quarter.
    # The fees in advance (180.00 + 30.00), billed ahead on September's invoice, are
    # credited for the 46 unused days: -(180.00 + 30.00) x 46/92 = -90.00 - 15.00.
    h = history(
        start("2026-10-01", "quarterly_plus", seats=1),
        {"action": "cancel", "day": "2026-11-16", "timing": "immediate"},
    )
    september, october, november, december = runs(h, [(2026, m) for m in (9, 10, 11, 12)])
    assert sorted(september) == [("advance", Decimal("30.00")), ("advance", Decimal("180.00"))]
    assert october == []
    assert sorted(november) == [
        ("arrears", Decimal("7.50")),
        ("unused", Decimal("-90.00")),
        ("unused", Decimal("-15.00")),
    ]
    assert december == []


def test_arrears_of_a_service_ending_on_a_runs_first_day_are_billed_by_that_run_once() -> None:
    # Quarterly Plus from October 1 (Q4: 92 days), cancelled at once on December 1: its
    # last day is November 30, but November's run knows only what happened by then.
    # December's run learns of the end and bills Support's 61 of 92 days in arrears:
    # 15.00 x 61/92 = 9.9456.. -> 9.95. January's run bills nothing more.
    h = history(
        start("2026-10-01", "quarterly_plus", seats=1),
        {"action": "cancel", "day": "2026-12-01", "timing": "immediate"},
    )
    november, december, january = runs(h, [(2026, 11), (2026, 12), (2027, 1)])
    assert november == []
    assert [amount for role, amount in december if role == "arrears"] == [Decimal("9.95")]
    assert january == []


def test_a_quarterly_row_ending_on_a_runs_first_day_is_settled_by_that_run() -> None:
    # A plain row: Quarterly Plus from October 1 (Q4: 92 days), 1 seat, ending December 1.
    # November's run does not know of the end yet. December's run no longer lists the
    # row as active, but settles it: Support in arrears 15.00 x 61/92 = 9.95, and the
    # unused December days of the fees billed ahead: -180.00 x 31/92 = -60.65 and
    # -30.00 x 31/92 = -10.11. January's run bills nothing.
    subs = subscription_frame([row("quarterly_plus", date(2026, 10, 1), date(2026, 12, 1))])

    def billed(month: str) -> list[tuple[str, int]]:
        lines = rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse(month)).lines
        return sorted(lines.select("charge_id", "amount_minor").rows())

    assert billed("2026-11") == []
    assert billed("2026-12") == [("fee", -6065), ("seats", -1011), ("support", 995)]
    assert billed("2027-01") == []


def test_a_stored_history_without_an_end_is_ended_by_its_row() -> None:
    # A quarterly row moved to Quarterly Plus on October 15 (what `migrate-plan` stores:
    # no cancellation in the history), whose row ends on December 1. December's run
    # settles Q4 to December 1: the fees billed ahead on October 15 are credited for
    # the rest of the quarter, Support is billed in arrears to December 1, and no later
    # quarter is billed in advance, then or after.
    history = migrate_history(
        None, "Q", date(2026, 7, 1), "quarterly", 1, "quarterly_plus", date(2026, 10, 15)
    )
    subs = subscription_frame(
        [
            row(
                "quarterly",
                date(2026, 7, 1),
                date(2026, 12, 1),
                subscription_id="Q",
                history=history,
            )
        ]
    )
    months = ["2026-11", "2026-12", "2027-01", "2027-03"]
    billed = {
        m: rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse(m)).lines["line_id"].to_list()
        for m in months
    }
    assert billed["2026-11"] == billed["2027-01"] == billed["2027-03"] == []
    assert not [line for line in billed["2026-12"] if ":advance:" in line]
    assert "Q:support:arrears:quarterly_plus:2026-10-15:2026-12-01:1" in billed["2026-12"]
    assert "Q:fee:unused:quarterly_plus:2026-10-15:2027-01-01:1" in billed["2026-12"]


def test_a_subscription_id_on_two_rows_stops_the_rating() -> None:
    # The ledger keys subscriptions by id; a frame with one id on two rows (an ended row
    # and a restart) would be billed from two histories, so rating refuses it.
    subs = subscription_frame(
        [
            row("quarterly", date(2026, 10, 1), date(2026, 12, 1)),
            row("quarterly", date(2027, 1, 1)),
        ]
    )
    with pytest.raises(RatingError, match="subscription S is on 2 rows"):
        rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse("2026-12"))


def test_a_credit_for_unused_time_is_the_exact_negative_of_what_was_charged() -> None:
    # May's run charges 180.00 x 58/91 for May 4 to June 30 (a factor of 30 decimals, so
    # an amount of 33 digits); June's run credits it all back when the service ends on
    # June 1. The two must cancel to the last digit: a negation rounded to 28 digits
    # would leave a remainder.
    h = history(
        start("2026-05-04", "quarterly_plus", seats=2),
        {"action": "cancel", "day": "2026-06-01", "timing": "immediate"},
    )
    cycle = cycle_for(h, CATALOG)
    may = closing_lines(h, CATALOG, cycle, date(2026, 5, 1), date(2026, 6, 1))
    june = closing_lines(h, CATALOG, cycle, date(2026, 6, 1), date(2026, 7, 1))
    charged = {line.charge_key: line.amount for line in may if line.role == "remaining"}
    credited = {line.charge_key: line.amount for line in june if line.role == "unused"}
    assert len(str(charged["fee"]).replace(".", "")) > 28
    assert {key: charged[key] + credited[key] for key in charged} == {
        "fee": Decimal(0),
        "seats": Decimal(0),
    }


def test_a_run_bills_the_arrears_of_a_quarterly_subscription_in_its_last_month() -> None:
    # The same subscription as a plain row: Quarterly Plus from October 1, ending on
    # November 16 (its last day is the 15th). November's run bills Support's 46 of 92
    # days in arrears, 7.50; December's run no longer sees the subscription.
    subs = subscription_frame(
        [
            {
                "subscription_id": "S-Q",
                "account_id": "A",
                "plan_id": "quarterly_plus",
                "start_date": date(2026, 10, 1),
                "end_date": date(2026, 11, 16),
            }
        ]
    )
    november = rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse("2026-11"))
    support = november.lines.filter(pl.col("charge_id") == "support")
    assert support["amount_minor"].to_list() == [750]
    december = rate(usage_frame([]), subs, CATALOG, BillingPeriod.parse("2026-12"))
    assert december.lines.filter(pl.col("charge_id") == "support").height == 0


def test_a_seat_change_replaces_the_seats_a_pending_downgrade_would_set() -> None:
    # Team (10 seats) -> Plus with 5 seats, asked on Nov 10, waits for Dec 1; on Nov 20
    # the customer goes to 8 seats: Plus from Dec 1 keeps the 8.
    h = history(
        start("2026-10-01", "team", seats=10),
        {"action": "change_plan", "day": "2026-11-10", "plan": "plus", "seats": 5},
        {"action": "change_seats", "day": "2026-11-20", "seats": 8},
    )
    states = [(s.start, s.state.plan, s.state.seats) for s in timeline(h, CATALOG, CYCLE)]
    assert states == [
        (date(2026, 10, 1), "team", 10),
        (date(2026, 11, 20), "team", 8),
        (date(2026, 12, 1), "plus", 8),
    ]


@pytest.mark.parametrize("timing", ["immediate", "period_end"])
def test_a_catalog_migration_keeps_the_customers_pending_downgrade(timing: str) -> None:
    from pricing_rules.lifecycle import migrate_history

    own = history(
        start("2026-10-01", "plus"),
        {"action": "change_plan", "day": "2026-11-10", "plan": "basic"},  # from Dec 1
    )
    # Plus moves to a new version of the same price on Nov 15, at once or from Dec 1.
    moved = migrate_history(
        own,
        "S1",
        date(2026, 10, 1),
        "plus",
        1,
        "plus",
        date(2026, 11, 15),
        timing,  # type: ignore[arg-type]
    )
    plans = [(s.start, s.state.plan) for s in timeline(moved, CATALOG, CYCLE)]
    assert plans[-1] == (date(2026, 12, 1), "basic")


def test_a_migration_after_a_same_day_change_moves_the_plan_it_changed_to() -> None:
    from pricing_rules.lifecycle import migrate_history

    own = history(
        start("2026-10-01", "basic"),
        {"action": "change_plan", "day": "2026-11-15", "plan": "plus"},  # an upgrade, now
    )
    moved = migrate_history(own, "S1", date(2026, 10, 1), "basic", 1, "team", date(2026, 11, 15))
    plans = [(s.start, s.state.plan) for s in timeline(moved, CATALOG, CYCLE)]
    assert plans[-1] == (date(2026, 11, 15), "team")


def test_a_change_made_on_the_day_a_pending_one_takes_effect_wins() -> None:
    # Plus -> Basic asked on Nov 10 for Dec 1; on Dec 1 the customer upgrades to Team.
    h = history(
        start("2026-10-01", "plus"),
        {"action": "change_plan", "day": "2026-11-10", "plan": "basic"},
        {"action": "change_plan", "day": "2026-12-01", "plan": "team"},
    )
    assert [(s.start, s.state.plan) for s in timeline(h, CATALOG, CYCLE)][-1] == (
        date(2026, 12, 1),
        "team",
    )
