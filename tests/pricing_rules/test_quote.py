"""pricing_rules.quote: inline quantities, and a quote that is exactly a `rate` call."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pricing_rules.catalog import Catalog, parse_catalog
from pricing_rules.periods import BillingPeriod
from pricing_rules.quote import (
    InlineQuantity,
    QuoteError,
    inline_usage,
    parse_quantity,
    quote,
    quote_document,
)
from pricing_rules.rating import rate, subscription_frame
from pricing_rules.terms import AccountTerms
from validation.usage import validate_usage

OCT = BillingPeriod.parse("2026-10")  # 31 days

CATALOG = """
version: "quote"
metrics:
  voice: {name: Voice, unit: s, aggregation: sum}
  sms: {name: SMS, unit: message, aggregation: sum}
  rec: {name: Recording storage, unit: GB, aggregation: max}
taxes:
  GB: {name: VAT, rate: "0.20"}
add_ons:
  recording:
    name: Call recording
    charges:
      - {id: storage, name: Recording storage, model: per_unit, metric: rec, unit_price: "0.10"}
plans:
  team:
    name: Team
    currency: USD
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "31.00"}
      - {id: seats, name: Seats, model: per_seat, unit_price: "14.50"}
      - id: voice
        name: Voice
        model: per_unit
        metric: voice
        price_unit: min
        unit_price: "0.012"
        free_units: {units: "500", per: seat}
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.0079"}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(CATALOG)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("voice=1500min", InlineQuantity("voice", "1500", "min")),
        ("voice=90000s", InlineQuantity("voice", "90000", "s")),
        ("storage=150GB", InlineQuantity("storage", "150", "GB")),
        ("sms=3200", InlineQuantity("sms", "3200", None)),
        ("  sms=12.5  ", InlineQuantity("sms", "12.5", None)),
        ("voice=90 min", InlineQuantity("voice", "90", "min")),
        ("api.calls-v2=7", InlineQuantity("api.calls-v2", "7", None)),
    ],
)
def test_parse_quantity(text: str, expected: InlineQuantity) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("voice", r"usage 'voice' must look like metric=quantity\[unit\]"),
        ("=5", "must look like metric=quantity"),
        ("voice=", "must look like metric=quantity"),
        ("voice=-5min", "must look like metric=quantity"),
        ("voice=five", "must look like metric=quantity"),
        ("voice=1.2.3min", r"usage 'voice=1\.2\.3min': '1\.2\.3' is not a number"),
        ("voice=5parsec", r"usage 'voice=5parsec': unknown unit 'parsec'"),
    ],
)
def test_parse_quantity_errors(text: str, message: str) -> None:
    with pytest.raises(QuoteError, match=message):
        parse_quantity(text)


def test_inline_usage_rows(catalog: Catalog) -> None:
    # one event per quantity at noon UTC of the later of the start and the period start;
    # the metric's own unit when none is given
    raw = inline_usage(
        [parse_quantity("voice=1500min"), parse_quantity("sms=3200")],
        catalog,
        OCT,
        date(2026, 10, 17),
    )
    assert raw.select(
        "event_id", "account_id", "metric", "quantity", "unit", "timestamp"
    ).rows() == [
        ("quote-0", "QUOTE", "voice", "1500", "min", "2026-10-17T00:00:00Z"),
        ("quote-1", "QUOTE", "sms", "3200", "message", "2026-10-17T00:00:00Z"),
    ]
    before = inline_usage([parse_quantity("sms=1")], catalog, OCT, date(2026, 9, 3))
    assert before["timestamp"].to_list() == ["2026-10-01T00:00:00Z"]


def test_inline_usage_unknown_metric(catalog: Catalog) -> None:
    with pytest.raises(
        QuoteError, match=r"metric 'fax' is not in the catalog \(known: rec, sms, voice\)"
    ):
        inline_usage([parse_quantity("fax=3")], catalog, OCT, OCT.start)


def valid_usage(catalog: Catalog, *texts: str, start: date) -> pl.DataFrame:
    raw = inline_usage([parse_quantity(t) for t in texts], catalog, OCT, start)
    checked = validate_usage(raw, catalog.metric_units(), OCT)
    assert checked.quarantine.height == 0
    return checked.valid


