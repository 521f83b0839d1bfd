"""The pricing catalog: YAML pricing-as-code, validated on load with every error reported."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from pricing_rules import yamltext
from pricing_rules.charges import CHARGE_MODELS, Charge, ChargeBase, model_name
from pricing_rules.money import RoundingMode, is_currency
from pricing_rules.terms import AccountTerms, Discount, TaxRate
from pricing_rules.units import UNITS, conversion_factor, is_unit


@dataclass(frozen=True)
class CatalogIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class CatalogError(ValueError):
    """Raised with every problem found in a catalog, each with its path."""

    def __init__(self, source: str, issues: list[CatalogIssue]) -> None:
        self.source = source
        self.issues = issues
        listing = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"catalog {source} has {len(issues)} error(s):\n{listing}")


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    unit: str
    aggregation: Literal["sum", "count", "unique_count", "max", "latest", "time_weighted_sum"] = (
        "sum"
    )
    property: str | None = None
    dimensions: list[str] = Field(default_factory=list)
    # What a time-weighted sum counts a reading held for: the billing period (seat-months
    # on a monthly plan), a local calendar day (seat-days) or an hour (seat-hours).
    time_unit: Literal["period", "day", "hour"] = "period"

    @model_validator(mode="after")
    def _property(self) -> Metric:
        if self.aggregation == "unique_count" and not self.property:
            raise ValueError("a unique_count metric names the property it counts")
        if self.time_unit != "period" and self.aggregation != "time_weighted_sum":
            raise ValueError("time_unit is for a time_weighted_sum metric")
        if self.property and self.property not in self.dimensions:
            raise ValueError(f"property {self.property!r} must be one of the dimensions")
        return self

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, unit: str) -> str:
        if not is_unit(unit):
            raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(sorted(UNITS))}")
        return unit


class AddOn(BaseModel):
    """Extra charges a plan bundles or a subscription adds, billed in the plan's currency.

    Its prices are amounts in that currency, so `currencies` says which plan currencies it
    was priced for (empty: any).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    charges: list[Charge] = Field(min_length=1)
    currencies: list[str] = Field(default_factory=list)

    @field_validator("currencies")
    @classmethod
    def _known_currencies(cls, currencies: list[str]) -> list[str]:
        unknown = [c for c in currencies if not is_currency(c)]
        if unknown:
            raise ValueError(f"unknown ISO 4217 currency {', '.join(map(repr, unknown))}")
        return currencies

    @property
    def charge_list(self) -> list[ChargeBase]:
        return list(self.charges)


