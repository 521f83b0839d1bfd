"""Metric aggregations and charge filters, through `rate`: what quantity a line bills."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from pricing_rules.catalog import Catalog, CatalogError, parse_catalog
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import RatingResult, rate, subscription_frame
from tests.pricing_rules.frames import USAGE_SCHEMA, at

D = Decimal
SEP = BillingPeriod.parse("2026-09")  # 30 days

CATALOG = """
version: "aggregations"
metrics:
  calls: {name: Calls, unit: call, aggregation: count}
  users: {name: Active users, unit: event, aggregation: unique_count, property: user,
          dimensions: [user]}
  peak: {name: Peak storage, unit: GB, aggregation: max}
  gauge: {name: Storage gauge, unit: GB, aggregation: latest}
  seats: {name: Seats, unit: seat, aggregation: time_weighted_sum}
  sms: {name: SMS, unit: message, aggregation: sum, dimensions: [direction]}
plans:
  p:
    name: Aggregations
    currency: USD
    charges:
      - {id: calls, name: Calls, model: per_unit, metric: calls, unit_price: "0.10"}
      - {id: users, name: Active users, model: per_unit, metric: users, unit_price: "3.00"}
      - {id: peak, name: Peak storage, model: per_unit, metric: peak, unit_price: "0.25"}
      - {id: gauge, name: Storage gauge, model: per_unit, metric: gauge, unit_price: "0.50"}
      - {id: seats, name: Seats, model: per_unit, metric: seats, unit_price: "4.00"}
      - {id: sms_out, name: Outbound SMS, model: per_unit, metric: sms, unit_price: "0.0079",
         filters: {direction: outbound}}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(CATALOG)


def events(rows: list[tuple[str, int | str, datetime, dict[str, str]]]) -> pl.LazyFrame:
    """Usage for account A: (metric, quantity, timestamp, dimensions)."""
    return pl.DataFrame(
        {
            "account_id": ["A"] * len(rows),
            "metric": [r[0] for r in rows],
            "quantity": [D(r[1]) for r in rows],
            "timestamp": [r[2] for r in rows],
            "user": [r[3].get("user") for r in rows],
            "direction": [r[3].get("direction") for r in rows],
        },
        schema={**USAGE_SCHEMA, "user": pl.String(), "direction": pl.String()},
    ).lazy()


SUBS = subscription_frame(
    [
        {
            "subscription_id": "S",
            "account_id": "A",
            "plan_id": "p",
            "start_date": date(2026, 1, 1),
            "end_date": None,
        }
    ]
)


def rated(catalog: Catalog, usage: pl.LazyFrame, subs: pl.DataFrame = SUBS) -> RatingResult:
    return rate(usage, subs, catalog, SEP)


def line(result: RatingResult, charge_id: str) -> dict[str, object]:
    (found,) = result.lines.filter(pl.col("charge_id") == charge_id).iter_rows(named=True)
    return found


def day(d: int, hour: int = 12) -> datetime:
    return at(d, month=9, hour=hour)


def test_count_counts_events_not_quantities(catalog: Catalog) -> None:
    # 3 events whatever their quantities: 3 x 0.10 = 0.30 => 30 cents
    result = rated(
        catalog,
        events([("calls", 7, day(1), {}), ("calls", 1, day(2), {}), ("calls", 90, day(2), {})]),
    )
    found = line(result, "calls")
    assert (found["quantity"], found["events"], found["amount_minor"]) == (D(3), 3, 30)


def test_unique_count_counts_distinct_values_across_days(catalog: Catalog) -> None:
    # u1 on days 1, 2 and 3, u2 on day 2, u3 on day 3 => 3 distinct users x 3.00 = 9.00
    result = rated(
        catalog,
        events(
            [
                ("users", 1, day(1), {"user": "u1"}),
                ("users", 1, day(2), {"user": "u1"}),
                ("users", 1, day(2), {"user": "u2"}),
                ("users", 1, day(3), {"user": "u1"}),
                ("users", 1, day(3), {"user": "u3"}),
            ]
        ),
    )
    found = line(result, "users")
    assert (found["quantity"], found["events"], found["amount_minor"]) == (D(3), 5, 900)


