"""pricing_rules.catalog: YAML pricing-as-code, every error reported with its path."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from pathlib import Path

import pytest

from pricing_rules.catalog import CatalogError, load_catalog, parse_catalog
from pricing_rules.charges import (
    CHARGE_MODELS,
    CallDeckCharge,
    FlatCharge,
    GraduatedCharge,
    model_name,
)
from pricing_rules.money import RoundingMode, minor_unit_exponent
from tests.pricing_rules.frames import CATALOG_PATH


def test_the_real_catalog_loads() -> None:
    # The catalog is living configuration: check what the pipeline relies on, not every price.
    catalog = load_catalog(CATALOG_PATH)
    assert catalog.list_price_plan in catalog.plans
    assert {"voice", "sms", "storage", "bandwidth", "seats"} <= set(catalog.metrics)
    assert catalog.metric_units()["voice"] == "s"
    assert catalog.metrics["storage"].aggregation == "max"
    assert catalog.metrics["voice"].aggregation == "sum"
    assert len(catalog.content_hash) == 64
    assert catalog.content_hash != hashlib.sha256(CATALOG_PATH.read_bytes()).hexdigest(), (
        "the hash covers the rate decks too"
    )


def test_a_key_written_twice_is_an_error_not_the_last_one_winning() -> None:
    text = """
version: twice
metrics:
  sms: {name: SMS, unit: message, aggregation: sum}
plans:
  p:
    name: P
    currency: USD
    charges:
      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: "0.10",
         unit_price: "0.01"}
"""
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    ((issue),) = caught.value.issues
    assert issue.message.startswith("not valid YAML")
    assert "the key 'unit_price' is written twice (first on line 10)" in issue.message
    assert "line 11" in issue.message


def issues_of(text: str, decks: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(path, message) of each problem a catalog and its deck files are refused for."""
    with pytest.raises(CatalogError) as raised:
        parse_catalog(text, deck_texts=decks)
    return [(issue.path, issue.message) for issue in raised.value.issues]


def test_the_catalog_hash_changes_with_a_deck() -> None:
    text = CATALOG_PATH.read_text()
    deck = (CATALOG_PATH.parent / "decks" / "intl-voice.csv").read_text()
    first = parse_catalog(text, deck_texts={"decks/intl-voice.csv": deck}).content_hash
    again = parse_catalog(text, deck_texts={"decks/intl-voice.csv": deck}).content_hash
    changed = parse_catalog(
        text, deck_texts={"decks/intl-voice.csv": deck.replace("0.0060", "0.0061", 1)}
    ).content_hash
    assert first == again != changed


def test_the_real_catalog_is_consistent() -> None:
    catalog = load_catalog(CATALOG_PATH)
    for plan_id, plan in catalog.plans.items():
        assert minor_unit_exponent(plan.currency) >= 0, plan_id
        assert isinstance(plan.rounding, RoundingMode)
        ids = [c.id for c in plan.charge_list]
        assert len(ids) == len(set(ids)), plan_id
        for charge in plan.charge_list:
            if charge.kind == "usage":
                assert charge.metric in catalog.metrics, (plan_id, charge.id)


def test_the_real_catalog_usd_plan() -> None:
    usd = load_catalog(CATALOG_PATH).plans["ucaas-business-usd"]
    assert (usd.currency, usd.rounding) == ("USD", RoundingMode.HALF_UP)
    platform = next(c for c in usd.recurring_charges() if c.id == "platform")
    assert isinstance(platform, FlatCharge)
    assert platform.amount == Decimal("199.00")
    outbound, inbound = usd.usage_charges("voice")
    assert isinstance(outbound, CallDeckCharge)
    assert (outbound.deck, outbound.filters) == ("intl-voice", {"direction": "outbound"})
    assert isinstance(inbound, GraduatedCharge)
    assert inbound.filters == {"direction": "inbound"}
    assert inbound.price_unit == "min"
    assert [t.up_to for t in inbound.tiers] == [Decimal(20000), None]
    assert usd.usage_charges("video") == []


def test_list_price_lookup() -> None:
    catalog = load_catalog(CATALOG_PATH)
    found = catalog.list_price("sms")
    assert found is not None
    plan, charge = found
    assert plan is catalog.plans[str(catalog.list_price_plan)]
    assert charge.metric == "sms"


