"""Subscription lifecycle: a history of dated changes priced into one period's fixed fees.

A history lists what happened to one subscription: `start` (plan, seats, optional free
trial days), `change_plan`, `change_seats`, `pause`, `resume` and `cancel`. A change
takes effect at the start of its local day, or, with `timing: period_end`, at the end of
the billing period it falls in. Without a timing, a plan change whose new fixed fees
cost at least the old ones (an upgrade) is immediate and a downgrade waits for the
period end; a cancellation waits for the period end.

The invoice of period P is issued when P closes (the monthly run bills the month
before), so for P it holds:

- fees charged in **arrears**: P as it actually was, one line per segment, each
  prorated;
- fees charged in **advance**: these were billed for P on the previous invoice, as the
  subscription stood when P started. Where P turned out differently (a change during
  P), the unused time of what was billed is credited and the time of what was actually
  used is charged, each its own labelled, prorated line. Then the next period is billed
  in advance, as the subscription stands at its start.

A segment's proration factor is its days (or seconds) inside the period over the
period's days (or seconds): `pricing_rules.cycles.proration_factor`. Trial days and
paused days are not billed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import groupby, pairwise
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pricing_rules import yamltext
from pricing_rules.catalog import Catalog
from pricing_rules.charges import ChargeBase, PricedCharge, model_name, price_charge
from pricing_rules.cycles import BillingCycle, Period, proration_factor
from pricing_rules.money import MONEY_CONTEXT

Action = Literal["start", "change_plan", "change_seats", "pause", "resume", "cancel"]
Timing = Literal["immediate", "period_end"]
Status = Literal["active", "trial", "paused"]
Proration = Literal["day", "second"]


class LifecycleError(ValueError):
    """A history that cannot be priced, with every problem found."""


class Change(BaseModel):
    """One dated change of a subscription."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    day: date
    plan: str | None = None
    seats: int | None = Field(default=None, ge=1)
    timing: Timing | None = None
    trial_days: int = Field(default=0, ge=0)
    # A plan change replaces one still waiting for its period end; a catalog migration
    # (`migrate_history`) does not: the customer's own pending change stands.
    replaces_pending: bool = True