class DeckSpec(BaseModel):
    """A rate deck: a CSV of prefixes and per-minute rates beside the catalog, and its rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    currency: str
    increments: str = "60/60"
    connect_fee: Decimal = Decimal(0)
    minimum_charge: Decimal = Decimal(0)
    rounding: Literal["per_call", "per_increment"] = "per_call"
    rounding_decimals: int = Field(4, ge=0, le=12)
    rounding_mode: RoundingMode = RoundingMode.HALF_UP
    time_bands: dict[str, Any] | None = None


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    currency: str
    interval: Literal["month", "quarter", "year"] = "month"
    alignment: Literal["calendar", "anniversary"] = "calendar"  # anniversary: of the start
    rounding: RoundingMode = RoundingMode.HALF_UP
    charges: list[Charge] = Field(min_length=1)
    add_ons: list[str] = Field(default_factory=list)
    minimum_commitment: Decimal | None = None
    discounts: list[Discount] = Field(default_factory=list)
    # Effective-dated versions: plans of one `family` offered one after another, each
    # `[effective_from, effective_to)`. Subscriptions keep the version they signed.
    family: str | None = None
    effective_from: date | None = None
    effective_to: date | None = None

    @model_validator(mode="after")
    def _window(self) -> Plan:
        if self.effective_from and self.effective_to and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        wrong = [d.id for d in self.discounts if d.currency and d.currency != self.currency]
        if wrong:
            raise ValueError(
                f"discount(s) {', '.join(wrong)} name another currency than the plan's "
                f"{self.currency}"
            )
        # A commitment is weighed per monthly run against the month's fees; a plan on its
        # own cycle bills fees for other spans, which the month's commitment would count
        # twice or not at all.
        if self.minimum_commitment is not None and self.own_cycle:
            raise ValueError(
                "minimum_commitment is only for plans billed by calendar month (interval: "
                f"month, alignment: calendar); this plan bills by {self.alignment} "
                f"{self.interval}"
            )
        return self

    @property
    def own_cycle(self) -> bool:
        """Fixed fees follow the plan's own cycle, not the calendar month of the run."""
        return self.interval != "month" or self.alignment != "calendar"

    def offered_on(self, day: date) -> bool:
        return (self.effective_from is None or self.effective_from <= day) and (
            self.effective_to is None or day < self.effective_to
        )

    @field_validator("minimum_commitment")
    @classmethod
    def _commitment(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, currency: str) -> str:
        if not is_currency(currency):
            raise ValueError(f"unknown ISO 4217 currency {currency!r}")
        return currency

    @property
    def charge_list(self) -> list[ChargeBase]:
        return list(self.charges)

    def usage_charges(self, metric: str) -> list[ChargeBase]:
        return [c for c in self.charge_list if c.kind == "usage" and c.metric == metric]

    def recurring_charges(self) -> list[ChargeBase]:
        return [c for c in self.charge_list if c.kind == "recurring"]


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    list_price_plan: str | None = None
    metrics: dict[str, Metric]
    plans: dict[str, Plan]
    add_ons: dict[str, AddOn] = Field(default_factory=dict)
    taxes: dict[str, TaxRate] = Field(default_factory=dict)
    decks: dict[str, DeckSpec] = Field(default_factory=dict)
    content_hash: str = ""
    _rate_decks: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("taxes")
    @classmethod
    def _jurisdictions(cls, taxes: dict[str, TaxRate]) -> dict[str, TaxRate]:
        lower = [key for key in taxes if key != key.upper()]
        if lower:
            raise ValueError(
                f"write jurisdictions in capitals, as country codes are: "
                f"{', '.join(f'{key!r} as {key.upper()!r}' for key in lower)}"
            )
        return taxes

    def rate_deck(self, name: str) -> Any:
        """The parsed `RateDeck` of a deck spec (loaded with the catalog)."""
        if name not in self._rate_decks:
            raise KeyError(f"rate deck {name!r} was not loaded with the catalog")
        return self._rate_decks[name]

    def plan_charges(
        self, plan_id: str, extra_add_ons: Sequence[str] = ()
    ) -> list[tuple[str, ChargeBase]]:
        """(line key, charge) for a plan, its bundled add-ons and a subscription's add-ons.

        Add-on charges are keyed `<add_on>.<charge>` so they never collide with the plan's.
        """
        plan = self.plans[plan_id]
        charges = [(c.id, c) for c in plan.charge_list]
        for add_on in dict.fromkeys([*plan.add_ons, *extra_add_ons]):
            charges.extend((f"{add_on}.{c.id}", c) for c in self.add_ons[add_on].charge_list)
        return charges

    def add_on_currencies(self, name: str) -> list[str]:
        """The plan currencies an add-on may be billed in (empty: any): those it lists,
        or else those of the decks its calls are rated from, which price in their own."""
        add_on = self.add_ons[name]
        if add_on.currencies:
            return list(add_on.currencies)
        decks = (getattr(c, "deck", None) for c in add_on.charge_list)
        return sorted({self.decks[d].currency for d in decks if d in self.decks})

    def plan_version(self, family: str, day: date) -> str | None:
        """The plan of `family` offered on `day` (versions never overlap)."""
        for plan_id, plan in self.plans.items():
            if (plan.family or plan_id) == family and plan.offered_on(day):
                return plan_id
        return None

    def metric_units(self) -> dict[str, str]:
        return {name: metric.unit for name, metric in self.metrics.items()}

    def list_price(self, metric: str) -> tuple[Plan, ChargeBase] | None:
        """The list-price plan's first charge that prices a period total of the metric,
        used to value unbilled usage (calls rated per call from a deck are valued at the
        plan's other voice charge, if any)."""
        if self.list_price_plan is None:
            return None
        plan = self.plans[self.list_price_plan]
        charges = [c for c in plan.usage_charges(metric) if c.level == "aggregate"]
        return (plan, charges[0]) if charges else None


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<root>"


