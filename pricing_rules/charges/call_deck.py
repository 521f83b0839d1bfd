"""Calls rated one by one from a rate deck (see `pricing_rules.decks`)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pricing_rules.charges.base import ChargeBase, PricedCharge


class CallDeckCharge(ChargeBase):
    """Each call: longest-prefix match of the destination, billing increments, connect fee,
    minimum charge and time band from the named deck. The line is the sum of its calls."""

    model: Literal["call_deck"]
    deck: str

    level: ClassVar[Literal["aggregate", "event"]] = "event"

    def price(self, quantity: Decimal) -> PricedCharge:
        raise TypeError("call_deck charges price each call; see pricing_rules.event_rating")
