"""The `tallyflow` command: demo, run, approve/reject, server, imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Tallyflow: usage billing from S3 to published invoices.",
)
console = Console()

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
    from infra.settings import load_settings

    return load_settings(settings_file, **{k: v for k, v in overrides.items() if v is not None})


def print_summary(summary: dict[str, Any]) -> None:
    counts = summary["counts"]
    table = Table(title=f"Billing run {summary['run_id']} — {summary['period']}", show_header=False)
    table.add_row("events read", f"{counts['read']:,}")
    table.add_row("  valid", f"{counts['valid']:,}")
    table.add_row("  quarantined", f"{counts['quarantined']:,}")
    table.add_row("  duplicates", f"{counts['duplicates']:,}")
    balanced = counts["read"] == counts["valid"] + counts["quarantined"] + counts["duplicates"]
    table.add_row("  read = valid + quarantined + duplicates", "yes" if balanced else "NO")
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
    summary = billing_run(period=period, settings=settings, approval_policy="auto")
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

    summary = billing_run(
        period=period, settings=settings, approval_policy="auto" if auto_approve else None
    )
    print_summary(summary)


def _import(
    settings: Any,
    accounts_file: Path | None,
    subscriptions_file: Path | None,
    terms_file: Path | None = None,
) -> None:
    from infra.directory import DirectoryError, read_accounts, read_subscriptions, read_terms
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
    except (DirectoryError, KeyError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


@app.command("import")
def import_directory(
    accounts_file: Annotated[Path | None, typer.Option(help="CSV or YAML accounts.")] = None,
    subscriptions_file: Annotated[
        Path | None, typer.Option(help="CSV or YAML subscriptions.")
    ] = None,
    terms_file: Annotated[
        Path | None, typer.Option(help="YAML account terms: overrides, discounts, credits.")
    ] = None,
    settings_file: SettingsFile = None,
) -> None:
    """Import accounts, subscriptions and account terms into the ledger."""
    _import(_settings(settings_file), accounts_file, subscriptions_file, terms_file)


def _decide(
    run_id: str, approved: bool, approver: str, comment: str, settings_file: Path | None
) -> None:
    _prefect_defaults()
    from flows.decisions import DecisionError, submit_decision

    try:
        submit_decision(_settings(settings_file), run_id, approved, approver, comment)
    except DecisionError as exc:
        console.print(f"[red]{exc}[/]")
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

    table = Table("run", "period", "status", "read", "valid", "started")
    for item in ledger(_settings(settings_file)).latest_runs(limit):
        table.add_row(
            item.run_id,
            item.period,
            item.status,
            str(item.events_read or ""),
            str(item.events_valid or ""),
            str(item.started_at)[:19],
        )
    console.print(table)


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
    raise typer.Exit(
        subprocess.call(
            [
                str(prefect),
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(port),
                "--analytics-off",
            ]
        )
    )


@app.command()
def invoices(
    period: Annotated[str, typer.Option(help="Billing month, YYYY-MM.")],
    settings_file: SettingsFile = None,
) -> None:
    """List published invoices of a period."""
    from pricing_rules.money import format_money, from_minor_units
    from tasks.common import ledger

    table = Table("invoice", "account", "total", "lines", "html")
    for inv in ledger(_settings(settings_file)).invoices(period):
        table.add_row(
            inv.invoice_id,
            inv.account_id,
            format_money(from_minor_units(inv.total_minor, inv.currency), inv.currency),
            str(inv.line_count),
            inv.html_key,
        )
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
