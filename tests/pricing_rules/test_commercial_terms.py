"""Commercial terms through `rate`: commitments, add-ons, discounts, tax, prepaid credits,
account price overrides, line order and the single rounding of every line."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pricing_rules.catalog import Catalog, CatalogError, parse_catalog
from pricing_rules.lifecycle import History
from pricing_rules.money import RoundingMode, round_money, to_minor_units
from pricing_rules.periods import BillingPeriod
from pricing_rules.rating import KIND_ORDER, RatingError, RatingResult, rate, subscription_frame
from pricing_rules.terms import AccountTerms
from tests.pricing_rules.frames import FRAME_PROPERTY, at, usage_frame
from validation.schemas import full_depth, rated_lines_schema

D = Decimal
OCT = BillingPeriod.parse("2026-10")  # 31 days

CATALOG = """
version: "terms"
metrics:
  sms: {name: SMS, unit: message, aggregation: sum}
  voice: {name: Voice, unit: s, aggregation: sum}
  rec: {name: Recording storage, unit: GB, aggregation: max}
  calls: {name: API calls, unit: call, aggregation: sum}
taxes:
  GB: {name: VAT, rate: "0.20"}
  DE: {name: MwSt, rate: "0.19"}
add_ons:
  recording:
    name: Call recording
    charges:
      - {id: fee, name: Recording fee, model: flat, amount: "20.00"}
      - {id: storage, name: Recording storage, model: per_unit, metric: rec, unit_price: "0.10"}
  intl:
    name: International calling
    charges:
      - {id: voice, name: International voice, model: per_unit, metric: voice,
         price_unit: min, unit_price: "0.05"}
plans:
  biz:
    name: Business
    currency: USD
    add_ons: [recording]
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "100.00"}
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.01"}
      - id: voice
        name: Voice
        model: graduated
        metric: voice
        price_unit: min
        tiers:
          - {up_to: "1000", unit_price: "0.00"}
          - {up_to: null, unit_price: "0.02"}
  committed:
    name: Committed
    currency: USD
    minimum_commitment: "310.00"
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "31.00"}
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.01"}
  lago:
    name: Lago minimum commitment scenario
    currency: USD
    minimum_commitment: "100"
    charges:
      - {id: subscription, name: Subscription fee, model: flat, amount: "50", timing: arrears}
      - {id: units, name: Units, model: per_unit, metric: calls, unit_price: "10"}
  contract:
    name: Negotiated contract
    currency: USD
    minimum_commitment: "1000"
    charges:
      - {id: usage, name: Metered usage, model: per_unit, metric: calls, unit_price: "1.00"}
  promo:
    name: Promo
    currency: USD
    discounts: [{id: launch, name: Launch offer, kind: percentage, value: "50"}]
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "100.00"}
  even:
    name: Half-even
    currency: USD
    rounding: half_even
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.005"}
  up:
    name: Half-up
    currency: USD
    rounding: half_up
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.005"}
  euro:
    name: Euro
    currency: EUR
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "40.00"}
  yen:
    name: Yen, with a usage minimum
    currency: JPY
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "1.1",
         minimum_amount: "500"}
  dinar:
    name: Dinar
    currency: BHD
    rounding: half_even
    charges:
      - {id: platform, name: Platform fee, model: flat, amount: "12.345"}
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.0025"}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(CATALOG, source="terms-catalog")


def sub(
    plan_id: str = "biz",
    *,
    subscription_id: str = "S",
    account_id: str = "A",
    start: date = date(2026, 1, 1),
    end: date | None = None,
    add_ons: str | None = None,
) -> dict[str, object]:
    return {
        "subscription_id": subscription_id,
        "account_id": account_id,
        "plan_id": plan_id,
        "start_date": start,
        "end_date": end,
        "add_ons": add_ons,
    }


def run(
    catalog: Catalog,
    subs: list[dict[str, object]],
    usage: list[tuple[str, str, int | str, datetime]] | None = None,
    *,
    terms: list[AccountTerms] | None = None,
    countries: dict[str, str | None] | None = None,
    credits_used: dict[tuple[str, str], Decimal] | None = None,
    histories: dict[str, History] | None = None,
    period: BillingPeriod = OCT,
    home: str | None = None,
) -> RatingResult:
    """`countries`: each account's country; `home`: account A's own currency."""
    if home is not None:
        countries = countries or {"A": None}
    accounts = (
        pl.DataFrame(
            {
                "account_id": list(countries),
                "country": list(countries.values()),
                "currency": [home if a == "A" else None for a in countries],
            },
            schema={"account_id": pl.String, "country": pl.String, "currency": pl.String},
        )
        if countries is not None
        else None
    )
    return rate(
        usage_frame(list(usage or [])),
        subscription_frame(subs),
        catalog,
        period,
        accounts=accounts,
        terms={t.account_id: t for t in terms or []},
        credits_used=credits_used,
        histories=histories,
    )


def minor(result: RatingResult) -> dict[str, int]:
    return dict(result.lines.select("line_id", "amount_minor").iter_rows())


def by_id(result: RatingResult, line_id: str) -> dict[str, object]:
    (found,) = result.lines.filter(pl.col("line_id") == line_id).iter_rows(named=True)
    return found


def total_minor(result: RatingResult) -> int:
    return int(result.lines["amount_minor"].sum())


# --- minimum commitment ----------------------------------------------------------------


def test_commitment_true_up_line(catalog: Catalog) -> None:
    # 31.00 platform + 5,000 x 0.01 = 50.00 SMS = 81.00 billed; committed 310.00
    # => true-up 310 - 81 = 229.00 => 22900 cents
    result = run(catalog, [sub("committed")], [("A", "sms", 5_000, at(3))])
    assert minor(result) == {"S:platform": 3100, "S:sms": 5000, "S:commitment": 22900}
    line = by_id(result, "S:commitment")
    assert (line["charge_kind"], line["charge_model"]) == ("commitment", "commitment")
    assert line["description"] == "Committed 310 this period, billed 81: true-up 229"
    details = json.loads(line["details"])
    assert [(d["label"], D(d["amount"])) for d in details] == [
        ("commitment for the period", D(310)),
        ("billed for the period", D(-81)),
    ]


def test_no_true_up_when_usage_exceeds_the_commitment(catalog: Catalog) -> None:
    # 31.00 + 30,000 x 0.01 = 331.00 >= 310.00: no commitment line
    result = run(catalog, [sub("committed")], [("A", "sms", 30_000, at(3))])
    assert minor(result) == {"S:platform": 3100, "S:sms": 30000}


def test_no_true_up_when_usage_meets_the_commitment_exactly(catalog: Catalog) -> None:
    # 31.00 + 27,900 x 0.01 = 310.00: no commitment line
    result = run(catalog, [sub("committed")], [("A", "sms", 27_900, at(3))])
    assert "S:commitment" not in minor(result)


