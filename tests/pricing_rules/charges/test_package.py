"""pricing_rules.charges.package: usage sold in whole blocks, some of them free."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from pricing_rules.catalog import parse_catalog
from pricing_rules.charges import Allowance, PackageCharge, price_charge
from pricing_rules.money import RoundingMode, round_money, to_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import rate, subscription_frame
from tests.pricing_rules.frames import at, usage_frame


def package(
    block_size: str,
    block_price: str,
    free_blocks: int = 0,
    free_units: str | None = None,
) -> PackageCharge:
    return PackageCharge(
        id="pkg",
        name="Package",
        model="package",
        metric="m",
        block_size=Decimal(block_size),
        block_price=Decimal(block_price),
        free_blocks=free_blocks,
        free_units=None if free_units is None else Allowance(units=Decimal(free_units)),
    )


def cents(amount: Decimal) -> int:
    return to_minor_units(round_money(amount, "USD", RoundingMode.HALF_UP), "USD")


def rows(charge: PackageCharge, quantity: str) -> list[tuple[str, Decimal, Decimal]]:
    priced = price_charge(charge, Decimal(quantity))
    return [(d.label, d.quantity, d.amount) for d in priced.details]


# Stripe docs, "Quantity transformation": a productivity suite charges 10 USD for every
# 5 users or portion thereof (transform_quantity divide_by=5, round=up), so 1, 3 and 5
# users pay 10 USD and 6 or 7 users pay 20 USD. 8 users is 2 packages too.
STRIPE = package("5", "10")


@pytest.mark.parametrize(
    ("users", "expected_cents"),
    [
        (1, 1000),  # ceil(1 / 5) = 1 package x 10 = 10.00 => 1000 cents
        (3, 1000),  # ceil(3 / 5) = 1 package x 10 = 10.00 => 1000 cents
        (5, 1000),  # ceil(5 / 5) = 1 package x 10 = 10.00 => 1000 cents
        (6, 2000),  # ceil(6 / 5) = 2 packages x 10 = 20.00 => 2000 cents
        (7, 2000),  # ceil(7 / 5) = 2 packages x 10 = 20.00 => 2000 cents
        (8, 2000),  # ceil(8 / 5) = 2 packages x 10 = 20.00 => 2000 cents
    ],
)
def test_stripe_package_example(users: int, expected_cents: int) -> None:
    assert cents(STRIPE.price(Decimal(users)).amount) == expected_cents


def test_stripe_package_detail_counts_blocks() -> None:
    # 8 users: ceil(8 / 5) = 2 blocks of 5 at 10 = 20
    assert rows(STRIPE, "8") == [("2 block(s) of 5", Decimal(2), Decimal(20))]


# Lago docs, "Package" charge model: 5 USD per 100 units and the first 100 units free;
# 201 units cost 0 (first 100) + 5 (next 100) + 5 (last unit) = 10 USD.
def test_lago_package_example_with_free_units() -> None:
    # 201 units - 100 free = 101 paid units; ceil(101 / 100) = 2 blocks x 5 = 10.00 => 1000 cents
    charge = package("100", "5", free_units="100")
    priced = price_charge(charge, Decimal(201))
    assert cents(priced.amount) == 1000
    assert rows(charge, "201") == [
        ("included allowance", Decimal(100), Decimal(0)),
        ("2 block(s) of 100", Decimal(2), Decimal(10)),
    ]


def test_lago_example_with_one_free_block_costs_the_same() -> None:
    # ceil(201 / 100) = 3 blocks; 3 - 1 free = 2 x 5 = 10.00 => 1000 cents
    charge = package("100", "5", free_blocks=1)
    assert cents(charge.price(Decimal(201)).amount) == 1000
    assert rows(charge, "201") == [
        ("1 free block(s) of 100", Decimal(1), Decimal(0)),
        ("2 block(s) of 100", Decimal(2), Decimal(10)),
    ]


def test_kill_bill_block_size_example() -> None:
    # Kill Bill docs, "Catalog Examples", Block Size Greater Than One: minutes in blocks of
    # 10 at 1.00 USD (for the first 100 blocks). 400 minutes = 40 blocks x 1.00 = 40.00;
    # Kill Bill's invoice adds the 30 USD recurring charge: 30 + 40 = 70.
    priced = package("10", "1.00").price(Decimal(400))
    assert cents(priced.amount) == 4000
    assert [d.quantity for d in priced.details] == [Decimal(40)]


def test_zero_usage_costs_nothing_and_still_explains_itself() -> None:
    # ceil(0 / 5) = 0 blocks x 10 = 0; no free-block row when no block is started
    charge = package("5", "10", free_blocks=2)
    priced = charge.price(Decimal(0))
    assert priced.amount == 0
    assert [(d.label, d.quantity, d.amount) for d in priced.details] == [
        ("0 block(s) of 5", Decimal(0), Decimal(0))
    ]


@pytest.mark.parametrize(
    ("quantity", "blocks"),
    [
        ("10", 2),  # exactly 2 x 5: no extra block
        ("9.999999999999", 2),  # just under the boundary: 2 blocks
        ("10.000000000001", 3),  # a started block is a whole block
        ("5", 1),
        ("0.000000000001", 1),
    ],
)
def test_exact_block_boundary(quantity: str, blocks: int) -> None:
    priced = STRIPE.price(Decimal(quantity))
    assert priced.amount == blocks * 10
    assert priced.details[-1].quantity == blocks


def test_free_blocks_larger_than_used_never_go_negative() -> None:
    # 7 units: ceil(7 / 5) = 2 blocks, 5 free blocks offered -> only 2 used, 0 paid => 0.00
    charge = package("5", "10", free_blocks=5)
    assert rows(charge, "7") == [
        ("2 free block(s) of 5", Decimal(2), Decimal(0)),
        ("0 block(s) of 5", Decimal(0), Decimal(0)),
    ]
    assert charge.price(Decimal(7)).amount == 0


def test_fractional_block_size() -> None:
    # 0.9 GB in blocks of 0.25 GB at 1.20: ceil(0.9 / 0.25) = 4 blocks x 1.20 = 4.80
    charge = package("0.25", "1.20")
    assert charge.price(Decimal("0.9")).amount == Decimal("4.80")
    assert charge.price(Decimal("0.9")).details[-1].label == "4 block(s) of 0.25"


def test_free_units_are_taken_before_blocks_are_counted() -> None:
    # 250 units, 120 free: 130 paid -> ceil(130 / 100) = 2 blocks x 5 = 10.00
    # (counting blocks first would give ceil(250 / 100) = 3 blocks)
    assert price_charge(package("100", "5", free_units="120"), Decimal(250)).amount == 10


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("block_size", "0", "must be positive"),
        ("block_size", "-5", "must be positive"),
        ("block_price", "-1", "must not be negative"),
        ("free_blocks", -1, "must not be negative"),
    ],
)
def test_invalid_package_is_rejected(field: str, value: object, message: str) -> None:
    data: dict[str, object] = {
        "id": "pkg",
        "name": "Package",
        "model": "package",
        "metric": "m",
        "block_size": "5",
        "block_price": "10",
        field: value,
    }
    with pytest.raises(ValidationError, match=message):
        PackageCharge.model_validate(data)


def test_block_count_is_exact_for_every_frame_quantity() -> None:
    # 10^16 + 10^-12 units in blocks of 1 start block 10^16 + 1
    priced = package("1", "1").price(Decimal("10000000000000000.000000000001"))
    assert priced.details[-1].quantity == Decimal(10**16 + 1)


CATALOG = """
version: "package-test"
metrics:
  rental: {name: Car rental, unit: s, aggregation: sum}