class History(BaseModel):
    """A subscription's changes, oldest first; the first is its `start`.

    >>> History.model_validate({"subscription_id": "S1", "changes": [
    ...     {"action": "start", "day": "2026-10-01", "plan": "pro", "seats": 5},
    ...     {"action": "change_seats", "day": "2026-10-16", "seats": 8}]}).changes[1].seats
    8
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: str = Field(min_length=1)
    changes: list[Change] = Field(min_length=1)
    # The first day of the first period invoiced from this history, for a subscription
    # billed some other way before: the period starting on or before it was not billed in
    # advance, so its invoice charges it whole. None: invoiced this way from the start.
    billing_from: date | None = None

    @model_validator(mode="after")
    def _coherent(self) -> History:
        problems: list[str] = []
        paused = False
        for index, change in enumerate(self.changes):
            where = f"changes[{index}] ({change.action} on {change.day})"
            if (index == 0) != (change.action == "start"):
                problems.append(f"{where}: a history has exactly one start, its first change")
            if index and change.day < self.changes[index - 1].day:
                problems.append(f"{where}: changes must be in date order")
            if index and self.changes[index - 1].action == "cancel":
                problems.append(f"{where}: nothing can follow a cancel")
            if change.action in ("start", "change_plan") and not change.plan:
                problems.append(f"{where}: needs a plan")
            if change.action == "change_seats" and change.seats is None:
                problems.append(f"{where}: needs seats")
            if change.timing is not None and change.action not in ("change_plan", "cancel"):
                problems.append(f"{where}: only change_plan and cancel take a timing")
            if change.trial_days and change.action != "start":
                problems.append(f"{where}: only start takes trial_days")
            if change.action == "pause":
                if paused:
                    problems.append(f"{where}: already paused")
                paused = True
            elif change.action == "resume":
                if not paused:
                    problems.append(f"{where}: resume without a pause")
                paused = False
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def start(self) -> date:
        return self.changes[0].day


def ended_by(history: History, day: date) -> History:
    """The history of a subscription whose row ends on `day`. A history that records its
    own cancellation is kept as it is; one that does not is cancelled at once on `day`,
    and its changes dated after that day are dropped, so nothing past the row's end is
    billed.

    >>> h = History.model_validate({"subscription_id": "S", "changes": [
    ...     {"action": "start", "day": "2026-07-01", "plan": "pro"},
    ...     {"action": "change_plan", "day": "2026-12-15", "plan": "basic"}]})
    >>> [(c.action, str(c.day)) for c in ended_by(h, date(2026, 12, 1)).changes]
    [('start', '2026-07-01'), ('cancel', '2026-12-01')]
    """
    if any(c.action == "cancel" for c in history.changes) or history.start > day:
        return history
    kept = [c for c in history.changes if c.day <= day]
    return History(
        subscription_id=history.subscription_id,
        changes=[*kept, Change(action="cancel", day=day, timing="immediate")],
        billing_from=history.billing_from,
    )


def migrate_history(
    history: History | None,
    subscription_id: str,
    start: date,
    plan: str,
    seats: int,
    to_plan: str,
    day: date,
    timing: Timing = "immediate",
) -> History:
    """The history with a move to `to_plan` on `day` appended (e.g. a new plan version).

    A subscription without a history gets one from its start; the month `day` falls in
    becomes its first invoice from the history (`billing_from`), so that month is split
    at `day` and charged whole on its own invoice. Raises ValueError if `day` is before
    the history's last change.
    """
    move = Change(
        action="change_plan", day=day, plan=to_plan, timing=timing, replaces_pending=False
    )
    if history is None:
        first = Change(action="start", day=start, plan=plan, seats=seats)
        return History(
            subscription_id=subscription_id,
            changes=[first, move],
            billing_from=day.replace(day=1),
        )
    return History.model_validate(
        history.model_dump() | {"changes": [*history.model_dump()["changes"], move.model_dump()]}
    )


def load_history(text: str, source: str = "history") -> History:
    """A history from YAML (`subscription_id` and `changes`; the id may be left out).

    >>> load_history("changes: [{action: start, day: 2026-10-01, plan: pro}]").subscription_id
    'QUOTE'
    """
    try:
        raw = yamltext.load(text)
    except yaml.YAMLError as exc:
        raise LifecycleError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise LifecycleError(f"{source}: must be a mapping with a list of changes")
    raw.setdefault("subscription_id", "QUOTE")
    try:
        return History.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'history'}: {e['msg']}" for e in exc.errors()
        ]
        raise LifecycleError(f"{source}: " + "; ".join(problems)) from exc


@dataclass(frozen=True)
class State:
    plan: str
    seats: int
    status: Status


@dataclass(frozen=True)
class Segment:
    """`[start, end)` in local days (`end=None`: still running) in one state."""

    start: date
    end: date | None
    state: State


Pieces = Callable[[str, str, ChargeBase, date, date], list[tuple[ChargeBase, date, date, bool]]]


def _list_price(
    plan_id: str, key: str, charge: ChargeBase, first: date, end: date
) -> list[tuple[ChargeBase, date, date, bool]]:
    return [(charge, first, end, False)]


@dataclass(frozen=True)
class Pricing:
    """What one subscription's fixed fees are beyond its plans: its own add-ons, and
    `pieces(plan, charge key, charge, first day, end day)`, the prices of a charge over
    those days as (charge, first, end, account price?), split where an account's price
    override starts or ends. By default, the list price throughout."""

    add_ons: tuple[str, ...] = ()
    pieces: Pieces = _list_price


LIST_PRICE = Pricing()


@dataclass(frozen=True)
class ProratedLine:
    """One fixed-fee line of a period: a charge for a segment, or a credit (negative)."""

    plan_id: str
    charge_key: str
    charge: ChargeBase
    role: Literal["arrears", "advance", "unused", "remaining"]
    first_day: date
    end_day: date  # exclusive
    factor: Decimal
    seats: int
    priced: PricedCharge
    account_price: bool = False

    @property
    def amount(self) -> Decimal:
        # copy_negate is exact; unary minus would round to the default 28 digits.
        return self.priced.amount.copy_negate() if self.role == "unused" else self.priced.amount


def check_history(history: History, catalog: Catalog) -> None:
    """Every plan must be in the catalog, and all of them in one currency."""
    plans = [c.plan for c in history.changes if c.plan]
    unknown = sorted({p for p in plans if p not in catalog.plans})
    problems = [f"plan {p!r} is not in the catalog" for p in unknown]
    currencies = {catalog.plans[p].currency for p in plans if p in catalog.plans}
    if len(currencies) > 1:
        problems.append(f"plans are priced in {', '.join(sorted(currencies))}; use one currency")
    cycles = {
        (catalog.plans[p].interval, catalog.plans[p].alignment) for p in plans if p in catalog.plans
    }
    if len(cycles) > 1:
        shown = ", ".join(f"{i} ({a})" for i, a in sorted(cycles))
        problems.append(f"plans bill on different cycles ({shown}); use one")
    if problems:
        raise LifecycleError(f"history {history.subscription_id}: " + "; ".join(problems))


def cycle_for(history: History, catalog: Catalog, timezone: str = "UTC") -> BillingCycle:
    """The billing cycle of a history's plans, anchored on its start, in the account's zone."""
    plan = catalog.plans[next(c.plan for c in history.changes if c.plan)]
    return BillingCycle(
        interval=plan.interval, alignment=plan.alignment, anchor=history.start, timezone=timezone
    )


def _fixed_price(catalog: Catalog, plan_id: str, seats: int) -> Decimal:
    total = Decimal(0)
    for _, charge in catalog.plan_charges(plan_id):
        if charge.kind == "recurring":
            quantity = Decimal(seats) if model_name(type(charge)) == "per_seat" else Decimal(1)
            total += price_charge(charge, quantity).amount
    return total


def _effective_day(
    change: Change, plan: str | None, seats: int, catalog: Catalog, cycle: BillingCycle
) -> date:
    timing = change.timing
    if timing is None and change.action == "cancel":
        timing = "period_end"
    if timing is None and change.action == "change_plan" and plan is not None:
        assert change.plan is not None
        upgrade = _fixed_price(catalog, change.plan, seats) >= _fixed_price(catalog, plan, seats)
        timing = "immediate" if upgrade else "period_end"
    if timing == "period_end":
        return cycle.period_of(cycle.start_of(change.day)).end_day
    return change.day


def first_new_change(old: History | None, new: History) -> date | None:
    """The day of the earliest change one of the histories has and the other has not
    (added, removed or moved): from that day on, invoices issued before may have billed
    the subscription otherwise.

    >>> old = History.model_validate({"subscription_id": "S", "changes": [
    ...     {"action": "start", "day": "2026-09-01", "plan": "pro"}]})
    >>> new = old.model_copy(update={"changes": [*old.changes, Change(
    ...     action="change_seats", day=date(2026, 10, 15), seats=3)]})
    >>> first_new_change(old, new), first_new_change(new, old), first_new_change(new, new)
    (datetime.date(2026, 10, 15), datetime.date(2026, 10, 15), None)
    """
    before = set(old.changes) if old is not None else set()
    days = [change.day for change in before.symmetric_difference(new.changes)]
    return min(days) if days else None


def _event_order(event: tuple[date, int, Change | None]) -> tuple[date, int, int]:
    """Changes taking effect on one day, in the order they were made, except that a
    migration waiting for that period end comes first, so a change the customer asked
    for stands."""
    day, seq, change = event
    deferred_migration = change is not None and not change.replaces_pending and change.day != day
    return day, 0 if deferred_migration else 1, seq


def timeline(
    history: History, catalog: Catalog, cycle: BillingCycle, *, known_on: date | None = None
) -> list[Segment]:
    """The subscription's states over time, oldest first.

    `known_on` keeps only the changes dated on or before that day: what an invoice
    issued that day knew. A plan change made while an earlier one is still waiting for
    its period end replaces it: an upgrade on the 20th drops the downgrade asked for on
    the 10th, and a second downgrade replaces the first. A seat change made meanwhile
    replaces the seats the pending change would set. A catalog migration replaces
    nothing.
    """
    check_history(history, catalog)
    changes = [c for c in history.changes if known_on is None or c.day <= known_on]
    kept: list[tuple[date, int, Change]] = []
    for seq, change in enumerate(changes):
        pending = [k for k in kept if k[0] > change.day and k[2].action == "change_plan"]
        if change.action == "change_plan" and change.replaces_pending:
            kept = [k for k in kept if k not in pending]
        elif change.action == "change_seats":  # the seats a pending change would set
            kept = [
                (k[0], k[1], k[2].model_copy(update={"seats": None})) if k in pending else k
                for k in kept
            ]
        plan = next((k[2].plan for k in reversed(kept) if k[2].plan), None)
        seats = next((k[2].seats for k in reversed(kept) if k[2].seats), 1)
        kept.append((_effective_day(change, plan, seats, catalog, cycle), seq, change))
    events: list[tuple[date, int, Change | None]] = list(kept)
    trial_end: date | None = None
    if changes and changes[0].trial_days:
        trial_end = date.fromordinal(changes[0].day.toordinal() + changes[0].trial_days)
        events.append((trial_end, -1, None))  # the trial ends: only the status changes
    events.sort(key=_event_order)

    segments: list[Segment] = []
    plan, seats, paused, ended = None, 1, False, False
    state: State | None = None
    since: date | None = None
    for day, group in groupby(events, key=lambda e: e[0]):
        for _, _, effective in group:
            if effective is None:
                continue
            ended = ended or effective.action == "cancel"
            plan = effective.plan or plan
            seats = effective.seats or seats
            paused = effective.action == "pause" or (paused and effective.action != "resume")
        trial = trial_end is not None and day < trial_end
        status: Status = "paused" if paused else "trial" if trial else "active"
        new = None if ended or plan is None else State(plan, seats, status)
        if state is not None and since is not None and since < day:
            segments.append(Segment(since, day, state))
        state, since = new, day
    if state is not None and since is not None:
        segments.append(Segment(since, None, state))
    merged: list[Segment] = []
    for segment in segments:
        if merged and merged[-1].state == segment.state and merged[-1].end == segment.start:
            merged[-1] = Segment(merged[-1].start, segment.end, segment.state)
        else:
            merged.append(segment)
    return merged


def _clip(segments: Iterable[Segment], period: Period) -> list[Segment]:
    clipped = []
    for s in segments:
        first = max(s.start, period.first_day)
        end = period.end_day if s.end is None else min(s.end, period.end_day)
        if first < end:
            clipped.append(Segment(first, end, s.state))
    return clipped


def _items(
    state: State | None, catalog: Catalog, timing: str, pricing: Pricing
) -> dict[tuple[str, str], tuple[ChargeBase, int]]:
    """The fixed fees a state is billed (its plan's, its bundled add-ons' and the
    subscription's own add-ons'), keyed (plan, charge key), with their seats."""
    if state is None or state.status != "active":
        return {}
    found: dict[tuple[str, str], tuple[ChargeBase, int]] = {}
    for key, charge in catalog.plan_charges(state.plan, pricing.add_ons):
        if charge.kind == "recurring" and getattr(charge, "timing", "advance") == timing:
            per_seat = model_name(type(charge)) == "per_seat"
            found[(state.plan, key)] = (charge, state.seats if per_seat else 1)
    return found


def billable_days(
    history: History,
    catalog: Catalog,
    cycle: BillingCycle,
    first_day: date,
    end_day: date,
    plan: str | None = None,
) -> int:
    """The days of `[first_day, end_day)` the subscription was active (on `plan`, when
    given), as known by the last of them: trial and paused days are not billed, nor is
    anything a commitment or a minimum asks for them.

    >>> from pricing_rules.catalog import parse_catalog
    >>> catalog = parse_catalog("{version: x, metrics: {}, plans: {basic: {name: Basic,"
    ...     " currency: USD, charges: [{id: fee, name: Fee, model: flat, amount: '10'}]}}}")
    >>> history = History.model_validate({"subscription_id": "S", "changes": [
    ...     {"action": "start", "day": "2026-09-10", "plan": "basic", "trial_days": 30},
    ...     {"action": "pause", "day": "2026-10-20"}, {"action": "resume", "day": "2026-10-25"}]})
    >>> billable_days(history, catalog, BillingCycle(), date(2026, 10, 1), date(2026, 11, 1))
    17
    """
    days = 0
    for segment in timeline(history, catalog, cycle, known_on=end_day - timedelta(days=1)):
        first = max(segment.start, first_day)
        end = end_day if segment.end is None else min(segment.end, end_day)
        mine = plan is None or segment.state.plan == plan
        if segment.state.status == "active" and mine and first < end:
            days += (end - first).days
    return days


def _state_on(segments: list[Segment], day: date) -> State | None:
    for s in segments:
        if s.start <= day and (s.end is None or day < s.end):
            return s.state
    return None


def _line(
    role: Literal["arrears", "advance", "unused", "remaining"],
    key: tuple[str, str],
    item: tuple[ChargeBase, int],
    first: date,
    end: date,
    period: Period,
    cycle: BillingCycle,
    by: Proration,
    pricing: Pricing,
) -> list[ProratedLine]:
    """The line of a fee over `[first, end)`, or one per price where an account's price
    starts or ends within those days."""
    listed, seats = item
    lines = []
    for charge, start, stop, account_price in pricing.pieces(*key, listed, first, end):
        factor = proration_factor(period, cycle.start_of(start), cycle.start_of(stop), by)
        priced = price_charge(charge, MONEY_CONTEXT.multiply(Decimal(seats), factor))
        lines.append(
            ProratedLine(
                key[0], key[1], charge, role, start, stop, factor, seats, priced, account_price
            )
        )
    return lines


def fixed_fee_lines(
    history: History,
    catalog: Catalog,
    cycle: BillingCycle,
    period: Period,
    *,
    by: Proration = "day",
    pricing: Pricing = LIST_PRICE,
) -> list[ProratedLine]:
    """The fixed-fee lines of the invoice that closes `period` (see the module text).

    # Stripe's example: 10.00 a month in advance, upgraded to 20.00 halfway through.
    # November has 30 days; the upgrade on the 16th leaves 15 of them:
    # unused 10.00 x 15/30 = -5.00, remaining 20.00 x 15/30 = +10.00; December +20.00
    >>> from pricing_rules.catalog import parse_catalog
    >>> catalog = parse_catalog("{version: x, metrics: {}, plans: {"
    ...     "basic: {name: Basic, currency: USD, charges: [{id: fee, name: Fee, model: flat,"
    ...     " amount: '10'}]}, plus: {name: Plus, currency: USD, charges: [{id: fee,"
    ...     " name: Fee, model: flat, amount: '20'}]}}}")
    >>> history = History.model_validate({"subscription_id": "S", "changes": [
    ...     {"action": "start", "day": "2026-10-01", "plan": "basic"},
    ...     {"action": "change_plan", "day": "2026-11-16", "plan": "plus"}]})
    >>> cycle = BillingCycle()
    >>> november = cycle.period_of(cycle.start_of(date(2026, 11, 1)))
    >>> [(line.role, line.plan_id, f"{line.amount.normalize():f}") for line in
    ...     fixed_fee_lines(history, catalog, cycle, november)]
    [('unused', 'basic', '-5'), ('remaining', 'plus', '10'), ('advance', 'plus', '20')]
    """
    following = cycle.period_of(period.end)
    return settlement_lines(history, catalog, cycle, period, by=by, pricing=pricing) + (
        advance_lines(history, catalog, cycle, following, by=by, pricing=pricing)
    )


def settlement_lines(
    history: History,
    catalog: Catalog,
    cycle: BillingCycle,
    period: Period,
    *,
    by: Proration = "day",
    known_on: date | None = None,
    arrears: bool = True,
    pricing: Pricing = LIST_PRICE,
) -> list[ProratedLine]:
    """What closes `period`: its arrears fees, and credits and charges wherever it turned
    out differently from what was billed for it in advance (as known on `known_on`)."""
    actual = timeline(history, catalog, cycle, known_on=known_on)
    lines: list[ProratedLine] = []
    for segment in _clip(actual, period) if arrears else []:
        for key, item in _items(segment.state, catalog, "arrears", pricing).items():
            end = segment.end or period.end_day
            lines += _line("arrears", key, item, segment.start, end, period, cycle, by, pricing)

    billed = timeline(history, catalog, cycle, known_on=period.first_day)
    if history.billing_from is not None and period.first_day <= history.billing_from:
        billed = []  # the invoice before was not produced from this history
    cuts = sorted(
        {period.first_day, period.end_day}
        | {d for s in [*billed, *actual] for d in (s.start, s.end) if d is not None}
    )
    days = [d for d in cuts if period.first_day <= d <= period.end_day]
    # Runs of days where what was billed differs from what happened, merged.
    spans: list[tuple[date, date, State | None, State | None]] = []
    for first, end in pairwise(days):
        was, now = _state_on(billed, first), _state_on(actual, first)
        if spans and spans[-1][1] == first and spans[-1][2:] == (was, now):
            spans[-1] = (spans[-1][0], end, was, now)
        else:
            spans.append((first, end, was, now))
    for first, end, was, now in spans:
        before = _items(was, catalog, "advance", pricing)
        after = _items(now, catalog, "advance", pricing)
        for key, item in before.items():
            if after.get(key) != item:
                lines += _line("unused", key, item, first, end, period, cycle, by, pricing)
        for key, item in after.items():
            if before.get(key) != item:
                lines += _line("remaining", key, item, first, end, period, cycle, by, pricing)
    return lines


def advance_lines(
    history: History,
    catalog: Catalog,
    cycle: BillingCycle,
    period: Period,
    *,
    by: Proration = "day",
    pricing: Pricing = LIST_PRICE,
) -> list[ProratedLine]:
    """The fees in advance for `period`, as the subscription stands on its first day."""
    ahead = timeline(history, catalog, cycle, known_on=period.first_day)
    lines: list[ProratedLine] = []
    for segment in _clip(ahead, period):
        for key, item in _items(segment.state, catalog, "advance", pricing).items():
            end = segment.end or period.end_day
            lines += _line("advance", key, item, segment.start, end, period, cycle, by, pricing)
    return lines


def _arrears_only(
    history: History,
    catalog: Catalog,
    cycle: BillingCycle,
    period: Period,
    by: Proration,
    known_on: date,
    pricing: Pricing,
) -> list[ProratedLine]:
    every = settlement_lines(
        history, catalog, cycle, period, by=by, known_on=known_on, pricing=pricing
    )
    return [line for line in every if line.role == "arrears"]


def _settled_since(
    history: History,
    catalog: Catalog,
    cycle: BillingCycle,
    period: Period,
    by: Proration,
    before: date,
    now: date,
    pricing: Pricing,
) -> list[ProratedLine]:
    """Credits and charges for `period` known by `now` and not by `before`: earlier runs
    settled the rest. A span settled before that changed is reversed (a charge becomes a
    credit for the same days and the other way round)."""
    done, due = (
        settlement_lines(
            history, catalog, cycle, period, by=by, known_on=known, arrears=False, pricing=pricing
        )
        for known in (before, now)
    )
    flipped: dict[str, Literal["unused", "remaining"]] = {
        "remaining": "unused",
        "unused": "remaining",
    }
    new = [line for line in due if line not in done]
    reversed_ = [
        ProratedLine(**{**line.__dict__, "role": flipped[line.role]})
        for line in done
        if line not in due
    ]
    return reversed_ + new


def closing_lines(
    history: History,
    catalog: Catalog,
    cycle: BillingCycle,
    first_day: date,
    end_day: date,
    *,
    by: Proration = "day",
    pricing: Pricing = LIST_PRICE,
) -> list[ProratedLine]:
    """The fixed-fee lines of the invoice that closes the days `[first_day, end_day)` (a
    monthly run), whatever the subscription's own cycle: every cycle period starting in
    `(first_day, end_day]` is billed in advance, and every period overlapping the days is
    settled as far as the changes known by `end_day` go.

    A period that began before this run is settled on every run for the changes that
    became known during it, so a credit for a cancellation in the middle of an annual
    period comes on that month's invoice, not at the year's end; its arrears fees wait for
    the run it ends in, or the run the subscription ends in. With calendar months this is
    `fixed_fee_lines` of the month.
    """
    lines: list[ProratedLine] = []
    last_known, known_before = end_day - timedelta(days=1), first_day - timedelta(days=1)
    segments = timeline(history, catalog, cycle, known_on=last_known)
    earlier = timeline(history, catalog, cycle, known_on=known_before)
    # Arrears are due when the period ends, or when the service does, if that is sooner.
    service_end = segments[-1].end if segments else None
    known_end = earlier[-1].end if earlier else None
    for period in cycle.periods_overlapping(first_day, end_day):
        closes = period.end_day if service_end is None else min(period.end_day, service_end)
        closed_before = period.end_day if known_end is None else min(period.end_day, known_end)
        # A service that ends on this run's first day ended in the last run's days, but
        # that run did not know it yet: this run bills the arrears.
        ends_here = first_day < closes <= end_day or (
            closes == first_day and closed_before != first_day
        )
        if period.first_day >= first_day:  # began in this run's days: settle all known
            lines.extend(
                settlement_lines(
                    history,
                    catalog,
                    cycle,
                    period,
                    by=by,
                    known_on=last_known,
                    arrears=ends_here,
                    pricing=pricing,
                )
            )
            continue
        if ends_here:
            lines += _arrears_only(history, catalog, cycle, period, by, last_known, pricing)
        # Began before this run: settle only what became known since the last one.
        lines += _settled_since(
            history, catalog, cycle, period, by, known_before, last_known, pricing
        )
    for period in cycle.periods_overlapping(first_day, end_day + timedelta(days=1)):
        if first_day < period.first_day <= end_day:
            lines += advance_lines(history, catalog, cycle, period, by=by, pricing=pricing)
    return lines


def describe(line: ProratedLine, catalog: Catalog) -> str:
    """The line in plain words, e.g. `Unused time on Pro: Seats, 10 seat(s), 2026-11-16 to
    2026-11-30 (15/30 of the period)`."""
    plan = catalog.plans[line.plan_id].name
    what = {
        "arrears": f"{line.charge.name} ({plan}, in arrears)",
        "advance": f"{line.charge.name} ({plan}, in advance)",
        "unused": f"Unused time on {plan}: {line.charge.name}",
        "remaining": f"Remaining time on {plan}: {line.charge.name}",
    }[line.role]
    seats = f", {line.seats} seat(s)" if model_name(type(line.charge)) == "per_seat" else ""
    last = date.fromordinal(line.end_day.toordinal() - 1)
    price = " (account price)" if line.account_price else ""
    return f"{what}{seats}, {line.first_day} to {last} (factor {_short(line.factor)}){price}"


def _short(factor: Decimal) -> str:
    return f"{factor.quantize(Decimal('0.0001'), context=MONEY_CONTEXT).normalize():f}"