@pytest.mark.parametrize("sms", [100, 0])
@pytest.mark.parametrize("own_price", [False, True])
def test_a_charge_minimum_is_prorated_by_the_days_billed(
    catalog: Catalog, sms: int, own_price: bool
) -> None:
    # Yen plan: SMS at 1.1 (or the account's 1.0, priced line by line), minimum 500.
    # From October 17: 15 of 31 days, minimum 500 x 15/31 = 241.935... SMS 100 x 1.1 =
    # 110 (or 100, or none): topped up to 241.935... => 242 JPY.
    overrides = [override("sms", plan_id="yen", unit_price="1.0")] if own_price else []
    result = run(
        catalog,
        [sub("yen", start=date(2026, 10, 17))],
        [("A", "sms", sms, at(20))] if sms else [],
        terms=[terms(overrides=overrides)],
    )
    line = by_id(result, "S:sms")
    assert line["amount_minor"] == 242
    assert "to the minimum charge for 15 of 31 days" in str(line["description"])
    top_up = [d for d in json.loads(line["details"]) if d["label"] == "minimum charge top-up"]
    assert D(top_up[0]["amount"]) == D("241.935483870967741935") - (
        D(sms) * (D("1.0") if own_price else D("1.1"))
    )
    # A whole month owes the whole minimum: 500
    whole = run(catalog, [sub("yen")], terms=[terms(overrides=overrides)])
    assert by_id(whole, "S:sms")["amount_minor"] == 500


def test_a_charge_minimum_is_prorated_by_the_days_on_its_plan() -> None:
    # Business until October 15, then a plan whose SMS has a 31.00 minimum: its 16 days
    # of 31 owe 31.00 x 16/31 = 16.00, not the whole minimum.
    catalog = with_plan(
        "usdmin",
        "{id: sms, name: SMS, model: per_unit, metric: sms, unit_price: '0.01', "
        "minimum_amount: '31.00'}",
    )
    result = run(catalog, [sub("biz")], histories={"S": moved_to("usdmin", "2026-10-16")})
    line = by_id(result, "S:sms")
    assert line["amount_minor"] == 1600
    assert "to the minimum charge for 16 of 31 days" in str(line["description"])


def test_a_charge_minimum_is_not_owed_for_trial_days(catalog: Catalog) -> None:
    # A 60-day trial from September 10 covers October: no SMS minimum is owed.
    trial = History.model_validate(
        {
            "subscription_id": "S",
            "changes": [{"action": "start", "day": "2026-09-10", "plan": "yen", "trial_days": 60}],
        }
    )
    result = run(catalog, [sub("yen", start=date(2026, 9, 10))], histories={"S": trial})
    assert not [k for k, v in minor(result).items() if k == "S:sms" and v]


def test_commitment_is_not_owed_for_trial_or_paused_days(catalog: Catalog) -> None:
    # A 30-day trial from September 10 ends on October 10: September owes nothing.
    # October: active on the 10th-19th and 25th-31st (paused 20th-24th) = 17 of 31 days;
    # 310.00 x 17/31 = 170.00 committed. Billed for October: its 31.00 fee in advance on
    # September's invoice for the 22 days after the trial, 22.00, less the 5 paused days'
    # credit 31.00 x 5/31 = 5.00 => 17.00 spent; true-up 170.00 - 17.00 = 153.00
    history = History.model_validate(
        {
            "subscription_id": "S",
            "changes": [
                {"action": "start", "day": "2026-09-10", "plan": "committed", "trial_days": 30},
                {"action": "pause", "day": "2026-10-20"},
                {"action": "resume", "day": "2026-10-25"},
            ],
        }
    )
    row = [sub("committed", start=date(2026, 9, 10))]
    september = run(catalog, row, histories={"S": history}, period=BillingPeriod.parse("2026-09"))
    assert not [k for k in minor(september) if k.endswith(":commitment")]
    october = run(catalog, row, histories={"S": history})
    line = by_id(october, "S:commitment")
    assert line["amount_minor"] == 15300
    assert line["description"] == (
        "Committed 170 (310 x 17/31 days) this period, billed 17: true-up 153"
    )


def test_commitment_is_prorated_for_a_mid_period_start(catalog: Catalog) -> None:
    # Signed up 2026-10-17: 15 of 31 days. Committed 310 x 15/31 = 150.00;
    # billed 31 x 15/31 = 15.00 platform + 1,000 x 0.01 = 10.00 SMS = 25.00
    # => true-up 150 - 25 = 125.00 => 12500 cents
    result = run(
        catalog, [sub("committed", start=date(2026, 10, 17))], [("A", "sms", 1_000, at(20))]
    )
    assert minor(result) == {"S:platform": 1500, "S:sms": 1000, "S:commitment": 12500}
    assert by_id(result, "S:commitment")["proration_factor"] == D("0.483870967742")


def test_lago_minimum_commitment_scenario(catalog: Catalog) -> None:
    # Lago (getlago/lago-api PR #1787, "Add scenario specs" for minimum commitments):
    # a 50 USD monthly plan, 10 USD per unit and a 100 USD minimum; 3 units give
    # 50 + 3 x 10 = 80 + 20 (true-up fee) = 100 => 10000 cents
    result = run(catalog, [sub("lago")], [("A", "calls", 3, at(10))])
    assert minor(result) == {"S:subscription": 5000, "S:units": 3000, "S:commitment": 2000}
    assert total_minor(result) == 10000


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        # Lago docs, "Negotiated contract billing": a 1,000 USD monthly minimum;
        # 800 USD of usage gets a 200 USD true-up, 1,300 USD gets none.
        (800, {"S:usage": 80000, "S:commitment": 20000}),  # 800 + 200 = 1,000.00
        (1_300, {"S:usage": 130000}),  # 1,300 >= 1,000: no true-up
    ],
)
def test_lago_contract_minimum(catalog: Catalog, calls: int, expected: dict[str, int]) -> None:
    assert minor(run(catalog, [sub("contract")], [("A", "calls", calls, at(10))])) == expected


# --- add-ons ---------------------------------------------------------------------------


def test_bundled_and_subscribed_add_ons(catalog: Catalog) -> None:
    # biz bundles `recording`:
    # platform 100.00; recording fee 20.00; storage peak 300 GB x 0.10 = 30.00;
    # voice 1,500 min: 1,000 x 0 + 500 x 0.02 = 10.00
    usage = [("A", "rec", 300, at(2)), ("A", "rec", 120, at(9)), ("A", "voice", 90_000, at(4))]
    result = run(catalog, [sub("biz")], usage)
    assert minor(result) == {
        "S:platform": 10000,
        "S:recording.fee": 2000,
        "S:voice": 1000,
        "S:recording.storage": 3000,
    }
    # The `intl` add-on prices voice too, with no filter to tell the calls apart: adding
    # it to the subscription would bill every call twice, so rating refuses.
    with pytest.raises(RatingError, match=r"'voice' and 'intl\.voice' .* both price the same"):
        run(catalog, [sub("biz", add_ons="intl")], usage)
    fee = by_id(result, "S:recording.fee")
    assert (fee["charge_id"], fee["charge_kind"], fee["charge_name"]) == (
        "recording.fee",
        "recurring",
        "Recording fee",
    )


def test_add_on_usage_without_the_add_on_is_unrated(catalog: Catalog) -> None:
    # `committed` prices no recording storage and has no add-on for it
    result = run(catalog, [sub("committed")], [("A", "rec", 300, at(2))])
    assert result.unrated.select("metric", "reason").rows() == [("rec", "metric_not_priced")]
    assert "S:recording.storage" not in minor(result)


def test_an_add_on_named_twice_is_billed_once(catalog: Catalog) -> None:
    # `recording` is bundled by biz and listed again on the subscription: one fee of 20.00
    result = run(catalog, [sub("biz", add_ons="recording, intl")])
    assert [k for k in minor(result) if k.startswith("S:recording")] == ["S:recording.fee"]


