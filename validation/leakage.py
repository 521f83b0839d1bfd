"""Revenue-assurance rules: find usage or subscriptions that would go unbilled.

Each finding has a severity, an amount at risk and its evidence. The amount at risk is
the unbilled usage valued at the catalog's list-price plan (or the subscription's own
plan for a missing recurring fee), rounded like an invoice line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from itertools import pairwise

import polars as pl

from pricing_rules.catalog import Catalog, Plan
from pricing_rules.money import (
    MONEY_CONTEXT,
    from_minor_units,
    minor_unit_exponent,
    round_money,
)
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import RatingResult, active_subscriptions, price_quantity

FINDING_SCHEMA: dict[str, pl.DataType] = {
    "finding_id": pl.String(),
    "rule": pl.String(),
    "severity": pl.String(),
    "account_id": pl.String(),
    "subscription_id": pl.String(),
    "metric": pl.String(),
    "amount_at_risk": pl.Decimal(38, 4),
    "currency": pl.String(),
    "message": pl.String(),
    "evidence": pl.String(),
}

# Usage objects of a closed period no invoice billed, found beyond the grace window.
LATE_OUTSIDE_GRACE_SCHEMA: dict[str, pl.DataType] = {
    "period": pl.String(),
    "account_id": pl.String(),
    "objects": pl.Int64(),
    "example": pl.String(),
}

# High when the amount at risk reaches 10,000 minor units: 100.00 USD, 10,000 JPY.
HIGH_RISK_MINOR_UNITS = 10_000


def finding_id(period: BillingPeriod, rule: str, *keys: str | None) -> str:
    """Stable across re-runs of a period, so an alert is sent once per finding."""
    text = "|".join([period.label, rule, *(k or "" for k in keys)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _severity(amount: Decimal | None, currency: str | None, floor: str = "medium") -> str:
    """High from 10,000 minor units; usage that could not be valued at all is high too,
    so a policy never waves through unpriced usage of unknown size."""
    if amount is None or currency is None:
        return "high"
    threshold = Decimal(HIGH_RISK_MINOR_UNITS).scaleb(-minor_unit_exponent(currency))
    return "high" if amount >= threshold else floor


def recurring_value(plan: Plan, factor: Decimal) -> Decimal:
    """A plan's recurring fees for `factor` of a period, rounded like an invoice line."""
    precise = Decimal(0)
    for charge in plan.recurring_charges():
        precise = MONEY_CONTEXT.add(precise, charge.price(factor).amount)
    return round_money(precise, plan.currency, plan.rounding)


def list_price_value(
    catalog: Catalog, metric: str, quantity: Decimal
) -> tuple[Decimal, str] | None:
    """What `quantity` of `metric` would cost at the list-price plan, rounded."""
    found = catalog.list_price(metric)
    if found is None:
        return None
    plan, charge = found
    # usage nobody pays for has no users to spread over: an allowance per user counts once
    free = charge.free_units
    allowance = free.units if free is not None and free.per == "user" else None
    _, _, priced = price_quantity(charge, quantity, catalog.metrics[metric].unit, 1, allowance)
    return round_money(priced.amount, plan.currency, plan.rounding), plan.currency


def _finding(
    period: BillingPeriod,
    rule: str,
    keys: Sequence[str | None],
    *,
    severity: str,
    account_id: str | None,
    message: str,
    evidence: Mapping[str, object],
    subscription_id: str | None = None,
    metric: str | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
) -> dict[str, object]:
    """One finding row; `keys` with the period and rule make its stable id."""
    return {
        "finding_id": finding_id(period, rule, *keys),
        "rule": rule,
        "severity": severity,
        "account_id": account_id,
        "subscription_id": subscription_id,
        "metric": metric,
        "amount_at_risk": amount,
        "currency": currency,
        "message": message,
        "evidence": json.dumps(evidence),
    }