def test_max_is_the_peak_over_the_period(catalog: Catalog) -> None:
    # readings 120, 150, 90 GB => peak 150 x 0.25 = 37.50 => 3750 cents
    result = rated(
        catalog,
        events([("peak", 120, day(1), {}), ("peak", 150, day(9), {}), ("peak", 90, day(20), {})]),
    )
    assert (line(result, "peak")["quantity"], line(result, "peak")["amount_minor"]) == (
        D(150),
        3750,
    )


def test_latest_is_the_last_reading_by_time_not_by_row_order(catalog: Catalog) -> None:
    # rows arrive out of order; the reading of 2026-09-20 23:00 (40 GB) is the latest
    # => 40 x 0.50 = 20.00 => 2000 cents
    result = rated(
        catalog,
        events(
            [
                ("gauge", 40, day(20, hour=23), {}),
                ("gauge", 70, day(20, hour=1), {}),
                ("gauge", 10, day(2), {}),
                ("gauge", 55, day(19), {}),
            ]
        ),
    )
    assert (line(result, "gauge")["quantity"], line(result, "gauge")["amount_minor"]) == (
        D(40),
        2000,
    )


def test_time_weighted_sum_gives_seat_months(catalog: Catalog) -> None:
    # 10 seats for the first 15 days, then 20 seats for the last 15 days of a 30-day month:
    # (10 x 15 + 20 x 15) / 30 = 450 / 30 = 15 seat-months x 4.00 = 60.00 => 6000 cents
    result = rated(
        catalog, events([("seats", 10, day(1, hour=0), {}), ("seats", 20, day(16, hour=0), {})])
    )
    found = line(result, "seats")
    assert (found["quantity"], found["events"], found["amount_minor"]) == (D(15), 2, 6000)


def test_time_weighted_sum_is_zero_before_the_first_reading(catalog: Catalog) -> None:
    # 12 seats from 2026-09-16 00:00 only: 12 x 15 / 30 = 6 seat-months x 4.00 = 24.00
    result = rated(catalog, events([("seats", 12, day(16, hour=0), {})]))
    assert line(result, "seats")["quantity"] == D(6)
    assert line(result, "seats")["amount_minor"] == 2400


def test_time_weighted_sum_stops_at_the_subscription_end(catalog: Catalog) -> None:
    # 30 seats from 2026-09-01, subscription ends 2026-09-16: 30 x 15 / 30 = 15 x 4 = 60.00
    subs = subscription_frame(
        [
            {
                "subscription_id": "S",
                "account_id": "A",
                "plan_id": "p",
                "start_date": date(2026, 1, 1),
                "end_date": date(2026, 9, 16),
            }
        ]
    )
    result = rated(catalog, events([("seats", 30, day(1, hour=0), {})]), subs)
    assert line(result, "seats")["quantity"] == D(15)


def test_time_weighted_sum_runs_over_the_accounts_local_month(catalog: Catalog) -> None:
    # Los Angeles, November 2026: DST ends on Nov 1, so the local month runs from
    # Nov 1 07:00 UTC (PDT midnight) to Dec 1 08:00 UTC (PST midnight): 30 days + 1 hour.
    # 10 seats from local midnight on Nov 1 hold for the whole month: 10 seat-months;
    # 20 seats from local midnight on Nov 16 hold for 15 days of it:
    # (10 x (15 days + 1 hour) + 20 x 15 days) / (30 days + 1 hour)
    # = (10 x 361 h + 20 x 360 h) / 721 h = 10810 / 721 = 14.993065187239... x 4.00 = 59.97
    november = BillingPeriod.parse("2026-11")
    usage = events(
        [
            ("seats", 10, datetime(2026, 11, 1, 7, tzinfo=UTC), {}),
            ("seats", 20, datetime(2026, 11, 16, 8, tzinfo=UTC), {}),
        ]
    )
    accounts = pl.DataFrame({"account_id": ["A"], "timezone": ["America/Los_Angeles"]})
    result = rate(usage, SUBS, catalog, november, accounts=accounts)
    found = line(result, "seats")
    assert found["quantity"] == D("14.993065187240")
    assert found["amount_minor"] == 5997


