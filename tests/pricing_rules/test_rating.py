"""pricing_rules.rating: usage attributed to subscriptions and every charge priced exactly."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pricing_rules.catalog import Catalog, load_catalog, parse_catalog
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import (
    LINE_SCHEMA,
    UNRATED_SCHEMA,
    RatingError,
    rate,
    subscription_frame,
)
from tests.pricing_rules.frames import (
    CATALOG_PATH,
    CATALOG_YAML,
    FRAME_PROPERTY,
    at,
    usage_frame,
)

OCT = BillingPeriod.parse("2026-10")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML, source="test-catalog")


def sub(
    subscription_id: str,
    account_id: str,
    plan_id: str = "usd",
    start: date = date(2026, 1, 1),
    end: date | None = None,
) -> dict[str, object]:
    return {
        "subscription_id": subscription_id,
        "account_id": account_id,
        "plan_id": plan_id,
        "start_date": start,
        "end_date": end,
    }


LINE_COLUMNS = [
    "line_id",
    "charge_model",
    "charge_kind",
    "metric",
    "quantity",
    "unit",
    "unit_price",
    "events",
    "amount",
    "amount_minor",
    "currency",
]


def expected_lines(rows: list[tuple[object, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={c: LINE_SCHEMA[c] for c in LINE_COLUMNS}, orient="row")


def test_golden_lines_for_a_full_month(catalog: Catalog) -> None:
    usage = usage_frame(
        [
            ("A", "voice", 60_000, at(2)),
            ("A", "voice", 30_000, at(3)),
            ("A", "sms", 3_000, at(4)),
            ("A", "sms", 200, at(5)),
            ("A", "storage", 150, at(6)),
            ("A", "storage", 90, at(7)),
        ]
    )
    result = rate(usage, subscription_frame([sub("S-A", "A")]), catalog, OCT)
    D = Decimal
    # Compared by line id; the invoice order (catalog order) is tested separately.
    assert_frame_equal(
        result.lines.sort("line_id").select(LINE_COLUMNS),
        expected_lines(
            [
                # 1 period x 199.00 = 199.00 => 19900 cents
                (
                    "S-A:platform",
                    "flat",
                    "recurring",
                    None,
                    D(1),
                    "period",
                    D("199"),
                    0,
                    D("199.00"),
                    19900,
                    "USD",
                ),
                # 3,000 + 200 = 3,200 messages x 0.0079 = 25.28 => 2528 cents
                (
                    "S-A:sms",
                    "per_unit",
                    "usage",
                    "sms",
                    D(3200),
                    "message",
                    D("0.0079"),
                    2,
                    D("25.28"),
                    2528,
                    "USD",
                ),
                # storage is a peak: max(150, 90) = 150 GB, in (100, 1000]: 150 x 0.18 = 27.00
                (
                    "S-A:storage",
                    "volume",
                    "usage",
                    "storage",
                    D(150),
                    "GB",
                    D("0.18"),
                    2,
                    D("27.00"),
                    2700,
                    "USD",
                ),
                # 60,000 + 30,000 = 90,000 s / 60 = 1,500 min:
                # 1,000 x 0.00 + 500 x 0.0120 = 6.00 => 600 cents
                (
                    "S-A:voice",
                    "graduated",
                    "usage",
                    "voice",
                    D(1500),
                    "min",
                    None,
                    2,
                    D("6.00"),
                    600,
                    "USD",
                ),
            ]
        ),
    )
    assert result.unrated.height == 0
    assert (result.rated_events, result.unrated_events) == (6, 0)


def test_voice_line_explains_its_tiers(catalog: Catalog) -> None:
    # 1,500,000 s / 60 = 25,000 min:
    # 1,000 x 0 + 19,000 x 0.0120 + 5,000 x 0.0085 = 0 + 228 + 42.50 = 270.50 => 27050 cents
    usage = usage_frame([("A", "voice", 1_500_000, at(2))])
    result = rate(usage, subscription_frame([sub("S-A", "A")]), catalog, OCT)
    voice = result.lines.filter(pl.col("charge_id") == "voice").row(0, named=True)
    assert voice["amount_minor"] == 27050
    assert Decimal(voice["precise_amount"]) == Decimal("270.50")
    assert voice["description"] == (
        "Outbound voice: 25,000 min — first 1,000 min at 0.00, next 19,000 min at 0.0120, "
        "next 5,000 min at 0.0085"
    )
    details = json.loads(voice["details"])
    assert [(d["tier"], Decimal(d["quantity"]), Decimal(d["amount"])) for d in details] == [
        (1, Decimal(1000), Decimal(0)),
        (2, Decimal(19000), Decimal(228)),
        (3, Decimal(5000), Decimal("42.50")),
    ]
    assert sum(Decimal(d["amount"]) for d in details) == Decimal(voice["precise_amount"])


def test_seconds_that_are_not_whole_minutes(catalog: Catalog) -> None:
    # 1,260,030 s / 60 = 21,000.5 min:
    # 1,000 x 0 + 19,000 x 0.0120 + 1,000.5 x 0.0085 = 228 + 8.50425 = 236.50425
    # => half_up 236.50 => 23650 cents
    usage = usage_frame([("A", "voice", 1_260_030, at(2))])
    result = rate(usage, subscription_frame([sub("S-A", "A")]), catalog, OCT)
    voice = result.lines.filter(pl.col("charge_id") == "voice").row(0, named=True)
    assert voice["quantity"] == Decimal("21000.5")
    assert voice["amount_minor"] == 23650
    # 61 s = 1.01666... min, inside the free tier: the line shows 12 decimals, costs 0
    result = rate(
        usage_frame([("A", "voice", 61, at(2))]),
        subscription_frame([sub("S-A", "A")]),
        catalog,
        OCT,
    )
    voice = result.lines.filter(pl.col("charge_id") == "voice").row(0, named=True)
    assert voice["quantity"] == Decimal("1.016666666667")
    assert voice["amount_minor"] == 0


def test_rounding_follows_the_plan_currency(catalog: Catalog) -> None:
    usage = usage_frame(
        [
            # 42,000 s / 60 = 700 min: 500 x 0 + 200 x 1.8 = 360 yen
            ("J", "voice", 42_000, at(2)),
            # 15 x 1.1 = 16.5 yen => half_up 17 yen
            ("J", "sms", 15, at(2)),
        ]
    )
    result = rate(usage, subscription_frame([sub("S-J", "J", "jpy")]), catalog, OCT)
    assert_frame_equal(
        result.lines.sort("line_id").select(
            "line_id", "amount", "amount_minor", "currency", "rounding"
        ),
        pl.DataFrame(
            {
                "line_id": ["S-J:platform", "S-J:sms", "S-J:voice"],
                "amount": [Decimal(9800), Decimal(17), Decimal(360)],
                "amount_minor": [9800, 17, 360],
                "currency": ["JPY"] * 3,
                "rounding": ["half_up"] * 3,
            },
            schema={
                c: LINE_SCHEMA[c]
                for c in ("line_id", "amount", "amount_minor", "currency", "rounding")
            },
        ),
    )


def test_mid_period_start_is_prorated_and_earlier_usage_is_unrated(catalog: Catalog) -> None:
    usage = usage_frame(
        [
            ("B", "sms", 100, at(5)),  # before the subscription starts
            ("B", "sms", 3_200, at(20)),
        ]
    )
    subs = subscription_frame([sub("S-B", "B", start=date(2026, 10, 17))])
    result = rate(usage, subs, catalog, OCT)
    platform = result.lines.filter(pl.col("charge_id") == "platform").row(0, named=True)
    # 17th..31st = 15 of 31 days; 199.00 x 15/31 = 96.2903... => half_up 96.29 => 9629 cents
    assert platform["amount_minor"] == 9629
    assert platform["proration_factor"] == Decimal("0.483870967742")
    assert platform["quantity"] == Decimal("0.483870967742")
    assert platform["description"] == "Platform fee: 15 of 31 days at 199.00 per period"
    assert json.loads(platform["details"])[0]["proration_factor"].startswith("0.4838709677")
    # 3,200 x 0.0079 = 25.28: usage charges are not prorated
    sms = result.lines.filter(pl.col("charge_id") == "sms").row(0, named=True)
    assert (sms["amount_minor"], sms["events"]) == (2528, 1)
    assert_frame_equal(
        result.unrated,
        pl.DataFrame(
            [
                (
                    "B",
                    None,
                    None,
                    "sms",
                    Decimal(100),
                    "message",
                    1,
                    date(2026, 10, 5),
                    date(2026, 10, 5),
                    "no_subscription",
                )
            ],
            schema=UNRATED_SCHEMA,
            orient="row",
        ),
    )


def test_mid_period_end_is_prorated_and_exclusive(catalog: Catalog) -> None:
    # ends on 2026-10-11 (exclusive): 1st..10th = 10 of 31 days;
    # 199.00 x 10/31 = 64.1935... => 64.19 => 6419 cents
    usage = usage_frame([("C", "sms", 10, at(10)), ("C", "sms", 20, at(11))])
    subs = subscription_frame([sub("S-C", "C", end=date(2026, 10, 11))])
    result = rate(usage, subs, catalog, OCT)
    assert result.lines.filter(pl.col("charge_id") == "platform")["amount_minor"].item() == 6419
    # the 10th is covered (10 messages), the 11th is not (20 messages, no_subscription)
    assert result.lines.filter(pl.col("charge_id") == "sms")["quantity"].item() == Decimal(10)
    assert result.unrated.select("quantity", "reason").rows() == [(Decimal(20), "no_subscription")]


def test_a_plan_change_splits_usage_by_day(catalog: Catalog) -> None:
    # S-1 on usd until the 16th (exclusive), S-2 on jpy from the 16th
    subs = subscription_frame(
        [
            sub("S-1", "A", "usd", end=date(2026, 10, 16)),
            sub("S-2", "A", "jpy", start=date(2026, 10, 16)),
        ]
    )
    usage = usage_frame([("A", "sms", 100, at(15)), ("A", "sms", 10, at(16))])
    result = rate(usage, subs, catalog, OCT)
    sms = (
        result.lines.filter(pl.col("charge_id") == "sms")
        .select("subscription_id", "quantity", "currency", "amount_minor")
        .sort("subscription_id")
    )
    assert sms.rows() == [
        ("S-1", Decimal(100), "USD", 79),  # 100 x 0.0079 = 0.79 USD => 79 cents
        ("S-2", Decimal(10), "JPY", 11),  # 10 x 1.1 = 11 yen
    ]
    platform = result.lines.filter(pl.col("charge_id") == "platform")
    # 15/31 x 199.00 = 96.29 USD; 16/31 x 9800 = 5058.06... => 5058 yen
    assert platform.select("subscription_id", "amount_minor").sort("subscription_id").rows() == [
        ("S-1", 9629),
        ("S-2", 5058),
    ]


def test_a_plan_change_splits_usage_on_the_accounts_local_day(catalog: Catalog) -> None:
    # Tokyo is UTC+9: 2026-10-15 20:00 UTC is already the 16th in Tokyo, so that event
    # belongs to S-2 (from the 16th); 2026-10-15 14:00 UTC is the 15th 23:00, still S-1.
    subs = subscription_frame(
        [
            sub("S-1", "A", "usd", end=date(2026, 10, 16)),
            sub("S-2", "A", "jpy", start=date(2026, 10, 16)),
        ]
    )
    usage = usage_frame([("A", "sms", 100, at(15, hour=14)), ("A", "sms", 10, at(15, hour=20))])
    accounts = pl.DataFrame({"account_id": ["A"], "timezone": ["Asia/Tokyo"]})
    result = rate(usage, subs, catalog, OCT, accounts=accounts)
    sms = result.lines.filter(pl.col("charge_id") == "sms").sort("subscription_id")
    assert sms.select("subscription_id", "quantity").rows() == [
        ("S-1", Decimal(100)),
        ("S-2", Decimal(10)),
    ]
    # In UTC both events fall on the 15th and S-1 would bill all 110.
    utc = rate(usage, subs, catalog, OCT).lines.filter(pl.col("charge_id") == "sms")
    assert utc.select("subscription_id", "quantity").rows() == [("S-1", Decimal(110))]


def test_a_month_billed_in_utc_months_rates_on_utc_days(catalog: Catalog) -> None:
    # A subscription from October 15, in Los Angeles; an SMS at 03:00 UTC on the 15th is
    # still the 14th there. Rated as a local month it is before the subscription; a
    # month billed before local months (UTC days) rates it.
    subs = subscription_frame([sub("S-1", "A", "usd", start=date(2026, 10, 15))])
    usage = usage_frame([("A", "sms", 100, at(15, hour=3))])
    accounts = pl.DataFrame({"account_id": ["A"], "timezone": ["America/Los_Angeles"]})
    local = rate(usage, subs, catalog, OCT, accounts=accounts)
    assert local.unrated["reason"].to_list() == ["no_subscription"]
    utc = rate(usage, subs, catalog, OCT, accounts=accounts, local_months=False)
    assert utc.unrated.height == 0
    assert utc.lines.filter(pl.col("charge_id") == "sms")["quantity"].to_list() == [Decimal(100)]


def test_unrated_usage_carries_a_reason_and_never_a_zero_line(catalog: Catalog) -> None:
    usage = usage_frame(
        [
            ("NOSUB", "sms", 10, at(5)),
            ("GHOST", "sms", 20, at(6)),
            ("GHOST", "voice", 600, at(6)),
            ("A", "video", 90, at(7)),  # a catalog metric no plan prices
            ("A", "video", 30, at(8)),
        ]
    )
    subs = subscription_frame([sub("S-A", "A"), sub("S-G", "GHOST", "retired-plan")])
    result = rate(usage, subs, catalog, OCT)
    assert_frame_equal(
        result.unrated,
        pl.DataFrame(
            [
                (
                    "A",
                    "S-A",
                    "usd",
                    "video",
                    Decimal(120),
                    "s",
                    2,
                    date(2026, 10, 7),
                    date(2026, 10, 8),
                    "metric_not_priced",
                ),
                (
                    "GHOST",
                    "S-G",
                    "retired-plan",
                    "sms",
                    Decimal(20),
                    "message",
                    1,
                    date(2026, 10, 6),
                    date(2026, 10, 6),
                    "unknown_plan",
                ),
                (
                    "GHOST",
                    "S-G",
                    "retired-plan",
                    "voice",
                    Decimal(600),
                    "s",
                    1,
                    date(2026, 10, 6),
                    date(2026, 10, 6),
                    "unknown_plan",
                ),
                (
                    "NOSUB",
                    None,
                    None,
                    "sms",
                    Decimal(10),
                    "message",
                    1,
                    date(2026, 10, 5),
                    date(2026, 10, 5),
                    "no_subscription",
                ),
            ],
            schema=UNRATED_SCHEMA,
            orient="row",
        ),
    )
    # no line at all for unpriced usage, and nothing for the unknown plan, not even a fee
    assert result.lines["line_id"].to_list() == ["S-A:platform"]
    assert (result.rated_events, result.unrated_events) == (0, 5)


def test_overlapping_subscriptions_are_an_error(catalog: Catalog) -> None:
    subs = subscription_frame(
        [
            sub("S-1", "A", end=date(2026, 10, 10)),
            sub("S-2", "A", start=date(2026, 10, 5)),
        ]
    )
    usage = usage_frame([("A", "sms", 1, at(7))])
    with pytest.raises(
        RatingError,
        match=re.escape(
            "1 partial usage rows are covered by more than one subscription, "
            "e.g. account A on 2026-10-07"
        ),
    ):
        rate(usage, subs, catalog, OCT)


@pytest.mark.parametrize(
    ("rows", "metric", "quantity"),
    [
        # sum: 10 + 20 on one day + 5 the next = 35 messages
        (
            [
                ("A", "sms", 10, at(3, hour=1)),
                ("A", "sms", 20, at(3, hour=2)),
                ("A", "sms", 5, at(4)),
            ],
            "sms",
            35,
        ),
        # max: the peak over the period, within a day and across days = 170 GB
        (
            [
                ("A", "storage", 120, at(3, hour=1)),
                ("A", "storage", 170, at(3, hour=2)),
                ("A", "storage", 90, at(4)),
            ],
            "storage",
            170,
        ),
    ],
)
def test_sum_and_max_aggregation(
    catalog: Catalog, rows: list[tuple[str, str, int, object]], metric: str, quantity: int
) -> None:
    result = rate(usage_frame(rows), subscription_frame([sub("S-A", "A")]), catalog, OCT)  # type: ignore[arg-type]
    line = result.lines.filter(pl.col("metric") == metric).row(0, named=True)
    assert line["quantity"] == Decimal(quantity)
    assert line["events"] == 3


def test_max_aggregation_in_unrated_usage(catalog: Catalog) -> None:
    usage = usage_frame([("X", "storage", 40, at(3)), ("X", "storage", 70, at(9))])
    result = rate(usage, subscription_frame([]), catalog, OCT)
    assert result.unrated.select("quantity", "events").rows() == [(Decimal(70), 2)]


def test_event_conservation(catalog: Catalog) -> None:
    rows = [
        ("A", "sms", 1, at(1)),
        ("A", "voice", 60, at(2)),
        ("A", "video", 60, at(2)),
        ("B", "sms", 1, at(3)),
        ("B", "sms", 1, at(30)),
        ("GHOST", "sms", 1, at(4)),
        ("NOSUB", "storage", 3, at(31, hour=23)),
    ]
    subs = subscription_frame(
        [
            sub("S-A", "A"),
            sub("S-B", "B", start=date(2026, 10, 15)),
            sub("S-G", "GHOST", "retired-plan"),
        ]
    )
    result = rate(usage_frame(rows), subs, catalog, OCT)
    assert result.rated_events + result.unrated_events == len(rows) == result.events
    assert result.rated_events == int(
        result.lines.filter(pl.col("charge_kind") == "usage")["events"].sum()
    )
    assert result.unrated_events == int(result.unrated["events"].sum())


def test_subscriptions_outside_the_period_are_ignored(catalog: Catalog) -> None:
    subs = subscription_frame(
        [
            sub("S-OLD", "A", start=date(2026, 1, 1), end=date(2026, 10, 1)),
            sub("S-NEW", "A", start=date(2026, 11, 1)),
        ]
    )
    result = rate(usage_frame([("A", "sms", 5, at(2))]), subs, catalog, OCT)
    assert result.lines.height == 0
    assert result.unrated["reason"].to_list() == ["no_subscription"]


def test_no_usage_still_bills_recurring_fees(catalog: Catalog) -> None:
    result = rate(usage_frame([]), subscription_frame([sub("S-A", "A")]), catalog, OCT)
    assert result.lines["line_id"].to_list() == ["S-A:platform"]
    assert result.unrated.schema == pl.Schema(UNRATED_SCHEMA)
    assert result.unrated.height == 0
    assert result.events == 0


def test_lines_have_the_line_schema_and_order(catalog: Catalog) -> None:
    usage = usage_frame([("B", "sms", 1, at(2)), ("A", "sms", 1, at(2))])
    result = rate(usage, subscription_frame([sub("S-B", "B"), sub("S-A", "A")]), catalog, OCT)
    assert result.lines.schema == pl.Schema(LINE_SCHEMA)
    assert result.lines["line_id"].to_list() == [
        "S-A:platform",
        "S-A:sms",
        "S-B:platform",
        "S-B:sms",
    ]


def test_the_real_catalog_rates_the_eur_plan() -> None:
    # The USD plan is covered end to end in tests/scenarios/.
    catalog = load_catalog(CATALOG_PATH)
    usage = usage_frame(
        [
            ("A", "voice", 90_000, at(2)),  # 1,500 min: 1,000 x 0 + 500 x 0.0110 = 5.50
            # 12 seats from Oct 2 12:00 to the end: 12 x 29.5 / 31 = 11.419354838710
            # seat-months x 13.50 = 154.16
            ("A", "seats", 12, at(2)),
        ]
    )
    result = rate(usage, subscription_frame([sub("S-A", "A", "ucaas-business-eur")]), catalog, OCT)
    amounts = dict(result.lines.select("charge_id", "amount_minor").iter_rows())
    # 185.00 + 5.50 + 154.16 = 344.66 (a tax line may follow, given the account's country)
    assert {k: amounts[k] for k in ("platform", "voice", "seats")} == {
        "platform": 18500,
        "voice": 550,
        "seats": 15416,
    }


_ZONES = ["UTC", "Asia/Tokyo", "America/Los_Angeles"]


@FRAME_PROPERTY
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["SPLIT", "NOSUB", "GHOST", "A"]),
            st.sampled_from(["sms", "video"]),
            st.datetimes(min_value=datetime(2026, 9, 30, 12), max_value=datetime(2026, 11, 1, 12)),
        ),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from(_ZONES),
    st.integers(min_value=2, max_value=30),
)
def test_unrated_rows_span_the_local_days_of_their_events(
    catalog: Catalog, events: list[tuple[str, str, datetime]], zone: str, starts: int
) -> None:
    # SPLIT's subscription starts mid-month, NOSUB has none, GHOST's plan is unknown and A's
    # plan prices no video: every unrated row's first and last day are the least and
    # greatest local day of the events it holds, each day taken in the account's zone.
    start = date(2026, 10, starts)
    subs = subscription_frame(
        [
            sub("S-SPLIT", "SPLIT", start=start),
            sub("S-GHOST", "GHOST", "retired-plan"),
            sub("S-A", "A"),
        ]
    )
    accounts = pl.DataFrame({"account_id": ["SPLIT", "NOSUB", "GHOST", "A"], "timezone": zone})
    usage = usage_frame([(a, m, 1, t.replace(tzinfo=UTC)) for a, m, t in events])
    result = rate(usage, subs, catalog, OCT, accounts=accounts)

    expected: dict[tuple[str, str, str], list[date]] = {}
    for account, metric, moment in events:
        local = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).date()
        if account in ("NOSUB", "SPLIT") and (account == "NOSUB" or local < start):
            reason = "no_subscription"
        elif account == "GHOST":
            reason = "unknown_plan"
        elif metric == "video":
            reason = "metric_not_priced"
        else:
            continue
        expected.setdefault((account, metric, reason), []).append(local)
    found = {
        (row["account_id"], row["metric"], row["reason"]): (row["first_day"], row["last_day"])
        for row in result.unrated.iter_rows(named=True)
    }
    assert found == {key: (min(days), max(days)) for key, days in expected.items()}