def test_an_add_on_listed_twice_on_the_subscription_is_billed_once(catalog: Catalog) -> None:
    # "recording, recording" on a plan that does not bundle it: one fee of 20.00 (2000)
    result = run(catalog, [sub("committed", add_ons="recording, recording")])
    fees = result.lines.filter(pl.col("line_id") == "S:recording.fee")
    assert fees["amount_minor"].to_list() == [2000]


def test_unknown_add_on_on_a_subscription_is_reported(catalog: Catalog) -> None:
    # The plan is billed; the unknown add-on bills nothing and becomes a notice (a finding).
    result = run(catalog, [sub("biz", add_ons="nope")])
    notices = [n for n in result.notices.rows(named=True) if n["kind"] == "unknown_add_on"]
    assert len(notices) == 1
    assert "'nope'" in notices[0]["message"]
    assert not [k for k in minor(result) if "nope" in k]


# --- discounts -------------------------------------------------------------------------


def terms(**fields: object) -> AccountTerms:
    return AccountTerms.model_validate({"account_id": "A", **fields})


def discount(
    kind: str, value: str, applies_to: str = "invoice", **window: date
) -> dict[str, object]:
    return {
        "id": f"{kind}-{applies_to}",
        "name": "Deal",
        "kind": kind,
        "value": value,
        "applies_to": applies_to,
        **window,
    }


BIZ_USAGE = [("A", "sms", 5_000, at(3))]  # 5,000 x 0.01 = 50.00


def test_percentage_discount_on_a_charge(catalog: Catalog) -> None:
    # 10% of the SMS line 50.00 = 5.00 => -500 cents
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(discounts=[discount("percentage", "10", "sms")])],
    )
    line = by_id(result, "A:USD:discount:account:percentage-sms")
    assert (line["amount_minor"], line["charge_kind"]) == (-500, "discount")
    assert line["description"] == "Deal: 10% off 50 (sms)"
    assert line["proration_factor"] is None


def test_fixed_discount_on_the_invoice(catalog: Catalog) -> None:
    # platform 100 + recording fee 20 + SMS 50 = 170.00; 30.00 off => -3000 cents
    result = run(catalog, [sub()], BIZ_USAGE, terms=[terms(discounts=[discount("fixed", "30")])])
    line = by_id(result, "A:USD:discount:account:fixed-invoice")
    assert line["amount_minor"] == -3000
    assert line["description"] == "Deal: 30 USD off 170 (invoice)"
    assert total_minor(result) == 17000 - 3000


def test_a_fixed_discount_is_money_in_one_currency(catalog: Catalog) -> None:
    # Invoices in USD (biz: 100.00 + 20.00 recording = 120.00) and in EUR (40.00).
    subs = [sub(), sub("euro", subscription_id="S2")]
    off = [discount("fixed", "30")]
    # The account's own currency is USD: 30.00 off the USD invoice only
    usd = run(catalog, subs, terms=[terms(discounts=off)], home="USD")
    assert [k for k in minor(usd) if ":discount:" in k] == ["A:USD:discount:account:fixed-invoice"]
    # The discount names EUR: 30.00 off the EUR invoice only, whatever the account's
    named = [{**off[0], "currency": "EUR"}]
    eur = run(catalog, subs, terms=[terms(discounts=named)], home="USD")
    assert {k: v for k, v in minor(eur).items() if ":discount:" in k} == {
        "A:EUR:discount:account:fixed-invoice": -3000
    }
    # Neither the discount nor the account says: not applied, and a notice says why
    unknown = run(catalog, subs, terms=[terms(discounts=off)])
    assert not [k for k in minor(unknown) if ":discount:" in k]
    assert unknown.notices.filter(pl.col("kind") != "missing_tax_rate").rows() == [
        (
            "A",
            "discount_without_currency",
            "fixed discount 'fixed-invoice' names no currency and the account has invoices "
            "in EUR, USD: it was not applied; give it a currency",
        )
    ]
    # The account's own currency has no invoice this period: not applied, and said
    away = run(catalog, [sub("euro")], terms=[terms(discounts=off)], home="USD")
    assert not [k for k in minor(away) if ":discount:" in k]
    assert away.notices.filter(pl.col("kind") == "discount_unplaced")["message"].to_list() == [
        "fixed discount 'fixed-invoice' is in USD, and the account has no USD invoice this "
        "period (it has EUR): it was not applied"
    ]
    with pytest.raises(ValueError, match="a percentage discount takes no currency"):
        terms(discounts=[{**discount("percentage", "10"), "currency": "USD"}])


def test_fixed_discount_is_capped_at_its_base(catalog: Catalog) -> None:
    # 500.00 off the SMS line, which is only 50.00 => -50.00
    result = run(
        catalog, [sub()], BIZ_USAGE, terms=[terms(discounts=[discount("fixed", "500", "sms")])]
    )
    assert by_id(result, "A:USD:discount:account:fixed-sms")["amount_minor"] == -5000


def test_discount_on_a_charge_with_no_line_adds_nothing(catalog: Catalog) -> None:
    # no voice usage, so no voice line: a voice discount has a zero base and no line
    result = run(
        catalog, [sub()], BIZ_USAGE, terms=[terms(discounts=[discount("fixed", "5", "voice")])]
    )
    assert not [k for k in minor(result) if ":discount:" in k]


@pytest.mark.parametrize(
    ("kind", "value", "window", "expected", "suffix"),
    [
        # fixed 31.00 valid from 2026-10-17: 15 of 31 days => 31 x 15/31 = 15.00
        ("fixed", "31", {"valid_from": date(2026, 10, 17)}, -1500, ", valid 15 of 31 days"),
        # 31% of 170.00 valid until 2026-10-11 (exclusive): 10 of 31 days
        # => 170 x 0.31 x 10/31 = 17.00
        ("percentage", "31", {"valid_to": date(2026, 10, 11)}, -1700, ", valid 10 of 31 days"),
    ],
)
def test_discount_valid_for_part_of_the_period_is_prorated_by_days(
    catalog: Catalog,
    kind: str,
    value: str,
    window: dict[str, date],
    expected: int,
    suffix: str,
) -> None:
    result = run(
        catalog, [sub()], BIZ_USAGE, terms=[terms(discounts=[discount(kind, value, **window)])]
    )
    line = by_id(result, f"A:USD:discount:account:{kind}-invoice")
    assert line["amount_minor"] == expected
    assert str(line["description"]).endswith(suffix)


@pytest.mark.parametrize(
    "window",
    [
        {"valid_to": date(2026, 10, 1)},  # ended the day October starts
        {"valid_from": date(2026, 11, 1)},  # starts after October
    ],
)
def test_discount_outside_the_period_has_no_line(catalog: Catalog, window: dict[str, date]) -> None:
    result = run(
        catalog, [sub()], BIZ_USAGE, terms=[terms(discounts=[discount("fixed", "30", **window)])]
    )
    assert not [k for k in minor(result) if ":discount:" in k]


def test_plan_discount(catalog: Catalog) -> None:
    # the promo plan's 50% launch offer on its 100.00 platform fee => -5000 cents
    result = run(catalog, [sub("promo")])
    assert minor(result) == {"S:platform": 10000, "A:USD:discount:promo:launch": -5000}


def test_plan_discount_covers_only_its_own_plan(catalog: Catalog) -> None:
    # promo's 50% of its own 100.00 = -50.00; the account's biz subscription is not discounted
    result = run(catalog, [sub("promo", subscription_id="S1"), sub("biz", subscription_id="S2")])
    assert by_id(result, "A:USD:discount:promo:launch")["amount_minor"] == -5000