def _pydantic_issues(error: ValidationError) -> list[CatalogIssue]:
    issues = []
    for item in error.errors():
        # A discriminated union adds the model name after a charge's index; drop only that.
        raw_loc = item["loc"]
        loc = tuple(
            part
            for i, part in enumerate(raw_loc)
            if not (
                i >= 2
                and isinstance(part, str)
                and part in _MODEL_TAGS
                and isinstance(raw_loc[i - 1], int)
                and raw_loc[i - 2] == "charges"
            )
        )
        message = item["msg"].removeprefix("Value error, ")
        issues.append(CatalogIssue(_path(loc), message))
    return issues


_USAGE_MODELS = {model_name(model) for model in CHARGE_MODELS if model.kind == "usage"}
_MODEL_TAGS = {model_name(model) for model in CHARGE_MODELS}


def _reference_issues(raw: Mapping[str, Any]) -> list[CatalogIssue]:
    """Cross-references checked on the raw document, so they are reported with shape errors."""
    issues: list[CatalogIssue] = []
    metrics: Mapping[str, Any] = raw["metrics"] if isinstance(raw.get("metrics"), Mapping) else {}
    plans: Mapping[str, Any] = raw["plans"] if isinstance(raw.get("plans"), Mapping) else {}
    add_ons: Mapping[str, Any] = raw["add_ons"] if isinstance(raw.get("add_ons"), Mapping) else {}
    decks: Mapping[str, Any] = raw["decks"] if isinstance(raw.get("decks"), Mapping) else {}
    list_plan = raw.get("list_price_plan")
    if list_plan is not None and list_plan not in plans:
        issues.append(CatalogIssue("list_price_plan", f"plan {list_plan!r} is not defined"))
    owners = [(f"plans.{k}", v) for k, v in plans.items()]
    owners += [(f"add_ons.{k}", v) for k, v in add_ons.items()]
    for owner, body in owners:
        if not isinstance(body, Mapping):
            continue
        if owner.startswith("plans."):
            named = body.get("add_ons")
            listed: list[Any] = named if isinstance(named, list) else []
            for index, add_on in enumerate(listed):
                if isinstance(add_on, str) and add_on in listed[:index]:
                    issues.append(
                        CatalogIssue(
                            f"{owner}.add_ons[{index}]", f"add-on {add_on!r} is listed twice"
                        )
                    )
                if add_on not in add_ons:
                    issues.append(
                        CatalogIssue(
                            f"{owner}.add_ons[{index}]", f"add-on {add_on!r} is not defined"
                        )
                    )
        if isinstance(body.get("charges"), list):
            issues.extend(_charge_issues(owner, body["charges"], metrics, decks))
    return issues


