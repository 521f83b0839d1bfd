"""pricing_rules.charges.per_seat: seats x price x proration factor, a recurring line."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from pricing_rules.catalog import Catalog, parse_catalog
from pricing_rules.charges import PerSeatCharge
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import usage_frame

OCT = BillingPeriod.parse("2026-10")  # 31 days

CATALOG = """
version: "per-seat-test"
metrics:
  sms: {name: SMS, unit: message, aggregation: sum}
plans:
  team:
    name: Team
    currency: USD
    charges:
      - {id: seats, name: Seats, model: per_seat, unit_price: "14.50"}
      - {id: platform, name: Platform fee, model: flat, amount: "31.00"}
  floor:
    name: Team with a floor
    currency: USD
    charges:
      - {id: seats, name: Seats, model: per_seat, unit_price: "14.50", minimum_amount: "100.00"}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(CATALOG)


def seat_lines(
    catalog: Catalog,
    seats: int | None,
    start: date = date(2026, 1, 1),
    end: date | None = None,
    plan_id: str = "team",
) -> dict[str, dict[str, object]]:
    row: dict[str, object] = {
        "subscription_id": "S",
        "account_id": "A",
        "plan_id": plan_id,
        "start_date": start,
        "end_date": end,
    }
    if seats is not None:
        row["quantity"] = seats
    result = rate(usage_frame([]), subscription_frame([row]), catalog, OCT)
    return {line["charge_id"]: line for line in result.lines.iter_rows(named=True)}


def test_price_is_seat_periods_times_unit_price() -> None:
    # 25 seats for a full period at 14.50: 25 x 14.50 = 362.50
    charge = PerSeatCharge(id="s", name="Seats", model="per_seat", unit_price=Decimal("14.50"))
    priced = charge.price(Decimal(25))
    assert priced.amount == Decimal("362.50")
    assert [(d.label, d.quantity, d.unit_price, d.amount) for d in priced.details] == [
        ("Seats (advance)", Decimal(25), Decimal("14.50"), Decimal("362.50"))
    ]


def test_full_period(catalog: Catalog) -> None:
    # 25 seats x 14.50 x 31/31 = 362.50 => 36250 cents
    line = seat_lines(catalog, 25)["seats"]
    assert (line["charge_kind"], line["charge_model"]) == ("recurring", "per_seat")
    assert (line["quantity"], line["amount_minor"]) == (Decimal(25), 36250)
    assert line["description"] == "Seats: 25 seat(s), 31 of 31 days at 14.50 per period"


def test_mid_period_start_is_prorated(catalog: Catalog) -> None:
    # Signed up on 2026-10-17: 15 of 31 days.
    # 25 seats x 14.50 x 15/31 = 362.50 x 15/31 = 175.403... => 17540 cents
    line = seat_lines(catalog, 25, start=date(2026, 10, 17))["seats"]
    assert line["amount_minor"] == 17540
    assert line["proration_factor"] == Decimal("0.483870967742")  # 15/31 at 12 places
    assert line["description"] == "Seats: 25 seat(s), 15 of 31 days at 14.50 per period"
    detail = json.loads(line["details"])[0]
    assert Decimal(detail["proration_factor"]).quantize(Decimal("1e-12")) == Decimal(
        "0.483870967742"
    )


def test_mid_period_end_is_prorated(catalog: Catalog) -> None:
    # Ended on 2026-10-11 (exclusive): 10 of 31 days.
    # 10 seats x 14.50 x 10/31 = 145 x 10/31 = 46.774... => 4677 cents
    # the flat platform fee is prorated alike: 31.00 x 10/31 = 10.00 => 1000 cents
    lines = seat_lines(catalog, 10, end=date(2026, 10, 11))
    assert lines["seats"]["amount_minor"] == 4677
    assert lines["platform"]["amount_minor"] == 1000


def test_seats_default_to_one(catalog: Catalog) -> None:
    # no quantity column: 1 seat x 14.50 = 14.50 => 1450 cents
    assert seat_lines(catalog, None)["seats"]["amount_minor"] == 1450


def test_seats_do_not_multiply_a_flat_fee(catalog: Catalog) -> None:
    # 40 seats: seats 40 x 14.50 = 580.00; the platform fee stays 31.00
    lines = seat_lines(catalog, 40)
    assert (lines["seats"]["amount_minor"], lines["platform"]["amount_minor"]) == (58000, 3100)
    assert lines["platform"]["quantity"] == 1


def test_zero_seats_cost_nothing(catalog: Catalog) -> None:
    assert seat_lines(catalog, 0)["seats"]["amount_minor"] == 0


def test_per_seat_is_recurring_and_validated() -> None:
    assert PerSeatCharge.kind == "recurring"
    with pytest.raises(ValidationError, match="must not be negative"):
        PerSeatCharge(id="s", name="Seats", model="per_seat", unit_price=Decimal("-1"))


def test_minimum_amount_on_a_per_seat_charge_is_honoured(catalog: Catalog) -> None:
    # 1 seat x 14.50 = 14.50, below the 100.00 minimum: topped up to 100.00 => 10000 cents
    assert seat_lines(catalog, 1, plan_id="floor")["seats"]["amount_minor"] == 10000