def test_time_weighted_sum_with_a_repeating_quotient(catalog: Catalog) -> None:
    # 10 seats from 2026-09-21 00:00: 10 x 10 / 30 = 3.333... seat-months
    # x 4.00 = 13.333... => 1333 cents
    result = rated(catalog, events([("seats", 10, day(21, hour=0), {})]))
    assert line(result, "seats")["quantity"] == D("3.333333333333")
    assert line(result, "seats")["amount_minor"] == 1333


SEAT_DAYS = """
version: seat-days
metrics:
  seats: {name: Seats, unit: seat, aggregation: time_weighted_sum, time_unit: day}
  seat_hours: {name: Seat hours, unit: seat, aggregation: time_weighted_sum, time_unit: hour}
plans:
  p:
    name: Seat days
    currency: USD
    charges:
      - {id: seats, name: Seats, model: per_unit, metric: seats, unit_price: "0.50"}
      - {id: hours, name: Seat hours, model: per_unit, metric: seat_hours, unit_price: "0.01"}
"""


def test_time_weighted_sum_in_seat_days_and_seat_hours() -> None:
    # 10 seats from Sep 1 00:00, 20 from Sep 16 12:00: 10 x 15.5 + 20 x 14.5 = 155 + 290
    # = 445 seat-days x 0.50 = 222.50; in hours: 445 x 24 = 10,680 seat-hours x 0.01 = 106.80
    catalog = parse_catalog(SEAT_DAYS)
    usage = events(
        [
            (metric, seats, when, {})
            for metric in ("seats", "seat_hours")
            for seats, when in ((10, day(1, hour=0)), (20, day(16, hour=12)))
        ]
    )
    result = rated(catalog, usage)
    assert (line(result, "seats")["quantity"], line(result, "seats")["amount_minor"]) == (
        D(445),
        22250,
    )
    assert (line(result, "hours")["quantity"], line(result, "hours")["amount_minor"]) == (
        D(10680),
        10680,
    )


def test_a_local_day_is_one_seat_day_however_long_it_is() -> None:
    # Berlin, October 2026: DST ends on Oct 25, a 25-hour day. 4 seats from local midnight
    # on Oct 1 to the end of the month hold 31 local days: 4 x 31 = 124 seat-days (not
    # 4 x 745 h / 24 h = 124.1666...); 6 more seats from local noon on Oct 25 (11:00 UTC,
    # 13 of the day's 25 hours gone) hold 12/25 of it + 6 days: 6 x 6.48 = 38.88.
    # 124 + 38.88 = 162.88 seat-days x 0.50 = 81.44
    catalog = parse_catalog(SEAT_DAYS)
    usage = events(
        [
            ("seats", 4, datetime(2026, 9, 30, 22, tzinfo=UTC), {}),
            ("seats", 10, datetime(2026, 10, 25, 11, tzinfo=UTC), {}),
        ]
    )
    accounts = pl.DataFrame({"account_id": ["A"], "timezone": ["Europe/Berlin"]})
    result = rate(usage, SUBS, catalog, BillingPeriod.parse("2026-10"), accounts=accounts)
    assert line(result, "seats")["quantity"] == D("162.88")
    assert line(result, "seats")["amount_minor"] == 8144


def test_time_unit_is_only_for_time_weighted_sums() -> None:
    with pytest.raises(CatalogError, match="time_unit is for a time_weighted_sum metric"):
        parse_catalog(
            SEAT_DAYS.replace("aggregation: time_weighted_sum, time_unit: hour", "time_unit: hour")
        )


PER_USER = """
version: per-user
metrics:
  voice: {name: Voice, unit: min, aggregation: sum, dimensions: [user]}
plans:
  p:
    name: Per user
    currency: USD
    charges:
      - {id: voice, name: Voice, model: per_unit, metric: voice, unit_price: "0.01",
         free_units: {units: "1000", per: user, dimension: user}}
"""