def test_the_registry_names_every_model_once() -> None:
    names = [model_name(model) for model in CHARGE_MODELS]
    assert {"flat", "per_unit", "graduated", "volume"} <= set(names)
    assert len(set(names)) == len(names)
    assert model_name(GraduatedCharge) == "graduated"


GOOD_PLAN = """
  good:
    name: Good
    currency: USD
    charges:
      - {id: platform, name: Platform, model: flat, amount: "10"}
"""

BROKEN = (
    """
version: "broken"
list_price_plan: missing-plan              # undefined list_price_plan
metrics:
  voice: {name: Voice, unit: s}
  storage: {name: Storage, unit: furlong}  # unknown unit
plans:
  bad:
    name: Bad
    currency: XYZ                          # unknown currency
    charges:
      - {id: platform, name: Platform, model: flat, amount: "10"}
      - {id: platform, name: Seats, model: per_unit, metric: voice, unit_price: "-1"}
      - id: calls
        name: Calls
        model: graduated
        metric: ghost                      # undefined metric
        tiers:
          - {up_to: "100", unit_price: "1"}
          - {up_to: "50", unit_price: "0.5"}
      - {id: sms, name: SMS, model: per_unit, metric: voice, unit_price: 0.0079}
      - {id: tiered, name: Tiered, model: stairstep, metric: voice}
      - id: storage
        name: Storage
        model: volume
        metric: voice
        tiers:
          - {up_to: null, unit_price: "1"}
          - {up_to: "10", unit_price: "2"}
"""
    + GOOD_PLAN
)


def test_a_broken_catalog_reports_every_error_with_its_path() -> None:
    with pytest.raises(CatalogError) as raised:
        parse_catalog(BROKEN, source="broken.yaml")
    error = raised.value
    issues = {issue.path: issue.message for issue in error.issues}
    assert sorted(issues) == sorted(
        [
            "metrics.storage.unit",  # unknown unit
            "plans.bad.currency",  # unknown currency
            "plans.bad.charges[1].unit_price",  # negative price
            "plans.bad.charges[1].id",  # duplicate charge id
            "plans.bad.charges[2].metric",  # undefined metric
            "plans.bad.charges[2].tiers",  # bad tiers: bounds fall, last tier closed
            "plans.bad.charges[3].unit_price",  # money as a YAML float
            "plans.bad.charges[4]",  # unknown model
            "plans.bad.charges[5].tiers",  # bad tiers: open tier not last
            "list_price_plan",  # undefined list-price plan
        ]
    )
    assert len(error.issues) == 10  # one issue per problem, none repeated
    assert issues["metrics.storage.unit"].startswith("unknown unit 'furlong'")
    assert issues["plans.bad.currency"] == "unknown ISO 4217 currency 'XYZ'"
    assert issues["plans.bad.charges[1].unit_price"] == "must not be negative"
    assert issues["plans.bad.charges[1].id"] == "duplicate charge id 'platform'"
    assert issues["plans.bad.charges[2].metric"] == "metric 'ghost' is not defined"
    assert issues["plans.bad.charges[2].tiers"] == (
        "tier 1 ends at 50, not above the previous bound 100; "
        "the last tier (tier 1) must be open-ended (up_to: null)"
    )
    assert issues["plans.bad.charges[3].unit_price"] == (
        'write money as a quoted string, e.g. "0.0079"'
    )
    assert "Input tag 'stairstep'" in issues["plans.bad.charges[4]"]
    assert issues["plans.bad.charges[5].tiers"] == (
        "tier 0 is open-ended but is not the last tier; "
        "the last tier (tier 1) must be open-ended (up_to: null)"
    )
    assert issues["list_price_plan"] == "plan 'missing-plan' is not defined"
    text = str(error)
    assert text.startswith("catalog broken.yaml has 10 error(s):")
    assert "  - plans.bad.currency: unknown ISO 4217 currency 'XYZ'" in text