def _usage_findings(
    rating: RatingResult, catalog: Catalog, period: BillingPeriod
) -> list[dict[str, object]]:
    rules: dict[str, tuple[str, Callable[[dict[str, object]], str]]] = {
        "no_subscription": (
            "usage_without_subscription",
            lambda r: (
                f"{r['events']} {r['metric']} events from account {r['account_id']} "
                "have no active subscription and were not billed"
            ),
        ),
        "unknown_plan": (
            "usage_not_priced",
            lambda r: (
                f"subscription {r['subscription_id']} is on plan {r['plan_id']!r}, which "
                f"the catalog does not define; {r['events']} {r['metric']} events were not billed"
            ),
        ),
        "metric_not_priced": (
            "usage_not_priced",
            lambda r: (
                f"plan {r['plan_id']} has no charge for metric {r['metric']!r}; "
                f"{r['events']} events were not billed"
            ),
        ),
        "no_matching_charge": (
            "usage_not_priced",
            lambda r: (
                f"{r['events']} {r['metric']} events of subscription {r['subscription_id']} "
                "match no charge filter of its plan and were not billed"
            ),
        ),
        "no_rate_for_destination": (
            "unrated_calls",
            lambda r: (
                f"{r['events']} calls of subscription {r['subscription_id']} have a "
                "destination no rate-deck prefix covers and were not billed"
            ),
        ),
        "no_rate_for_band": (
            "unrated_calls",
            lambda r: (
                f"{r['events']} calls of subscription {r['subscription_id']} fall in a time "
                "band their destination has no rate for and were not billed"
            ),
        ),
    }
    findings = []
    for row in rating.unrated.iter_rows(named=True):
        rule, message = rules.get(
            row["reason"],
            ("usage_not_priced", lambda r: f"{r['events']} events not billed: {r['reason']}"),
        )
        valued = list_price_value(catalog, row["metric"], row["quantity"])
        amount, currency = valued if valued else (None, None)
        evidence = {
            "reason": row["reason"],
            "events": row["events"],
            "quantity": f"{row['quantity'].normalize():f}",
            "unit": row["unit"],
            "first_day": str(row["first_day"]),
            "last_day": str(row["last_day"]),
            "plan_id": row["plan_id"],
            "valued_at": catalog.list_price_plan if valued else "no list price for this metric",
        }
        findings.append(
            _finding(
                period,
                rule,
                [row["account_id"], row["subscription_id"], row["metric"], row["reason"]],
                severity=_severity(
                    amount, currency, "high" if row["reason"] == "unknown_plan" else "medium"
                ),
                account_id=row["account_id"],
                subscription_id=row["subscription_id"],
                metric=row["metric"],
                amount=amount,
                currency=currency,
                message=message(row),
                evidence=evidence,
            )
        )
    return findings


def _missing_recurring(
    rating: RatingResult, subscriptions: pl.DataFrame, catalog: Catalog, period: BillingPeriod
) -> list[dict[str, object]]:
    billed = set(
        rating.lines.filter(pl.col("charge_kind") == "recurring")["subscription_id"].to_list()
    )
    findings = []
    for sub in active_subscriptions(subscriptions, period).iter_rows(named=True):
        # A history's fixed fees follow its lifecycle (a trial or paused month bills none),
        # and a plan on its own cycle bills only in the months its periods start or end.
        own_cycle = sub["plan_id"] in catalog.plans and catalog.plans[sub["plan_id"]].own_cycle
        if sub["subscription_id"] in billed or sub.get("history") or own_cycle:
            continue
        plan = catalog.plans.get(sub["plan_id"])
        reference = plan or (
            catalog.plans[catalog.list_price_plan] if catalog.list_price_plan else None
        )
        amount: Decimal | None = None
        currency: str | None = None
        if reference is not None and reference.recurring_charges():
            factor = period.proration_factor(sub["start_date"], sub["end_date"])
            amount = recurring_value(reference, factor)
            currency = reference.currency
        why = (
            f"plan {sub['plan_id']!r} is not in the catalog"
            if plan is None
            else f"plan {sub['plan_id']!r} has no recurring charge"
        )
        findings.append(
            _finding(
                period,
                "missing_recurring_charge",
                [sub["account_id"], sub["subscription_id"]],
                severity=_severity(amount, currency, "high"),
                account_id=sub["account_id"],
                subscription_id=sub["subscription_id"],
                amount=amount,
                currency=currency,
                message=f"active subscription {sub['subscription_id']} of account "
                f"{sub['account_id']} has no recurring charge this period: {why}",
                evidence={
                    "plan_id": sub["plan_id"],
                    "start_date": str(sub["start_date"]),
                    "end_date": None if sub["end_date"] is None else str(sub["end_date"]),
                    "valued_at": None
                    if reference is None
                    else (sub["plan_id"] if plan else catalog.list_price_plan),
                },
            )
        )
    return findings


def _overlapping_subscriptions(
    subscriptions: pl.DataFrame, catalog: Catalog, period: BillingPeriod
) -> list[dict[str, object]]:
    """Two subscriptions of one account active on the same days: a double charge."""
    findings: list[dict[str, object]] = []
    active = active_subscriptions(subscriptions, period).sort("account_id", "start_date")
    for (account_id,), subs in active.group_by(["account_id"], maintain_order=True):
        rows = subs.rows(named=True)
        for earlier, later in pairwise(rows):
            overlap_end = min(
                earlier["end_date"] or period.end, later["end_date"] or period.end, period.end
            )
            overlap_start = max(later["start_date"], period.start)
            days = (overlap_end - overlap_start).days
            if days <= 0:
                continue
            plan = catalog.plans.get(later["plan_id"])
            amount: Decimal | None = None
            if plan is not None and plan.recurring_charges():
                factor = period.proration_factor(overlap_start, overlap_end)
                amount = recurring_value(plan, factor)
            findings.append(
                _finding(
                    period,
                    "overlapping_subscriptions",
                    [str(account_id), earlier["subscription_id"], later["subscription_id"]],
                    severity="high",
                    account_id=str(account_id),
                    subscription_id=later["subscription_id"],
                    amount=amount,
                    currency=plan.currency if plan else None,
                    message=f"subscriptions {earlier['subscription_id']} and "
                    f"{later['subscription_id']} of account {account_id} are both active for "
                    f"{days} day(s) of {period.label}; recurring fees may be charged twice",
                    evidence={
                        "overlap_from": str(overlap_start),
                        "overlap_to": str(overlap_end),
                        "plans": [earlier["plan_id"], later["plan_id"]],
                    },
                )
            )
    return findings