def test_stacked_discounts_never_make_the_invoice_negative(catalog: Catalog) -> None:
    # platform 100 + recording fee 20 = 120.00; two fixed discounts of 80.00 each:
    # the second can take only the 40.00 left => total 0, not 120 - 160 = -40.00
    deals = [
        {**discount("fixed", "80"), "id": "first"},
        {**discount("fixed", "80"), "id": "second"},
    ]
    result = run(catalog, [sub()], terms=[terms(discounts=deals)])
    assert total_minor(result) >= 0


# --- tax -------------------------------------------------------------------------------


def test_tax_line_from_the_account_country_on_the_subtotal_after_discounts(
    catalog: Catalog,
) -> None:
    # 170.00 - 30.00 discount = 140.00 x 20% VAT = 28.00 => 2800 cents
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(discounts=[discount("fixed", "30")])],
        countries={"A": "GB"},
    )
    line = by_id(result, "A:USD:tax:GB")
    assert (line["charge_kind"], line["charge_id"], line["charge_name"]) == ("tax", "tax:GB", "VAT")
    assert (line["quantity"], line["unit_price"], line["amount_minor"]) == (D(140), D("0.2"), 2800)
    assert line["description"] == "VAT (GB) 20% of 140.00 USD"
    assert result.notices.height == 0


def test_tax_jurisdiction_from_the_terms(catalog: Catalog) -> None:
    # the terms say DE, whatever the account's country: 170.00 x 19% = 32.30 => 3230 cents
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(tax_jurisdiction="DE")],
        countries={"A": "GB"},
    )
    assert by_id(result, "A:USD:tax:DE")["amount_minor"] == 3230
    assert not [k for k in minor(result) if k.endswith(":tax:GB")]


def test_a_country_in_small_letters_finds_its_tax_rate(catalog: Catalog) -> None:
    # 170.00 x 20% GB VAT = 34.00
    result = run(catalog, [sub()], BIZ_USAGE, countries={"A": "gb"})
    assert by_id(result, "A:USD:tax:GB")["amount_minor"] == 3400
    with pytest.raises(CatalogError, match="write jurisdictions in capitals"):
        parse_catalog(CATALOG.replace("  GB: {name: VAT", "  gb: {name: VAT"))


def test_tax_jurisdiction_from_the_terms_without_accounts(catalog: Catalog) -> None:
    result = run(catalog, [sub()], BIZ_USAGE, terms=[terms(tax_jurisdiction="GB")])
    assert by_id(result, "A:USD:tax:GB")["amount_minor"] == 3400  # 170.00 x 20% = 34.00


@pytest.mark.parametrize(
    ("country", "named"),
    [("FR", "no tax rate for jurisdiction 'FR'"), (None, "no tax jurisdiction: the account")],
)
def test_missing_tax_rate_is_a_notice_not_a_zero_line(
    catalog: Catalog, country: str | None, named: str
) -> None:
    result = run(catalog, [sub()], BIZ_USAGE, countries={"A": country})
    assert not [k for k in minor(result) if ":tax:" in k]
    ((account_id, kind, message),) = result.notices.rows()
    assert (account_id, kind) == ("A", "missing_tax_rate")
    assert named in message


def test_tax_exempt_account_has_no_tax_line_and_no_notice(catalog: Catalog) -> None:
    result = run(catalog, [sub()], BIZ_USAGE, terms=[terms(tax_exempt=True)], countries={"A": "GB"})
    assert not [k for k in minor(result) if ":tax:" in k]
    assert result.notices.height == 0


def test_the_tax_of_an_invoice_whose_credits_outweigh_its_charges_is_a_credit(
    catalog: Catalog,
) -> None:
    # October's 100.00 platform and 20.00 bundled recording fee were billed in advance;
    # cancelled on the 11th, the 21 unused days of 31 are credited: -120.00 x 21/31 =
    # -81.29. VAT 20% of -81.29 = -16.258 => -16.26
    history = History.model_validate(
        {
            "subscription_id": "S",
            "changes": [
                {"action": "start", "day": "2026-01-01", "plan": "biz"},
                {"action": "cancel", "day": "2026-10-11", "timing": "immediate"},
            ],
        }
    )
    result = run(
        catalog,
        [sub(end=date(2026, 10, 11))],
        countries={"A": "GB"},
        histories={"S": history},
    )
    tax = by_id(result, "A:USD:tax:GB")
    assert (tax["quantity"], tax["amount_minor"]) == (D("-81.29"), -1626)
    assert total_minor(result) == -8129 - 1626
    with full_depth():
        rated_lines_schema().validate(result.lines, lazy=True)


def test_catalog_without_taxes_has_no_tax_line_and_no_notice() -> None:
    bare = parse_catalog(
        CATALOG.replace(
            '  GB: {name: VAT, rate: "0.20"}\n  DE: {name: MwSt, rate: "0.19"}\n', ""
        ).replace("taxes:\n", "")
    )
    assert bare.taxes == {}
    result = run(bare, [sub("committed")], countries={"A": "GB"})
    assert result.notices.height == 0
    assert not [k for k in minor(result) if ":tax:" in k]


# --- prepaid credits -------------------------------------------------------------------


def credit(credit_id: str, amount: str, **fields: object) -> dict[str, object]:
    return {
        "id": credit_id,
        "amount": amount,
        "currency": "USD",
        "granted_on": date(2026, 1, 1),
        **fields,
    }


def test_credit_is_drawn_up_to_its_balance(catalog: Catalog) -> None:
    # due 170.00; credit 50.00 of which 20.00 used before => 30.00 drawn => -3000 cents
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(credits=[credit("c1", "50.00")])],
        credits_used={("A", "c1"): D(20)},
    )
    line = by_id(result, "A:USD:credit:c1")
    assert (line["charge_kind"], line["amount_minor"], line["quantity"]) == ("credit", -3000, D(30))
    assert line["description"] == "Prepaid credit c1: 30 drawn, 0 left"
    assert total_minor(result) == 17000 - 3000


def test_credit_never_makes_the_invoice_negative(catalog: Catalog) -> None:
    # due 170.00 + 20% VAT 34.00 = 204.00; credit 500.00 => 204.00 drawn, 296.00 left
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(credits=[credit("big", "500.00")])],
        countries={"A": "GB"},
    )
    line = by_id(result, "A:USD:credit:big")
    assert line["amount_minor"] == -20400
    assert line["description"] == "Prepaid credit big: 204 drawn, 296 left"
    assert total_minor(result) == 0


def test_used_up_credit_draws_nothing(catalog: Catalog) -> None:
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(credits=[credit("c1", "50.00")])],
        credits_used={("A", "c1"): D(50)},
    )
    assert not [k for k in minor(result) if ":credit:" in k]


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_on": date(2026, 10, 1)},  # expired when October starts
        {"expires_on": date(2026, 9, 15)},
        {"granted_on": date(2026, 11, 1)},  # not granted yet
        {"currency": "EUR"},  # another currency than the invoice
    ],
)
def test_credit_that_does_not_apply_is_ignored(catalog: Catalog, fields: dict[str, object]) -> None:
    result = run(
        catalog, [sub()], BIZ_USAGE, terms=[terms(credits=[credit("c", "50.00", **fields)])]
    )
    assert not [k for k in minor(result) if ":credit:" in k]


