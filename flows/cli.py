"""The `tallyflow` command: demo, run, approve/reject, server, imports."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from pricing_rules.catalog import Catalog

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Tallyflow: usage billing from S3 to published invoices.",
)
console = Console()
errors = Console(stderr=True)


def fail(message: object) -> None:
    """Print an error on stderr, in red; its text is shown as it is (a `[` in it is not
    markup)."""
    errors.print(f"[red]{escape(str(message))}[/]")


SettingsFile = Annotated[
    Path | None,
    typer.Option("--settings-file", help="A .env-style file of TALLYFLOW_* settings."),
]


def _prefect_defaults() -> None:
    # No phoning home from a billing system, and no noisy telemetry errors offline.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def _settings(settings_file: Path | None, **overrides: Any) -> Any:
    from pydantic import ValidationError

    from infra.settings import load_settings

    try:
        return load_settings(settings_file, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail(f"invalid settings:\n{exc}")
        raise typer.Exit(2) from exc
    except (OSError, ValueError) as exc:
        fail(exc)
        raise typer.Exit(2) from exc


def print_summary(summary: dict[str, Any]) -> None:
    counts = summary["counts"]
    table = Table(title=f"Billing run {summary['run_id']} — {summary['period']}", show_header=False)
    table.add_row("events read (this month's files)", f"{counts['read']:,}")
    table.add_row("  + from neighbours' edge days", f"{counts['borrowed']:,}")
    table.add_row("  valid", f"{counts['valid']:,}")
    table.add_row("  quarantined", f"{counts['quarantined']:,}")
    table.add_row("  duplicates", f"{counts['duplicates']:,}")
    table.add_row("  owed to a neighbouring month", f"{counts['deferred']:,}")
    balanced = counts["read"] + counts["borrowed"] == (
        counts["valid"] + counts["quarantined"] + counts["duplicates"] + counts["deferred"]
    )
    table.add_row(
        "  read + borrowed = valid + quarantined + duplicates + owed",
        "yes" if balanced else "NO",
    )
    rated = summary["rated"]
    table.add_row(
        "events rated / unbilled (findings)",
        f"{rated['rated_events']:,} / {rated['unrated_events']:,}",
    )
    table.add_row("accounts invoiced", f"{rated['accounts']:,}")
    for currency, total in rated["totals"].items():
        table.add_row(f"total {currency}", total)
    for rule, n in summary["detected"]["by_rule"].items():
        table.add_row(f"findings: {rule}", str(n))
    for currency, amount in summary["detected"]["amount_at_risk"].items():
        table.add_row(f"amount at risk {currency}", amount)
    decision = summary["decision"]
    table.add_row(
        "decision",
        f"{'approved' if decision['approved'] else 'rejected'} by "
        f"{decision['approver']} ({decision['policy']})",
    )
    table.add_row(
        "invoices published / already there",
        f"{len(summary['published'])} / {len(summary['existing'])}",
    )
    console.print(table)
    store = summary["store_url"]
    console.print(f"Invoices: {store}/invoices/{summary['period']}/<account>/")
    console.print("Reports: " + ", ".join(f"{store}/{k}" for k in summary["reports"].values()))


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="Ordinary usage events to generate.")] = 1_000_000,
    accounts: Annotated[int, typer.Option(help="Accounts to generate.")] = 120,
    period: Annotated[str, typer.Option(help="Billing month, YYYY-MM.")] = "2026-10",
    home: Annotated[Path, typer.Option(help="Folder for the embedded state.")] = Path(".tallyflow"),
    fresh: Annotated[bool, typer.Option(help="Start from an empty embedded state.")] = True,
) -> None:
    """Generate a realistic UCaaS month, land it as files and bill it end to end."""
    _prefect_defaults()
    if fresh and home.exists():
        shutil.rmtree(home)
    from flows.billing import billing_run
    from infra.demo_data import generate_demo_month
    from tasks.common import ledger, usage_store

    settings = _settings(None, home=home, approval_policy="auto")
    started = time.perf_counter()
    console.print(f"[bold]Generating[/] {events:,} events for {accounts} accounts ({period})…")
    month = generate_demo_month(period=period, accounts=accounts, events=events)
    store = usage_store(settings)
    for file in month.files:
        store.put(file.key, file.body)
    db = ledger(settings)
    db.upsert_accounts(month.accounts)
    db.upsert_subscriptions(month.subscriptions)
    console.print(
        f"Landed {len(month.files)} files ({month.events_written:,} rows) in "
        f"{settings.resolved_usage_url}/usage/ in {time.perf_counter() - started:.1f} s"
    )
    planted = month.planted
    console.print(
        f"Planted: orphan account {planted.orphan_account_id} ({planted.orphan_events} events), "
        f"{planted.duplicate_copies} duplicate copies, "
        f"{sum(planted.malformed_by_reason.values())} malformed rows, "
        f"{planted.unpriced_events} '{planted.unpriced_metric}' events no plan prices, "
        f"subscription {planted.unknown_plan_subscription_id} on an unknown plan"
    )
    summary = _run_flow(billing_run, period, settings, "auto")
    print_summary(summary)
    console.print(f"Finished in {time.perf_counter() - started:.1f} s")


@app.command()
def run(
    period: Annotated[str, typer.Option(help="Billing month, YYYY-MM.")],
    settings_file: SettingsFile = None,
    auto_approve: Annotated[
        bool, typer.Option(help="Approve by policy instead of pausing for finance.")
    ] = False,
    accounts_file: Annotated[Path | None, typer.Option(help="Import accounts first.")] = None,
    subscriptions_file: Annotated[
        Path | None, typer.Option(help="Import subscriptions first.")
    ] = None,
) -> None:
    """Bill a period against the configured object store, database and Prefect server."""
    _prefect_defaults()
    settings = _settings(settings_file)
    _import(settings, accounts_file, subscriptions_file)
    from flows.billing import billing_run

    summary = _run_flow(billing_run, period, settings, "auto" if auto_approve else None)
    print_summary(summary)


@app.command()
def rerate(
    period: Annotated[str, typer.Option(help="Closed billing month to re-rate, YYYY-MM.")],
    settings_file: SettingsFile = None,
    auto_approve: Annotated[
        bool, typer.Option(help="Approve by policy instead of pausing for finance.")
    ] = False,
) -> None:
    """Re-rate a closed period (after a usage or catalog fix): credit and debit notes for
    what changed, after finance approval; published invoices are never reissued."""
    _prefect_defaults()
    settings = _settings(settings_file)
    from flows.rerate import rerate_run

    summary = _run_flow(rerate_run, period, settings, "auto" if auto_approve else None)
    notes = summary["notes"]
    table = Table(title=f"Re-rating run {summary['run_id']} — {period}", show_header=False)
    table.add_row(
        "events read / valid", f"{summary['counts']['read']:,} / {summary['counts']['valid']:,}"
    )
    table.add_row("credit notes / debit notes", f"{notes['credit_notes']} / {notes['debit_notes']}")
    for currency, net in notes["net"].items():
        table.add_row(f"net change {currency}", net)
    table.add_row(
        "accounts not billed yet (left to the billing run)", str(notes["accounts_not_billed_yet"])
    )
    decision = summary["decision"]
    table.add_row(
        "decision",
        f"{'approved' if decision['approved'] else 'rejected'} by "
        f"{decision['approver']} ({decision['policy']})",
    )
    table.add_row("notes published", str(len(summary["published"])))
    console.print(table)


def _run_flow(billing_run: Any, period: str, settings: Any, policy: str | None) -> Any:
    """Run the flow; a failure is reported in one line (Prefect keeps the traceback)."""
    try:
        return billing_run(period=period, settings=settings, approval_policy=policy)
    except Exception as exc:
        fail(f"Run for {period} failed: {type(exc).__name__}: {exc}")
        console.print("The run is marked failed in the ledger; see the Prefect logs for details.")
        raise typer.Exit(1) from exc


def _import(
    settings: Any,
    accounts_file: Path | None,
    subscriptions_file: Path | None,
    terms_file: Path | None = None,
    histories_file: Path | None = None,
) -> None:
    from infra.directory import (
        DirectoryError,
        read_accounts,
        read_histories,
        read_subscriptions,
        read_terms,
    )
    from tasks.common import ledger

    db = ledger(settings)
    try:
        if accounts_file:
            count = db.upsert_accounts(read_accounts(accounts_file))
            console.print(f"Imported {count} accounts")
        if subscriptions_file:
            count = db.upsert_subscriptions(read_subscriptions(subscriptions_file))
            console.print(f"Imported {count} subscriptions")
        if terms_file:
            terms = read_terms(terms_file)
            for item in terms:
                db.set_account_terms(item.account_id, item.model_dump_json())
            console.print(f"Imported terms for {len(terms)} accounts")
            _warn_terms(settings, terms)
        if histories_file:
            before = db.subscriptions()
            count = db.upsert_subscriptions(read_histories(histories_file))
            console.print(f"Imported {count} subscription histories")
            _warn_backdated(db, before)
    except (DirectoryError, KeyError) as exc:
        fail(exc)
        raise typer.Exit(2) from exc


def _warn_terms(settings: Any, terms: list[Any]) -> None:
    """Say what in the imported terms the configured catalog cannot apply (they are
    stored all the same: the catalog may change before they are used)."""
    from pricing_rules.catalog import CatalogError, load_catalog, terms_issues

    try:
        catalog = load_catalog(settings.catalog_path)
    except (CatalogError, OSError) as exc:
        fail(f"warning: the terms were not checked against the catalog: {exc}")
        return
    for account_id, issue in terms_issues(catalog, terms):
        errors.print(f"[yellow]warning[/]: {escape(account_id)}: {escape(issue)}")


@app.command("import")
def import_directory(
    accounts_file: Annotated[Path | None, typer.Option(help="CSV or YAML accounts.")] = None,
    subscriptions_file: Annotated[
        Path | None, typer.Option(help="CSV or YAML subscriptions.")
    ] = None,
    terms_file: Annotated[
        Path | None, typer.Option(help="YAML account terms: overrides, discounts, credits.")
    ] = None,
    histories_file: Annotated[
        Path | None,
        typer.Option(
            help="YAML subscription histories (start, plan and seat changes, trials, pauses, "
            "cancel): their fixed fees are prorated with credits for unused time."
        ),
    ] = None,
    settings_file: SettingsFile = None,
) -> None:
    """Import accounts, subscriptions, account terms and subscription histories."""
    _import(_settings(settings_file), accounts_file, subscriptions_file, terms_file, histories_file)


@app.command("migrate-plan")
def migrate_plan(
    from_plan: Annotated[str, typer.Option(help="The plan (version) subscriptions are on.")],
    to_plan: Annotated[str, typer.Option(help="The plan (version) to move them to.")],
    on: Annotated[str, typer.Option(help="The day the move takes effect, YYYY-MM-DD.")],
    timing: Annotated[
        str, typer.Option(help="immediate (split the period at --on) or period_end.")
    ] = "immediate",
    settings_file: SettingsFile = None,
) -> None:
    """Move every subscription on a plan to another (e.g. a new price-list version) from a
    day: the period is split there, with a line for each side."""
    from datetime import date

    from pricing_rules.catalog import CatalogError, load_catalog
    from pricing_rules.cycles import BillingCycle
    from pricing_rules.lifecycle import History, LifecycleError, migrate_history, timeline
    from tasks.common import ledger

    settings = _settings(settings_file)
    try:
        day = date.fromisoformat(on)
        if timing not in ("immediate", "period_end"):
            raise ValueError(f"--timing must be immediate or period_end, got {timing!r}")
        catalog = load_catalog(settings.catalog_path)
        for plan_id in (from_plan, to_plan):
            if plan_id not in catalog.plans:
                raise ValueError(f"plan {plan_id!r} is not in the catalog")
        db = ledger(settings)
        moved = []
        for sub in db.subscriptions().iter_rows(named=True):
            if sub["start_date"] >= day or (sub["end_date"] and sub["end_date"] <= day):
                continue
            history = History.model_validate_json(sub["history"]) if sub["history"] else None
            current = sub["plan_id"]
            if history is not None:
                segments = timeline(history, catalog, BillingCycle())
                current = next(
                    (s.state.plan for s in reversed(segments) if s.start <= day), current
                )
            if current != from_plan:
                continue
            updated = migrate_history(
                history,
                sub["subscription_id"],
                sub["start_date"],
                sub["plan_id"],
                sub["quantity"],
                to_plan,
                day,
                timing,  # type: ignore[arg-type]
            )
            timeline(updated, catalog, BillingCycle())  # same currency, known plans
            moved.append(sub | {"history": updated.model_dump_json()})
    except (CatalogError, LifecycleError, ValueError) as exc:
        fail(exc)
        raise typer.Exit(2) from exc
    if moved:
        import polars as pl

        before = db.subscriptions()
        db.upsert_subscriptions(pl.DataFrame(moved, schema=before.schema))
    console.print(f"Moved {len(moved)} subscription(s) from {from_plan} to {to_plan} on {day}.")
    if moved:
        _warn_backdated(db, before)


def _warn_backdated(db: Any, before: Any) -> None:
    """Name the invoiced periods a changed history reaches back into: their invoices billed
    the subscription as it stood, and only a re-rating corrects them (with a note)."""
    from pricing_rules.lifecycle import History, first_new_change

    old = {
        sub_id: History.model_validate_json(text)
        for sub_id, text in before.select("subscription_id", "history").iter_rows()
        if text
    }
    invoiced: dict[str, set[str]] = {}
    for invoice in db.invoices():
        invoiced.setdefault(invoice.account_id, set()).add(invoice.period)
    for sub in db.subscriptions().iter_rows(named=True):
        if not sub["history"]:
            continue
        new = History.model_validate_json(sub["history"])
        day = first_new_change(old.get(sub["subscription_id"]), new)
        if day is None:
            continue
        if new.billing_from is not None:  # billed another way before that
            day = max(day, new.billing_from)
        reached = sorted(p for p in invoiced.get(sub["account_id"], ()) if p >= f"{day:%Y-%m}")
        if reached:
            periods = ", ".join(reached)
            console.print(
                f"[yellow]{sub['subscription_id']}: a change dated {day} reaches into "
                f"invoiced period(s) {periods}; re-rate them (tallyflow rerate --period "
                f"{reached[0]}, then each later one) to bill the difference.[/]"
            )


def _decide(
    run_id: str, approved: bool, approver: str, comment: str, settings_file: Path | None
) -> None:
    _prefect_defaults()
    from flows.decisions import DecisionError, submit_decision

    try:
        submit_decision(_settings(settings_file), run_id, approved, approver, comment)
    except DecisionError as exc:
        fail(exc)
        raise typer.Exit(2) from exc
    console.print(f"Run {run_id} {'approved' if approved else 'rejected'} by {approver}.")


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The billing run id (see `tallyflow runs`).")],
    approver: Annotated[str, typer.Option(help="Who approves.")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    settings_file: SettingsFile = None,
) -> None:
    """Approve a run that is waiting for finance (same as Resume in the Prefect UI)."""
    _decide(run_id, True, approver, comment, settings_file)


@app.command()
def reject(
    run_id: Annotated[str, typer.Argument(help="The billing run id (see `tallyflow runs`).")],
    approver: Annotated[str, typer.Option(help="Who rejects.")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    settings_file: SettingsFile = None,
) -> None:
    """Reject a run that is waiting for finance; nothing is published."""
    _decide(run_id, False, approver, comment, settings_file)


@app.command()
def runs(
    settings_file: SettingsFile = None, limit: Annotated[int, typer.Option(help="How many.")] = 20
) -> None:
    """List recent billing runs and their status."""
    from tasks.common import ledger

    table = Table("period", "status", "read", "valid", "started")
    table.add_column("run", no_wrap=True)
    for item in ledger(_settings(settings_file)).latest_runs(limit):
        table.add_row(
            item.period,
            item.status,
            str(item.events_read or ""),
            str(item.events_valid or ""),
            str(item.started_at)[:16],
            item.run_id,
        )
    console.print(table)


@app.command()
def quote(
    period: Annotated[str, typer.Option(help="Billing month, YYYY-MM.")],
    plan: Annotated[str | None, typer.Option(help="Plan id from the catalog.")] = None,
    account: Annotated[
        str | None,
        typer.Option(help="Quote an account's subscription and terms from the ledger (read only)."),
    ] = None,
    usage: Annotated[
        list[str] | None,
        typer.Option("--usage", "-u", help="Inline usage, e.g. voice=1500min (repeatable)."),
    ] = None,
    usage_file: Annotated[
        Path | None, typer.Option(help="A usage file (Parquet, CSV, JSON Lines, optionally .gz).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="Subscription start, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Subscription end (exclusive).")] = None,
    seats: Annotated[
        int | None, typer.Option(help="Seats on the subscription (default 1).")
    ] = None,
    add_on: Annotated[list[str] | None, typer.Option(help="Add-on id (repeatable).")] = None,
    terms_file: Annotated[
        Path | None, typer.Option(help="YAML account terms to apply (the first entry).")
    ] = None,
    country: Annotated[str | None, typer.Option(help="Tax jurisdiction.")] = None,
    zone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="IANA time zone of the account, for call time bands and local days "
            "(default: the account's with --account, else UTC).",
        ),
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option(
            help="YAML subscription history (start, change_plan, change_seats, pause, resume, "
            "cancel) to preview proration and credits; replaces --plan/--start/--end/--seats."
        ),
    ] = None,
    by_second: Annotated[
        bool, typer.Option("--by-second", help="Prorate by the second instead of by the day.")
    ] = False,
    catalog_path: Annotated[
        Path | None, typer.Option("--catalog", help="Catalog file (default: the configured one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    settings_file: SettingsFile = None,
) -> None:
    """Price usage for a plan and period without touching the ledger (an invoice preview)."""
    from decimal import Decimal

    import polars as pl

    from infra.directory import DirectoryError, read_terms
    from infra.render import show_price
    from pricing_rules.catalog import CatalogError, load_catalog
    from pricing_rules.lifecycle import LifecycleError, load_history
    from pricing_rules.money import from_minor_units, show_quantity
    from pricing_rules.periods import BillingPeriod
    from pricing_rules.quote import (
        QuoteError,
        from_history,
        inline_usage,
        parse_quantity,
        quote_document,
        time_zone,
    )
    from pricing_rules.quote import quote as price_quote
    from validation.formats import UsageFileError, read_usage_file
    from validation.usage import validate_usage

    settings = _settings(settings_file)
    ignored: list[str] = []
    try:
        billing_period = BillingPeriod.parse(period)
        catalog = load_catalog(catalog_path or settings.catalog_path)
        terms = read_terms(terms_file)[0] if terms_file else None
        start_date, end_date = _day("--start", start), _day("--end", end)
        if start_date and end_date and end_date <= start_date:
            raise QuoteError(f"--end {end_date} is not after --start {start_date}")
        if end_date is not None and end_date <= billing_period.start:
            raise QuoteError(f"--end {end_date} is before the period {billing_period.label}")
        if seats is not None and seats < 0:
            raise QuoteError(f"--seats must not be negative, got {seats}")
        plan_id = plan
        changes = load_history(history.read_text(), str(history)) if history else None
        if changes is not None:
            given = _given(account=account, plan=plan, start=start, end=end, seats=seats)
            if given:
                raise QuoteError(f"--history replaces {given} (its changes say them)")
            # the plan in force at the period's end, as the quote rates usage on it
            plan_id = from_history(changes, catalog, billing_period)[0]
            start_date = changes.start
        if account:
            given = _given(
                start=start,
                end=end,
                seats=seats,
                add_on=add_on,
                terms_file=terms_file,
                country=country,
            )
            if given:
                raise QuoteError(
                    f"--account reads the subscription, terms and country from the ledger; "
                    f"drop {given}, or quote a --plan"
                )
            plan_id, start_date, end_date, seats, add_on, terms, country, account_zone = (
                _account_quote(settings, account, billing_period, plan_id)
            )
            zone = zone or account_zone
        seats = 1 if seats is None else seats
        zone = time_zone(zone or "UTC").key
        if plan_id is None:
            raise QuoteError("give --plan or --account")
        if changes is None and start_date is not None and start_date >= billing_period.end:
            raise QuoteError(f"--start {start_date} is after the period {billing_period.label}")
        if usage_file is not None and usage:
            raise QuoteError("give usage as --usage-file or as --usage, not both")
        if usage_file is not None:
            raw = read_usage_file(usage_file.name, usage_file.read_bytes())
            if account and "account_id" in raw.columns:
                # a file of several accounts: the account's own events (and those with no
                # account, which validation rejects), and say what is left out
                ids = raw["account_id"].cast(pl.String).str.strip_chars()
                others = ids.is_not_null() & (ids != "") & (ids != account)
                if others.any():
                    ignored.append(f"{int(others.sum())} event(s) of other accounts in the file")
                    raw = raw.filter(~others)
        else:
            raw = inline_usage(
                [parse_quantity(u) for u in usage or []],
                catalog,
                billing_period,
                start_date or billing_period.start,
                zone,
            )
        # Every event is the quoted account's: its local month decides which are in it.
        named = raw["account_id"].drop_nulls().unique().to_list() if "account_id" in raw else []
        zones = {str(account_id): zone for account_id in named}
        checked = validate_usage(raw, catalog.metric_units(), billing_period, zones)
        if usage and checked.quarantine.height:
            raise QuoteError(
                "; ".join(
                    f"-u {text}: {detail}"
                    for text, detail in zip(
                        usage, _inline_rejections(checked.quarantine, len(usage)), strict=True
                    )
                    if detail
                )
            )
        if usage_file is not None and not account and len(named) > 1:
            ignored.append(
                f"the file has events of {len(named)} accounts, all priced here as one "
                "subscription; give --account to quote one of them"
            )
        if checked.duplicates.height:
            ignored.append(
                f"{checked.duplicates.height} event(s) repeat an event id already read and "
                "were left out as duplicates"
            )
        result = price_quote(
            checked.valid,
            catalog,
            plan_id,
            billing_period,
            start=start_date,
            end=end_date,
            seats=seats,
            add_ons=add_on,
            terms=terms,
            country=country,
            timezone=zone,
            history=changes,
            proration="second" if by_second else "day",
        )
    except (
        QuoteError,
        CatalogError,
        DirectoryError,
        LifecycleError,
        UsageFileError,
        ValueError,
        OSError,
    ) as exc:
        fail(exc)
        raise typer.Exit(2) from exc
    document = quote_document(result, billing_period, plan_id)
    document["quarantined"] = checked.quarantine.select(
        "event_id", "reason", "reason_detail"
    ).to_dicts()
    # (with --account the seats are the subscription's, not the user's)
    if seats != 1 and not account and not _uses_seats(catalog, plan_id, add_on):
        ignored.append(
            f"{seats} seats: plan {plan_id} has no per-seat fee or allowance, so seats "
            "change nothing here (a seats metric is usage: give it with -u)"
        )
    document["notices"] = result.notices.to_dicts() + [
        {"account_id": account or "", "kind": "quote_input_ignored", "message": m} for m in ignored
    ]
    if as_json:
        typer.echo(_json(document))
        return
    table = Table(
        "#",
        "charge",
        "quantity",
        "unit price",
        "amount",
        title=(f"Quote: plan {plan_id}, {billing_period.label} (nothing is stored)"),
    )
    # The table rounds quantities for the eye; --json keeps every digit.
    for number, line in enumerate(document["lines"], start=1):
        price = line["unit_price"]
        table.add_row(
            str(number),
            f"{escape(line['charge'])}\n[dim]{escape(line['description'])}[/]",
            f"{show_quantity(Decimal(line['quantity']))} {line['unit']}",
            show_price(Decimal(price), line["currency"]) if price else "",
            f"{line['amount']} {line['currency']}",
        )
    totals = document["totals"] or {
        catalog.plans[plan_id].currency: str(from_minor_units(0, catalog.plans[plan_id].currency))
    }
    for currency, total in totals.items():
        table.add_row("", "[bold]Total[/]", "", "", f"[bold]{total} {currency}[/]")
    console.print(table)
    for item in document["unrated"]:
        console.print(
            f"[yellow]not priced[/]: {item['events']} {escape(str(item['metric']))} event(s): "
            f"{escape(str(item['reason']))}"
        )
    rejected = document["quarantined"]
    for item in rejected[:_SHOWN_REJECTIONS]:
        console.print(
            f"[yellow]rejected[/]: {escape(str(item['event_id']))}: "
            f"{escape(str(item['reason_detail']))}"
        )
    if len(rejected) > _SHOWN_REJECTIONS:
        reasons = Counter(str(item["reason"]) for item in rejected)
        console.print(
            f"[yellow]rejected[/]: {len(rejected):,} events in all ("
            + ", ".join(f"{count:,} {escape(reason)}" for reason, count in reasons.most_common())
            + "); --json lists every one"
        )
    for notice in document["notices"]:
        console.print(f"[yellow]notice[/]: {escape(str(notice['message']))}")


_SHOWN_REJECTIONS = 10


def _inline_rejections(quarantine: Any, count: int) -> list[str | None]:
    """Why each of `count` inline quantities (event ids `quote-0`, `quote-1`... as
    `pricing_rules.quote.inline_usage` names them) was rejected, or None."""
    reasons = dict(zip(quarantine["event_id"], quarantine["reason_detail"], strict=True))
    return [reasons.get(f"quote-{index}") for index in range(count)]


def _day(option: str, text: str | None) -> Any:
    """A date option, YYYY-MM-DD, or None."""
    from datetime import date

    from pricing_rules.quote import QuoteError

    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise QuoteError(f"{option} {text!r} is not a date YYYY-MM-DD ({exc})") from exc


def _given(**options: object) -> str:
    """The options given on the command line (not None, not an empty list), as `--name`."""
    return ", ".join(
        f"--{name.replace('_', '-')}"
        for name, value in options.items()
        if value is not None and value != []
    )


def _uses_seats(catalog: Catalog, plan_id: str, add_ons: list[str] | None) -> bool:
    """Whether a subscription's seats change a price of the plan: a per-seat fee or an
    allowance per seat."""
    from pricing_rules.charges import PerSeatCharge

    return any(
        isinstance(charge, PerSeatCharge)
        or (charge.free_units is not None and charge.free_units.per == "seat")
        for _, charge in catalog.plan_charges(plan_id, add_ons or [])
    )


def _account_quote(settings: Any, account: str, period: Any, plan: str | None) -> tuple[Any, ...]:
    """The account's active subscription, terms, country and time zone, read from the
    ledger."""
    import polars as pl
    from sqlalchemy.engine import make_url

    from pricing_rules.quote import QuoteError
    from pricing_rules.rating import active_subscriptions
    from pricing_rules.terms import AccountTerms
    from tasks.common import ledger

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        # a quote reads the ledger; it does not create one
        raise QuoteError(
            f"there is no ledger at {url.database}: import accounts and subscriptions first "
            "(tallyflow import), or quote a --plan"
        )
    db = ledger(settings)
    subs = active_subscriptions(db.subscriptions(), period).filter(pl.col("account_id") == account)
    if plan:
        subs = subs.filter(pl.col("plan_id") == plan)
    if subs.height == 0:
        raise QuoteError(
            f"account {account!r} has no active subscription"
            f"{f' on plan {plan}' if plan else ''} in {period.label}"
        )
    if subs.height > 1:
        raise QuoteError(
            f"account {account!r} has {subs.height} active subscriptions in "
            f"{period.label}; give --plan to choose"
        )
    sub = subs.row(0, named=True)
    terms_json = db.account_terms().get(account)
    terms = AccountTerms.model_validate_json(terms_json) if terms_json else None
    info = db.account_frame().filter(pl.col("account_id") == account)
    country = info["country"][0] if info.height else None
    zone = info["timezone"][0] if info.height else None
    add_ons = [a for a in (sub["add_ons"] or "").split(",") if a]
    return (
        sub["plan_id"],
        sub["start_date"],
        sub["end_date"],
        int(sub["quantity"]),
        add_ons,
        terms,
        country,
        zone,
    )


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 4200,
) -> None:
    """Start a local Prefect server with its UI, to watch and approve runs."""
    _prefect_defaults()
    url = f"http://{host}:{port}/api"
    console.print(
        f"Prefect UI at http://{host}:{port} — in other shells run:\n  export PREFECT_API_URL={url}"
    )
    prefect = Path(sys.executable).with_name("prefect")
    # The UI must be told where its API is when the port is not Prefect's default.
    env = {**os.environ, "PREFECT_UI_API_URL": url}
    args = [str(prefect), "server", "start", "--host", host, "--port", str(port), "--analytics-off"]
    # The server replaces this process, so a signal to `tallyflow server` reaches it.
    os.execve(str(prefect), args, env)  # noqa: S606


@app.command()
def invoices(
    period: Annotated[str, typer.Option(help="Billing month, YYYY-MM.")],
    settings_file: SettingsFile = None,
) -> None:
    """List published invoices of a period, with where each document is stored."""
    from pricing_rules.money import format_money, from_minor_units
    from pricing_rules.periods import BillingPeriod
    from tasks.common import ledger

    try:
        BillingPeriod.parse(period)
    except ValueError as exc:
        fail(exc)
        raise typer.Exit(2) from exc
    settings = _settings(settings_file)
    db = ledger(settings)
    found = db.invoices(period)
    notes = db.notes(period)
    if not found and not notes:
        console.print(f"No invoices published for {period}.")
        return
    table = Table("account", "total", "lines")
    table.add_column("document", no_wrap=True)
    for inv in found:
        table.add_row(
            inv.account_id,
            format_money(from_minor_units(inv.total_minor, inv.currency), inv.currency),
            str(inv.line_count),
            inv.invoice_id,
        )
    for note in notes:
        table.add_row(
            note.account_id,
            format_money(from_minor_units(note.total_minor, note.currency), note.currency),
            str(note.line_count),
            f"{note.note_id} ({note.kind} note)",
        )
    console.print(table)
    console.print(f"Documents: {settings.resolved_store_url}/invoices/{period}/<account>/")
    if notes:
        console.print(f"Notes: {settings.resolved_store_url}/notes/{period}/<account>/")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
