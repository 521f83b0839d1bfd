"""The billing ledger: SQLAlchemy 2 models and the queries the pipeline needs.

Money is stored as integer minor units plus the currency (SQLite would store `Numeric`
as a float). Timestamps are UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    or_,
    select,
    union,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from pricing_rules.rating import SUBSCRIPTION_SCHEMA


def _under(key: Any, prefixes: Sequence[str]) -> Any:
    """A SQL condition: `key` starts with one of `prefixes`."""
    return or_(*(key.startswith(prefix) for prefix in prefixes))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    country: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    billing_email: Mapped[str | None] = mapped_column(String(200))
    terms: Mapped[str | None] = mapped_column(Text)  # AccountTerms as JSON


class Subscription(Base):
    __tablename__ = "subscriptions"
    subscription_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    plan_id: Mapped[str] = mapped_column(String(100))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    add_ons: Mapped[str | None] = mapped_column(String(500))
    # pricing_rules.lifecycle.History as JSON: start, plan and seat changes, pauses, cancel
    history: Mapped[str | None] = mapped_column(Text)


class BillingRun(Base):
    __tablename__ = "billing_runs"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    status: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="billing", server_default="billing")
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    catalog_version: Mapped[str | None] = mapped_column(String(64))
    catalog_hash: Mapped[str | None] = mapped_column(String(64))
    events_read: Mapped[int | None] = mapped_column(BigInteger)
    events_valid: Mapped[int | None] = mapped_column(BigInteger)
    events_quarantined: Mapped[int | None] = mapped_column(BigInteger)
    events_duplicate: Mapped[int | None] = mapped_column(BigInteger)
    events_deferred: Mapped[int | None] = mapped_column(BigInteger)  # owed to a neighbour
    events_borrowed: Mapped[int | None] = mapped_column(BigInteger)  # from its edge days
    summary: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LateSettlement(Base):
    """A late usage key a run settled for an account's closed period, per currency the
    account was billed in for it: once the run publishes the account's invoice in each
    of those currencies, the key is billed for the period, whatever its adjustments
    came to."""

    __tablename__ = "late_settlements"
    run_id: Mapped[str] = mapped_column(ForeignKey("billing_runs.run_id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)


class ManifestEntry(Base):
    __tablename__ = "manifest_entries"
    run_id: Mapped[str] = mapped_column(ForeignKey("billing_runs.run_id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(128))


class Finding(Base):
    __tablename__ = "findings"
    run_id: Mapped[str] = mapped_column(ForeignKey("billing_runs.run_id"), primary_key=True)
    finding_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str] = mapped_column(String(64))
    subscription_id: Mapped[str | None] = mapped_column(String(64))
    metric: Mapped[str | None] = mapped_column(String(64))
    amount_at_risk_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)


class AlertSent(Base):
    __tablename__ = "alerts_sent"
    finding_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Approval(Base):
    __tablename__ = "approvals"
    run_id: Mapped[str] = mapped_column(ForeignKey("billing_runs.run_id"), primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    approver: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text, default="")
    policy: Mapped[str] = mapped_column(String(32))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("account_id", "period", "currency"),)
    invoice_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(7), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    run_id: Mapped[str] = mapped_column(String(64))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    line_count: Mapped[int] = mapped_column(Integer)
    catalog_hash: Mapped[str] = mapped_column(String(64))
    content_sha256: Mapped[str] = mapped_column(String(64))
    html_key: Mapped[str] = mapped_column(String(1024))
    json_key: Mapped[str] = mapped_column(String(1024))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class _LineColumns:
    """The columns an invoice line and a note line share."""

    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[str] = mapped_column(String(200))
    charge_id: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(32))
    unit_price: Mapped[str | None] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    details: Mapped[str] = mapped_column(Text)


class InvoiceLine(_LineColumns, Base):
    __tablename__ = "invoice_lines"
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.invoice_id"), primary_key=True)
    # An adjustment's closed period (late usage, corrections); null on the period's own.
    service_period: Mapped[str | None] = mapped_column(String(7), index=True)


class Note(Base):
    """A credit or debit note: a re-rating's correction of a closed period, never a second
    invoice. One per (re-rating run, account, currency)."""

    __tablename__ = "notes"
    __table_args__ = (UniqueConstraint("run_id", "account_id", "currency"),)
    note_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # credit | debit
    account_id: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(7), index=True)  # the period it corrects
    currency: Mapped[str] = mapped_column(String(3))
    run_id: Mapped[str] = mapped_column(String(64))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    line_count: Mapped[int] = mapped_column(Integer)
    catalog_hash: Mapped[str] = mapped_column(String(64))
    content_sha256: Mapped[str] = mapped_column(String(64))
    html_key: Mapped[str] = mapped_column(String(1024))
    json_key: Mapped[str] = mapped_column(String(1024))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NoteLine(_LineColumns, Base):
    __tablename__ = "note_lines"
    note_id: Mapped[str] = mapped_column(ForeignKey("notes.note_id"), primary_key=True)


MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class NewNote:
    note_id: str
    kind: str
    account_id: str
    period: str
    currency: str
    run_id: str
    total_minor: int
    catalog_hash: str
    content_sha256: str
    html_key: str
    json_key: str
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class NewInvoice:
    invoice_id: str
    account_id: str
    period: str
    currency: str
    run_id: str
    total_minor: int
    catalog_hash: str
    content_sha256: str
    html_key: str
    json_key: str
    lines: list[dict[str, Any]]


class Ledger:
    """Database access for one configured URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)

    # accounts and subscriptions
    def upsert_accounts(self, accounts: pl.DataFrame) -> int:
        return self._upsert(Account, accounts.to_dicts(), "account_id")

    def upsert_subscriptions(self, subscriptions: pl.DataFrame) -> int:
        return self._upsert(Subscription, subscriptions.to_dicts(), "subscription_id")

    def _upsert(self, model: type[Base], rows: list[dict[str, Any]], key: str) -> int:
        if not rows:
            return 0
        table = model.__table__
        with self.session() as session:
            for chunk in _chunks(rows, 500):
                statement = self._insert(table).values(chunk)
                columns = {
                    c.name: statement.excluded[c.name]
                    for c in table.columns
                    if c.name != key and c.name in chunk[0]
                }
                session.execute(statement.on_conflict_do_update(index_elements=[key], set_=columns))
        return len(rows)

    def subscriptions(self) -> pl.DataFrame:
        with self.session() as session:
            rows = session.scalars(select(Subscription).order_by(Subscription.subscription_id))
            return pl.DataFrame(
                [
                    {
                        "subscription_id": s.subscription_id,
                        "account_id": s.account_id,
                        "plan_id": s.plan_id,
                        "start_date": s.start_date,
                        "end_date": s.end_date,
                        "quantity": s.quantity,
                        "add_ons": s.add_ons,
                        "history": s.history,
                    }
                    for s in rows
                ],
                schema=SUBSCRIPTION_SCHEMA,
            )

    def utc_billed_periods(self) -> set[str]:
        """Periods invoiced before usage followed local months: by runs that counted no
        deferred events (`events_deferred` came with local months, migration 0006)."""
        with self.session() as session:
            rows = session.execute(
                select(Invoice.period)
                .join(BillingRun, BillingRun.run_id == Invoice.run_id)
                .where(BillingRun.events_deferred.is_(None))
                .distinct()
            )
            return {period for (period,) in rows}

    def account_zones(self) -> dict[str, str]:
        """account_id -> IANA time zone: where each account's billing month starts."""
        with self.session() as session:
            rows = session.execute(select(Account.account_id, Account.timezone))
            return {account_id: zone for account_id, zone in rows}

    def account_frame(self) -> pl.DataFrame:
        """account_id, currency, country, timezone for rating (time bands, tax)."""
        with self.session() as session:
            rows = session.scalars(select(Account).order_by(Account.account_id))
            return pl.DataFrame(
                [
                    {
                        "account_id": a.account_id,
                        "currency": a.currency,
                        "country": a.country,
                        "timezone": a.timezone,
                    }
                    for a in rows
                ],
                schema={
                    "account_id": pl.String,
                    "currency": pl.String,
                    "country": pl.String,
                    "timezone": pl.String,
                },
            )

    def account_terms(self) -> dict[str, str]:
        """account_id -> AccountTerms JSON, for accounts that have terms."""
        with self.session() as session:
            rows = session.execute(
                select(Account.account_id, Account.terms).where(Account.terms.is_not(None))
            )
            return {account_id: terms for account_id, terms in rows if terms is not None}

    def set_account_terms(self, account_id: str, terms_json: str) -> None:
        with self.session() as session:
            account = session.get(Account, account_id)
            if account is None:
                raise KeyError(f"account {account_id} does not exist; import it first")
            account.terms = terms_json

    def credits_used(self, excluding_period: str) -> dict[tuple[str, str], int]:
        """Minor units drawn per (account, prepaid credit id) on the published invoices and
        notes of every other period (a re-run of an earlier period must not draw a credit that a
        later invoice already used). Credit ids are an account's own."""
        with self.session() as session:
            rows = session.execute(
                select(Invoice.account_id, InvoiceLine.charge_id, InvoiceLine.amount_minor)
                .join(Invoice, Invoice.invoice_id == InvoiceLine.invoice_id)
                .where(
                    Invoice.period != excluding_period,
                    or_(
                        InvoiceLine.service_period.is_(None),
                        InvoiceLine.service_period != excluding_period,
                    ),
                    InvoiceLine.charge_id.like("credit:%"),
                )
            )
            # Notes correcting other periods can draw more credit (or give some back).
            noted = session.execute(
                select(Note.account_id, NoteLine.charge_id, NoteLine.amount_minor)
                .join(Note, Note.note_id == NoteLine.note_id)
                .where(Note.period != excluding_period, NoteLine.charge_id.like("credit:%"))
            )
            used: dict[tuple[str, str], int] = {}
            for account_id, charge_id, amount_minor in [*rows, *noted]:
                key = (account_id, charge_id.removeprefix("credit:"))
                used[key] = used.get(key, 0) - amount_minor
            return used

    def accounts(self) -> dict[str, Account]:
        with self.session() as session:
            return {a.account_id: a for a in session.scalars(select(Account))}

    # runs
    def start_run(
        self, run_id: str, period: str, flow_run_id: str | None, kind: str = "billing"
    ) -> None:
        with self.session() as session:
            session.add(
                BillingRun(
                    run_id=run_id,
                    period=period,
                    status="running",
                    flow_run_id=flow_run_id,
                    kind=kind,
                )
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self.session() as session:
            run = session.get(BillingRun, run_id)
            if run is None:
                raise KeyError(f"billing run {run_id} does not exist")
            for name, value in fields.items():
                setattr(run, name, value)

    def run(self, run_id: str) -> BillingRun | None:
        with self.session() as session:
            return session.get(BillingRun, run_id)

    def latest_runs(self, limit: int = 20) -> list[BillingRun]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(BillingRun).order_by(BillingRun.started_at.desc()).limit(limit)
                )
            )

    def record_manifest(self, run_id: str, entries: Iterable[tuple[str, int, str]]) -> None:
        rows = [{"run_id": run_id, "key": k, "size": s, "etag": e} for k, s, e in entries]
        with self.session() as session:
            for chunk in _chunks(rows, 500):
                session.execute(
                    self._insert(ManifestEntry.__table__).values(chunk).on_conflict_do_nothing()
                )

    def period_manifest(
        self, period: str, exclude_run: str | None = None
    ) -> list[tuple[str, int, str]]:
        """Every file an earlier run of the period read (to notice late files)."""
        with self.session() as session:
            query = (
                select(ManifestEntry.key, ManifestEntry.size, ManifestEntry.etag)
                .join(BillingRun, BillingRun.run_id == ManifestEntry.run_id)
                .where(BillingRun.period == period)
                .distinct()
            )
            if exclude_run:
                query = query.where(ManifestEntry.run_id != exclude_run)
            return [(k, s, e) for k, s, e in session.execute(query)]

    def manifest(self, run_id: str) -> list[tuple[str, int, str]]:
        with self.session() as session:
            rows = session.scalars(
                select(ManifestEntry)
                .where(ManifestEntry.run_id == run_id)
                .order_by(ManifestEntry.key)
            )
            return [(r.key, r.size, r.etag) for r in rows]

    # findings and alerts
    def record_findings(self, run_id: str, findings: list[dict[str, Any]]) -> None:
        rows = [{"run_id": run_id, **f} for f in findings]
        with self.session() as session:
            for chunk in _chunks(rows, 500):
                session.execute(
                    self._insert(Finding.__table__).values(chunk).on_conflict_do_nothing()
                )

    def alerted(self, finding_ids: Iterable[str], channel: str) -> set[str]:
        ids = list(finding_ids)
        sent: set[str] = set()
        with self.session() as session:
            for chunk in _chunks(ids, 500):
                sent.update(
                    session.scalars(
                        select(AlertSent.finding_id).where(
                            AlertSent.channel == channel, AlertSent.finding_id.in_(chunk)
                        )
                    )
                )
        return sent

    def mark_alerted(self, run_id: str, finding_ids: Iterable[str], channel: str) -> None:
        rows = [
            {"finding_id": f, "channel": channel, "run_id": run_id, "sent_at": utcnow()}
            for f in finding_ids
        ]
        with self.session() as session:
            for chunk in _chunks(rows, 500):
                session.execute(
                    self._insert(AlertSent.__table__).values(chunk).on_conflict_do_nothing()
                )

    # approvals
    def record_approval(
        self, run_id: str, decision: str, approver: str, comment: str, policy: str
    ) -> None:
        with self.session() as session:
            session.merge(
                Approval(
                    run_id=run_id,
                    decision=decision,
                    approver=approver,
                    comment=comment,
                    policy=policy,
                    decided_at=utcnow(),
                )
            )

    def approval(self, run_id: str) -> Approval | None:
        with self.session() as session:
            return session.get(Approval, run_id)

    # invoices
    def existing_invoices(self, period: str) -> dict[tuple[str, str], Invoice]:
        with self.session() as session:
            rows = session.scalars(select(Invoice).where(Invoice.period == period))
            return {(i.account_id, i.currency): i for i in rows}

    def publish_invoice(self, invoice: NewInvoice) -> bool:
        """Insert the invoice and its lines once; False when it already exists."""
        fields = {k: v for k, v in vars(invoice).items() if k != "lines"}
        return self._publish_once(Invoice, InvoiceLine, "invoice_id", fields, invoice.lines)

    def _publish_once(
        self,
        document: type[Base],
        lines: type[Base],
        key: str,
        fields: dict[str, Any],
        rows: list[dict[str, Any]],
    ) -> bool:
        """One transaction: the document row with `ON CONFLICT DO NOTHING RETURNING`, and
        its lines only if that insert took place."""
        table = document.__table__
        with self.session() as session:
            inserted = session.execute(
                self._insert(table)
                .values(**fields, line_count=len(rows), published_at=utcnow())
                .on_conflict_do_nothing()
                .returning(table.c[key])
            ).first()
            if inserted is None:
                return False
            session.execute(
                self._insert(lines.__table__).values([{key: fields[key], **row} for row in rows])
            )
            return True

    def billed_totals(self, period: str) -> dict[tuple[str, str], int]:
        """Minor units billed for a period per (account, currency): its invoices' own lines
        plus the adjustments later invoices carry for it."""
        with self.session() as session:
            rows = session.execute(
                select(Invoice.account_id, Invoice.currency, InvoiceLine.amount_minor)
                .join(Invoice, Invoice.invoice_id == InvoiceLine.invoice_id)
                .where(
                    or_(
                        and_(Invoice.period == period, InvoiceLine.service_period.is_(None)),
                        InvoiceLine.service_period == period,
                    )
                )
            )
            notes = session.execute(
                select(Note.account_id, Note.currency, Note.total_minor).where(
                    Note.period == period
                )
            )
            totals: dict[tuple[str, str], int] = {}
            for account_id, currency, amount_minor in [*rows, *notes]:
                totals[(account_id, currency)] = (
                    totals.get((account_id, currency), 0) + amount_minor
                )
            return totals

    def billed_lines(self, period: str) -> list[dict[str, Any]]:
        """What each line of a period was billed, summed over its invoice, the adjustments
        later invoices carry for it and the notes correcting it, per (account, currency,
        line id): charge_id, description and unit of its first appearance, quantity and
        amount_minor summed."""
        with self.session() as session:
            own = session.execute(
                select(Invoice.account_id, InvoiceLine)
                .join(Invoice, Invoice.invoice_id == InvoiceLine.invoice_id)
                .where(
                    or_(
                        and_(Invoice.period == period, InvoiceLine.service_period.is_(None)),
                        InvoiceLine.service_period == period,
                    )
                )
                .order_by(Invoice.published_at, Invoice.invoice_id, InvoiceLine.line_no)
            ).all()
            noted = session.execute(
                select(Note.account_id, NoteLine)
                .join(Note, Note.note_id == NoteLine.note_id)
                .where(Note.period == period)
                .order_by(Note.published_at, Note.note_id, NoteLine.line_no)
            ).all()
        billed: dict[tuple[str, str, str], dict[str, Any]] = {}
        rows: list[tuple[str, _LineColumns]] = [
            *((a, line) for a, line in own),
            *((a, line) for a, line in noted),
        ]
        for account_id, line in rows:
            # adjustments and note lines are `adjust:<period>:<line id>`, `note:<period>:...`
            line_id = line.line_id
            for prefix in (f"adjust:{period}:", f"note:{period}:"):
                line_id = line_id.removeprefix(prefix)
            key = (account_id, line.currency, line_id)
            found = billed.setdefault(
                key,
                {
                    "account_id": account_id,
                    "currency": line.currency,
                    "line_id": line_id,
                    "charge_id": line.charge_id,
                    "description": line.description,
                    "unit": line.unit,
                    "quantity": Decimal(0),
                    "amount_minor": 0,
                },
            )
            found["quantity"] += Decimal(line.quantity)
            found["amount_minor"] += line.amount_minor
        return list(billed.values())

    def charges_billed(self, periods: list[str]) -> dict[tuple[str, str], int]:
        """Minor units of charges (not tax, credits or discounts) billed per (account,
        currency) for the given periods: their invoices' own lines, adjustments for them and
        notes correcting them. Contracts' yearly commitments are measured with it."""
        if not periods:
            return {}
        with self.session() as session:
            rows = session.execute(
                select(Invoice.account_id, Invoice.currency, InvoiceLine.amount_minor)
                .join(Invoice, Invoice.invoice_id == InvoiceLine.invoice_id)
                .where(
                    or_(
                        and_(Invoice.period.in_(periods), InvoiceLine.service_period.is_(None)),
                        InvoiceLine.service_period.in_(periods),
                    ),
                    _is_charge(InvoiceLine.charge_id),
                )
            )
            noted = session.execute(
                select(Note.account_id, Note.currency, NoteLine.amount_minor)
                .join(Note, Note.note_id == NoteLine.note_id)
                .where(
                    Note.period.in_(periods),
                    _is_charge(NoteLine.charge_id),
                )
            )
            totals: dict[tuple[str, str], int] = {}
            for account_id, currency, amount_minor in [*rows, *noted]:
                key = (account_id, currency)
                totals[key] = totals.get(key, 0) + amount_minor
            return totals

    @staticmethod
    def _billing_runs(period: str) -> Any:
        """(account_id, run_id) of every run that published what an account was billed for
        `period`: its own invoice, invoices carrying adjustments for it, notes on it."""
        own = select(Invoice.account_id, Invoice.run_id).where(Invoice.period == period)
        adjusted = (
            select(Invoice.account_id, Invoice.run_id)
            .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.invoice_id)
            .where(InvoiceLine.service_period == period)
        )
        noted = select(Note.account_id, Note.run_id).where(Note.period == period)
        return union(own, adjusted, noted).subquery()

    def billing_basis(self, period: str) -> dict[str, list[str]]:
        """Per account billed for `period`: the runs that billed it, sorted. A run that
        prices a correction of the period against what was billed keeps this, and may
        publish only while it is unchanged."""
        with self.session() as session:
            runs = self._billing_runs(period)
            found: dict[str, list[str]] = {}
            for account_id, run_id in session.execute(select(runs.c.account_id, runs.c.run_id)):
                found.setdefault(account_id, []).append(run_id)
            return {account: sorted(ids) for account, ids in found.items()}

    def record_settled(
        self,
        run_id: str,
        period: str,
        keys: Mapping[str, Iterable[str]],
        currencies: Mapping[str, Iterable[str]],
    ) -> None:
        """The late keys (per account) this run settled for closed `period`, for each
        currency the account was billed in for it."""
        rows = [
            {"run_id": run_id, "period": period, "account_id": a, "currency": c, "key": k}
            for a, found in sorted(keys.items())
            for c in sorted(currencies.get(a, ()))
            for k in sorted(found)
        ]
        with self.session() as session:
            for chunk in _chunks(rows, 500):
                session.execute(
                    self._insert(LateSettlement.__table__).values(chunk).on_conflict_do_nothing()
                )

    def settled_keys(self, period: str, prefixes: Sequence[str]) -> dict[str | None, set[str]]:
        """Usage keys under `prefixes` billed for `period` by later runs: per account, the
        late keys a run settled for it, once the run published its invoices in every
        currency it was billed in for the period (the adjustments may have come to
        nothing); under `None`, for every account, the keys completed re-ratings of the
        period read."""
        found: dict[str | None, set[str]] = {None: set()}
        with self.session() as session:
            rerated = session.execute(
                select(ManifestEntry.key)
                .join(BillingRun, BillingRun.run_id == ManifestEntry.run_id)
                .where(
                    BillingRun.kind == "rerate",
                    BillingRun.period == period,
                    BillingRun.status == "published",
                    _under(ManifestEntry.key, prefixes),
                )
            )
            found[None].update(key for (key,) in rerated)
            settled = session.execute(
                select(
                    LateSettlement.run_id,
                    LateSettlement.account_id,
                    LateSettlement.currency,
                    LateSettlement.key,
                    Invoice.invoice_id,
                )
                .outerjoin(
                    Invoice,
                    and_(
                        Invoice.run_id == LateSettlement.run_id,
                        Invoice.account_id == LateSettlement.account_id,
                        Invoice.currency == LateSettlement.currency,
                    ),
                )
                .where(
                    LateSettlement.period == period,
                    _under(LateSettlement.key, prefixes),
                )
            )
            # A key counts once the run published the account's invoice in every currency.
            complete: dict[tuple[str, str, str], bool] = {}
            for run_id, account_id, _currency, key, invoice_id in settled:
                ok = complete.get((run_id, account_id, key), True)
                complete[(run_id, account_id, key)] = ok and invoice_id is not None
            for (_run, account_id, key), ok in complete.items():
                if ok:
                    found.setdefault(account_id, set()).add(key)
        return found

    def consumed_keys(self, period: str, prefixes: Sequence[str]) -> dict[str, set[str]]:
        """Per account invoiced for `period`: the usage keys under `prefixes` read by the runs
        that published what it was billed for the period (its own invoice, and invoices
        carrying adjustments for the period), and the keys settled for the period since
        (`settled_keys`). Usage in any other key is not billed yet for the account."""
        with self.session() as session:
            runs = self._billing_runs(period)
            rows = session.execute(
                select(runs.c.account_id, ManifestEntry.key)
                .select_from(runs)
                .outerjoin(
                    ManifestEntry,
                    and_(
                        ManifestEntry.run_id == runs.c.run_id,
                        _under(ManifestEntry.key, prefixes),
                    ),
                )
            )
            keys: dict[str, set[str]] = {}
            for account_id, key in rows:
                found = keys.setdefault(account_id, set())
                if key is not None:
                    found.add(key)
        settled = self.settled_keys(period, prefixes)
        return {
            account: found | settled[None] | settled.get(account, set())
            for account, found in keys.items()
        }

    def publish_note(self, note: NewNote) -> bool:
        """Insert the note and its lines once; False when this run already published one
        for the account and currency."""
        fields = {k: v for k, v in vars(note).items() if k != "lines"}
        return self._publish_once(Note, NoteLine, "note_id", fields, note.lines)

    def notes(self, period: str | None = None) -> list[Note]:
        with self.session() as session:
            query = select(Note).order_by(Note.published_at, Note.note_id)
            if period:
                query = query.where(Note.period == period)
            return list(session.scalars(query))

    def note_lines(self, note_id: str) -> list[NoteLine]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(NoteLine).where(NoteLine.note_id == note_id).order_by(NoteLine.line_no)
                )
            )

    def invoices(self, period: str | None = None) -> list[Invoice]:
        with self.session() as session:
            query = select(Invoice).order_by(Invoice.invoice_id)
            if period:
                query = query.where(Invoice.period == period)
            return list(session.scalars(query))

    def invoice_lines(self, invoice_id: str) -> list[InvoiceLine]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(InvoiceLine)
                    .where(InvoiceLine.invoice_id == invoice_id)
                    .order_by(InvoiceLine.line_no)
                )
            )

    def dispose(self) -> None:
        self.engine.dispose()


def _is_charge(charge_id: Any) -> Any:
    """A line that is a charge: not tax, a prepaid-credit draw or a discount."""
    return ~_under(charge_id, ("tax:", "credit:", "discount:"))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _chunks(rows: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
