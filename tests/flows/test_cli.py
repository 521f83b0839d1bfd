"""The `tallyflow` commands a user types, through Typer's runner (no flow runs here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.support.harness import CATALOG

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TALLYFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TALLYFLOW_CATALOG_PATH", str(CATALOG))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_quote_json_prices_inline_usage_without_storing_anything(env: Path) -> None:
    result = runner.invoke(
        app,
        [
            "quote",
            "--period",
            "2026-10",
            "--plan",
            "ucaas-business-eur",
            "-u",
            "voice=1500min",
            "-u",
            "sms=100",
            "--country",
            "DE",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    lines = {line["charge"]: line["amount"] for line in document["lines"]}
    # 185.00 platform; 1,500 min: 1,000 free + 500 x 0.0110 = 5.50; 100 x 0.0072 = 0.72;
    # MwSt 19% of 191.22 = 36.3318 => 36.33; total 227.55
    assert lines == {
        "Platform fee": "185.00",
        "Outbound voice": "5.50",
        "SMS": "0.72",
        "MwSt": "36.33",
    }
    assert document["totals"] == {"EUR": "227.55"}
    assert not (env / "home").exists()  # nothing was written


def test_quote_with_a_history_previews_proration_and_credits(env: Path) -> None:
    history = env / "history.yaml"
    history.write_text(
        "subscription_id: SUB-7\n"
        "changes:\n"
        "  - {action: start, day: 2026-10-10, plan: ucaas-starter-jpy}\n"
        "  - {action: change_plan, day: 2026-10-21, plan: ucaas-business-eur}\n"
    )
    result = runner.invoke(
        app, ["quote", "--period", "2026-10", "--history", str(history), "--json"]
    )
    assert result.exit_code == 2  # a JPY plan and a EUR plan: one invoice, one currency
    assert "use one currency" in result.output

    history.write_text(
        "subscription_id: SUB-7\n"
        "changes:\n"
        "  - {action: start, day: 2026-10-10, plan: ucaas-business-eur}\n"
        "  - {action: cancel, day: 2026-10-21, timing: immediate}\n"
    )
    result = runner.invoke(
        app,
        ["quote", "--period", "2026-10", "--history", str(history), "--country", "DE", "--json"],
    )
    assert result.exit_code == 0, result.output
    lines = [(line["kind"], line["amount"]) for line in json.loads(result.output)["lines"]]
    # Started October 10, cancelled with a credit on October 21: billed October 10-20,
    # 11/31 x 185.00 = 65.645.. -> 65.65 ("remaining time": never billed in advance);
    # no November fee. MwSt 19% of 65.65 = 12.4735 -> 12.47
    assert lines == [("recurring", "65.65"), ("tax", "12.47")]

    both = runner.invoke(
        app, ["quote", "--period", "2026-10", "--history", str(history), "--plan", "x"]
    )
    assert both.exit_code == 2 and "--history replaces" in both.output
    history.write_text("changes:\n  - {action: resume, day: 2026-10-10}\n")
    bad = runner.invoke(app, ["quote", "--period", "2026-10", "--history", str(history)])
    assert bad.exit_code == 2 and "exactly one start" in bad.output


def test_the_readme_history_quote(env: Path) -> None:
    history = env / "history.yaml"
    history.write_text(
        "subscription_id: SUB-42\n"
        "changes:\n"
        "  - {action: start, day: 2026-09-10, plan: ucaas-business-usd, seats: 10,"
        " trial_days: 14}\n"
        "  - {action: change_seats, day: 2026-10-16, seats: 15}\n"
        "  - {action: pause, day: 2026-10-20}\n"
        "  - {action: resume, day: 2026-10-25}\n"
    )
    args = ["quote", "--period", "2026-10", "--history", str(history), "--json"]
    result = runner.invoke(app, [*args, "-u", "voice[direction=inbound]=1500min"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    # paused October 20-24: -199.00 x 5/31 = -32.097 -> -32.10; November 199.00;
    # 1,500 inbound min, 1,000 free, 500 x 0.0040 = 2.00; October's spend
    # 199.00 (billed in advance) - 32.10 + 2.00 = 168.90; committed for the 26 days not
    # paused 300 x 26/31 = 251.6129 -> true-up 251.6129 - 168.90 = 82.7129 -> 82.71
    assert [(line["kind"], line["amount"]) for line in document["lines"]] == [
        ("recurring", "-32.10"),
        ("recurring", "199.00"),
        ("usage", "2.00"),
        ("commitment", "82.71"),
    ]
    assert document["totals"] == {"USD": "251.61"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-13", "--plan", "ucaas-business-eur"], "period must look like"),
        (["--period", "2026-10", "--plan", "nope"], "plan 'nope' is not in the catalog"),
        (
            ["--period", "2026-10", "--plan", "ucaas-business-eur", "-u", "fax=3"],
            "metric 'fax' is not in the catalog",
        ),
        (
            [
                "--period",
                "2026-10",
                "--plan",
                "ucaas-business-eur",
                "--usage-file",
                "/nonexistent.csv",
            ],
            "No such file",
        ),
        (["--period", "0001-01", "--plan", "p"], "period 0001-01 is not between 1900-01"),
        (["--period", "2026-10", "--plan", "p", "--seats", "-5"], "--seats must not be negative"),
        (
            ["--period", "2026-10", "--plan", "p", "--start", "10/17/2026"],
            "--start '10/17/2026' is not a date YYYY-MM-DD",
        ),
        (
            ["--period", "2026-10", "--plan", "p", "--start", "2026-10-20", "--end", "2026-10-10"],
            "--end 2026-10-10 is not after --start 2026-10-20",
        ),
        (
            ["--period", "2026-10", "--plan", "p", "--end", "2026-09-10"],
            "--end 2026-09-10 is before the period 2026-10",
        ),
        (
            ["--period", "2026-10", "--account", "A", "--country", "GB", "--seats", "3"],
            "--account reads the subscription, terms and country from the ledger; drop "
            "--seats, --country, or quote a --plan",
        ),
        # a bracket in the input is shown as typed, not read as terminal markup
        (
            ["--period", "2026-10", "--plan", "ucaas-business-eur", "-u", "voice[/x]=5"],
            "voice[/x]=5",
        ),
    ],
)
def test_quote_errors_are_one_line_messages(env: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["quote", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def _voice_line(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    (line,) = [line for line in document["lines"] if line["charge"] == "Outbound calls"]
    return dict(line)


def test_quote_prices_calls_in_the_accounts_time_zone(env: Path) -> None:
    # One 10-minute call to a French mobile on Monday 2026-10-05 at 01:00 UTC: 10:00 in
    # Tokyo. Deck intl-voice, prefix 336, 60/6 increments: 600 s billed.
    # In UTC it is off-peak: 10 x 0.0360 = 0.36; in Tokyo peak: 10 x 0.0420 = 0.42.
    calls = env / "calls.csv"
    calls.write_text(
        "event_id,account_id,metric,quantity,unit,timestamp,destination,direction\n"
        "c1,ACC-T,voice,600,s,2026-10-05T01:00:00Z,+33612345678,outbound\n"
    )
    quote = ["quote", "--period", "2026-10", "--usage-file", str(calls), "--json"]
    plan = ["--plan", "ucaas-business-usd"]
    assert _voice_line(runner.invoke(app, [*quote, *plan]))["amount"] == "0.36"
    tokyo = runner.invoke(app, [*quote, *plan, "--timezone", "Asia/Tokyo"])
    line = _voice_line(tokyo)
    assert line["amount"] == "0.42"
    assert [row["band"] for row in line["details"]] == ["peak"]

    imported = _import_one(
        env, "ACC-T,Tokyo KK,USD,JP,Asia/Tokyo", "S-T", "ucaas-business-usd", timezone=True
    )
    assert imported.exit_code == 0, imported.output
    assert _voice_line(runner.invoke(app, [*quote, "--account", "ACC-T"]))["amount"] == "0.42"

    nobody = runner.invoke(app, [*quote, "--account", "ACC-NONE"])
    assert nobody.exit_code == 2
    assert "account 'ACC-NONE' has no active subscription in 2026-10" in nobody.output

    unknown = runner.invoke(app, [*quote, *plan, "--timezone", "Mars/Olympus"])
    assert unknown.exit_code == 2
    assert "unknown time zone 'Mars/Olympus'" in unknown.output


def test_quote_inputs_that_would_change_nothing_are_refused_or_reported(env: Path) -> None:
    # A file with two accounts quoted for one: only its own 10-minute call is priced
    # (off-peak in UTC, 10 x 0.0360 = 0.36), and the other account's is reported.
    calls = env / "calls.csv"
    calls.write_text(
        "event_id,account_id,metric,quantity,unit,timestamp,destination,direction\n"
        "c1,ACC-T,voice,600,s,2026-10-05T01:00:00Z,+33612345678,outbound\n"
        "c2,ACC-X,voice,600,s,2026-10-05T01:00:00Z,+33612345678,outbound\n"
    )
    assert _import_one(env, "ACC-T,T,USD,US", "S-T", "ucaas-business-usd").exit_code == 0
    quote = ["quote", "--period", "2026-10", "--usage-file", str(calls), "--json"]
    result = runner.invoke(app, [*quote, "--account", "ACC-T"])
    assert _voice_line(result)["amount"] == "0.36"
    notices = [n["message"] for n in json.loads(result.output)["notices"]]
    assert "1 event(s) of other accounts in the file" in notices

    # seats on a plan that prices seats as usage change nothing: the quote says so
    seats = runner.invoke(
        app, ["quote", "--period", "2026-10", "--plan", "ucaas-business-usd", "--seats", "25"]
    )
    assert "25 seats: plan ucaas-business-usd has no per-seat fee or allowance" in seats.output

    both = runner.invoke(app, [*quote, "--plan", "ucaas-business-usd", "-u", "sms=10"])
    assert both.exit_code == 2
    assert "give usage as --usage-file or as --usage, not both" in both.output

    # Without --account, the two accounts' calls are priced as one, and a repeated event
    # id is left out: each is said. 2 x 0.36 = 0.72
    calls.write_text(calls.read_text() + "c1,ACC-T,voice,600,s,2026-10-05T01:00:00Z,+336,out\n")
    merged = runner.invoke(app, [*quote, "--plan", "ucaas-business-usd"])
    assert _voice_line(merged)["amount"] == "0.72"
    notices = [n["message"] for n in json.loads(merged.output)["notices"]]
    assert (
        "the file has events of 2 accounts, all priced here as one subscription; give "
        "--account to quote one of them"
    ) in notices
    assert "1 event(s) repeat an event id already read and were left out as duplicates" in (notices)

    # An inline quantity that cannot be priced is an error, not a quote without it
    typo = runner.invoke(
        app, ["quote", "--period", "2026-10", "--plan", "ucaas-business-usd", "-u", "sms=5GB"]
    )
    assert typo.exit_code == 2
    assert "-u sms=5GB: unit 'GB' does not convert" in typo.output


def test_a_quote_of_many_rejected_events_lists_ten_and_counts_the_rest(env: Path) -> None:
    rows = "".join(
        f"e{i},ACC-T,sms,1,message,2026-09-{10 + i % 10}T00:00:00Z,,\n" for i in range(25)
    )
    usage = env / "september.csv"
    usage.write_text(
        "event_id,account_id,metric,quantity,unit,timestamp,destination,direction\n" + rows
    )
    result = runner.invoke(
        app,
        [
            "quote",
            "--period",
            "2026-10",
            "--plan",
            "ucaas-business-usd",
            "--usage-file",
            str(usage),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("rejected: e") == 10
    assert "rejected: 25 events in all (25 outside_period); --json lists every one" in result.output


def test_quote_of_an_account_reads_any_file_and_rejects_events_with_no_account(
    env: Path,
) -> None:
    assert _import_one(env, "7,T,USD,US", "S-7", "ucaas-business-usd", seats=5).exit_code == 0
    # account ids stored as integers in Parquet: the account's call is priced
    calls = env / "calls.parquet"
    pl.DataFrame(
        {
            "event_id": ["c1", "c2", "c3"],
            "account_id": [7, 8, None],
            "metric": ["voice"] * 3,
            "quantity": ["600"] * 3,
            "unit": ["s"] * 3,
            "timestamp": ["2026-10-05T01:00:00Z"] * 3,
            "destination": ["+33612345678"] * 3,
            "direction": ["outbound"] * 3,
        }
    ).write_parquet(calls)
    quote = ["quote", "--period", "2026-10", "--usage-file", str(calls), "--json"]
    result = runner.invoke(app, [*quote, "--account", "7"])
    # 10 min off-peak x 0.0360 = 0.36; c2 is another account's; c3 has none and is rejected
    assert _voice_line(result)["amount"] == "0.36"
    document = json.loads(result.output)
    assert [(q["event_id"], q["reason"]) for q in document["quarantined"]] == [
        ("c3", "missing_account_id")
    ]
    notices = [n["message"] for n in document["notices"]]
    assert "1 event(s) of other accounts in the file" in notices
    assert not [n for n in notices if "seats" in n]  # the seats are the subscription's


def test_the_readme_quote_prints_readable_figures_and_its_total(env: Path) -> None:
    # README: 96.29 platform (15/31 x 199.00) + 175.40 seats (25 x 15/31 = 12.0968
    # seat-months x 14.50) + 2.00 inbound + 15.00 SMS + 25.20 storage + 0% tax = 313.89
    readme = (
        "quote --period 2026-10 --plan ucaas-business-usd --start 2026-10-17 -u seats=25 "
        "-u voice[direction=inbound]=90000s -u sms=2350 -u storage=150GB --country US"
    )
    result = runner.invoke(app, readme.split())
    assert result.exit_code == 0, result.output
    for shown in ("0.4839 period", "199.00", "12.0968 seat-month", "14.50", "313.89 USD"):
        assert shown in result.output
    assert "0.483870967742" not in result.output  # --json keeps every digit, not the table
    # a quote with nothing to bill still prints its total
    catalog = env / "payg.yaml"
    catalog.write_text(
        "version: payg\nmetrics: {sms: {name: SMS, unit: message}}\nplans:\n  payg:\n"
        "    name: PAYG\n    currency: USD\n    charges:\n"
        "      - {id: sms, name: SMS, model: per_unit, metric: sms, unit_price: '0.01'}\n"
    )
    empty = runner.invoke(
        app, ["quote", "--period", "2026-10", "--plan", "payg", "--catalog", str(catalog)]
    )
    assert empty.exit_code == 0, empty.output
    assert "Total" in empty.output and "0.00 USD" in empty.output


def test_quote_of_an_account_needs_a_ledger_and_does_not_create_one(env: Path) -> None:
    result = runner.invoke(app, ["quote", "--period", "2026-10", "--account", "ACC-1"])
    assert result.exit_code == 2
    assert "there is no ledger at" in result.output
    assert not (env / "home").exists()


def _import_one(
    env: Path,
    account: str,
    subscription_id: str,
    plan_id: str,
    *,
    timezone: bool = False,
    seats: int = 1,
) -> Any:
    """Import one account (a CSV row) and its subscription from 2026-01-01."""
    accounts = env / "accounts.csv"
    header = "account_id,name,currency,country" + (",timezone" if timezone else "")
    accounts.write_text(f"{header}\n{account}\n")
    subscriptions = env / "subscriptions.yaml"
    subscriptions.write_text(
        f"- {{subscription_id: {subscription_id}, account_id: {account.split(',')[0]}, "
        f"plan_id: {plan_id}, start_date: 2026-01-01, quantity: {seats}}}\n"
    )
    return runner.invoke(
        app,
        ["import", "--accounts-file", str(accounts), "--subscriptions-file", str(subscriptions)],
    )


def test_import_then_list_runs_and_invoices(env: Path) -> None:
    result = _import_one(env, "ACC-1,Acme,EUR,DE", "S-1", "ucaas-business-eur")
    assert result.exit_code == 0, result.output
    assert "Imported 1 accounts" in result.output
    assert "Imported 1 subscriptions" in result.output
    assert runner.invoke(app, ["runs"]).exit_code == 0
    listed = runner.invoke(app, ["invoices", "--period", "2026-10"])
    assert "No invoices published for 2026-10" in listed.output
    bad = runner.invoke(app, ["invoices", "--period", "2026-13"])
    assert bad.exit_code == 2


def test_a_misspelt_setting_stops_the_command(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYFLOW_DATABSE_URL", "postgresql://db/billing")
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 2
    assert "TALLYFLOW_DATABSE_URL" in result.output


def test_approve_needs_a_known_run(env: Path) -> None:
    result = runner.invoke(app, ["approve", "2026-10-nope", "--approver", "fin@example.com"])
    assert result.exit_code == 2
    assert "no billing run '2026-10-nope'" in result.output


def test_migrate_plan_moves_subscriptions_onto_a_new_version(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.settings import load_settings
    from pricing_rules.lifecycle import History
    from tasks.common import ledger
    from tests.pricing_rules.test_plan_versions import VERSIONS

    catalog = env / "catalog.yaml"
    catalog.write_text(VERSIONS)
    monkeypatch.setenv("TALLYFLOW_CATALOG_PATH", str(catalog))
    accounts = env / "accounts.csv"
    accounts.write_text("account_id,name,currency\nA,Acme,USD\nB,Bolt,USD\n")
    subscriptions = env / "subscriptions.csv"
    subscriptions.write_text(
        "subscription_id,account_id,plan_id,start_date,end_date\n"
        "S-1,A,voice-2026,2026-03-01,\n"
        "S-2,B,voice-2026,2026-03-01,2027-01-01\n"  # ended before the move
    )
    imported = runner.invoke(
        app,
        ["import", "--accounts-file", str(accounts), "--subscriptions-file", str(subscriptions)],
    )
    assert imported.exit_code == 0, imported.output

    args = ["migrate-plan", "--from-plan", "voice-2026", "--to-plan", "voice-2027"]
    moved = runner.invoke(app, [*args, "--on", "2027-02-15"])

    assert moved.exit_code == 0, moved.output
    assert "Moved 1 subscription(s)" in moved.output
    stored = ledger(load_settings()).subscriptions()
    history = History.model_validate_json(
        stored.filter(pl.col("subscription_id") == "S-1")["history"][0]
    )
    assert [(c.action, c.plan, str(c.day)) for c in history.changes] == [
        ("start", "voice-2026", "2026-03-01"),
        ("change_plan", "voice-2027", "2027-02-15"),
    ]
    assert stored.filter(pl.col("subscription_id") == "S-2")["history"][0] is None
    # Running it again moves nothing: S-1 is on voice-2027 from that day.
    again = runner.invoke(app, [*args, "--on", "2027-02-15"])
    assert "Moved 0 subscription(s)" in again.output
    bad = runner.invoke(
        app, ["migrate-plan", "--from-plan", "voice-2026", "--to-plan", "x", "--on", "2027-02-15"]
    )
    assert bad.exit_code == 2 and "plan 'x' is not in the catalog" in bad.output


def test_a_history_reaching_into_invoiced_months_names_the_re_ratings(env: Path) -> None:
    from infra.settings import load_settings
    from tasks.common import ledger
    from tests.infra.test_db import new_invoice

    accounts = env / "accounts.csv"
    accounts.write_text("account_id,name,currency,country\nACC-1,Acme,EUR,DE\n")
    subscriptions = env / "subscriptions.csv"
    subscriptions.write_text(
        "subscription_id,account_id,plan_id,start_date,end_date\n"
        "S-1,ACC-1,ucaas-business-eur,2026-01-01,\n"
    )
    args = ["import", "--accounts-file", str(accounts), "--subscriptions-file"]
    assert runner.invoke(app, [*args, str(subscriptions)]).exit_code == 0
    db = ledger(load_settings())
    for period in ("2026-09", "2026-10", "2026-11"):
        assert db.publish_invoice(new_invoice("ACC-1", period, "EUR"))
    histories = env / "histories.yaml"
    start = "{action: start, day: 2026-01-01, plan: ucaas-business-eur}"
    histories.write_text(f"- {{subscription_id: S-1, account_id: ACC-1, changes: [{start}]}}\n")
    first = runner.invoke(app, ["import", "--histories-file", str(histories)])
    # The start is new too: every invoiced month is reached.
    assert "reaches into invoiced period(s) 2026-09, 2026-10, 2026-11" in first.output
    seats = "{action: change_seats, day: 2026-10-15, seats: 3}"
    histories.write_text(
        f"- {{subscription_id: S-1, account_id: ACC-1, changes: [{start}, {seats}]}}\n"
    )

    second = runner.invoke(app, ["import", "--histories-file", str(histories)])

    assert second.exit_code == 0, second.output
    assert "a change dated 2026-10-15 reaches into invoiced period(s) 2026-10, 2026-11" in (
        " ".join(second.output.split())
    )
    assert "tallyflow rerate --period 2026-10" in " ".join(second.output.split())
    again = runner.invoke(app, ["import", "--histories-file", str(histories)])
    assert "reaches into" not in again.output  # nothing new
    # Moving the seat change to November 5 changes October too.
    moved = seats.replace("2026-10-15", "2026-11-05")
    histories.write_text(
        f"- {{subscription_id: S-1, account_id: ACC-1, changes: [{start}, {moved}]}}\n"
    )
    later_date = runner.invoke(app, ["import", "--histories-file", str(histories)])
    assert "dated 2026-10-15 reaches into invoiced period(s) 2026-10, 2026-11" in (
        " ".join(later_date.output.split())
    )
    # A history that takes over from December on reaches no invoice.
    histories.write_text(
        "- {subscription_id: S-1, account_id: ACC-1, billing_from: 2026-12-01, changes: "
        f"[{start}, {seats}, {{action: change_seats, day: 2026-11-20, seats: 4}}]}}\n"
    )
    later = runner.invoke(app, ["import", "--histories-file", str(histories)])
    assert later.exit_code == 0 and "reaches into" not in later.output


def test_a_history_quote_names_the_plan_in_force_at_the_periods_end(env: Path) -> None:
    catalog = env / "catalog.yaml"
    catalog.write_text(
        "version: t\nmetrics: {}\nplans:\n"
        "  basic: {name: Basic, currency: USD, charges: [{id: fee, name: Fee, model: flat,"
        " amount: '10'}]}\n"
        "  plus: {name: Plus, currency: USD, charges: [{id: fee, name: Fee, model: flat,"
        " amount: '20'}]}\n"
    )
    history = env / "history.yaml"
    history.write_text(
        "changes:\n  - {action: start, day: 2026-09-01, plan: basic}\n"
        "  - {action: change_plan, day: 2026-10-16, plan: plus}\n"
    )
    args = ["quote", "--period", "2026-10", "--history", str(history), "--catalog", str(catalog)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["plan"] == "plus"
    assert "Quote: plan plus, 2026-10" in runner.invoke(app, args).output


def test_importing_terms_the_catalog_cannot_apply_warns(env: Path) -> None:
    terms = env / "terms.yaml"
    terms.write_text(
        "- account_id: ACC-1\n"
        "  overrides:\n"
        "    - {plan_id: nope, charge_id: platform, amount: '1'}\n"
        "    - {plan_id: ucaas-business-usd, charge_id: platfrom, amount: '1'}\n"
        "    - {plan_id: ucaas-business-usd, charge_id: platform, unit_price: '1'}\n"
        "  discounts:\n"
        "    - {id: d, name: D, kind: percentage, value: '5', applies_to: smss}\n"
    )
    assert _import_one(env, "ACC-1,Acme,USD,US", "S-1", "ucaas-business-usd").exit_code == 0
    result = runner.invoke(app, ["import", "--terms-file", str(terms)])
    assert result.exit_code == 0, result.output
    assert "Imported terms for 1 accounts" in result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning")]
    assert warnings[0] == (
        "warning: ACC-1: overrides[0] (nope/platform): plan 'nope' is not in the catalog"
    )
    assert warnings[1].startswith(
        "warning: ACC-1: overrides[1] (ucaas-business-usd/platfrom): the plan has no charge "
        "'platfrom' (its charges: "
    )
    assert warnings[2] == (
        "warning: ACC-1: overrides[2] (ucaas-business-usd/platform): does not fit a flat "
        "charge (unit_price: Extra inputs are not permitted)"
    )
    assert warnings[3] == (
        "warning: ACC-1: discounts[0] (d): no plan or add-on has a charge 'smss'"
    )
    assert len(warnings) == 4