def _notice_findings(rating: RatingResult, period: BillingPeriod) -> list[dict[str, object]]:
    """Problems the rating met outside usage, e.g. an account with no tax rate."""
    return [
        _finding(
            period,
            row["kind"],
            [row["account_id"], row["message"]],
            severity="high",
            account_id=row["account_id"],
            message=row["message"],
            evidence={"kind": row["kind"]},
        )
        for row in rating.notices.iter_rows(named=True)
    ]


def _published_differs(
    rating: RatingResult, published: Mapping[tuple[str, str], int], period: BillingPeriod
) -> list[dict[str, object]]:
    """An invoice already published for the period whose total the usage now rates
    differently: late or corrected usage that no invoice bills (or over-billed)."""
    own = rating.lines
    if "service_period" in own.columns:  # adjustments bill other periods
        own = own.filter(pl.col("service_period").is_null())
    totals = own.group_by("account_id", "currency").agg(pl.col("amount_minor").sum())
    findings: list[dict[str, object]] = []
    for account_id, currency, rated in totals.rows():
        billed = published.get((account_id, currency))
        if billed is None or billed == rated:
            continue
        difference = from_minor_units(abs(rated - billed), currency)
        under = rated > billed
        findings.append(
            _finding(
                period,
                "published_invoice_differs",
                [account_id, currency, str(rated)],
                severity=_severity(difference, currency) if under else "medium",
                account_id=account_id,
                amount=difference,
                currency=currency,
                message=f"the {period.label} invoice of account {account_id} ({currency}) "
                f"was published at {from_minor_units(billed, currency)}; its usage now rates "
                f"at {from_minor_units(rated, currency)}: "
                + ("late or corrected usage is not billed" if under else "it was over-billed"),
                evidence={"published_minor": billed, "rated_minor": rated, "under_billed": under},
            )
        )
    return findings


def _late_outside_grace(late: pl.DataFrame, period: BillingPeriod) -> list[dict[str, object]]:
    """Usage that arrived for a closed period too long ago for settle-late to bill."""
    return [
        _finding(
            period,
            "late_usage_outside_grace",
            [row["account_id"], row["period"]],
            severity="high",
            account_id=row["account_id"],
            message=f"{row['objects']} usage object(s) with usage of account "
            f"{row['account_id']} for {row['period']} arrived after it was invoiced, beyond "
            f"the late-usage grace window; re-rate {row['period']} to bill them "
            f"(tallyflow rerate --period {row['period']})",
            evidence={
                "period": row["period"],
                "objects": row["objects"],
                "example": row["example"],
            },
        )
        for row in late.iter_rows(named=True)
    ]


def detect_leakage(
    rating: RatingResult,
    subscriptions: pl.DataFrame,
    catalog: Catalog,
    period: BillingPeriod,
    published: Mapping[tuple[str, str], int] | None = None,
    late_outside_grace: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Run every rule; one row per finding, highest amount at risk first.

    Rules: `usage_without_subscription`, `usage_not_priced` (unknown plan, a metric the
    plan does not price, usage no charge filter matches, a call with no deck rate),
    `missing_recurring_charge`, `overlapping_subscriptions` (a possible double charge),
    `published_invoice_differs` (given the totals already published, in minor units, per
    account and currency), `late_usage_outside_grace` (given the unbilled objects of
    periods beyond the grace window), and rating notices such as `missing_tax_rate`.
    """
    rows = (
        _usage_findings(rating, catalog, period)
        + _missing_recurring(rating, subscriptions, catalog, period)
        + _notice_findings(rating, period)
        + _overlapping_subscriptions(subscriptions, catalog, period)
        + _published_differs(rating, published or {}, period)
        + _late_outside_grace(
            late_outside_grace
            if late_outside_grace is not None
            else pl.DataFrame(schema=LATE_OUTSIDE_GRACE_SCHEMA),
            period,
        )
    )
    return pl.DataFrame(rows, schema=FINDING_SCHEMA).sort(
        pl.col("amount_at_risk").fill_null(Decimal(0)), "finding_id", descending=[True, False]
    )