def _charge_issues(
    owner: str,
    charges: list[Any],
    metrics: Mapping[str, Any],
    decks: Mapping[str, Any],
) -> list[CatalogIssue]:
    issues: list[CatalogIssue] = []
    seen: set[str] = set()
    for index, charge in enumerate(charges):
        if not isinstance(charge, Mapping):
            continue
        where = f"{owner}.charges[{index}]"
        charge_id = charge.get("id")
        if isinstance(charge_id, str):
            if charge_id in _RESERVED_IDS or ":" in charge_id or "." in charge_id:
                issues.append(
                    CatalogIssue(
                        f"{where}.id",
                        f"charge id {charge_id!r} is reserved or contains ':' or '.' "
                        "(used in invoice line ids)",
                    )
                )
            if charge_id in seen:
                issues.append(CatalogIssue(f"{where}.id", f"duplicate charge id {charge_id!r}"))
            seen.add(charge_id)
        model = charge.get("model")
        metric = charge.get("metric")
        if model in _USAGE_MODELS and metric is None:
            issues.append(CatalogIssue(f"{where}.metric", f"a {model} charge needs a metric"))
        if model in _MODEL_TAGS - _USAGE_MODELS:
            # a recurring fee is priced per period and seat: these would change nothing
            for field in ("metric", "price_unit", "filters", "free_units"):
                if charge.get(field) is not None:
                    issues.append(
                        CatalogIssue(
                            f"{where}.{field}",
                            f"a {model} charge is a fee per period"
                            f"{' and seat' if model == 'per_seat' else ''}: it takes no {field}",
                        )
                    )
        if metric is not None and metric not in metrics:
            issues.append(CatalogIssue(f"{where}.metric", f"metric {metric!r} is not defined"))
        metric_def = metrics.get(metric) if isinstance(metric, str) else None
        price_unit = charge.get("price_unit")
        if price_unit is not None and isinstance(metric_def, Mapping):
            try:
                conversion_factor(str(metric_def.get("unit")), str(price_unit))
            except ValueError as exc:
                issues.append(CatalogIssue(f"{where}.price_unit", str(exc)))
        if (
            model == "call_deck"
            and isinstance(metric_def, Mapping)
            and is_unit(str(metric_def.get("unit")))
        ):
            try:
                conversion_factor(str(metric_def.get("unit")), "s")
            except ValueError:
                issues.append(
                    CatalogIssue(
                        f"{where}.metric",
                        f"a call_deck charge rates call durations: metric {metric!r} is in "
                        f"{metric_def.get('unit')}, not a unit of time",
                    )
                )
        filters = charge.get("filters")
        if isinstance(filters, Mapping) and isinstance(metric_def, Mapping):
            declared = metric_def.get("dimensions") or []
            for key in filters:
                if key not in declared:
                    issues.append(
                        CatalogIssue(
                            f"{where}.filters.{key}",
                            f"metric {metric!r} has no dimension {key!r} (declared: "
                            f"{', '.join(declared) or 'none'})",
                        )
                    )
        deck = charge.get("deck")
        if deck is not None and deck not in decks:
            issues.append(CatalogIssue(f"{where}.deck", f"rate deck {deck!r} is not defined"))
        free = charge.get("free_units")
        user = free.get("dimension") if isinstance(free, Mapping) else None
        if isinstance(free, Mapping) and free.get("per") == "user" and metric is None:
            issues.append(
                CatalogIssue(
                    f"{where}.free_units.per",
                    "an allowance per user is for a usage charge: it needs a metric",
                )
            )
        if user is not None and isinstance(metric_def, Mapping):
            declared = metric_def.get("dimensions") or []
            if user not in declared:
                issues.append(
                    CatalogIssue(
                        f"{where}.free_units.dimension",
                        f"metric {metric!r} has no dimension {user!r} (declared: "
                        f"{', '.join(declared) or 'none'})",
                    )
                )
            if metric_def.get("aggregation", "sum") not in ("sum", "count"):
                issues.append(
                    CatalogIssue(
                        f"{where}.free_units.per",
                        "an allowance per user needs a sum or count metric: each user's "
                        "quantities must add up to the total",
                    )
                )
    return issues


