"""Commercial terms beside the price list: discounts, account price overrides, prepaid
credits and tax rates. Pure models, validated like the catalog."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pricing_rules.charges.base import Tier, check_tiers
from pricing_rules.money import is_currency, minor_unit_exponent

if TYPE_CHECKING:
    from pricing_rules.contracts import Contract


def _not_negative(value: Decimal | None) -> Decimal | None:
    if value is not None and value < 0:
        raise ValueError("must not be negative")
    return value


class Window(BaseModel):
    """An optional validity window `[valid_from, valid_to)` in calendar days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    valid_from: date | None = None
    valid_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self

    def covered_days(self, start: date, end: date) -> int:
        """Days of `[start, end)` inside the window."""
        first = max(start, self.valid_from) if self.valid_from else start
        last = min(end, self.valid_to) if self.valid_to else end
        return max((last - first).days, 0)


class Discount(Window):
    """A percentage or fixed discount on one charge or on the whole invoice.

    A discount whose window covers only part of the period is prorated by the days
    it covers. A fixed discount is money: an account's applies to its invoice in
    `currency`, or, without one, in the account's own currency.
    """

    id: str
    name: str
    kind: Literal["percentage", "fixed"]
    value: Decimal
    applies_to: str = "invoice"  # "invoice" or a charge id
    currency: str | None = None

    @field_validator("value")
    @classmethod
    def _value(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not is_currency(value):
            raise ValueError(f"unknown ISO 4217 currency {value!r}")
        return value

    @model_validator(mode="after")
    def _percentage(self) -> Discount:
        if self.kind == "percentage" and self.value > 100:
            raise ValueError("a percentage discount cannot exceed 100")
        if self.kind == "percentage" and self.currency is not None:
            raise ValueError("a percentage discount takes no currency")
        return self


class PriceOverride(Window):
    """An account's own price for one charge of a plan; only the given fields change."""

    plan_id: str
    charge_id: str
    unit_price: Decimal | None = None
    amount: Decimal | None = None
    block_price: Decimal | None = None
    tiers: list[Tier] | None = None

    _money = field_validator("unit_price", "amount", "block_price")(_not_negative)

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, tiers: list[Tier] | None) -> list[Tier] | None:
        return None if tiers is None else check_tiers(tiers)

    def changes(self) -> dict[str, object]:
        fields = {
            "unit_price": self.unit_price,
            "amount": self.amount,
            "block_price": self.block_price,
            "tiers": self.tiers,
        }
        return {k: v for k, v in fields.items() if v is not None}


class PrepaidCredit(BaseModel):
    """Money paid in advance, drawn down by invoices until used up or expired."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    amount: Decimal
    currency: str
    granted_on: date
    expires_on: date | None = None

    _amount = field_validator("amount")(_not_negative)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not is_currency(value):
            raise ValueError(f"unknown ISO 4217 currency {value!r}")
        return value

    @model_validator(mode="after")
    def _dates(self) -> PrepaidCredit:
        if self.expires_on is not None and self.expires_on <= self.granted_on:
            raise ValueError("expires_on must be after granted_on")
        return self

    def finer_than_currency(self) -> str | None:
        """Why the amount cannot be drawn exactly (more decimals than its currency has),
        or None. Checked when terms are imported; terms stored before still load."""
        places = minor_unit_exponent(self.currency)
        if self.amount == self.amount.quantize(Decimal(1).scaleb(-places)):
            return None
        return f"amount {self.amount} has more decimal places than {self.currency} has ({places})"


class AccountTerms(BaseModel):
    """Everything specific to one account's contract that changes its invoice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str
    tax_jurisdiction: str | None = None
    tax_exempt: bool = False
    overrides: list[PriceOverride] = Field(default_factory=list)
    discounts: list[Discount] = Field(default_factory=list)
    credits: list[PrepaidCredit] = Field(default_factory=list)
    contracts: list[Contract] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_contracts(self) -> AccountTerms:
        ids = [c.id for c in self.contracts]
        if len(ids) != len(set(ids)):
            raise ValueError("contract ids must be unique")
        return self

    def effective_discounts(
        self, currency: str | None = None, home: str | None = None
    ) -> list[Discount]:
        """The account's discounts and its contracts' ramp discounts. Given `currency`,
        only those for an invoice in it: contracts in it, and fixed discounts in it (in
        `home`, the account's own currency, when they name none)."""
        contracts = [c for c in self.contracts if currency is None or c.currency == currency]
        own = [
            d
            for d in self.discounts
            if currency is None or d.kind == "percentage" or (d.currency or home) == currency
        ]
        return [*own, *(d for c in contracts for d in c.discounts())]

    def effective_overrides(self) -> list[PriceOverride]:
        """The account's price overrides and its contracts' phase prices."""
        return [*self.overrides, *(o for c in self.contracts for o in c.overrides())]


class TaxRate(BaseModel):
    """A jurisdiction's rate, shown as its own invoice line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rate: Decimal

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: Decimal) -> Decimal:
        if not Decimal(0) <= value < Decimal(1):
            raise ValueError("a tax rate is a fraction between 0 and 1, e.g. 0.20")
        return value


# Contracts build on the discounts and overrides above, so they are defined after them.
from pricing_rules.contracts import Contract  # noqa: E402

AccountTerms.model_rebuild()