def _one_plan_issues(plan_lines: str) -> dict[str, str]:
    """The load errors of a catalog with one USD plan `p` whose body ends with
    `plan_lines`."""
    text = f"version: t\nmetrics: {{}}\nplans:\n  p:\n    name: P\n    currency: USD\n{plan_lines}"
    with pytest.raises(CatalogError) as raised:
        parse_catalog(text)
    return {issue.path: issue.message for issue in raised.value.issues}


def test_an_unknown_add_on_of_a_plan_is_an_error_with_its_path() -> None:
    issues = _one_plan_issues(
        "    add_ons: [nope]\n    charges: [{id: f, name: F, model: flat, amount: '1'}]\n"
    )
    assert issues == {"plans.p.add_ons[0]": "add-on 'nope' is not defined"}


def test_a_plan_discount_on_a_charge_the_plan_lacks_is_an_error() -> None:
    issues = _one_plan_issues(
        "    discounts: [{id: d, name: Deal, kind: percentage, value: '10', applies_to: seat}]\n"
        "    charges: [{id: seats, name: Seats, model: per_seat, unit_price: '10'}]\n"
    )
    assert issues["plans.p.discounts[0].applies_to"].startswith(
        "charge 'seat' is not a charge of the plan (its charges: seats"
    )


def test_deck_errors_are_reported_beside_the_catalogs_own() -> None:
    # A plan in an unknown currency and a deck with a duplicate prefix and a negative rate:
    # one load reports all three.
    text = """
version: t
metrics:
  voice: {name: Voice, unit: s, aggregation: sum}
decks:
  d: {file: d.csv, currency: USD}
plans:
  p:
    name: P
    currency: XYZ
    charges: [{id: calls, name: Calls, model: call_deck, metric: voice, deck: d}]
"""
    deck = "prefix,destination,rate_per_minute\n44,UK,0.01\n44,UK,0.02\n33,FR,-0.05\n"
    with pytest.raises(CatalogError) as raised:
        parse_catalog(text, deck_texts={"d.csv": deck})
    messages = [f"{issue.path}: {issue.message}" for issue in raised.value.issues]
    assert "plans.p.currency: unknown ISO 4217 currency 'XYZ'" in messages
    assert any(m.startswith("decks.d: ") and "duplicate prefix 44" in m for m in messages)
    assert any(m.startswith("decks.d: ") and "-0.05 is negative" in m for m in messages)


@pytest.mark.parametrize(
    ("charge", "path", "message"),
    [
        (
            "{id: c, name: C, model: per_unit, unit_price: '1'}",
            "plans.p.charges[0].metric",
            "a per_unit charge needs a metric",
        ),
        (
            "{id: c, name: C, model: graduated, tiers: [{up_to: null, unit_price: '1'}]}",
            "plans.p.charges[0].metric",
            "a graduated charge needs a metric",
        ),
        (
            "{id: c, name: C, model: per_unit, metric: voice, price_unit: GB, unit_price: '1'}",
            "plans.p.charges[0].price_unit",
            r"cannot convert s \(duration\) to GB \(data\)",
        ),
        (
            "{id: c, name: C, model: per_unit, metric: voice, price_unit: parsec, unit_price: '1'}",
            "plans.p.charges[0].price_unit",
            "unknown unit 'parsec'",
        ),
        (
            "{id: c, name: C, model: flat, amount: 19.99}",
            "plans.p.charges[0].amount",
            "write money as a quoted string",
        ),
        (
            "{id: c, name: C, model: graduated, metric: voice, "
            "tiers: [{up_to: null, unit_price: '1', flat_fee: 2.5}]}",
            "plans.p.charges[0].tiers[0].flat_fee",
            "write money as a quoted string",
        ),
        (
            "{id: c, name: C, model: flat, amount: '1', colour: red}",
            "plans.p.charges[0].colour",
            "Extra inputs are not permitted",
        ),
        (
            "{id: c, name: C, model: flat, amount: '1', metric: voice}",
            "plans.p.charges[0].metric",
            "a flat charge is a fee per period: it takes no metric",
        ),
        (
            "{id: c, name: C, model: per_seat, unit_price: '5', free_units: {units: '2'}}",
            "plans.p.charges[0].free_units",
            "a per_seat charge is a fee per period and seat: it takes no free_units",
        ),
    ],
)
def test_single_charge_errors(charge: str, path: str, message: str) -> None:
    document = f"""
version: "1"
metrics:
  voice: {{name: Voice, unit: s}}
plans:
  p:
    name: P
    currency: USD
    charges:
      - {charge}
"""
    with pytest.raises(CatalogError) as raised:
        parse_catalog(document)
    (issue,) = raised.value.issues
    assert issue.path == path
    assert re.search(message, issue.message), issue.message


