"""Fixed fees for part of a period."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from pricing_rules.charges.base import ChargeBase, PricedCharge, price_charge
from pricing_rules.charges.flat import FlatCharge
from pricing_rules.charges.per_seat import PerSeatCharge
from pricing_rules.money import MONEY_CONTEXT, share
from pricing_rules.periods import proration_ratio


def price_prorated(
    charge: ChargeBase, seats: int, part: int, whole: int
) -> tuple[Decimal, PricedCharge]:
    """A fixed fee for `part` of a period of `whole` (days or microseconds), for `seats`
    seats of a per-seat fee: (proration factor, priced).

    The quantity is seats x the factor (30 places, `periods.proration_ratio`). A flat or
    per-seat fee with no allowance, minimum or maximum is priced as
    price x seats x part / whole, divided once, last, so an amount that is exactly a tie
    at the minor unit stays one.

    # 71.25 for 25 of 30 days: 71.25 x 25 / 30 = 59.375 (not 59.37499.. = 71.25 x 0.8333..)
    >>> fee = FlatCharge(id="f", name="Fee", model="flat", amount=Decimal("71.25"))
    >>> factor, priced = price_prorated(fee, 1, 25, 30)
    >>> str(factor)[:8], priced.amount
    ('0.833333', Decimal('59.375'))
    """
    factor = proration_ratio(part, whole)
    count = seats if isinstance(charge, PerSeatCharge) else 1
    priced = price_charge(charge, MONEY_CONTEXT.multiply(Decimal(count), factor))
    plain_fee = (
        charge.free_units is None
        and charge.minimum_amount is None
        and charge.maximum_amount is None
    )
    if factor == 1 or not plain_fee or not isinstance(charge, FlatCharge | PerSeatCharge):
        return factor, priced
    price = charge.unit_price if isinstance(charge, PerSeatCharge) else charge.amount
    amount = share(price, count * part, whole)
    (detail,) = priced.details
    return factor, PricedCharge(
        priced.quantity, amount, priced.unit_price, (replace(detail, amount=amount),)
    )
