"""Calls rated one by one from a rate deck (see `pricing_rules.decks`)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import model_validator

from pricing_rules.charges.base import ChargeBase, PricedCharge


class CallDeckCharge(ChargeBase):
    """Each call: longest-prefix match of the destination, billing increments, connect fee,
    minimum charge and time band from the named deck. The line is the sum of its calls;
    the charge's `minimum_amount` and `maximum_amount` then apply to that sum.

    Calls are priced one by one, each at its own destination's rate, so included minutes
    would need a rule for which calls they cover: the charge takes no `free_units`.
    """

    model: Literal["call_deck"]
    deck: str

    level: ClassVar[Literal["aggregate", "event"]] = "event"

    @model_validator(mode="after")
    def _no_allowance(self) -> CallDeckCharge:
        if self.free_units is not None:
            raise ValueError(
                "a call_deck charge takes no free_units: each call is priced at its "
                "destination's rate, so included minutes would not say which calls they "
                "cover"
            )
        return self

    def price(self, quantity: Decimal) -> PricedCharge:
        raise TypeError("call_deck charges price each call; see pricing_rules.event_rating")