def test_a_call_deck_charge_needs_a_metric_of_time() -> None:
    text = """
version: t
metrics:
  sms: {name: SMS, unit: message, aggregation: sum}
decks:
  d: {file: d.csv, currency: USD}
plans:
  p:
    name: P
    currency: USD
    charges: [{id: calls, name: Calls, model: call_deck, metric: sms, deck: d}]
"""
    deck = "prefix,destination,rate_per_minute\n44,UK,0.01\n"
    assert issues_of(text, {"d.csv": deck}) == [
        (
            "plans.p.charges[0].metric",
            "a call_deck charge rates call durations: metric 'sms' is in message, not a unit "
            "of time",
        )
    ]


def test_a_bundled_add_on_rating_calls_in_another_currency_is_an_error_at_the_add_on() -> None:
    text = """
version: t
metrics:
  voice: {name: Voice, unit: s, aggregation: sum}
decks:
  eur: {file: eur.csv, currency: EUR}
add_ons:
  world:
    name: World
    charges: [{id: calls, name: Calls, model: call_deck, metric: voice, deck: eur}]
plans:
  p:
    name: P
    currency: USD
    add_ons: [world]
    charges: [{id: fee, name: Fee, model: flat, amount: "1"}]
"""
    deck = "prefix,destination,rate_per_minute\n44,UK,0.01\n"
    assert issues_of(text, {"eur.csv": deck}) == [
        ("plans.p.add_ons[0]", "add-on 'world' rates calls from a deck in EUR, the plan is in USD")
    ]


def test_checks_across_entries_run_beside_the_errors_of_other_entries() -> None:
    # The metric's unknown unit does not hide the checks across the valid entries: two
    # charges billing the same calls, a discount on no charge, a deck in another
    # currency. The deck's own unknown key does not hide its file's duplicate prefix.
    # Plan q bundles an add-on in error, so nothing is said of q beyond that error.
    text = """
version: t
metrics:
  voice: {name: Voice, unit: s, aggregation: sum}
  bad: {name: Bad, unit: parsec}
decks:
  eur: {file: eur.csv, currency: EUR, colour: blue}
add_ons:
  broken: {name: Broken, charges: [{id: x, name: X, model: flat, amount: "-1"}]}
plans:
  p:
    name: P
    currency: USD
    discounts: [{id: d, name: D, kind: percentage, value: "10", applies_to: nothing}]
    charges:
      - {id: a, name: A, model: per_unit, metric: voice, unit_price: "0.1"}
      - {id: b, name: B, model: per_unit, metric: voice, unit_price: "0.2"}
      - {id: c, name: C, model: call_deck, metric: voice, deck: eur}
  q:
    name: Q
    currency: USD
    add_ons: [broken]
    discounts: [{id: d, name: D, kind: percentage, value: "10", applies_to: broken.x}]
    charges:
      - {id: a, name: A, model: per_unit, metric: voice, unit_price: "0.1"}
      - {id: b, name: B, model: per_unit, metric: voice, unit_price: "0.2"}
"""
    deck = "prefix,destination,rate_per_minute\n44,UK,0.01\n44,UK,0.02\n"
    with pytest.raises(CatalogError) as raised:
        parse_catalog(text, deck_texts={"eur.csv": deck})
    paths = [issue.path for issue in raised.value.issues]
    messages = [str(issue) for issue in raised.value.issues]
    assert any(m.startswith("metrics.bad.unit: unknown unit 'parsec'") for m in messages)
    assert "decks.eur.colour" in paths
    assert any(m.startswith("add_ons.broken.charges[0]") for m in messages)
    assert any(m.startswith("decks.eur: eur row 3: duplicate prefix 44") for m in messages)
    assert sum(m.startswith("plans.p.charges: charges 'a' and ") for m in messages) == 2
    assert "plans.p.discounts[0].applies_to" in paths
    assert "plans.p.charges[2].deck: deck 'eur' is in EUR, the plan in USD" in messages
    assert not [p for p in paths if p.startswith("plans.q")]