def test_quote_equals_the_same_rate_call(catalog: Catalog) -> None:
    # 3 seats from 2026-10-17 (15 of 31 days), 1,500 voice minutes, 3,200 SMS, recording
    # add-on, 10% off, VAT from the country:
    # platform 31 x 15/31 = 15.00; seats 3 x 14.50 x 15/31 = 21.05
    # voice 1,500 - 3 x 500 free = 0 => 0.00; SMS 3,200 x 0.0079 = 25.28;
    # recording 150 GB x 0.10 = 15.00; subtotal 76.33
    # discount 10% of 76.33 = 7.633 => -7.63; VAT 20% of 76.33 - 7.63 = 68.70 => 13.74
    start = date(2026, 10, 17)
    usage = valid_usage(catalog, "voice=1500min", "sms=3200", "rec=150GB", start=start)
    deal = AccountTerms.model_validate(
        {
            "account_id": "QUOTE",
            "discounts": [{"id": "d", "name": "Deal", "kind": "percentage", "value": "10"}],
        }
    )
    quoted = quote(
        usage,
        catalog,
        "team",
        OCT,
        start=start,
        seats=3,
        add_ons=["recording"],
        terms=deal,
        country="GB",
    )
    subscription_id = quoted.lines["subscription_id"][0]
    expected = rate(
        usage.lazy(),
        subscription_frame(
            [
                {
                    "subscription_id": subscription_id,
                    "account_id": "QUOTE",
                    "plan_id": "team",
                    "start_date": start,
                    "end_date": None,
                    "quantity": 3,
                    "add_ons": "recording",
                }
            ]
        ),
        catalog,
        OCT,
        accounts=pl.DataFrame({"account_id": ["QUOTE"], "country": ["GB"]}),
        terms={"QUOTE": deal},
    )
    assert_frame_equal(quoted.lines, expected.lines)
    assert_frame_equal(quoted.unrated, expected.unrated)
    assert_frame_equal(quoted.notices, expected.notices)
    assert dict(quoted.lines.select("charge_id", "amount_minor").iter_rows()) == {
        "platform": 1500,
        "seats": 2105,
        "voice": 0,
        "sms": 2528,
        "recording.storage": 1500,
        "discount:d": -763,
        "tax:GB": 1374,
    }


def test_quote_bills_usage_to_the_quoted_account(catalog: Catalog) -> None:
    # usage read from a file for another account is quoted for the quote's account
    usage = valid_usage(catalog, "sms=1000", start=OCT.start).with_columns(
        pl.lit("ACME").alias("account_id")
    )
    result = quote(usage, catalog, "team", OCT, account_id="Q-1")
    assert set(result.lines["account_id"]) == {"Q-1"}
    assert result.unrated.height == 0


def test_quote_document_totals(catalog: Catalog) -> None:
    # a full month, 1 seat, no usage: platform 31.00 + seat 14.50 = 45.50
    empty = pl.DataFrame(
        schema={
            "account_id": pl.String,
            "metric": pl.String,
            "quantity": pl.Decimal(38, 12),
            "timestamp": pl.Datetime("us", "UTC"),
        }
    )
    document = quote_document(quote(empty, catalog, "team", OCT), OCT, "team")
    assert (document["period"], document["plan"], document["totals"]) == (
        "2026-10",
        "team",
        {"USD": "45.50"},
    )
    assert [line["amount"] for line in document["lines"]] == ["31.00", "14.50"]


def test_quote_unknown_plan(catalog: Catalog) -> None:
    with pytest.raises(QuoteError, match=r"plan 'gold' is not in the catalog \(known: team\)"):
        quote(pl.DataFrame(), catalog, "gold", OCT)


def test_quote_unknown_add_on(catalog: Catalog) -> None:
    with pytest.raises(QuoteError, match=r"add-on\(s\) fax, sip not in the catalog"):
        quote(pl.DataFrame(), catalog, "team", OCT, add_ons=["recording", "fax", "sip"])


def test_quote_usage_timestamp_is_inside_a_mid_period_subscription(catalog: Catalog) -> None:
    # the inline event sits on the start day, so a mid-period quote rates it
    start = date(2026, 10, 30)
    usage = valid_usage(catalog, "sms=100", start=start)
    assert usage["timestamp"].to_list() == [datetime.fromisoformat("2026-10-30T00:00:00+00:00")]
    result = quote(usage, catalog, "team", OCT, start=start)
    assert result.unrated.height == 0
    assert "sms" in set(result.lines["charge_id"])
    assert result.lines.filter(pl.col("charge_id") == "sms")["quantity"][0] == Decimal(100)