@pytest.mark.parametrize("framed", [True, False])
def test_an_allowance_per_user_covers_each_users_own_usage(
    framed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1,000 min free per user: a 400 (all free), b 1,000 + 500 (1,000 free), c 1,000 (all
    # free), and 100 min with no user (none free): 3,000 min, 2,400 covered; 600 x 0.01 = 6.00
    if not framed:  # price the line one by one instead of as a frame: the same line
        monkeypatch.setattr("pricing_rules.rating.frame_ready", lambda *_: False)
    usage = events(
        [
            ("voice", q, day(d), {"user": u} if u else {})
            for q, d, u in [
                (400, 2, "a"),
                (1000, 3, "b"),
                (500, 4, "b"),
                (1000, 5, "c"),
                (100, 6, ""),
            ]
        ]
    )
    found = line(rated(parse_catalog(PER_USER), usage), "voice")
    assert (found["quantity"], found["amount_minor"], found["events"]) == (D(3000), 600, 5)
    rows = json.loads(found["details"])
    assert (rows[0]["label"], D(rows[0]["quantity"])) == ("included allowance", D(2400))
    assert "2,400 min included (1,000 min per user)" in str(found["description"])


def test_users_inside_their_allowance_are_never_billed_a_rounding_remainder() -> None:
    # Seconds priced per minute: 3 users x 20 s = 60 s = 1 min, each user's third of a
    # minute inside their 60 free minutes. Converted user by user and rounded, the parts
    # would cover 0.999999999999 min and leave 1e-12 min to bill: a whole 100-min block of
    # a package. Covered exactly, nothing is billed.
    text = (
        PER_USER.replace("unit: min", "unit: s")
        .replace(
            'model: per_unit, metric: voice, unit_price: "0.01"',
            "model: package, "
            'metric: voice, price_unit: min, block_size: "100", block_price: "5.00"',
        )
        .replace('units: "1000"', 'units: "60"')
    )
    usage = events([("voice", 20, day(2), {"user": user}) for user in ("a", "b", "c")])
    found = line(rated(parse_catalog(text), usage), "voice")
    assert (found["quantity"], found["amount_minor"]) == (D(1), 0)


def test_unbilled_usage_is_valued_with_one_users_allowance() -> None:
    from validation.leakage import list_price_value

    # At list price, 1,500 unbilled min of a charge with 1,000 free per user: there is no
    # user to spread them over, so one user's 1,000 are free: 500 x 0.01 = 5.00 at risk
    catalog = parse_catalog("list_price_plan: p\n" + PER_USER)
    assert list_price_value(catalog, "voice", D(1500)) == (D("5.00"), "USD")


def test_an_allowance_per_user_on_a_fixed_fee_is_a_catalog_error() -> None:
    text = PER_USER.replace(
        "charges:\n",
        'charges:\n      - {id: seats, name: Seats, model: per_seat, unit_price: "10.00",\n'
        '         free_units: {units: "2", per: user, dimension: user}}\n',
    )
    with pytest.raises(CatalogError) as raised:
        parse_catalog(text)
    issues = {issue.path: issue.message for issue in raised.value.issues}
    assert "is for a usage charge" in issues["plans.p.charges[0].free_units.per"]


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ("dimension: user}", "free_units.dimension", "metric 'voice' has no dimension 'seat'"),
        ("aggregation: sum", "free_units.per", "needs a sum or count metric"),
    ],
)
def test_an_allowance_per_user_needs_a_dimension_of_a_summed_metric(
    change: str, path: str, message: str
) -> None:
    text = (
        PER_USER.replace("dimension: user}", "dimension: seat}")
        if change.startswith("dimension")
        else PER_USER.replace("aggregation: sum", "aggregation: max")
    )
    with pytest.raises(CatalogError) as raised:
        parse_catalog(text)
    issues = {issue.path: issue.message for issue in raised.value.issues}
    assert message in issues[f"plans.p.charges[0].{path}"]


def test_sum_adds_quantities(catalog: Catalog) -> None:
    # 3,000 + 200 outbound messages x 0.0079 = 25.28 => 2528 cents
    result = rated(
        catalog,
        events(
            [
                ("sms", 3_000, day(4), {"direction": "outbound"}),
                ("sms", 200, day(5), {"direction": "outbound"}),
            ]
        ),
    )
    found = line(result, "sms_out")
    assert (found["quantity"], found["events"], found["amount_minor"]) == (D(3_200), 2, 2528)