def test_time_bands_in_error_do_not_also_report_missing_bands() -> None:
    text = """
version: t
metrics:
  voice: {name: Voice, unit: s, aggregation: sum}
decks:
  d: {file: d.csv, currency: USD, time_bands: [8, 18]}
plans:
  p:
    name: P
    currency: USD
    charges: [{id: calls, name: Calls, model: call_deck, metric: voice, deck: d}]
"""
    deck = "prefix,destination,band,rate_per_minute\n44,UK,peak,0.02\n44,UK,offpeak,0.01\n"
    assert [path for path, _ in issues_of(text, {"d.csv": deck})] == ["decks.d.time_bands"]


def test_integer_money_is_accepted() -> None:
    # an integer is exact in YAML; only floats are rejected
    catalog = parse_catalog(
        f"""
version: "1"
metrics: {{}}
plans:{GOOD_PLAN}""".replace('amount: "10"', "amount: 10")
    )
    assert catalog.plans["good"].charge_list[0].price(Decimal(1)).amount == Decimal(10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "the catalog must be a mapping"),
        ("", "the catalog must be a mapping"),
    ],
)
def test_unreadable_documents(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message) as raised:
        parse_catalog(text)
    assert [issue.path for issue in raised.value.issues] == ["<root>"]


def test_missing_top_level_keys_are_reported() -> None:
    with pytest.raises(CatalogError) as raised:
        parse_catalog("version: '1'\n")
    assert {issue.path for issue in raised.value.issues} == {"metrics", "plans"}


def test_load_catalog_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("version: '1'\nmetrics: {}\nplans: {}\nlist_price_plan: nope\n")
    with pytest.raises(CatalogError, match=r"catalog .*catalog\.yaml has 1 error\(s\)"):
        load_catalog(path)


# Regression: issue paths once dropped every part equal to a model name.
def test_paths_keep_keys_that_share_a_model_name() -> None:
    document = """
version: "1"
metrics:
  volume: {name: Call volume, unit: furlong}
plans:
  flat:
    name: Flat rate
    currency: XYZ
    charges:
      - {id: c, name: C, model: flat, amount: "1"}
"""
    with pytest.raises(CatalogError) as raised:
        parse_catalog(document)
    assert {issue.path for issue in raised.value.issues} == {
        "metrics.volume.unit",
        "plans.flat.currency",
    }


def test_two_charges_that_could_bill_one_event_are_a_catalog_error() -> None:
    text = """
version: t
metrics:
  voice: {name: Voice, unit: s, dimensions: [direction]}
plans:
  p:
    name: P
    currency: USD
    charges:
      - {id: all-calls, name: Calls, model: per_unit, metric: voice, unit_price: "0.01"}
      - {id: out, name: Out, model: per_unit, metric: voice, unit_price: "0.02",
         filters: {direction: outbound}}
      - {id: in, name: In, model: per_unit, metric: voice, unit_price: "0.00",
         filters: {direction: inbound}}
"""
    with pytest.raises(CatalogError) as raised:
        parse_catalog(text)
    messages = [issue.message for issue in raised.value.issues]
    # all-calls overlaps both; outbound and inbound never match the same event
    assert len(messages) == 2
    assert all("'all-calls'" in m for m in messages)


def test_an_add_on_bundled_twice_is_reported_as_such() -> None:
    text = """
version: t
metrics:
  rec: {name: Recording, unit: GB, aggregation: max}
add_ons:
  recording:
    name: Recording
    charges: [{id: st, name: Storage, model: per_unit, metric: rec, unit_price: "0.1"}]
plans:
  p:
    name: P
    currency: USD
    add_ons: [recording, recording]
    charges: [{id: fee, name: Fee, model: flat, amount: "1"}]
"""
    assert issues_of(text) == [("plans.p.add_ons[1]", "add-on 'recording' is listed twice")]