def test_credit_in_the_invoice_currency(catalog: Catalog) -> None:
    # a EUR credit draws on the EUR invoice only: 40.00 EUR due, 25.00 EUR credit
    result = run(
        catalog,
        [sub("biz", subscription_id="S1"), sub("euro", subscription_id="S2")],
        terms=[terms(credits=[credit("eur", "25.00", currency="EUR")])],
    )
    line = by_id(result, "A:EUR:credit:eur")
    assert (line["currency"], line["amount_minor"]) == ("EUR", -2500)
    assert not [k for k in minor(result) if k.startswith("A:USD:credit")]


def test_credit_expiring_first_is_drawn_first(catalog: Catalog) -> None:
    # due 120.00 (platform + recording fee); "late" (no expiry) and "soon" (expires 2026-12-01)
    # => soon 100.00 drawn first, then late 20.00
    result = run(
        catalog,
        [sub()],
        terms=[
            terms(
                credits=[
                    credit("late", "100.00"),
                    credit("soon", "100.00", expires_on=date(2026, 12, 1)),
                ]
            )
        ],
    )
    credits = [(k, v) for k, v in minor(result).items() if ":credit:" in k]
    assert credits == [("A:USD:credit:soon", -10000), ("A:USD:credit:late", -2000)]


# --- account price overrides -----------------------------------------------------------


def override(charge_id: str, plan_id: str = "biz", **fields: object) -> dict[str, object]:
    return {"plan_id": plan_id, "charge_id": charge_id, **fields}


def test_unit_price_override(catalog: Catalog) -> None:
    # account price 0.005 instead of 0.01: 5,000 x 0.005 = 25.00 => 2500 cents
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(overrides=[override("sms", unit_price="0.005")])],
    )
    line = by_id(result, "S:sms")
    assert (line["unit_price"], line["amount_minor"]) == (D("0.005"), 2500)
    assert line["description"] == "SMS: 5,000 message — 5,000 message at 0.005 (account price)"


def test_tiers_override(catalog: Catalog) -> None:
    # account tiers: 2,000 free minutes then 0.01; 2,500 min => 500 x 0.01 = 5.00
    # (list price: 1,000 free then 0.02 => 30.00)
    tiers = [{"up_to": "2000", "unit_price": "0"}, {"up_to": None, "unit_price": "0.01"}]
    result = run(
        catalog,
        [sub()],
        [("A", "voice", 150_000, at(5))],
        terms=[terms(overrides=[override("voice", tiers=tiers)])],
    )
    line = by_id(result, "S:voice")
    assert line["amount_minor"] == 500
    assert str(line["description"]).endswith("(account price)")


def test_recurring_amount_override(catalog: Catalog) -> None:
    # account platform fee 80.00 instead of 100.00
    result = run(catalog, [sub()], terms=[terms(overrides=[override("platform", amount="80")])])
    line = by_id(result, "S:platform")
    assert line["amount_minor"] == 8000
    assert line["description"] == "Platform fee: 31 of 31 days at 80 per period (account price)"


@pytest.mark.parametrize(
    "fields",
    [
        {"valid_to": date(2026, 10, 1)},  # ended before October
        {"valid_from": date(2026, 11, 1)},  # starts after October
        {"plan_id": "committed"},  # another plan's charge of the same id
    ],
)
def test_override_outside_its_window_or_plan_is_not_applied(
    catalog: Catalog, fields: dict[str, object]
) -> None:
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(overrides=[{**override("sms", unit_price="0.005"), **fields}])],
    )
    line = by_id(result, "S:sms")
    assert (line["unit_price"], line["amount_minor"]) == (D("0.01"), 5000)
    assert "(account price)" not in str(line["description"])


def test_override_valid_in_the_period_is_applied(catalog: Catalog) -> None:
    window = {"valid_from": date(2026, 9, 1), "valid_to": date(2026, 12, 1)}
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[terms(overrides=[override("sms", unit_price="0.005", **window)])],
    )
    assert by_id(result, "S:sms")["amount_minor"] == 2500


def test_override_does_not_price_usage_before_its_window(catalog: Catalog) -> None:
    # account price from 2026-10-20; all 5,000 SMS were sent on 2026-10-03 at list price
    # => 5,000 x 0.01 = 50.00 => 5000 cents
    result = run(
        catalog,
        [sub()],
        BIZ_USAGE,
        terms=[
            terms(overrides=[override("sms", unit_price="0.005", valid_from=date(2026, 10, 20))])
        ],
    )
    assert by_id(result, "S:sms")["amount_minor"] == 5000


def started(plan_id: str, on: str = "2026-01-01", *changes: dict[str, object]) -> History:
    return History.model_validate(
        {
            "subscription_id": "S",
            "changes": [{"action": "start", "day": on, "plan": plan_id}, *changes],
        }
    )


def with_plan(plan_id: str, charge: str) -> Catalog:
    """The test catalog with one more USD plan, of one charge (YAML)."""
    plan = f"  {plan_id}:\n    name: {plan_id}\n    currency: USD\n    charges:\n      - {charge}\n"
    return parse_catalog(CATALOG.replace("  euro:\n", plan + "  euro:\n"))


def moved_to(plan_id: str, day: str) -> History:
    """On Business from January, moved at once to `plan_id` on `day`."""
    change = {"action": "change_plan", "day": day, "plan": plan_id, "timing": "immediate"}
    return started("biz", "2026-01-01", change)


def advance(result: RatingResult) -> dict[str, tuple[int, str]]:
    """The fees billed in advance: charge key -> (cents, description)."""
    return {
        f"{row['charge_id']}:{row['line_id'].split(':')[-3]}": (
            row["amount_minor"],
            row["description"],
        )
        for row in result.lines.iter_rows(named=True)
        if ":advance:" in row["line_id"]
    }


def test_a_history_bills_the_subscriptions_own_add_ons_and_the_accounts_prices(
    catalog: Catalog,
) -> None:
    # November in advance on the October invoice: the Euro platform fee at the account's
    # 30.00 and the subscription's own recording add-on at its list 20.00
    result = run(
        catalog,
        [sub("euro", add_ons="recording")],
        terms=[terms(overrides=[override("platform", plan_id="euro", amount="30")])],
        histories={"S": started("euro")},
    )
    got = advance(result)
    assert {key: cents for key, (cents, _) in got.items()} == {
        "platform:2026-11-01": 3000,
        "recording.fee:2026-11-01": 2000,
    }
    assert got["platform:2026-11-01"][1].endswith("(account price)")
    assert not got["recording.fee:2026-11-01"][1].endswith("(account price)")


def test_a_history_splits_a_fee_where_the_accounts_price_starts(catalog: Catalog) -> None:
    # The account's 30.00 starts on November 16: 40.00 x 15/30 = 20.00 for November 1-15,
    # then 30.00 x 15/30 = 15.00 for November 16-30
    deal = override("platform", plan_id="euro", amount="30", valid_from=date(2026, 11, 16))
    result = run(
        catalog,
        [sub("euro")],
        terms=[terms(overrides=[deal])],
        histories={"S": started("euro")},
    )
    assert {key: cents for key, (cents, _) in advance(result).items()} == {
        "platform:2026-11-01": 2000,
        "platform:2026-11-16": 1500,
    }


