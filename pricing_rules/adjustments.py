"""Adjustments: what changes on a closed period's lines, as lines of their own.

Two ratings of the same closed period (say, without and with usage that arrived late)
differ line by line. `adjustment_lines` turns each difference into one `adjustment` line
that bills (or credits) exactly that difference, labelled with the period it serves, so
a later invoice can carry it and nothing is billed twice.
"""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl

from pricing_rules.money import from_minor_units, plain
from pricing_rules.rating import LINE_SCHEMA

KEY = ("account_id", "currency", "line_id")


def adjustment_lines(
    billed: pl.DataFrame,
    corrected: pl.DataFrame,
    service_period: str,
    reason: str,
    prefix: str = "adjust",
) -> pl.DataFrame:
    """One line per (account, currency, line id) whose rounded amount differs.

    `billed` and `corrected` are rated lines (`LINE_SCHEMA`) of the same period. The
    adjustment's amount is `corrected - billed` in minor units (each side already rounded
    once, so the adjustment needs no rounding of its own); its explanation rows are the
    corrected amount and minus the billed amount, which add up to it. `reason` opens the
    description, e.g. "Late usage"; line ids are `<prefix>:<period>:<line id>`.

    # 1,200 min billed 12.00; with late usage 1,500 min -> 15.00: adjustment +3.00
    >>> from pricing_rules.rating import LINE_SCHEMA
    >>> row = {name: None for name in LINE_SCHEMA} | {
    ...     "line_id": "S1:voice", "account_id": "A", "charge_id": "voice",
    ...     "charge_name": "Voice", "charge_model": "per_unit", "charge_kind": "usage",
    ...     "quantity": Decimal(1200), "unit": "min", "events": 40, "currency": "USD",
    ...     "amount_minor": 1200, "amount": Decimal("12"), "rounding": "half_up",
    ...     "precise_amount": "12", "description": "", "details": "[]"}
    >>> before = pl.DataFrame([row], schema=LINE_SCHEMA)
    >>> after = pl.DataFrame([row | {"quantity": Decimal(1500), "amount_minor": 1500,
    ...     "events": 50}], schema=LINE_SCHEMA)
    >>> line = adjustment_lines(before, after, "2026-10", "Late usage").row(0, named=True)
    >>> line["line_id"], line["amount_minor"], line["quantity"], line["events"]
    ('adjust:2026-10:S1:voice', 300, Decimal('300.000000000000'), 10)
    """
    keyed = list(KEY)
    old = billed.select(*keyed, "quantity", "events", "amount_minor")
    joined = corrected.join(old, on=keyed, how="full", suffix="_billed", coalesce=True)
    rows = []
    for line in joined.iter_rows(named=True):
        before = int(line["amount_minor_billed"] or 0)
        after = int(line["amount_minor"] or 0)
        if before == after:
            continue
        source = line if line["charge_id"] is not None else _billed_row(billed, line)
        currency = line["currency"]
        difference = from_minor_units(after - before, currency)
        quantity = (line["quantity"] or Decimal(0)) - (line["quantity_billed"] or Decimal(0))
        unit = source["unit"]
        was, now = from_minor_units(before, currency), from_minor_units(after, currency)
        rows.append(
            {
                **{name: source.get(name) for name in LINE_SCHEMA},
                "line_id": f"{prefix}:{service_period}:{line['line_id']}",
                "charge_kind": "adjustment",
                "quantity": quantity,
                "unit_price": None,
                "proration_factor": None,
                "events": int(line["events"] or 0) - int(line["events_billed"] or 0),
                "precise_amount": plain(difference),
                "amount": difference,
                "amount_minor": after - before,
                "service_period": service_period,
                "description": f"{reason} for {service_period}: {source['charge_name']}, "
                f"{_signed(quantity)} {unit}; billed {was}, now {now}",
                "details": json.dumps(
                    [
                        {
                            "label": f"{service_period} as corrected",
                            "quantity": "1",
                            "amount": plain(now),
                        },
                        {
                            "label": f"{service_period} as billed",
                            "quantity": "1",
                            "amount": plain(was.copy_negate()),
                        },
                    ]
                ),
            }
        )
    return (
        pl.DataFrame(rows, schema=LINE_SCHEMA).sort(keyed)
        if rows
        else pl.DataFrame(schema=LINE_SCHEMA)
    )


def _billed_row(billed: pl.DataFrame, line: dict[str, object]) -> dict[str, object]:
    match = billed.filter(
        (pl.col("account_id") == line["account_id"])
        & (pl.col("currency") == line["currency"])
        & (pl.col("line_id") == line["line_id"])
    )
    return match.row(0, named=True)


def _signed(value: Decimal) -> str:
    text = f"{value.normalize():,f}"
    return text if value < 0 else f"+{text}"