def parse_catalog(
    text: str, source: str = "<catalog>", deck_texts: Mapping[str, str] | None = None
) -> Catalog:
    """Parse and validate a catalog document; raise `CatalogError` listing every problem.

    `deck_texts` maps each deck's `file` to its CSV text (see `load_catalog`).
    """
    try:
        raw = yamltext.load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(source, [CatalogIssue("<root>", f"not valid YAML: {exc}")]) from exc
    if not isinstance(raw, Mapping):
        raise CatalogError(source, [CatalogIssue("<root>", "the catalog must be a mapping")])
    _reject_float_money(raw, "", issues := [])
    issues.extend(_reference_issues(raw))
    catalog: Catalog | None = None
    deck_texts = deck_texts or {}
    digest = hashlib.sha256(text.encode())
    for name in sorted(deck_texts):
        digest.update(b"\0" + name.encode() + b"\0" + deck_texts[name].encode())
    try:
        catalog = Catalog.model_validate({**raw, "content_hash": digest.hexdigest()})
    except ValidationError as exc:
        issues = _pydantic_issues(exc) + issues
    if catalog is not None and not issues:
        issues.extend(_load_decks(catalog, deck_texts))
    else:
        # One load reports every error: the deck files are checked, and so are the
        # entries that are valid on their own against one another.
        specs, loose_bands = _valid_deck_specs(raw)
        issues.extend(_parse_decks(specs, deck_texts, {}, loose_bands))
        salvaged, dropped = _salvaged(raw, specs)
        if salvaged is not None:
            issues.extend(i for i in _across(salvaged, dropped) if i not in issues)
    if issues or catalog is None:
        raise CatalogError(source, issues)
    return catalog


def why(exc: ValueError) -> str:
    """A validation error in a line: each field and what is wrong with it."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'charge'}: {error['msg']}"
            for error in exc.errors()
        )
    return str(exc)


def terms_issues(catalog: Catalog, terms: Sequence[AccountTerms]) -> list[tuple[str, str]]:
    """What in accounts' terms the catalog cannot apply, as (account, problem): a price
    override of a plan or charge it lacks, or with fields its charge does not take, and a
    discount on a charge no plan or add-on has. (Rating says the same as notices,
    invoice by invoice.)"""
    issues = []
    every = list(catalog.add_ons)
    charges = {plan_id: dict(catalog.plan_charges(plan_id, every)) for plan_id in catalog.plans}
    keys = {key for listed in charges.values() for key in listed}
    for account in terms:
        for index, override in enumerate(account.overrides):
            where = f"overrides[{index}] ({override.plan_id}/{override.charge_id})"
            if override.plan_id not in catalog.plans:
                issues.append(
                    (
                        account.account_id,
                        f"{where}: plan {override.plan_id!r} is not in the catalog",
                    )
                )
                continue
            charge = charges[override.plan_id].get(override.charge_id)
            if charge is None:
                issues.append(
                    (
                        account.account_id,
                        f"{where}: the plan has no charge {override.charge_id!r} (its charges: "
                        f"{', '.join(sorted(charges[override.plan_id]))})",
                    )
                )
                continue
            try:
                type(charge).model_validate({**charge.model_dump(), **override.changes()})
            except ValueError as exc:
                issues.append(
                    (
                        account.account_id,
                        f"{where}: does not fit a {model_name(type(charge))} charge ({why(exc)})",
                    )
                )
        for index, discount in enumerate(account.discounts):
            if discount.applies_to != "invoice" and discount.applies_to not in keys:
                issues.append(
                    (
                        account.account_id,
                        f"discounts[{index}] ({discount.id}): no plan or add-on has a charge "
                        f"{discount.applies_to!r}",
                    )
                )
    return issues


def filters_overlap(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether one event could match both filter sets (no shared key with two values).

    >>> filters_overlap({"direction": "inbound"}, {"direction": "outbound"})
    False
    >>> filters_overlap({}, {"direction": "outbound"})
    True
    """
    return all(a[key] == b[key] for key in a.keys() & b.keys())