def test_filter_prices_only_matching_events_and_the_rest_is_unrated(catalog: Catalog) -> None:
    # 1,000 outbound are priced: 1,000 x 0.0079 = 7.90 => 790 cents;
    # 400 inbound (2 events) and 50 with no direction match no charge of the plan
    result = rated(
        catalog,
        events(
            [
                ("sms", 1_000, day(4), {"direction": "outbound"}),
                ("sms", 300, day(4), {"direction": "inbound"}),
                ("sms", 100, day(6), {"direction": "inbound"}),
                ("sms", 50, day(7), {}),
            ]
        ),
    )
    found = line(result, "sms_out")
    assert (found["quantity"], found["events"], found["amount_minor"]) == (D(1_000), 1, 790)
    unrated = result.unrated.select(
        "subscription_id", "metric", "quantity", "events", "first_day", "last_day", "reason"
    ).rows()
    assert unrated == [
        ("S", "sms", D(450), 3, date(2026, 9, 4), date(2026, 9, 7), "no_matching_charge")
    ]
    assert (result.rated_events, result.unrated_events) == (1, 3)


def test_filtered_charges_split_one_metric(catalog: Catalog) -> None:
    # two charges on one metric, one per direction value: each prices its own events
    text = CATALOG.replace(
        "         filters: {direction: outbound}}\n",
        "         filters: {direction: outbound}}\n"
        "      - {id: sms_in, name: Inbound SMS, model: per_unit, metric: sms,"
        ' unit_price: "0.001", filters: {direction: inbound}}\n',
    )
    both = parse_catalog(text)
    result = rated(
        both,
        events(
            [
                ("sms", 1_000, day(4), {"direction": "outbound"}),
                ("sms", 2_000, day(4), {"direction": "inbound"}),
            ]
        ),
    )
    # outbound 1,000 x 0.0079 = 7.90; inbound 2,000 x 0.001 = 2.00
    assert line(result, "sms_out")["amount_minor"] == 790
    assert line(result, "sms_in")["amount_minor"] == 200
    assert result.unrated.height == 0


def test_undeclared_filter_dimension_is_a_catalog_error_with_its_path() -> None:
    text = CATALOG.replace("filters: {direction: outbound}", "filters: {country: GB}")
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="agg.yaml")
    assert [(i.path, i.message) for i in caught.value.issues] == [
        (
            "plans.p.charges[5].filters.country",
            "metric 'sms' has no dimension 'country' (declared: direction)",
        )
    ]
    assert "agg.yaml" in str(caught.value)


def test_unique_count_needs_a_declared_property() -> None:
    text = CATALOG.replace("property: user,\n          dimensions: [user]", "dimensions: [user]")
    with pytest.raises(CatalogError, match="a unique_count metric names the property it counts"):
        parse_catalog(text)


SEAT_TIERS = """
version: "seat-tiers"
metrics:
  seats: {name: Seats, unit: seat, aggregation: time_weighted_sum, dimensions: [tier]}
plans:
  p:
    name: Seats by tier
    currency: USD
    charges:
      - {id: pro, name: Pro seats, model: per_unit, metric: seats, unit_price: "10",
         filters: {tier: pro}}
      - {id: basic, name: Basic seats, model: per_unit, metric: seats, unit_price: "1",
         filters: {tier: basic}}
"""


def test_time_weighted_sum_respects_charge_filters() -> None:
    # 10 pro seats and 100 basic seats all month:
    # pro 10 x 10 = 100.00 => 10000 cents; basic 100 x 1 = 100.00 => 10000 cents
    usage = pl.DataFrame(
        {
            "account_id": ["A", "A"],
            "metric": ["seats", "seats"],
            "quantity": [D(10), D(100)],
            "timestamp": [day(1, hour=0), day(1, hour=0)],
            "tier": ["pro", "basic"],
        },
        schema={**USAGE_SCHEMA, "tier": pl.String()},
    ).lazy()
    result = rated(parse_catalog(SEAT_TIERS), usage)
    assert line(result, "pro")["quantity"] == D(10)
    assert line(result, "basic")["quantity"] == D(100)


def test_unbilled_time_weighted_readings_are_reported_at_their_peak(catalog: Catalog) -> None:
    # No subscription: 31 daily readings of 10 to 12 seats are one unrated row of 12 seats
    # (the peak), not 31 readings summed into hundreds of seats.
    readings = [("seats", 10 + d % 3, day(d, hour=0), {}) for d in range(1, 31)]
    result = rated(catalog, events(readings), subs=SUBS.clear())
    (row,) = result.unrated.iter_rows(named=True)
    assert (row["reason"], row["quantity"], row["events"]) == ("no_subscription", D(12), 30)
