"""Multi-year contracts: a term, ramp phases, a committed minimum with a true-up, renewal,
and an early-termination fee.

A contract belongs to an account's terms. It starts on the first day of a month (runs
bill calendar months) and lasts `term_months`. Then it renews for another term with its
last phase (`renewal: auto`) or ends (`renewal: end`), after which list prices apply and
nothing is committed.

- **Ramps**: each phase starts at a contract month (1 = the first) and gives a
  percentage off the invoice and/or its own prices (price overrides without dates: the
  phase's months are their window).
- **Commitment**: `commitment` per period, or per contract year. A shortfall is billed as
  a true-up line: per period on every invoice, per year on the invoice of the year's last
  month, against the year's spend (recurring, usage and plan-commitment lines, before
  discounts and tax) on all its invoices. A year cut short by the term's end or a
  termination is committed pro rata by day and trued up in the month it stops.
- **Early termination**: `terminated_on` before the term ends bills `termination_fee`
  plus `termination_fee_percent` of the commitment left for the rest of the term.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pricing_rules.money import MONEY_CONTEXT, is_currency
from pricing_rules.terms import Discount, PriceOverride


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after `day`'s (contracts start on a 1st).

    >>> add_months(date(2026, 11, 1), 14)
    datetime.date(2028, 1, 1)
    """
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class RampPhase(BaseModel):
    """From contract month `from_month` on: a percentage off and/or the phase's prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_month: int = Field(ge=1)
    discount_percent: Decimal = Decimal(0)
    overrides: list[PriceOverride] = Field(default_factory=list)

    @field_validator("discount_percent")
    @classmethod
    def _percent(cls, value: Decimal) -> Decimal:
        if not Decimal(0) <= value <= Decimal(100):
            raise ValueError("must be between 0 and 100")
        return value

    @field_validator("overrides")
    @classmethod
    def _undated(cls, overrides: list[PriceOverride]) -> list[PriceOverride]:
        if any(o.valid_from or o.valid_to for o in overrides):
            raise ValueError("a phase's overrides take the phase's months as their window")
        return overrides


@dataclass(frozen=True)
class Phase:
    """A ramp phase placed in time: `[start, end)`."""

    number: int
    start: date
    end: date | None
    ramp: RampPhase


class Contract(BaseModel):
    """One account's contract; see the module text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    currency: str  # the invoices it applies to
    start: date
    term_months: int = Field(ge=1)
    renewal: Literal["auto", "end"] = "auto"
    ramps: list[RampPhase] = Field(default_factory=list)
    commitment: Decimal | None = None
    commitment_per: Literal["period", "year"] = "year"
    termination_fee: Decimal = Decimal(0)
    termination_fee_percent: Decimal = Decimal(0)
    terminated_on: date | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Contract:
        problems = []
        if not is_currency(self.currency):
            problems.append(f"unknown ISO 4217 currency {self.currency!r}")
        if self.start.day != 1:
            problems.append("start must be the first day of a month")
        months = [r.from_month for r in self.ramps]
        if months and (months[0] != 1 or months != sorted(set(months))):
            problems.append("ramp phases must start at month 1 and in order, once each")
        if any(m > self.term_months for m in months):
            problems.append("every ramp phase must start within the term")
        for label, value in (
            ("commitment", self.commitment),
            ("termination_fee", self.termination_fee),
        ):
            if value is not None and value < 0:
                problems.append(f"{label} must not be negative")
        if not Decimal(0) <= self.termination_fee_percent <= Decimal(100):
            problems.append("termination_fee_percent must be between 0 and 100")
        if self.terminated_on is not None and self.terminated_on <= self.start:
            problems.append("terminated_on must be after start")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def term_end(self) -> date:
        return add_months(self.start, self.term_months)

    @property
    def ends(self) -> date | None:
        """When the contract stops applying (None: it renews for ever)."""
        if self.terminated_on is not None and (
            self.renewal == "auto" or self.terminated_on < self.term_end
        ):
            return self.terminated_on
        return self.term_end if self.renewal == "end" else None

    def phases(self) -> list[Phase]:
        """Ramp phases in time; the last runs on through renewals."""
        found = []
        for number, ramp in enumerate(self.ramps, start=1):
            start = add_months(self.start, ramp.from_month - 1)
            following = self.ramps[number] if number < len(self.ramps) else None
            end = add_months(self.start, following.from_month - 1) if following else None
            found.append(Phase(number, start, end, ramp))
        return found

    def discounts(self) -> list[Discount]:
        """Each phase's percentage off, as an invoice discount valid for its months."""
        stop = self.ends
        found = []
        for phase in self.phases():
            if not phase.ramp.discount_percent:
                continue
            end = phase.end if stop is None or (phase.end and phase.end < stop) else stop
            if end is not None and end <= phase.start:
                continue
            found.append(
                Discount(
                    id=f"{self.id}-phase-{phase.number}",
                    name=f"Contract {self.id}, phase {phase.number} "
                    f"({phase.ramp.discount_percent.normalize():f}% off)",
                    kind="percentage",
                    value=phase.ramp.discount_percent,
                    applies_to="invoice",
                    valid_from=phase.start,
                    valid_to=end,
                )
            )
        return found

    def overrides(self) -> list[PriceOverride]:
        """Each phase's prices, with the phase's months as their window."""
        stop = self.ends
        found = []
        for phase in self.phases():
            end = phase.end if stop is None or (phase.end and phase.end < stop) else stop
            for override in phase.ramp.overrides:
                found.append(
                    override.model_copy(update={"valid_from": phase.start, "valid_to": end})
                )
        return found

    def year_of(self, month_start: date) -> tuple[date, date]:
        """The contract year `[start, end)` that the month starting `month_start` is in."""
        months = (month_start.year - self.start.year) * 12 + month_start.month - self.start.month
        first = add_months(self.start, months // 12 * 12)
        return first, add_months(first, 12)

    def active_in(self, first_day: date, end_day: date) -> bool:
        stop = self.ends
        return self.start < end_day and (stop is None or stop > first_day)

    def committed(self, first_day: date, end_day: date) -> tuple[Decimal, str] | None:
        """The commitment due on the invoice of the month `[first_day, end_day)` and what
        it covers: per period, the month's; per year, the year's, on its last month.

        # 3,000 a year from 2026-01-01 for 18 months: the second year stops after 181 of
        # its 365 days, 3,000 x 181/365 = 1,487.67..., due with June 2027.
        >>> c = Contract(id="C", currency="EUR", start=date(2026, 1, 1), term_months=18,
        ...     renewal="end", commitment=Decimal(3000))
        >>> amount, what = c.committed(date(2027, 6, 1), date(2027, 7, 1))
        >>> f"{amount:.2f}", what
        ('1487.67', 'contract year 2027-01-01 to 2027-07-01, prorated 181/365 days')
        """
        if self.commitment is None or not self.active_in(first_day, end_day):
            return None
        stop = self.ends
        if self.commitment_per == "period":
            if stop is not None and stop < end_day:
                days = Decimal((stop - first_day).days) / Decimal((end_day - first_day).days)
                return MONEY_CONTEXT.multiply(self.commitment, days), "this period, prorated"
            return self.commitment, "this period"
        year_start, year_end = self.year_of(first_day)
        # A year cut short (a term that is not whole years, or a termination) is due on
        # the invoice of the month it stops in, prorated by day.
        close = year_end if stop is None else min(year_end, stop)
        if not first_day < close <= end_day:
            return None
        if close == year_end:
            return self.commitment, f"contract year {year_start} to {year_end}"
        used, whole = (close - year_start).days, (year_end - year_start).days
        share = MONEY_CONTEXT.divide(Decimal(used), Decimal(whole))
        return (
            MONEY_CONTEXT.multiply(self.commitment, share),
            f"contract year {year_start} to {close}, prorated {used}/{whole} days",
        )

    def termination_fee_due(self, first_day: date, end_day: date) -> Decimal | None:
        """The early-termination fee, on the invoice of the month it was terminated in."""
        ended = self.terminated_on
        if ended is None or not first_day <= ended < end_day or ended >= self.term_end:
            return None
        fee = self.termination_fee
        if self.termination_fee_percent and self.commitment is not None:
            # Commitment left: whole months from the next month to the term's end.
            months = (self.term_end.year - end_day.year) * 12 + self.term_end.month - end_day.month
            monthly = (
                self.commitment
                if self.commitment_per == "period"
                else MONEY_CONTEXT.divide(self.commitment, Decimal(12))
            )
            left = MONEY_CONTEXT.multiply(monthly, Decimal(max(months, 0)))
            fee += MONEY_CONTEXT.multiply(left, self.termination_fee_percent / Decimal(100))
        return fee
