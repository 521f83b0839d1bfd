"""The pricing catalog: YAML pricing-as-code, validated on load with every error reported."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pricing_rules.charges import CHARGE_MODELS, Charge, ChargeBase, model_name
from pricing_rules.money import RoundingMode, is_currency
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
    aggregation: Literal["sum", "max"] = "sum"

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, unit: str) -> str:
        if not is_unit(unit):
            raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(sorted(UNITS))}")
        return unit


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    currency: str
    interval: Literal["month"] = "month"
    rounding: RoundingMode = RoundingMode.HALF_UP
    charges: list[Charge] = Field(min_length=1)

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
    content_hash: str = ""

    def metric_units(self) -> dict[str, str]:
        return {name: metric.unit for name, metric in self.metrics.items()}

    def list_price(self, metric: str) -> tuple[Plan, ChargeBase] | None:
        """The list-price plan's charge for a metric, used to value unbilled usage."""
        if self.list_price_plan is None:
            return None
        plan = self.plans[self.list_price_plan]
        charges = plan.usage_charges(metric)
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
        # Discriminated unions add the model name to the location; drop it for readability.
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p in _MODEL_TAGS))
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
    list_plan = raw.get("list_price_plan")
    if list_plan is not None and list_plan not in plans:
        issues.append(CatalogIssue("list_price_plan", f"plan {list_plan!r} is not defined"))
    for plan_id, plan in plans.items():
        if not isinstance(plan, Mapping) or not isinstance(plan.get("charges"), list):
            continue
        seen: set[str] = set()
        for index, charge in enumerate(plan["charges"]):
            if not isinstance(charge, Mapping):
                continue
            where = f"plans.{plan_id}.charges[{index}]"
            charge_id = charge.get("id")
            if isinstance(charge_id, str):
                if charge_id in seen:
                    issues.append(CatalogIssue(f"{where}.id", f"duplicate charge id {charge_id!r}"))
                seen.add(charge_id)
            model = charge.get("model")
            metric = charge.get("metric")
            if model in _USAGE_MODELS and metric is None:
                issues.append(CatalogIssue(f"{where}.metric", f"a {model} charge needs a metric"))
            if metric is not None and metric not in metrics:
                issues.append(CatalogIssue(f"{where}.metric", f"metric {metric!r} is not defined"))
            price_unit = charge.get("price_unit")
            metric_def = metrics.get(metric) if isinstance(metric, str) else None
            if price_unit is not None and isinstance(metric_def, Mapping):
                try:
                    conversion_factor(str(metric_def.get("unit")), str(price_unit))
                except ValueError as exc:
                    issues.append(CatalogIssue(f"{where}.price_unit", str(exc)))
    return issues


def parse_catalog(text: str, source: str = "<catalog>") -> Catalog:
    """Parse and validate a catalog document; raise `CatalogError` listing every problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(source, [CatalogIssue("<root>", f"not valid YAML: {exc}")]) from exc
    if not isinstance(raw, Mapping):
        raise CatalogError(source, [CatalogIssue("<root>", "the catalog must be a mapping")])
    _reject_float_money(raw, "", issues := [])
    issues.extend(_reference_issues(raw))
    catalog: Catalog | None = None
    try:
        catalog = Catalog.model_validate(
            {**raw, "content_hash": hashlib.sha256(text.encode()).hexdigest()}
        )
    except ValidationError as exc:
        issues = _pydantic_issues(exc) + issues
    if issues or catalog is None:
        raise CatalogError(source, issues)
    return catalog


_MONEY_KEYS = {"amount", "unit_price", "flat_fee"}


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
    """Load `catalog.yaml` (or the file given); see `parse_catalog`."""
    return parse_catalog(path.read_text(encoding="utf-8"), source=str(path))


def as_decimal(value: Decimal | int | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)
