"""The one registry of charge models: adding a model is one module and one entry here."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Union, get_args

from pydantic import Field

from pricing_rules.charges.base import (
    Allowance,
    ChargeBase,
    ChargeDetail,
    PricedCharge,
    Tier,
    price_charge,
    user_allowance,
)
from pricing_rules.charges.call_deck import CallDeckCharge
from pricing_rules.charges.flat import FlatCharge
from pricing_rules.charges.graduated import GraduatedCharge
from pricing_rules.charges.package import PackageCharge
from pricing_rules.charges.per_seat import PerSeatCharge
from pricing_rules.charges.per_unit import PerUnitCharge
from pricing_rules.charges.volume import VolumeCharge

CHARGE_MODELS: tuple[type[ChargeBase], ...] = (
    FlatCharge,
    PerSeatCharge,
    PerUnitCharge,
    GraduatedCharge,
    VolumeCharge,
    PackageCharge,
    CallDeckCharge,
)

# The catalog's `model:` key picks the class; the union is built from the registry above.
Charge = Annotated[Union[CHARGE_MODELS], Field(discriminator="model")]  # type: ignore[valid-type]  # noqa: UP007


@cache
def model_name(model: type[ChargeBase]) -> str:
    """The `model:` name a charge class answers to, e.g. `graduated`."""
    return str(get_args(model.model_fields["model"].annotation)[0])


__all__ = [
    "CHARGE_MODELS",
    "Allowance",
    "CallDeckCharge",
    "Charge",
    "ChargeBase",
    "ChargeDetail",
    "FlatCharge",
    "GraduatedCharge",
    "PackageCharge",
    "PerSeatCharge",
    "PerUnitCharge",
    "PricedCharge",
    "Tier",
    "VolumeCharge",
    "model_name",
    "price_charge",
    "user_allowance",
]
