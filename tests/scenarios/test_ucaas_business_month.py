"""Golden scenario: one UCaaS Business (USD) account for October 2026, usage in, invoice
lines out, priced with the real catalog (catalog/catalog.yaml and its intl-voice deck)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from pricing_rules.catalog import load_catalog
from pricing_rules.invoicing import assemble_invoices
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "catalog" / "catalog.yaml")
OCT = BillingPeriod.parse("2026-10")
WEDNESDAY_11AM_NEW_YORK = datetime(2026, 10, 7, 15, 0, tzinfo=UTC)
SATURDAY_NEW_YORK = datetime(2026, 10, 10, 16, 0, tzinfo=UTC)
# The account's month is New York's: it starts at local midnight, 04:00 UTC (EDT).
OCT_1_NEW_YORK = datetime(2026, 10, 1, 4, 0, tzinfo=UTC)
OCT_20_NEW_YORK = datetime(2026, 10, 20, 4, 0, tzinfo=UTC)


def event(
    metric: str,
    quantity: str,
    at: datetime,
    destination: str | None = None,
    direction: str | None = None,
) -> dict[str, object]:
    return {
        "account_id": "ACC-1",
        "metric": metric,
        "quantity": Decimal(quantity),
        "timestamp": at,
        "destination": destination,
        "direction": direction,
    }


USAGE = pl.DataFrame(
    [
        event("seats", "20", OCT_1_NEW_YORK),
        event("seats", "25", OCT_20_NEW_YORK),
        event("voice", "125", WEDNESDAY_11AM_NEW_YORK, "+442071234567", "outbound"),
        event("voice", "61", SATURDAY_NEW_YORK, "+447700900123", "outbound"),
        event("voice", "3600", WEDNESDAY_11AM_NEW_YORK, "+12125550100", "outbound"),
        event("voice", "90000", WEDNESDAY_11AM_NEW_YORK, "+12125550100", "inbound"),
        event("sms", "2350", WEDNESDAY_11AM_NEW_YORK, direction="outbound"),
        event("bandwidth", "62.5", WEDNESDAY_11AM_NEW_YORK),
        event("storage", "150", WEDNESDAY_11AM_NEW_YORK),
    ],
    schema={
        "account_id": pl.String,
        "metric": pl.String,
        "quantity": pl.Decimal(38, 12),
        "timestamp": pl.Datetime("us", "UTC"),
        "destination": pl.String,
        "direction": pl.String,
    },
)
SUBSCRIPTION = subscription_frame(
    [
        {
            "subscription_id": "SUB-1",
            "account_id": "ACC-1",
            "plan_id": "ucaas-business-usd",
            "start_date": date(2025, 1, 1),
            "end_date": None,
        }
    ]
)
ACCOUNTS = pl.DataFrame(
    {
        "account_id": ["ACC-1"],
        "currency": ["USD"],
        "country": ["US"],
        "timezone": ["America/New_York"],
    }
)


def test_every_line_of_the_invoice() -> None:
    result = rate(USAGE.lazy(), SUBSCRIPTION, CATALOG, OCT, accounts=ACCOUNTS)
    (invoice,) = assemble_invoices(result.lines, {"ACC-1": ("Acme", None)}, OCT, "v", "h")
    lines = {line.charge_name: line.amount_minor for line in invoice.lines}
    assert lines == {
        # 1 period x 199.00 = 199.00
        "Platform fee": 19900,
        # seats are time-weighted over New York's October (Oct 1 04:00 UTC to Nov 1
        # 04:00 UTC, 31 days): 20 seats for 19 days, then 25 for 12 days:
        # (20 x 19 + 25 x 12) / 31 = 21.935483870968 seat-months x 14.50 = 318.06
        "Seats": 31806,
        # per call, 60/6 increments, rounded to 4 places:
        #   London landline 125 s, peak (11:00 New York); longest prefix 4420 (0.0110),
        #     not 44: 60 + 11 x 6 = 126 s x 0.0110 / 60 = 0.02310
        #   UK mobile 61 s, Saturday: 60 + 1 x 6 = 66 s x 0.0180 / 60 = 0.01980
        #   US 3600 s: 3600 s x 0.0060 / 60 = 0.36000
        #   0.0231 + 0.0198 + 0.3600 = 0.4029 => 0.40 (half up)
        "Outbound calls": 40,
        # 90,000 s / 60 = 1,500 min inbound; 1,000 free; 500 x 0.0040 = 2.00
        "Inbound minutes": 200,
        # 2,350 messages: ceil(2350 / 1000) = 3 blocks - 1 free = 2 x 7.50 = 15.00
        "SMS": 1500,
        # 62.5 Mbps peak falls in (50, inf): all 62.5 x 1.90 = 118.75
        "SIP trunk bandwidth": 11875,
        # 150 GB peak, 10 GB included: 140 GB in (100, 1000]: 140 x 0.18 = 25.20
        "Recording storage": 2520,
        # US: 0% of the subtotal
        "Sales tax (resale certificate on file)": 0,
    }
    # Spend 678.41 is above the 300.00 minimum commitment: no true-up line.
    assert "Minimum commitment true-up" not in lines
    # 199.00 + 318.06 + 0.40 + 2.00 + 15.00 + 118.75 + 25.20 + 0 = 678.41: the total is
    # the sum of its rounded lines.
    assert invoice.total_minor == sum(lines.values()) == 67841
    assert result.unrated.height == 0


def test_a_quiet_month_is_trued_up_to_the_commitment() -> None:
    quiet = USAGE.filter(pl.col("metric") == "seats").with_columns(
        pl.lit(Decimal(5)).cast(pl.Decimal(38, 12)).alias("quantity")
    )
    result = rate(quiet.lazy(), SUBSCRIPTION, CATALOG, OCT, accounts=ACCOUNTS)
    lines = dict(result.lines.select("charge_name", "amount_minor").iter_rows())
    # 199.00 platform + 5 x 14.50 seats = 271.50; commitment 300.00 - 271.50 = 28.50
    assert lines["Platform fee"] + lines["Seats"] == 27150
    assert lines["Minimum commitment true-up"] == 2850
    assert sum(lines.values()) == 30000