def _double_billing(catalog: Catalog) -> list[CatalogIssue]:
    """Two usage charges of one plan (with its bundled add-ons) that could price the same
    event would bill it twice."""
    issues: list[CatalogIssue] = []
    for plan_id in catalog.plans:
        charges = [(k, c) for k, c in catalog.plan_charges(plan_id) if c.kind == "usage"]
        for index, (key, charge) in enumerate(charges):
            for other_key, other in charges[index + 1 :]:
                if charge.metric == other.metric and filters_overlap(charge.filters, other.filters):
                    issues.append(
                        CatalogIssue(
                            f"plans.{plan_id}.charges",
                            f"charges {key!r} and {other_key!r} both price {charge.metric!r} "
                            "events their filters both match; give them filters that "
                            "cannot both match, so each event is billed once",
                        )
                    )
    return issues


def _plan_discount_targets(catalog: Catalog, unchecked: Collection[str] = ()) -> list[CatalogIssue]:
    """A plan discount on a charge the plan does not have would discount nothing. (A
    target in an add-on of `unchecked`, one in error, is not judged.)"""
    issues = []
    for plan_id, plan in catalog.plans.items():
        # with any add-on a subscription may take
        keys = {key for key, _ in catalog.plan_charges(plan_id, list(catalog.add_ons))}
        for index, discount in enumerate(plan.discounts):
            if (
                discount.applies_to != "invoice"
                and discount.applies_to not in keys
                and discount.applies_to.split(".")[0] not in unchecked
            ):
                issues.append(
                    CatalogIssue(
                        f"plans.{plan_id}.discounts[{index}].applies_to",
                        f"charge {discount.applies_to!r} is not a charge of the plan (its "
                        f"charges: {', '.join(sorted(keys))}; or 'invoice')",
                    )
                )
    return issues


def _add_on_currencies(catalog: Catalog) -> list[CatalogIssue]:
    issues = []
    for name, add_on in catalog.add_ons.items():
        for index, charge in enumerate(add_on.charge_list):
            deck_name = getattr(charge, "deck", None)
            spec = catalog.decks.get(deck_name) if deck_name else None
            wrong = [c for c in add_on.currencies if spec and c != spec.currency]
            if spec and wrong:
                issues.append(
                    CatalogIssue(
                        f"add_ons.{name}.charges[{index}].deck",
                        f"deck {deck_name!r} is in {spec.currency}, but the add-on lists "
                        f"{', '.join(wrong)}",
                    )
                )
    # A bundled add-on's deck is checked against the plan with the plan's own charges.
    for plan_id, plan in catalog.plans.items():
        for index, name in enumerate(plan.add_ons):
            bundled = catalog.add_ons.get(name)
            if bundled and bundled.currencies and plan.currency not in bundled.currencies:
                issues.append(
                    CatalogIssue(
                        f"plans.{plan_id}.add_ons[{index}]",
                        f"add-on {name!r} is priced in {', '.join(bundled.currencies)}, "
                        f"the plan in {plan.currency}",
                    )
                )
    return issues


def _plan_versions(catalog: Catalog) -> list[CatalogIssue]:
    """Two versions of a family offered on the same day would make "the current price"
    ambiguous."""
    issues = []
    versions = sorted(
        (plan.family, plan.effective_from or date.min, plan_id)
        for plan_id, plan in catalog.plans.items()
        if plan.family
    )
    for (family, _, first_id), (other_family, _, second_id) in pairwise(versions):
        first, second = catalog.plans[first_id], catalog.plans[second_id]
        open_ended = first.effective_to is None or second.effective_from is None
        if family == other_family and (
            open_ended or second.effective_from < first.effective_to  # type: ignore[operator]
        ):
            issues.append(
                CatalogIssue(
                    f"plans.{second_id}.effective_from",
                    f"version {second_id!r} of family {family!r} overlaps {first_id!r} "
                    f"(offered until {first.effective_to or 'open-ended'}); versions of a "
                    "family must follow one another",
                )
            )
    return issues


def _load_decks(catalog: Catalog, deck_texts: Mapping[str, str]) -> list[CatalogIssue]:
    issues: list[CatalogIssue] = (
        _double_billing(catalog)
        + _add_on_currencies(catalog)
        + _plan_versions(catalog)
        + _plan_discount_targets(catalog)
    )
    if catalog.decks:
        issues.extend(_parse_decks(catalog.decks, deck_texts, catalog._rate_decks))
    return issues + _deck_currencies(catalog)