plans:
  rent:
    name: Rental
    currency: USD
    charges:
      - {id: hours, name: Rental hours, model: package, metric: rental, price_unit: h,
         block_size: "1", block_price: "10.00"}
"""


def test_stripe_car_rental_hours_through_rate() -> None:
    # Stripe docs, "Transform quantities": 10 USD per hour, rounded up to a full hour;
    # a 150-minute rental is 3 hours => 30 USD.
    # 9,000 s = 2.5 h -> ceil(2.5 / 1) = 3 blocks x 10.00 = 30.00 => 3000 cents
    catalog = parse_catalog(CATALOG)
    subs = subscription_frame(
        [
            {
                "subscription_id": "S",
                "account_id": "A",
                "plan_id": "rent",
                "start_date": date(2026, 1, 1),
                "end_date": None,
            }
        ]
    )
    result = rate(
        usage_frame([("A", "rental", 9_000, at(5))]),
        subs,
        catalog,
        BillingPeriod.parse("2026-10"),
    )
    line = result.lines.row(0, named=True)
    assert (line["line_id"], line["charge_model"], line["unit"]) == ("S:hours", "package", "h")
    assert (line["quantity"], line["amount_minor"]) == (Decimal("2.5"), 3000)
    assert (
        line["description"] == "Rental hours: 2.5 h — blocks of 1 h: 3 started, 0 free, 3 at 10.00"
    )
