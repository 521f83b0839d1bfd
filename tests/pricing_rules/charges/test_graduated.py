"""pricing_rules.charges.graduated: each unit priced by the tier it falls in."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from pricing_rules.charges import GraduatedCharge, Tier
from pricing_rules.money import RoundingMode, round_money, to_minor_units
from pricing_rules.rating import price_quantity


def graduated(*tiers: tuple[str | None, str] | tuple[str | None, str, str]) -> GraduatedCharge:
    return GraduatedCharge(
        id="g",
        name="Graduated",
        model="graduated",
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
# 11+ at 6 USD. Stripe's `up_to` is inclusive, like ours.
STRIPE = graduated(("5", "7"), ("10", "6.5"), (None, "6"))


@pytest.mark.parametrize(
    ("fonts", "expected_cents"),
    [
        (1, 700),  # 1 x 7 = 7.00 => 700 cents
        (5, 3500),  # 5 x 7 = 35.00 => 3500 cents (same as volume at 5)
        (6, 4150),  # 5 x 7 + 1 x 6.5 = 35 + 6.5 = 41.50 => 4150 cents
        (10, 6750),  # 5 x 7 + 5 x 6.5 = 35 + 32.5 = 67.50 => 6750 cents
        (20, 12750),  # 5 x 7 + 5 x 6.5 + 10 x 6 = 35 + 32.5 + 60 = 127.50 => 12750 cents
        (25, 15750),  # 35 + 32.5 + 15 x 6 = 35 + 32.5 + 90 = 157.50 => 15750 cents
    ],
)
def test_stripe_graduated_example(fonts: int, expected_cents: int) -> None:
    assert cents(STRIPE.price(Decimal(fonts)).amount) == expected_cents


# Kill Bill docs, "Catalog Examples", Consumable Billing with tierBlockPolicy ALL_TIERS (a
# water-monthly plan): up to 1,000 liters at 1.5 USD, then 2.0 USD. Kill Bill's invoices
# add the plan's 30 USD recurring charge to the usage item priced here.
KILL_BILL = graduated(("1000", "1.5"), (None, "2.0"))


@pytest.mark.parametrize(
    ("liters", "expected_cents"),
    [
        (400, 60000),  # 400 x 1.5 = 600.00 (Kill Bill's invoice: 30 + 600 = 630)
        (1200, 190000),  # 1,000 x 1.5 + 200 x 2.0 = 1,500 + 400 = 1,900.00 (invoice 1,930)
    ],
)
def test_kill_bill_all_tiers_example(liters: int, expected_cents: int) -> None:
    assert cents(KILL_BILL.price(Decimal(liters)).amount) == expected_cents


def test_kill_bill_consumable_in_arrear_tutorial() -> None:
    # Kill Bill docs, "Consumable In Arrear" tutorial: the first 5 videos of the month at
    # 2 USD, the next at 1 USD. Louis watches 13 videos: 5 x 2 + 8 x 1 = 18.00
    videos = graduated(("5", "2"), (None, "1"))
    assert cents(videos.price(Decimal(13)).amount) == 1800


def test_stripe_graduated_details_explain_each_tier() -> None:
    # 20 fonts: tier 1 (0, 5] 5 x 7 = 35; tier 2 (5, 10] 5 x 6.5 = 32.5; tier 3 (10, inf) 10 x 6
    priced = STRIPE.price(Decimal(20))
    rows = [
        (d.tier, d.tier_from, d.tier_to, d.quantity, d.unit_price, d.amount) for d in priced.details
    ]
    assert rows == [
        (1, Decimal(0), Decimal(5), Decimal(5), Decimal(7), Decimal(35)),
        (2, Decimal(5), Decimal(10), Decimal(5), Decimal("6.5"), Decimal("32.5")),
        (3, Decimal(10), None, Decimal(10), Decimal(6), Decimal(60)),
    ]
    assert [d.label for d in priced.details] == ["tier 1", "tier 2", "tier 3"]
    assert sum(d.amount for d in priced.details) == priced.amount == Decimal("127.5")
    assert priced.unit_price is None  # no single unit price for a graduated charge


# Lago docs, "Graduated" charge model (API company): 1 USD per unit for the first 100 units,
# 0.50 for the next 100, 0.10 for any additional unit.
LAGO = graduated(("100", "1"), ("200", "0.50"), (None, "0.10"))


@pytest.mark.parametrize(
    ("calls", "expected_cents"),
    [
        (50, 5000),  # 50 x 1 = 50.00 => 5000 cents
        (100, 10000),  # 100 x 1 = 100.00 => 10000 cents
        (150, 12500),  # 100 x 1 + 50 x 0.50 = 100 + 25 = 125.00 => 12500 cents
        (250, 15500),  # 100 x 1 + 100 x 0.50 + 50 x 0.10 = 100 + 50 + 5 = 155.00 => 15500 cents
    ],
)
def test_lago_graduated_example(calls: int, expected_cents: int) -> None:
    assert cents(LAGO.price(Decimal(calls)).amount) == expected_cents


def test_flat_fee_per_tier_is_charged_once_a_tier_is_reached() -> None:
    # tiers: (0, 5] at 5 + flat 100; (5, inf) at 2 + flat 50
    charge = graduated(("5", "5", "100"), (None, "2", "50"))
    # 5 units stay in tier 1: 5 x 5 + 100 = 125 => 12500 cents
    assert cents(charge.price(Decimal(5)).amount) == 12500
    # 7 units reach tier 2: (5 x 5 + 100) + (2 x 2 + 50) = 125 + 54 = 179 => 17900 cents
    priced = charge.price(Decimal(7))
    assert cents(priced.amount) == 17900
    assert [d.flat_fee for d in priced.details] == [Decimal(100), Decimal(50)]


def test_zero_quantity_costs_nothing_and_has_no_tiers() -> None:
    charge = graduated(("5", "5", "100"), (None, "2"))
    priced = charge.price(Decimal(0))
    assert priced.amount == 0
    assert priced.details == ()


def test_upper_bound_is_inclusive() -> None:
    # exactly 5 units use only tier 1; 5.5 units put 0.5 in tier 2
    assert len(STRIPE.price(Decimal(5)).details) == 1
    # 5 x 7 + 0.5 x 6.5 = 35 + 3.25 = 38.25
    assert STRIPE.price(Decimal("5.5")).amount == Decimal("38.25")


def test_catalog_voice_tiers_priced_per_minute_from_seconds() -> None:
    # The catalog's USD voice charge: first 1,000 min free, up to 20,000 at 0.0120, then 0.0085.
    charge = GraduatedCharge(
        id="voice",
        name="Outbound voice",
        model="graduated",
        metric="voice",
        price_unit="min",
        tiers=[
            Tier(up_to=Decimal(1000), unit_price=Decimal("0.00")),
            Tier(up_to=Decimal(20000), unit_price=Decimal("0.0120")),
            Tier(up_to=None, unit_price=Decimal("0.0085")),
        ],
    )
    # 1,500,000 s / 60 = 25,000 min:
    # 1,000 x 0 + 19,000 x 0.0120 + 5,000 x 0.0085 = 0 + 228 + 42.50 = 270.50 => 27050 cents
    quantity, unit, priced = price_quantity(charge, Decimal(1_500_000), "s")
    assert (quantity, unit) == (Decimal(25000), "min")
    assert cents(priced.amount) == 27050


VOICE = GraduatedCharge(
    id="voice",
    name="Outbound voice",
    model="graduated",
    metric="voice",
    price_unit="min",
    tiers=[
        Tier(up_to=Decimal(1000), unit_price=Decimal("0.00")),
        Tier(up_to=Decimal(20000), unit_price=Decimal("0.0120")),
        Tier(up_to=None, unit_price=Decimal("0.0085")),
    ],
)


def exact_total(values: list[Decimal]) -> Decimal:
    wide = decimal.Context(prec=200)
    total = Decimal(0)
    for value in values:
        total = wide.add(total, value)
    return total


def test_details_add_up_for_a_converted_quantity() -> None:
    # Regression: a 50-digit seconds / 60 quantity once reached the tiers, and the rows no
    # longer added up. The quantity is priced at frame scale (12 decimals), as the line shows.
    # 1,500,001 s / 60 = 25,000.016666666667 min:
    # 1,000 x 0 + 19,000 x 0.0120 + 5,000.016666666667 x 0.0085
    # = 0 + 228 + 42.5001416666666695 = 270.5001416666666695 => 27050 cents
    quantity, _, priced = price_quantity(VOICE, Decimal(1_500_001), "s")
    assert quantity == Decimal("25000.016666666667")
    assert priced.amount == Decimal("270.5001416666666695")
    assert exact_total([d.amount for d in priced.details]) == priced.amount
    assert exact_total([d.quantity for d in priced.details]) == quantity
    assert cents(priced.amount) == 27050


def test_details_add_up_when_tier_amounts_differ_in_magnitude() -> None:
    # 1,260,031 s / 60 = 21,000.516666666667 min:
    # 1,000 x 0 + 19,000 x 0.0120 + 1,000.516666666667 x 0.0085
    # = 228 + 8.5043916666666695 = 236.5043916666666695 => 23650 cents
    _, _, priced = price_quantity(VOICE, Decimal(1_260_031), "s")
    assert priced.amount == Decimal("236.5043916666666695")
    assert exact_total([d.amount for d in priced.details]) == priced.amount
    assert cents(priced.amount) == 23650


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        # overlapping / non-contiguous bounds: tier 1 would cover (100, 50]
        (
            [("100", "1"), ("50", "0.5"), (None, "0.1")],
            "tier 1 ends at 50, not above the previous bound 100",
        ),
        # an empty tier (100, 100]
        (
            [("100", "1"), ("100", "0.5"), (None, "0.1")],
            "tier 1 ends at 100, not above the previous bound 100",
        ),
        # tiers start at zero: a first bound of 0 is an empty tier
        ([("0", "1"), (None, "0.5")], "tier 0 ends at 0, not above the previous bound 0"),
        (
            [(None, "1"), ("100", "0.5"), (None, "0.1")],
            "tier 0 is open-ended but is not the last tier",
        ),
        (
            [("100", "1"), ("200", "0.5")],
            r"the last tier \(tier 1\) must be open-ended \(up_to: null\)",
        ),
        ([("100", "-1"), (None, "0.5")], "tier 0 unit_price -1 is negative"),
        ([("100", "1", "-5"), (None, "0.5")], "tier 0 flat_fee -5 is negative"),
        ([], "at least one tier is required"),
    ],
)
def test_tier_validation_errors(tiers: list[tuple[str | None, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        graduated(*tiers)


def test_tier_validation_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError, match="open-ended but is not the last tier") as raised:
        graduated((None, "-1"), ("10", "1"))
    text = str(raised.value)
    assert "tier 0 unit_price -1 is negative" in text
    assert "the last tier (tier 1) must be open-ended" in text


def test_tiers_cannot_name_a_lower_bound() -> None:
    # Contiguity holds by construction: each tier starts where the previous one ends.
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Tier.model_validate({"from": "0", "up_to": "10", "unit_price": "1"})