def _salvaged(
    raw: Mapping[str, Any], specs: Mapping[str, DeckSpec]
) -> tuple[Catalog | None, set[str]]:
    """The catalog made of the entries that are valid on their own (`specs`: the decks',
    from `_valid_deck_specs`), for the checks across them when others are not; and the
    add-ons left out. A plan bundling one of those is
    left out too, so no check reports a consequence of an error already reported."""
    kinds: dict[str, type[BaseModel]] = {
        "metrics": Metric,
        "plans": Plan,
        "add_ons": AddOn,
        "taxes": TaxRate,
    }
    kept: dict[str, Any] = {k: v for k, v in raw.items() if k in Catalog.model_fields}
    kept["version"] = str(raw.get("version", ""))
    for key, model in kinds.items():
        entries = raw.get(key)
        kept[key] = {}
        for name, entry in (entries if isinstance(entries, Mapping) else {}).items():
            try:
                model.model_validate(entry)
            except ValidationError:
                continue
            kept[key][name] = entry
    listed = raw.get("decks")
    decks = {str(k): v for k, v in listed.items()} if isinstance(listed, Mapping) else {}
    kept["decks"] = {  # a deck is kept without a field in error, unless its currency
        name: spec.model_dump()
        for name, spec in specs.items()
        if isinstance(decks.get(name), Mapping) and decks[name].get("currency") == spec.currency
    }
    add_ons = raw.get("add_ons")
    dropped = {str(a) for a in (add_ons if isinstance(add_ons, Mapping) else {})} - set(
        kept["add_ons"]
    )
    kept["plans"] = {
        name: plan
        for name, plan in kept["plans"].items()
        if all(a in kept["add_ons"] for a in plan.get("add_ons") or [])
    }
    kept["taxes"] = {k: v for k, v in kept["taxes"].items() if str(k) == str(k).upper()}
    if kept.get("list_price_plan") not in kept["plans"]:
        kept.pop("list_price_plan", None)
    try:
        return Catalog.model_validate(kept), dropped
    except ValidationError:
        return None, dropped


def _across(catalog: Catalog, dropped: set[str]) -> list[CatalogIssue]:
    """The checks across plans, add-ons and decks (deck files aside), judging nothing of
    the `dropped` add-ons."""
    return (
        _double_billing(catalog)
        + _add_on_currencies(catalog)
        + _plan_versions(catalog)
        + _plan_discount_targets(catalog, dropped)
        + _deck_currencies(catalog)
    )


def _deck_currencies(catalog: Catalog) -> list[CatalogIssue]:
    """A plan's calls are rated from decks in its own currency."""
    issues = []
    for plan_id, plan in catalog.plans.items():
        for index, charge in enumerate(plan.charge_list):
            deck_name = getattr(charge, "deck", None)
            spec = catalog.decks.get(deck_name) if deck_name else None
            if spec is not None and spec.currency != plan.currency:
                issues.append(
                    CatalogIssue(
                        f"plans.{plan_id}.charges[{index}].deck",
                        f"deck {deck_name!r} is in {spec.currency}, the plan in {plan.currency}",
                    )
                )
        for index, name in enumerate(plan.add_ons):
            priced_in = catalog.add_on_currencies(name) if name in catalog.add_ons else []
            bundled = catalog.add_ons.get(name)
            if bundled and not bundled.currencies and priced_in and plan.currency not in priced_in:
                issues.append(
                    CatalogIssue(
                        f"plans.{plan_id}.add_ons[{index}]",
                        f"add-on {name!r} rates calls from a deck in {', '.join(priced_in)}, "
                        f"the plan is in {plan.currency}",
                    )
                )
    return issues