def test_a_deck_add_on_is_billed_only_on_plans_in_its_decks_currency() -> None:
    text = CATALOG.replace(
        "add_ons:\n",
        "decks:\n  usd: {file: usd.csv, currency: USD, increments: '60/60'}\n"
        "add_ons:\n  world:\n    name: World calling\n    charges:\n"
        "      - {id: calls, name: Calls, model: call_deck, metric: voice, deck: usd}\n",
    )
    deck = "prefix,destination,rate_per_minute\n44,United Kingdom,0.0120\n"
    catalog = parse_catalog(text, deck_texts={"usd.csv": deck})
    assert catalog.add_on_currencies("world") == ["USD"]
    result = run(catalog, [sub("yen", add_ons="world")])
    assert result.notices.filter(pl.col("kind") == "add_on_currency_mismatch")["message"].to_list()
    assert not [k for k in minor(result) if "world" in k]
    listed = CATALOG.replace(
        "add_ons:\n",
        "decks:\n  usd: {file: usd.csv, currency: USD, increments: '60/60'}\n"
        "add_ons:\n  world:\n    name: World calling\n    currencies: [USD, JPY]\n"
        "    charges:\n"
        "      - {id: calls, name: Calls, model: call_deck, metric: voice, deck: usd}\n",
    )
    with pytest.raises(CatalogError, match=r"add_ons\.world\.charges\[0\]\.deck: deck 'usd' is in"):
        parse_catalog(listed, deck_texts={"usd.csv": deck})


def test_a_discount_reaches_the_fees_billed_for_its_own_days(catalog: Catalog) -> None:
    # The Euro fee, 40.00 a month in advance; 50% off for October only. September's
    # invoice bills October in advance: -20.00 there. October's bills November: no
    # discount, though the invoice closes October.
    window = {"valid_from": date(2026, 10, 1), "valid_to": date(2026, 11, 1)}
    half = [terms(discounts=[discount("percentage", "50", **window)])]
    history = {"S": started("euro")}
    for label, discounted in (("2026-09", -2000), ("2026-10", None)):
        result = run(
            catalog,
            [sub("euro")],
            terms=half,
            histories=history,
            period=BillingPeriod.parse(label),
        )
        found = [v for k, v in minor(result).items() if ":discount:" in k]
        assert found == ([] if discounted is None else [discounted]), label


def test_a_discount_of_next_months_fee_survives_this_months_credits() -> None:
    # Business (100.00 + 20.00 recording) moves to a 10.00 plan on October 5: October's
    # unused 27 of 31 days are credited (-87.10, -17.42) and its remaining days charged
    # (8.71), so the invoice nets negative. November's 10.00 in advance is still 50% off
    # for November: -5.00.
    catalog = with_plan("cheap", "{id: platform, name: Platform fee, model: flat, amount: '10'}")
    deal = discount("percentage", "50", valid_from=date(2026, 11, 1))
    result = run(
        catalog,
        [sub("biz")],
        terms=[terms(discounts=[deal])],
        histories={"S": moved_to("cheap", "2026-10-05")},
    )
    line = by_id(result, "A:USD:discount:account:percentage-invoice")
    assert line["amount_minor"] == -500
    assert line["description"] == (
        "Deal: 50% off 10 (invoice), for the days of each line's service it is valid on"
    )
    assert total_minor(result) == -8710 - 1742 + 871 + 1000 - 500


def test_a_history_starting_after_the_period_bills_only_add_ons_it_may_have() -> None:
    # Starting November 1 on the Euro plan, billed in advance on October's invoice: an
    # unknown add-on and one priced in USD only are left out, each with a notice; the
    # Euro fee itself (40.00) is billed.
    text = CATALOG.replace("  intl:\n", "  intl:\n    currencies: [USD]\n")
    result = run(
        parse_catalog(text),
        [sub("euro", start=date(2026, 11, 1), add_ons="nosuch,intl,recording")],
        histories={"S": started("euro", "2026-11-01")},
    )
    assert sorted(
        (row["charge_id"], row["amount_minor"]) for row in result.lines.iter_rows(named=True)
    ) == [("platform", 4000), ("recording.fee", 2000)]
    kinds = result.notices.filter(pl.col("kind") != "missing_tax_rate")["kind"].to_list()
    assert sorted(kinds) == ["add_on_currency_mismatch", "unknown_add_on"]


def test_stacked_discounts_of_a_historys_fees_never_take_the_invoice_below_zero(
    catalog: Catalog,
) -> None:
    # Business in advance for November: 100.00 + 20.00 = 120.00. Two 60% discounts:
    # 72.00, then what is left of the 120.00, 48.00; the invoice is 0, not -24.00.
    deals = [{**discount("percentage", "60"), "id": f"d{n}"} for n in (1, 2)]
    result = run(catalog, [sub()], terms=[terms(discounts=deals)], histories={"S": started("biz")})
    assert [v for k, v in minor(result).items() if ":discount:" in k] == [-7200, -4800]
    assert total_minor(result) == 0
    # a discount over the whole period reads as on a plain subscription
    assert by_id(result, "A:USD:discount:account:d1")["description"] == (
        "Deal: 60% off 120 (invoice)"
    )
    # Discounts of different charges do not limit each other: 90% of the 100.00
    # platform fee, 50% of the 20.00 recording fee
    apart = [
        discount("percentage", "90", "platform"),
        discount("percentage", "50", "recording.fee"),
    ]
    split = run(catalog, [sub()], terms=[terms(discounts=apart)], histories={"S": started("biz")})
    assert [v for k, v in minor(split).items() if ":discount:" in k] == [-9000, -1000]


def test_a_plans_discount_reaches_the_first_fee_billed_in_advance(catalog: Catalog) -> None:
    # Promo: 100.00 a month, 50% off for good. A history starting November 1 is billed
    # November in advance on October's invoice: 100.00 - 50.00.
    result = run(
        catalog,
        [sub("promo", start=date(2026, 11, 1))],
        histories={"S": started("promo", "2026-11-01")},
    )
    assert sorted(result.lines.select("charge_kind", "amount_minor").rows()) == [
        ("discount", -5000),
        ("recurring", 10000),
    ]


# --- the whole invoice -----------------------------------------------------------------


def full_invoice(catalog: Catalog) -> RatingResult:
    return run(
        catalog,
        [sub("committed", start=date(2026, 10, 17))],
        [("A", "sms", 1_234, at(20))],
        terms=[
            terms(
                discounts=[discount("percentage", "12.5", valid_from=date(2026, 10, 19))],
                credits=[credit("c1", "7.77")],
                overrides=[override("platform", plan_id="committed", amount="33.33")],
            )
        ],
        countries={"A": "GB"},
    )


def test_line_order_on_the_invoice(catalog: Catalog) -> None:
    result = full_invoice(catalog)
    kinds = result.lines["charge_kind"].to_list()
    assert kinds == ["recurring", "usage", "commitment", "discount", "tax", "credit"]
    assert kinds == sorted(kinds, key=KIND_ORDER.index)


def test_full_invoice_golden(catalog: Catalog) -> None:
    # 15 of 31 days from 2026-10-17:
    # platform (account price) 33.33 x 15/31 = 16.127... => 16.13
    # SMS 1,234 x 0.01 = 12.34
    # commitment 310 x 15/31 = 150.00 - (16.13 + 12.34) = 121.53
    # discount 12.5% of 150.00 x 13/31 days = 7.862... => -7.86
    # VAT 20% of (150.00 - 7.86) = 142.14 x 0.20 = 28.428 => 28.43
    # credit 7.77 of 170.57 due => -7.77; total 162.80
    assert minor(full_invoice(catalog)) == {
        "S:platform": 1613,
        "S:sms": 1234,
        "S:commitment": 12153,
        "A:USD:discount:account:percentage-invoice": -786,
        "A:USD:tax:GB": 2843,
        "A:USD:credit:c1": -777,
    }


