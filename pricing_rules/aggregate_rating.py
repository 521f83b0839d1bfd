"""Aggregate usage charges priced for many subscriptions at once, in Polars `Decimal`.

`price_usage_lines` gives, for one charge and a frame of period quantities, the fields a
usage line gets when its quantity is priced on its own (`pricing_rules.rating.usage_fields`):
the precise amount, the explanation rows as JSON and the description, text for text. A
property test holds the two to that. What the frame form does not cover (`frame_ready`
says which charges) is priced one quantity at a time.

Every step is exact: Polars adds and compares `Decimal`s exactly and multiplies to the
larger input scale, so a quantity (12 decimals) is cast up by the price's decimals before
it is multiplied, and a package's block count is checked by multiplying back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from pricing_rules.charges import (
    ChargeBase,
    FlatCharge,
    GraduatedCharge,
    PackageCharge,
    PerSeatCharge,
    PerUnitCharge,
    VolumeCharge,
    model_name,
)
from pricing_rules.charges.base import tier_bounds
from pricing_rules.decks import _round
from pricing_rules.money import RoundingMode, minor_unit_exponent, plain, show_quantity
from pricing_rules.units import QUANTITY_SCALE, conversion_factor

FRAME_MODELS = (PerUnitCharge, GraduatedCharge, VolumeCharge, PackageCharge)
_QUANTITY = pl.Decimal(38, QUANTITY_SCALE)
# The largest amount scale that rounds exactly in `decks._round` (Decimal(38, 18)).
_AMOUNT_SCALE = 18
_RESERVED_LABELS = ("included allowance", "minimum charge top-up", "maximum charge cap")


@dataclass(frozen=True)
class _Json:
    """A column that is already JSON text."""

    expr: pl.Expr


Piece = pl.Expr | _Json | str | Decimal | int | None


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _constants(charge: ChargeBase) -> tuple[list[Decimal], list[Decimal]]:
    """(quantity-like constants, money constants) of a charge."""
    quantities: list[Decimal] = []
    money: list[Decimal] = []
    if charge.free_units is not None:
        quantities.append(charge.free_units.units)
    money.extend(v for v in (charge.minimum_amount, charge.maximum_amount) if v is not None)
    if isinstance(charge, PerUnitCharge):
        money.append(charge.unit_price)
    elif isinstance(charge, GraduatedCharge | VolumeCharge):
        quantities.extend(t.up_to for t in charge.tiers if t.up_to is not None)
        money.extend(t.unit_price for t in charge.tiers)
        money.extend(t.flat_fee for t in charge.tiers)
    elif isinstance(charge, PackageCharge):
        quantities.append(charge.block_size)
        money.append(charge.block_price)
    return quantities, money


def frame_ready(charge: ChargeBase, metric_unit: str) -> bool:
    """Whether `price_usage_lines` prices this charge: a per-unit, graduated, volume or
    package charge priced in its metric's unit, with quantities of at most 12 decimals
    and prices of at most 6 (so every amount has at most 18)."""
    if not isinstance(charge, FRAME_MODELS) or charge.name in _RESERVED_LABELS:
        return False
    if conversion_factor(metric_unit, charge.price_unit or metric_unit) != 1:
        return False
    # A free package block shares its price with the allowance row, which the line's
    # words tell apart by price.
    if isinstance(charge, PackageCharge) and charge.block_price == 0:
        return False
    quantities, money = _constants(charge)
    return all(_decimals(q) <= QUANTITY_SCALE for q in quantities) and all(
        _decimals(m) <= _AMOUNT_SCALE - QUANTITY_SCALE for m in money
    )


# --------------------------------------------------------------------------------------
# Text, as `pricing_rules.money.plain` and `show_quantity` write it
# --------------------------------------------------------------------------------------


def _lit(value: Decimal) -> pl.Expr:
    return pl.lit(value, pl.Decimal(38, _decimals(value)))


def _plain(value: pl.Expr) -> pl.Expr:
    """`plain` of a Decimal column: no trailing zeros, no exponent."""
    text = value.cast(pl.String)
    return (
        pl.when(text.str.contains(".", literal=True))
        .then(text.str.strip_chars_end("0").str.strip_chars_end("."))
        .otherwise(text)
    )


def _shown(value: pl.Expr) -> pl.Expr:
    """`show_quantity` of a Decimal column: at most 4 decimals (half even), thousands
    separated."""
    text = _plain(value.round(4, mode="half_to_even").abs())
    whole = text.str.extract(r"^([0-9]+)", 1)
    fraction = text.str.extract(r"^[0-9]+(\.[0-9]+)$", 1).fill_null("")
    grouped = (
        whole.str.reverse().str.replace_all(r"([0-9]{3})", "${1},").str.strip_suffix(",")
    ).str.reverse()
    sign = pl.when(value < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.concat_str(sign, grouped, fraction)


def _text(*pieces: Piece) -> pl.Expr:
    """Concatenate literal text and columns (a null piece makes the whole null)."""
    return pl.concat_str(
        [
            p.expr if isinstance(p, _Json) else p if isinstance(p, pl.Expr) else pl.lit(str(p))
            for p in pieces
        ]
    )


def _json_value(value: Piece) -> pl.Expr:
    if value is None:
        return pl.lit("null")
    if isinstance(value, _Json):
        return value.expr
    if isinstance(value, int):
        return pl.lit(str(value))
    if isinstance(value, Decimal):
        return pl.lit(json.dumps(plain(value)))
    if isinstance(value, str):
        return pl.lit(json.dumps(value))
    return _text('"', _plain(value), '"')


def _row(
    label: str | _Json,
    quantity: Piece,
    amount: Piece,
    *,
    unit_price: Piece = None,
    flat_fee: Piece = None,
    tier: int | None = None,
    tier_from: Piece = None,
    tier_to: Piece = None,
) -> pl.Expr:
    """One explanation row as `json.dumps` writes `ChargeDetail.as_json()`."""
    fields = {
        "label": _json_value(label),
        "quantity": _json_value(quantity),
        "unit_price": _json_value(unit_price),
        "flat_fee": _json_value(flat_fee),
        "amount": _json_value(amount),
        "tier": _json_value(tier),
        "tier_from": _json_value(tier_from),
        "tier_to": _json_value(tier_to),
    }
    pieces: list[Piece] = ["{"]
    for index, (name, value) in enumerate(fields.items()):
        pieces.extend([", " if index else "", f'"{name}": ', value])
    return _text(*pieces, "}")


def _times(quantity: pl.Expr, price: Decimal) -> pl.Expr:
    """quantity (12 decimals) x price, exact."""
    scale = QUANTITY_SCALE + _decimals(price)
    return quantity.cast(pl.Decimal(38, scale)) * _lit(price)


# --------------------------------------------------------------------------------------
# Models: (amount, unit price, explanation rows, words), each row and word null when absent
# --------------------------------------------------------------------------------------

Priced = tuple[pl.Expr, pl.Expr | None, list[pl.Expr], list[pl.Expr]]


def _per_unit(charge: PerUnitCharge, billable: pl.Expr, unit: str) -> Priced:
    amount = _times(billable, charge.unit_price)
    row = _row(charge.name, billable, amount, unit_price=charge.unit_price)
    words = _text(_shown(billable), f" {unit} at {charge.unit_price}")
    return amount, _lit(charge.unit_price), [row], [words]


def _graduated(charge: GraduatedCharge, billable: pl.Expr, unit: str) -> Priced:
    total: pl.Expr = pl.lit(Decimal(0), pl.Decimal(38, 0))
    rows: list[pl.Expr] = []
    words: list[pl.Expr] = []
    for index, (tier, (lower, upper)) in enumerate(
        zip(charge.tiers, tier_bounds(charge.tiers), strict=True)
    ):
        reached = billable > _lit(lower)
        top = billable if upper is None else pl.min_horizontal(billable, _lit(upper))
        units = (top - _lit(lower)).cast(_QUANTITY)
        amount = _times(units, tier.unit_price) + _lit(tier.flat_fee)
        total = total + pl.when(reached).then(amount).otherwise(pl.lit(Decimal(0)))
        flat = tier.flat_fee or None
        rows.append(
            pl.when(reached).then(
                _row(
                    f"tier {index + 1}",
                    units,
                    amount,
                    unit_price=tier.unit_price,
                    flat_fee=flat,
                    tier=index + 1,
                    tier_from=lower,
                    tier_to=upper,
                )
            )
        )
        word = "first" if index == 0 else "next"
        fee = "" if flat is None else f" + {flat} flat"
        words.append(
            pl.when(reached).then(
                _text(f"{word} ", _shown(units), f" {unit} at {tier.unit_price}{fee}")
            )
        )
    return total, None, rows, words


def _volume(charge: VolumeCharge, billable: pl.Expr, unit: str) -> Priced:
    used = billable > 0
    # (condition, amount, unit price, row, words) per tier; the last tier takes the rest.
    cases: list[tuple[pl.Expr | None, pl.Expr, pl.Expr, pl.Expr, pl.Expr]] = []
    for index, (tier, (lower, upper)) in enumerate(
        zip(charge.tiers, tier_bounds(charge.tiers), strict=True)
    ):
        fee = pl.when(used).then(_lit(tier.flat_fee)).otherwise(pl.lit(Decimal(0)))
        amount = _times(billable, tier.unit_price) + fee
        flat_json: Piece = None
        fee_words = pl.lit("")
        if tier.flat_fee:
            flat_json = _Json(
                pl.when(used).then(_json_value(tier.flat_fee)).otherwise(pl.lit("null"))
            )
            fee_words = pl.when(used).then(pl.lit(f" + {tier.flat_fee} flat")).otherwise(fee_words)
        row = _row(
            f"tier {index + 1} (all units)",
            billable,
            amount,
            unit_price=tier.unit_price,
            flat_fee=flat_json,
            tier=index + 1,
            tier_from=lower,
            tier_to=upper,
        )
        band = f"over {show_quantity(lower)}" if upper is None else f"up to {show_quantity(upper)}"
        words = _text(
            "all ",
            _shown(billable),
            f" {unit} at the {band} {unit} price {tier.unit_price}",
            fee_words,
        )
        here = None if upper is None else billable <= _lit(upper)
        cases.append((here, amount, _lit(tier.unit_price), row, words))

    def pick(field: int) -> pl.Expr:
        chosen = cases[-1][field]
        assert chosen is not None
        for case in reversed(cases[:-1]):
            condition, value = case[0], case[field]
            assert condition is not None and value is not None
            chosen = pl.when(condition).then(value).otherwise(chosen)
        return chosen

    return pick(1), pick(2), [pick(3)], [pick(4)]


def _package(charge: PackageCharge, billable: pl.Expr, unit: str) -> Priced:
    size = _lit(charge.block_size)
    # Division rounds to 12 decimals, so the quotient's ceiling may be one off either way;
    # the smallest whole count whose blocks hold the quantity is the exact one.
    one = pl.lit(Decimal(1), pl.Decimal(38, 0))
    guess = (billable / size).ceil().cast(pl.Decimal(38, 0))
    blocks = (
        pl.when((guess - one) * size >= billable)
        .then(guess - one)
        .when(guess * size >= billable)
        .then(guess)
        .otherwise(guess + one)
    )
    free = pl.min_horizontal(blocks, pl.lit(Decimal(charge.free_blocks), pl.Decimal(38, 0)))
    paid = blocks - free
    amount = paid * _lit(charge.block_price)
    size_text = plain(charge.block_size)
    free_row = pl.when(free != 0).then(
        _row(
            _Json(_text('"', _plain(free), f' free block(s) of {size_text}"')),
            free,
            Decimal(0),
            unit_price=Decimal(0),
        )
    )
    paid_row = _row(
        _Json(_text('"', _plain(paid), f' block(s) of {size_text}"')),
        paid,
        amount,
        unit_price=charge.block_price,
    )
    words = _text(
        f"blocks of {show_quantity(charge.block_size)} {unit}: ",
        _shown(blocks),
        " started, ",
        _shown(free),
        " free, ",
        _shown(paid),
        f" at {charge.block_price}",
    )
    return amount, _lit(charge.block_price), [free_row, paid_row], [words]


def _priced(charge: ChargeBase, billable: pl.Expr, unit: str) -> Priced:
    if isinstance(charge, PerUnitCharge):
        return _per_unit(charge, billable, unit)
    if isinstance(charge, GraduatedCharge):
        return _graduated(charge, billable, unit)
    if isinstance(charge, VolumeCharge):
        return _volume(charge, billable, unit)
    if isinstance(charge, PackageCharge):
        return _package(charge, billable, unit)
    raise AssertionError(type(charge))  # pragma: no cover


# --------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------


def price_usage_lines(
    charge: ChargeBase,
    quantities: pl.DataFrame,
    *,
    metric_unit: str,
    currency: str,
    rounding: RoundingMode,
    period_days: int | None = None,
) -> pl.DataFrame:
    """Price a usage charge for every row of `quantities` (`quantity`, Decimal with 12
    decimals, not negative, in the metric's unit; `seats`, Int64; for an allowance per
    user, `allowance`: what it covers, in the price unit; with `period_days`,
    `served_days`: the days the subscription was billed for, which prorate the charge's
    minimum; other columns pass through).
    Adds `unit`, `unit_price`, `precise_amount` (text, as `plain` writes it), `precise`
    (Decimal), `amount` (rounded once to the currency's minor unit in `rounding`),
    `amount_minor`, `description` and `details` (JSON).

    # 1,500 units, 1,000 free, the rest at 0.01: 500 x 0.01 = 5.00
    >>> from pricing_rules.charges import Allowance
    >>> charge = PerUnitCharge(id="api", name="API", model="per_unit", metric="api",
    ...     unit_price=Decimal("0.01"), free_units=Allowance(units=Decimal(1000)))
    >>> frame = pl.DataFrame({"quantity": [Decimal(1500)], "seats": [1]},
    ...     schema={"quantity": pl.Decimal(38, 12), "seats": pl.Int64})
    >>> line = price_usage_lines(charge, frame, metric_unit="event", currency="USD",
    ...     rounding=RoundingMode.HALF_UP).row(0, named=True)
    >>> line["precise_amount"], line["amount_minor"], line["description"]
    ('5', 500, 'API: 1,500 event — 1,000 event included, 500 event at 0.01')
    """
    if not frame_ready(charge, metric_unit):
        raise ValueError(f"charge {charge.id!r} ({model_name(type(charge))}) is priced one by one")
    unit = metric_unit
    quantity = pl.col("quantity").cast(_QUANTITY)
    rows: list[pl.Expr] = []
    words: list[pl.Expr] = []
    billable = quantity
    if charge.free_units is not None:
        allowance = _lit(charge.free_units.units)
        if charge.free_units.per == "seat":
            allowance = allowance * pl.col("seats").cast(pl.Decimal(38, 0))
        elif charge.free_units.per == "user":
            allowance = pl.col("allowance").cast(_QUANTITY)  # see charges.user_allowance
        used = pl.min_horizontal(quantity, allowance)
        billable = (quantity - used).cast(_QUANTITY)
        rows.append(
            _row(
                "included allowance",
                used,
                Decimal(0),
                unit_price=Decimal(0),
                tier_to=allowance,
            )
        )
        words.append(_text(_shown(used), f" {unit} included{per_user(charge, unit)}"))
    amount, unit_price, model_rows, model_words = _priced(charge, billable, unit)
    rows.extend(model_rows)
    served = (pl.col("served_days"), period_days) if period_days is not None else None
    amount, limit_rows, limit_words = limited(charge, amount, served)
    rows.extend(limit_rows)
    words.extend(limit_words)
    words.extend(model_words)
    priced = quantities.lazy().with_columns(
        pl.lit(unit).alias("unit"),
        (pl.lit(None, pl.Decimal(38, 12)) if unit_price is None else unit_price)
        .cast(pl.Decimal(38, 12))
        .alias("unit_price"),
        amount.alias("precise"),
        _text(
            f"{charge.name}: ",
            _shown(quantity),
            f" {unit} — ",
            pl.concat_str(words, separator=", ", ignore_nulls=True),
        ).alias("description"),
        _text("[", pl.concat_str(rows, separator=", ", ignore_nulls=True), "]").alias("details"),
    )
    return rounded(priced, currency, rounding)


def per_user(charge: ChargeBase, unit: str) -> str:
    """How an allowance per user reads after the quantity it covered, e.g.
    ` (1,000 min per user)`; nothing for other allowances."""
    free = charge.free_units
    if free is None or free.per != "user":
        return ""
    return f" ({show_quantity(free.units)} {unit} per user)"


def limited(
    charge: ChargeBase, amount: pl.Expr, served: tuple[pl.Expr, int] | None = None
) -> tuple[pl.Expr, list[pl.Expr], list[pl.Expr]]:
    """The charge's `minimum_amount` and `maximum_amount` applied to a Decimal amount:
    the amount they leave, at scale 18, the explanation rows that take it there and the
    words for them (each null where its limit does not bite), as `price_charge` does.
    `served`: the days of the period each row's subscription was billed for (an Int64
    expression) and the period's days: the minimum is prorated by them, as
    `rating.prorated_minimum` does.

    # 3.20 of calls under a 5.00 minimum: topped up by 1.80
    >>> from pricing_rules.charges import CallDeckCharge
    >>> charge = CallDeckCharge(id="v", name="Calls", model="call_deck", metric="voice",
    ...     deck="d", minimum_amount=Decimal("5.00"))
    >>> amount, rows, words = limited(charge, pl.lit(Decimal("3.20")))
    >>> pl.select(amount.alias("a"), words[0].alias("w")).row(0)
    (Decimal('5.000000000000000000'), 'topped up by 1.8 to the minimum charge')
    """
    rows: list[pl.Expr] = []
    words: list[pl.Expr] = []
    amount = amount.cast(pl.Decimal(38, _AMOUNT_SCALE))
    if charge.minimum_amount is not None:
        low = _lit(charge.minimum_amount)
        part = pl.lit(None, pl.String)
        if served is not None:
            days, whole = served
            low = (
                pl.when(days < whole)
                .then(
                    low.cast(pl.Decimal(38, _AMOUNT_SCALE))
                    * days.cast(pl.Decimal(38, 0))
                    / pl.lit(Decimal(whole), pl.Decimal(38, 0))
                )
                .otherwise(low)
                .cast(pl.Decimal(38, _AMOUNT_SCALE))
            )
            part = pl.when(days < whole).then(pl.format(" for {} of {} days", days, pl.lit(whole)))
        short = amount < low
        rows.append(pl.when(short).then(_row("minimum charge top-up", Decimal(1), low - amount)))
        words.append(
            pl.when(short).then(
                pl.concat_str(
                    _text("topped up by ", _shown(low - amount), " to the minimum charge"),
                    part,
                    ignore_nulls=True,
                )
            )
        )
        amount = pl.when(short).then(low).otherwise(amount).cast(pl.Decimal(38, _AMOUNT_SCALE))
    if charge.maximum_amount is not None:
        high = _lit(charge.maximum_amount)
        over = amount > high
        rows.append(pl.when(over).then(_row("maximum charge cap", Decimal(1), high - amount)))
        words.append(
            pl.when(over).then(_text("capped at the maximum charge (", _shown(high - amount), ")"))
        )
        amount = pl.when(over).then(high).otherwise(amount).cast(pl.Decimal(38, _AMOUNT_SCALE))
    return amount, rows, words


def _fee_price(charge: ChargeBase) -> Decimal | None:
    """A flat fee's amount or a per-seat fee's price per seat; None for other charges."""
    if isinstance(charge, PerSeatCharge):
        return charge.unit_price
    return charge.amount if isinstance(charge, FlatCharge) else None


def fixed_frame_ready(charge: ChargeBase) -> bool:
    """Whether `price_fixed_lines` prices this charge: a flat or per-seat fee with no
    allowance, minimum or maximum, and a price of at most 18 decimals."""
    price = _fee_price(charge)
    return (
        price is not None
        and charge.free_units is None
        and charge.minimum_amount is None
        and charge.maximum_amount is None
        and _decimals(price) <= _AMOUNT_SCALE
    )


def price_fixed_lines(
    charge: ChargeBase,
    subscriptions: pl.DataFrame,
    *,
    days: int,
    currency: str,
    rounding: RoundingMode,
) -> pl.DataFrame:
    """Price a fixed fee for every row of `subscriptions` (`seats`, Int64; other columns
    pass through), each billed for the whole period of `days` days: the same fields as
    `rating.fixed_fields` with `active == days`. Adds `quantity`, `unit`, `unit_price`,
    `proration_factor`, `events`, `description`, `details` and the columns of `rounded`.

    # 25 seats for the whole period at 14.50: 25 x 14.50 = 362.50
    >>> seats = PerSeatCharge(id="s", name="Seats", model="per_seat",
    ...     unit_price=Decimal("14.50"))
    >>> frame = pl.DataFrame({"seats": [25]})
    >>> line = price_fixed_lines(seats, frame, days=31, currency="USD",
    ...     rounding=RoundingMode.HALF_UP).row(0, named=True)
    >>> line["amount_minor"], line["description"]
    (36250, 'Seats: 25 seat(s), 31 of 31 days at 14.50 per period')
    """
    price = _fee_price(charge)
    if price is None or not fixed_frame_ready(charge):
        raise ValueError(f"charge {charge.id!r} ({model_name(type(charge))}) is priced one by one")
    assert isinstance(charge, FlatCharge | PerSeatCharge)
    per_seat = isinstance(charge, PerSeatCharge)
    quantity = (
        pl.col("seats").cast(pl.Decimal(38, 0)) if per_seat else pl.lit(Decimal(1), _QUANTITY)
    ).cast(_QUANTITY)
    amount = quantity.cast(pl.Decimal(38, 0)) * _lit(price)
    who: list[Piece] = [pl.col("seats").cast(pl.String), " seat(s), "] if per_seat else []
    row = _row(f"{charge.name} ({charge.timing})", quantity, amount, unit_price=price)
    priced = subscriptions.lazy().with_columns(
        quantity.alias("quantity"),
        pl.lit("period").alias("unit"),
        _lit(price).cast(pl.Decimal(38, 12)).alias("unit_price"),
        pl.lit(Decimal(1), pl.Decimal(38, 12)).alias("proration_factor"),
        pl.lit(0, pl.Int64).alias("events"),
        amount.alias("precise"),
        _text(f"{charge.name}: ", *who, f"{days} of {days} days at {price} per period").alias(
            "description"
        ),
        _text("[", row.str.strip_suffix("}"), ', "proration_factor": "1"}]').alias("details"),
    )
    return rounded(priced, currency, rounding)


def rounded(
    priced: pl.DataFrame | pl.LazyFrame, currency: str, rounding: RoundingMode
) -> pl.DataFrame:
    """Add `precise_amount` (`precise` as `plain` writes it), `amount` (`precise` rounded
    once to the currency's minor unit in `rounding`) and `amount_minor`.

    The pricing expressions repeat their parts (a package's block count appears in every
    figure of its words), so they run lazily: the optimizer computes each shared part
    once, which eager `with_columns` does not."""
    minor = minor_unit_exponent(currency)
    precise = pl.col("precise").cast(pl.Decimal(38, _AMOUNT_SCALE))
    return (
        priced.lazy()
        .with_columns(
            _plain(pl.col("precise")).alias("precise_amount"),
            _round(precise, minor, rounding).cast(pl.Decimal(38, minor)).alias("amount"),
        )
        .with_columns(
            (pl.col("amount") * pl.lit(10**minor, pl.Decimal(38, 0)))
            .cast(pl.Int64)
            .alias("amount_minor")
        )
        .collect()
    )


def line_frame(
    priced: pl.DataFrame,
    *,
    key: str,
    charge: ChargeBase,
    currency: str,
    rounding: RoundingMode,
) -> pl.DataFrame:
    """Lines with every invoice-line column (`rating.LINE_SCHEMA`), from a priced frame
    (`subscription_id`, `account_id`, `plan_id`, `quantity`, `unit`, `unit_price`,
    `events`, the columns `rounded` adds, `description`, `details`, and
    `proration_factor` where the charge is prorated)."""
    return priced.select(
        pl.format("{}:{}", "subscription_id", pl.lit(key)).alias("line_id"),
        "account_id",
        "subscription_id",
        "plan_id",
        pl.lit(key).alias("charge_id"),
        pl.lit(charge.name).alias("charge_name"),
        pl.lit(model_name(type(charge))).alias("charge_model"),
        pl.lit(charge.kind).alias("charge_kind"),
        pl.lit(charge.metric, pl.String).alias("metric"),
        pl.col("quantity").cast(_QUANTITY),
        "unit",
        "unit_price",
        pl.col("proration_factor")
        if "proration_factor" in priced.columns
        else pl.lit(None, pl.Decimal(38, 12)).alias("proration_factor"),
        pl.col("events").cast(pl.Int64),
        "precise_amount",
        "amount",
        "amount_minor",
        pl.lit(currency).alias("currency"),
        pl.lit(rounding.value).alias("rounding"),
        "description",
        "details",
        pl.lit(None, pl.String).alias("service_period"),
    )
