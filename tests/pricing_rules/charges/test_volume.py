"""pricing_rules.charges.volume: the whole quantity at the one tier the total reaches."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing_rules.charges import Tier, VolumeCharge
from pricing_rules.money import RoundingMode, round_money, to_minor_units


def volume(*tiers: tuple[str | None, str] | tuple[str | None, str, str]) -> VolumeCharge:
    return VolumeCharge(
        id="v",
        name="Volume",
        model="volume",
        metric="m",
        tiers=[
            Tier(
                up_to=None if t[0] is None else Decimal(t[0]),
                unit_price=Decimal(t[1]),
                flat_fee=Decimal(t[2]) if len(t) == 3 else Decimal(0),
            )
            for t in tiers
        ],
    )


def cents(amount: Decimal) -> int:
    return to_minor_units(round_money(amount, "USD", RoundingMode.HALF_UP), "USD")


# Stripe docs, "Set up tiered pricing" (Typographic fonts): 1-5 at 7 USD, 6-10 at 6.5 USD,
# 11+ at 6 USD; volume-based pricing bills every font at the tier the total reaches.
STRIPE = volume(("5", "7"), ("10", "6.5"), (None, "6"))


@pytest.mark.parametrize(
    ("fonts", "tier", "expected_cents"),
    [
        (1, 1, 700),  # 1 x 7 = 7 USD => 700 cents
        (5, 1, 3500),  # 5 x 7 = 35 USD => 3500 cents
        (6, 2, 3900),  # 6 x 6.5 = 39 USD => 3900 cents (less per font than 5 fonts)
        (20, 3, 12000),  # 20 x 6 = 120 USD => 12000 cents
        (25, 3, 15000),  # 25 x 6 = 150 USD => 15000 cents
    ],
)
def test_stripe_volume_example(fonts: int, tier: int, expected_cents: int) -> None:
    priced = STRIPE.price(Decimal(fonts))
    assert cents(priced.amount) == expected_cents
    (detail,) = priced.details
    assert detail.tier == tier
    assert detail.quantity == Decimal(fonts)


# Lago docs, "Volume" charge model: (0, 10,000] at 0.0010, (10,000, 50,000] at 0.0008,
# (50,000, 100,000] at 0.0006, above at 0.0004; every tier adds a 10 USD flat fee.
LAGO = volume(
    ("10000", "0.0010", "10"),
    ("50000", "0.0008", "10"),
    ("100000", "0.0006", "10"),
    (None, "0.0004", "10"),
)


@pytest.mark.parametrize(
    ("calls", "expected_cents"),
    [
        (65_000, 4900),  # 65,000 x 0.0006 + 10 = 39 + 10 = 49.00 => 4900 cents (Lago's example)
        (10_000, 2000),  # 10,000 x 0.0010 + 10 = 10 + 10 = 20.00 => 2000 cents
        (10_001, 1800),  # 10,001 x 0.0008 + 10 = 8.0008 + 10 = 18.0008 => 1800 cents
        (200_000, 9000),  # 200,000 x 0.0004 + 10 = 80 + 10 = 90.00 => 9000 cents
    ],
)
def test_lago_volume_example(calls: int, expected_cents: int) -> None:
    assert cents(LAGO.price(Decimal(calls)).amount) == expected_cents


def test_lago_volume_detail() -> None:
    # 65,000 calls fall in (50,000, 100,000]: 65,000 x 0.0006 + 10 flat = 49
    priced = LAGO.price(Decimal(65_000))
    (detail,) = priced.details
    assert detail.label == "tier 3 (all units)"
    assert (detail.tier_from, detail.tier_to) == (Decimal(50_000), Decimal(100_000))
    assert (detail.unit_price, detail.flat_fee) == (Decimal("0.0006"), Decimal(10))
    assert detail.amount == priced.amount == Decimal(49)
    assert priced.unit_price == Decimal("0.0006")


def test_catalog_storage_example() -> None:
    # the catalog's storage tiers: (0, 100] at 0.25, (100, 1000] at 0.18, above at 0.12
    charge = volume(("100", "0.25"), ("1000", "0.18"), (None, "0.12"))
    assert cents(charge.price(Decimal(100)).amount) == 2500  # 100 x 0.25 = 25.00
    assert cents(charge.price(Decimal(150)).amount) == 2700  # 150 x 0.18 = 27.00
    assert cents(charge.price(Decimal(1500)).amount) == 18000  # 1500 x 0.12 = 180.00


def test_zero_quantity_uses_tier_one_without_its_flat_fee() -> None:
    priced = LAGO.price(Decimal(0))
    (detail,) = priced.details
    assert detail.tier == 1
    assert detail.flat_fee is None
    assert priced.amount == 0


def test_tier_index_boundaries_are_inclusive_above() -> None:
    assert STRIPE.tier_index(Decimal(0)) == 0
    assert STRIPE.tier_index(Decimal(5)) == 0
    assert STRIPE.tier_index(Decimal("5.000001")) == 1
    assert STRIPE.tier_index(Decimal(10)) == 1
    assert STRIPE.tier_index(Decimal(11)) == 2
    assert STRIPE.tier_index(Decimal(10**9)) == 2


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        (
            [("100", "1"), ("50", "0.5"), (None, "0.1")],
            "tier 1 ends at 50, not above the previous bound 100",
        ),
        (
            [(None, "1"), ("100", "0.5"), (None, "0.1")],
            "tier 0 is open-ended but is not the last tier",
        ),
        (
            [("100", "1"), ("200", "0.5")],
            r"the last tier \(tier 1\) must be open-ended \(up_to: null\)",
        ),
        ([("100", "1"), (None, "-0.5")], "tier 1 unit_price -0.5 is negative"),
        ([("100", "1", "-10"), (None, "0.5")], "tier 0 flat_fee -10 is negative"),
    ],
)
def test_tier_validation_errors(tiers: list[tuple[str | None, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        volume(*tiers)


# Kill Bill docs, "Catalog Examples", Consumable Billing with tierBlockPolicy TOP_TIER: the
# same water-monthly tiers (up to 1,000 liters at 1.5 USD, then 2.0 USD), every liter at
# the tier the total reaches. Kill Bill's invoices add the 30 USD recurring charge.
@pytest.mark.parametrize(
    ("liters", "expected_cents"),
    [
        (400, 60000),  # 400 x 1.5 = 600.00 (Kill Bill's invoice: 30 + 600 = 630)
        (1200, 240000),  # 1,200 x 2.0 = 2,400.00 (invoice 30 + 2,400 = 2,430)
    ],
)
def test_kill_bill_top_tier_example(liters: int, expected_cents: int) -> None:
    top_tier = volume(("1000", "1.5"), (None, "2.0"))
    assert cents(top_tier.price(Decimal(liters)).amount) == expected_cents


# Kill Bill docs, "Catalog Examples", Capacity Billing: a flat 750 USD up to 1,000 units and
# 500 USD above (Kill Bill caps that tier at 10,000; our last tier is open). A volume
# charge whose tiers have only flat fees.
@pytest.mark.parametrize(
    ("units", "expected_cents"),
    [
        (400, 75000),  # tier 1: 750.00 flat (Kill Bill's invoice: 30 + 750 = 780)
        (1200, 50000),  # tier 2: 500.00 flat (invoice 30 + 500 = 530)
    ],
)
def test_kill_bill_capacity_billing_example(units: int, expected_cents: int) -> None:
    capacity = volume(("1000", "0", "750"), (None, "0", "500"))
    assert cents(capacity.price(Decimal(units)).amount) == expected_cents