def test_every_line_is_rounded_once_in_the_plan_rounding_mode(catalog: Catalog) -> None:
    for row in full_invoice(catalog).lines.iter_rows(named=True):
        rounded = round_money(D(row["precise_amount"]), row["currency"], RoundingMode.HALF_UP)
        assert row["rounding"] == "half_up"
        assert row["amount"] == rounded
        assert row["amount_minor"] == to_minor_units(rounded, row["currency"])


@pytest.mark.parametrize(
    ("plan_id", "rounding", "expected"), [("even", "half_even", 0), ("up", "half_up", 1)]
)
def test_half_cent_follows_the_plan_rounding(
    catalog: Catalog, plan_id: str, rounding: str, expected: int
) -> None:
    # 1 SMS x 0.005 = 0.005: half_even => 0.00, half_up => 0.01
    result = run(catalog, [sub(plan_id)], [("A", "sms", 1, at(2))])
    line = by_id(result, "S:sms")
    assert (D(line["precise_amount"]), line["rounding"]) == (D("0.005"), rounding)
    assert line["amount_minor"] == expected


# --- property: the invoice total is never negative -------------------------------------

OCT_DAYS = [OCT.start + timedelta(days=n) for n in range(OCT.days + 1)]


@st.composite
def one_discount(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["percentage", "fixed"]))
    value = draw(
        st.decimals(min_value=0, max_value=100, places=2)
        if kind == "percentage"
        else st.decimals(min_value=0, max_value=500, places=2)
    )
    first, last = sorted(draw(st.lists(st.sampled_from(OCT_DAYS), min_size=2, max_size=2)))
    window = {} if first == last else {"valid_from": first, "valid_to": last}
    applies_to = draw(st.sampled_from(["invoice", "sms", "platform", "voice"]))
    return {**discount(kind, str(value), applies_to), **window}


@FRAME_PROPERTY
@given(
    plan_id=st.sampled_from(["biz", "committed"]),
    start=st.sampled_from([date(2026, 1, 1), date(2026, 10, 17), date(2026, 10, 31)]),
    sms=st.integers(min_value=0, max_value=50_000),
    voice=st.integers(min_value=0, max_value=200_000),
    deal=st.none() | one_discount(),
    credits=st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=400, places=2),
            st.decimals(min_value=0, max_value=500, places=2),
        ),
        max_size=2,
    ),
    country=st.sampled_from(["GB", "DE", "FR", None]),
    exempt=st.booleans(),
)
def test_invoice_total_is_never_negative(
    catalog: Catalog,
    plan_id: str,
    start: date,
    sms: int,
    voice: int,
    deal: dict[str, object] | None,
    credits: list[tuple[Decimal, Decimal]],
    country: str | None,
    exempt: bool,
) -> None:
    usage = [("A", "sms", sms, at(31, hour=1)), ("A", "voice", voice, at(31, hour=2))]
    account = terms(
        tax_exempt=exempt,
        discounts=[deal] if deal else [],
        credits=[credit(f"c{i}", str(amount)) for i, (amount, _) in enumerate(credits)],
    )
    used = {("A", f"c{i}"): spent for i, (_, spent) in enumerate(credits)}
    result = run(
        catalog,
        [sub(plan_id, start=start)],
        usage,
        terms=[account],
        countries={"A": country},
        credits_used=used,
    )
    totals = result.lines.group_by("account_id", "currency").agg(pl.col("amount_minor").sum())
    assert (totals["amount_minor"] >= 0).all()
    negative = result.lines.filter(pl.col("amount_minor") < 0)
    assert set(negative["charge_kind"]) <= {"discount", "credit"}
    for row in result.lines.iter_rows(named=True):
        rounded = round_money(D(row["precise_amount"]), "USD", RoundingMode.HALF_UP)
        assert row["amount_minor"] == to_minor_units(rounded, "USD")


def test_a_discount_on_a_charge_the_account_does_not_have_says_so(catalog: Catalog) -> None:
    # "smss" is a typo: nothing is discounted, and a notice (a finding) says why; the
    # bundled add-on's charge is the account's, so a discount on it raises nothing
    deals = [discount("percentage", "10", "smss"), discount("percentage", "10", "recording.fee")]
    result = run(catalog, [sub()], BIZ_USAGE, terms=[terms(discounts=deals)])
    unmatched = [n for n in result.notices.rows(named=True) if n["kind"] == "discount_unmatched"]
    assert [n["message"].split(" applies")[0] for n in unmatched] == ["discount 'percentage-smss'"]
    assert "'smss'" in unmatched[0]["message"]


def test_a_discount_on_the_charge_of_a_coming_plan_is_not_reported(catalog: Catalog) -> None:
    # The account moves from "committed" to "lago" in November: a discount on lago's
    # units is no typo, though no subscription in force in October has that plan
    subs = [
        sub("committed", end=date(2026, 11, 1)),
        sub("lago", subscription_id="S2", start=date(2026, 11, 1)),
    ]
    deal = discount("percentage", "10", "units")
    result = run(catalog, subs, terms=[terms(discounts=[deal])])
    assert "discount_unmatched" not in result.notices["kind"].to_list()


def test_an_override_with_a_typo_or_a_wrong_field_leaves_the_list_price_and_says_so(
    catalog: Catalog,
) -> None:
    usage = [("A", "sms", 5_000, at(3))]
    typo = run(
        catalog, [sub()], usage, terms=[terms(overrides=[override("smss", unit_price="0.005")])]
    )
    assert [
        n["kind"] for n in typo.notices.rows(named=True) if n["kind"].startswith("override")
    ] == ["override_unmatched"]
    # `amount` belongs to flat charges; the per-unit sms charge cannot take it.
    wrong = run(catalog, [sub()], usage, terms=[terms(overrides=[override("sms", amount="1")])])
    (message,) = wrong.notices.filter(pl.col("kind") == "override_invalid")["message"]
    assert message == (
        "price override of biz/sms does not fit a per_unit charge (amount: Extra inputs are "
        "not permitted); the list price was used"
    )
    assert minor(wrong)["S:sms"] == minor(run(catalog, [sub()], usage))["S:sms"]


def test_an_override_that_does_not_fit_a_historys_fee_is_said_once(catalog: Catalog) -> None:
    # The fee is priced for the invoice before (what it billed) and for this one
    result = run(
        catalog,
        [sub("euro")],
        terms=[terms(overrides=[override("platform", plan_id="euro", unit_price="1")])],
        histories={"S": started("euro")},
    )
    assert result.notices["kind"].to_list().count("override_invalid") == 1


def test_an_add_on_priced_in_another_currency_is_not_billed_and_says_so() -> None:
    # `intl` is priced in USD; the `euro` plan bills in EUR.
    text = CATALOG.replace("  intl:\n", "  intl:\n    currencies: [USD]\n")
    catalog = parse_catalog(text)
    result = run(catalog, [sub("euro", add_ons="intl")], [("A", "voice", 600, at(2))])
    kinds = [n["kind"] for n in result.notices.rows(named=True)]
    assert "add_on_currency_mismatch" in kinds
    assert not [k for k in minor(result) if k.startswith("S:intl.")]


def test_a_plan_bundling_an_add_on_of_another_currency_is_a_catalog_error() -> None:
    text = CATALOG.replace("  recording:\n", "  recording:\n    currencies: [EUR]\n")
    with pytest.raises(CatalogError, match=r"plans\.biz\.add_ons\[0\]"):
        parse_catalog(text)