_RESERVED_IDS = {"commitment", "discount", "tax", "credit"}
_MONEY_KEYS = {
    "amount",
    "unit_price",
    "flat_fee",
    "block_price",
    "minimum_amount",
    "maximum_amount",
    "minimum_commitment",
    "connect_fee",
    "minimum_charge",
    "value",
    "rate",
    "units",
}


def _reject_float_money(node: Any, path: str, issues: list[CatalogIssue]) -> None:
    """Money written as a bare YAML float has already lost exactness; ask for a string."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if key in _MONEY_KEYS and isinstance(value, float):
                issues.append(
                    CatalogIssue(child, f'write money as a quoted string, e.g. "{value}"')
                )
            _reject_float_money(value, child, issues)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _reject_float_money(value, f"{path}[{index}]", issues)


def load_catalog(path: Path) -> Catalog:
    """Load a catalog file and the rate decks it names (paths relative to the file)."""
    text = path.read_text(encoding="utf-8")
    try:
        raw = yamltext.load(text)
    except yaml.YAMLError:
        raw = None  # parse_catalog reports it with its location
    deck_texts: dict[str, str] = {}
    decks = raw.get("decks") if isinstance(raw, Mapping) else None
    if isinstance(decks, Mapping):
        for spec in decks.values():
            file = spec.get("file") if isinstance(spec, Mapping) else None
            if isinstance(file, str) and (path.parent / file).is_file():
                deck_texts[file] = (path.parent / file).read_text(encoding="utf-8")
    return parse_catalog(text, source=str(path), deck_texts=deck_texts)


def _valid_deck_specs(raw: Mapping[str, Any]) -> tuple[dict[str, DeckSpec], set[str]]:
    """The entries of a catalog's `decks`, for checking their files: an entry with a
    field in error (reported by the catalog's validation) is taken without that field,
    so its file's rows and its other rules are still checked. Also the decks whose
    `time_bands` were in error: which bands their calls fall in is not known."""
    decks = raw.get("decks")
    specs: dict[str, DeckSpec] = {}
    loose_bands: set[str] = set()
    for name, entry in (decks if isinstance(decks, Mapping) else {}).items():
        try:
            specs[str(name)] = DeckSpec.model_validate(entry)
        except ValidationError as exc:
            if not isinstance(entry, Mapping):
                continue
            wrong = {error["loc"][0] for error in exc.errors() if error["loc"]}
            kept = {k: v for k, v in entry.items() if k not in wrong}
            if "currency" in wrong:  # reported already; "no currency" to check the rest by
                kept["currency"] = "XXX"
            if "time_bands" in wrong:
                loose_bands.add(str(name))
            try:
                specs[str(name)] = DeckSpec.model_validate(kept)
            except ValidationError:  # no file to check
                continue
    return specs, loose_bands


def _parse_decks(
    specs: Mapping[str, DeckSpec],
    deck_texts: Mapping[str, str],
    parsed: dict[str, Any],
    loose_bands: Collection[str] = (),
) -> list[CatalogIssue]:
    """Parse each deck's CSV into `parsed`; return the problems found in them (for a
    deck of `loose_bands`, whether each prefix rates every band is not asked)."""
    from pricing_rules.decks import DeckError, parse_deck

    issues: list[CatalogIssue] = []
    for name, spec in specs.items():
        if spec.file not in deck_texts:
            issues.append(CatalogIssue(f"decks.{name}.file", f"deck file {spec.file!r} not found"))
            continue
        try:
            parsed[name] = parse_deck(
                name,
                deck_texts[spec.file],
                currency=spec.currency,
                increments=spec.increments,
                connect_fee=str(spec.connect_fee),
                minimum_charge=str(spec.minimum_charge),
                rounding=spec.rounding,
                rounding_decimals=spec.rounding_decimals,
                rounding_mode=spec.rounding_mode.value,
                time_bands=spec.time_bands,
                complete_bands=name not in loose_bands,
            )
        except DeckError as exc:
            issues.extend(CatalogIssue(f"decks.{name}", issue) for issue in exc.issues)
    return issues