def test_an_override_starting_mid_period_splits_the_fixed_fee(catalog: Catalog) -> None:
    # Platform fee 100.00 a month; the account's price 70.00 from October 11:
    # list October 1-10: 100.00 x 10/31 = 32.258.. -> 32.26
    # account October 11-31: 70.00 x 21/31 = 47.419.. -> 47.42
    terms = AccountTerms.model_validate(
        {
            "account_id": "A",
            "overrides": [
                {
                    "plan_id": "biz",
                    "charge_id": "platform",
                    "amount": "70",
                    "valid_from": "2026-10-11",
                },
                {
                    "plan_id": "biz",
                    "charge_id": "sms",
                    "unit_price": "0.005",
                    "valid_from": "2026-10-11",
                },
            ],
        }
    )
    result = run(catalog, [sub()], [("A", "sms", 1000, at(20))], terms=[terms])
    fees = {
        row["line_id"]: (row["amount"], row["description"])
        for row in result.lines.iter_rows(named=True)
        if row["charge_id"] == "platform"
    }
    assert fees == {
        "S:platform:2026-10-01": (
            Decimal("32.26"),
            "Platform fee: 10 of 31 days at 100.00 per period "
            "(list price, 2026-10-01 to 2026-10-10)",
        ),
        "S:platform:2026-10-11": (
            Decimal("47.42"),
            "Platform fee: 21 of 31 days at 70 per period "
            "(account price, 2026-10-11 to 2026-10-31)",
        ),
    }
    # Usage keeps one price for the period: 1,000 SMS at the list 0.01 = 10.00, and a
    # notice that the override covers only part of it.
    assert by_id(result, "S:sms")["amount"] == Decimal("10.00")
    partly = result.notices.filter(pl.col("kind") == "override_partly_effective")
    assert [m.split()[3] for m in partly["message"]] == ["biz/sms"]


# --- plain invoices ----------------------------------------------------------------------

# "retired" is no plan of the catalog: its usage is unrated and it bills nothing.
_PLANS = ["biz", "committed", "promo", "even", "up", "euro", "yen", "dinar", "retired"]


@st.composite
def accounts_and_usage(
    draw: st.DrawFn,
) -> tuple[list[dict[str, object]], list[tuple[str, str, int, datetime]], list[AccountTerms]]:
    """1-4 accounts of 1-2 subscriptions each: any plan (with or without add-ons), for the
    whole period or from a day in it, some with terms; SMS and storage usage."""
    subs: list[dict[str, object]] = []
    usage: list[tuple[str, str, int, datetime]] = []
    terms: list[AccountTerms] = []
    for a in range(draw(st.integers(1, 4))):
        account = f"A{a}"
        plans = draw(st.lists(st.sampled_from(_PLANS), min_size=1, max_size=2))
        # one account's subscriptions follow each other: the second starts on the first's end
        split = draw(st.integers(2, 30)) if len(plans) == 2 else None
        for i, plan_id in enumerate(plans):
            start = date(2026, 1, 1) if i == 0 else date(2026, 10, split or 1)
            end = date(2026, 10, split) if split and i == 0 else None
            if i == 0 and len(plans) == 1 and draw(st.booleans()):
                start = date(2026, 10, draw(st.integers(2, 28)))
            subs.append(
                sub(
                    plan_id,
                    subscription_id=f"S{a}{i}",
                    account_id=account,
                    start=start,
                    end=end,
                    add_ons=draw(st.sampled_from([None, "recording"]))
                    if plan_id == "biz"
                    else None,
                )
            )
        for day in draw(st.lists(st.integers(1, 31), max_size=4)):
            usage.append((account, "sms", draw(st.integers(0, 5_000)), at(day)))
        if draw(st.booleans()):
            usage.append((account, "rec", draw(st.integers(0, 300)), at(draw(st.integers(1, 31)))))
        if draw(st.integers(0, 3)) == 0:
            terms.append(
                AccountTerms.model_validate(
                    {
                        "account_id": account,
                        "discounts": [
                            {"id": "d", "name": "Deal", "kind": "percentage", "value": "10"}
                        ],
                    }
                )
            )
    return subs, usage, terms


@settings(FRAME_PROPERTY, max_examples=60)
@given(
    scenario=accounts_and_usage(),
    countries=st.lists(st.sampled_from(["GB", "DE", "FR", None]), min_size=4, max_size=4),
)
def test_plain_invoices_are_the_invoices_rated_line_by_line(
    catalog: Catalog,
    scenario: tuple[
        list[dict[str, object]], list[tuple[str, str, int, datetime]], list[AccountTerms]
    ],
    countries: list[str | None],
) -> None:
    # The accounts whose invoices need no line one by one skip the invoice loop; their
    # lines, tax lines, notices and order are what the loop would have made of them.
    from pricing_rules import rating

    subs, usage, terms = scenario
    where = {f"A{i}": country for i, country in enumerate(countries)}
    fast = run(catalog, subs, usage, terms=terms, countries=where)
    found = rating._plain_subscriptions
    with patch.object(rating, "_plain_subscriptions", lambda *a: found(*a).head(0)):
        slow = run(catalog, subs, usage, terms=terms, countries=where)
    assert_frame_equal(fast.lines, slow.lines)
    assert_frame_equal(fast.unrated, slow.unrated)
    assert_frame_equal(fast.notices, slow.notices)


def test_only_accounts_with_nothing_to_read_line_by_line_are_plain(catalog: Catalog) -> None:
    # A and G (taxed) are plain; B's plan has a commitment, C's a discount, D has terms,
    # E's plans round differently, F starts mid-period (its fee is prorated one by one).
    from pricing_rules import rating

    taken: list[list[str]] = []
    found = rating._plain_subscriptions

    def spy(*args: object) -> pl.DataFrame:
        plain = found(*args)
        taken.append(sorted(set(plain["account_id"])))
        return plain

    subs = [
        sub("biz", subscription_id="A1", account_id="A", add_ons="recording"),
        sub("committed", subscription_id="B1", account_id="B"),
        sub("promo", subscription_id="C1", account_id="C"),
        sub("biz", subscription_id="D1", account_id="D"),
        sub("even", subscription_id="E1", account_id="E"),
        sub("up", subscription_id="E2", account_id="E"),
        sub("biz", subscription_id="F1", account_id="F", start=date(2026, 10, 5)),
        sub("euro", subscription_id="G1", account_id="G"),
    ]
    with patch.object(rating, "_plain_subscriptions", spy):
        result = run(
            catalog,
            subs,
            [("A", "sms", 100, at(3)), ("A", "rec", 7, at(4))],
            terms=[AccountTerms(account_id="D")],
            countries={"A": "DE", "G": "DE"},
        )
    assert taken == [["A", "G"]]
    # Each subscription's fees, then its usage, then the invoice's tax: 100.00 + 20.00
    # recording fee + 100 x 0.01 SMS + 7 x 0.10 storage = 121.70 x 19% = 23.123 => 23.12;
    # G: 40.00 x 19% = 7.60.
    plain = result.lines.filter(pl.col("account_id").is_in(["A", "G"]))
    assert plain.select("line_id", "amount_minor").rows() == [
        ("A1:platform", 10000),
        ("A1:recording.fee", 2000),
        ("A1:sms", 100),
        ("A1:recording.storage", 70),
        ("A:USD:tax:DE", 2312),
        ("G1:platform", 4000),
        ("G:EUR:tax:DE", 760),
    ]
