"""infra.directory: accounts, subscriptions and terms from CSV or YAML, every problem
named with its file and row."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from infra.directory import (
    ACCOUNT_SCHEMA,
    SUBSCRIPTION_SCHEMA,
    DirectoryError,
    read_accounts,
    read_histories,
    read_subscriptions,
    read_terms,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


ACCOUNTS = pl.DataFrame(
    [
        {
            "account_id": "ACC-1",
            "name": "Acme Ltd",
            "currency": "USD",
            "country": "US",
            "timezone": "America/New_York",
            "billing_email": "billing@acme.test",
        },
        {
            "account_id": "ACC-2",
            "name": "Bolt GmbH",
            "currency": "EUR",
            "country": None,
            "timezone": "UTC",
            "billing_email": None,
        },
    ],
    schema=ACCOUNT_SCHEMA,
)

SUBSCRIPTIONS = pl.DataFrame(
    [
        {
            "subscription_id": "S-1",
            "account_id": "ACC-1",
            "plan_id": "ucaas-business",
            "start_date": date(2026, 1, 1),
            "end_date": date(2026, 10, 16),
            "quantity": 25,
            "add_ons": "call-recording",
        },
        {
            "subscription_id": "S-2",
            "account_id": "ACC-2",
            "plan_id": "ucaas-starter",
            "start_date": date(2026, 10, 16),
            "end_date": None,
            "quantity": 1,
            "add_ons": None,
        },
    ],
    schema=SUBSCRIPTION_SCHEMA,
)


# --------------------------------------------------------------------------------------
# accounts


def test_accounts_from_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts.csv",
        "account_id,name,currency,country,timezone,billing_email\n"
        "ACC-1,Acme Ltd,USD,US,America/New_York,billing@acme.test\n"
        "ACC-2,Bolt GmbH,EUR,,,\n",
    )

    assert_frame_equal(read_accounts(path), ACCOUNTS)


def test_accounts_from_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts.yaml",
        "- {account_id: ACC-1, name: Acme Ltd, currency: USD, country: US,\n"
        "   timezone: America/New_York, billing_email: billing@acme.test}\n"
        "- {account_id: ACC-2, name: Bolt GmbH, currency: EUR}\n",
    )

    assert_frame_equal(read_accounts(path), ACCOUNTS)


def test_yaml_values_are_read_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts.yaml",
        "- {account_id: 0012, name: Nordlys AS, currency: NOK, country: NO}\n",
    )

    [account] = read_accounts(path).to_dicts()

    assert (account["account_id"], account["country"]) == ("0012", "NO")


def test_the_same_cells_in_csv_stay_text(tmp_path: Path) -> None:
    path = write(
        tmp_path, "accounts.csv", "account_id,name,currency,country\n0012,Nordlys AS,NOK,NO\n"
    )

    [account] = read_accounts(path).to_dicts()

    assert (account["account_id"], account["country"]) == ("0012", "NO")


def test_optional_account_columns_default(tmp_path: Path) -> None:
    path = write(tmp_path, "accounts.csv", "account_id,name,currency\nACC-2,Bolt GmbH,EUR\n")

    frame = read_accounts(path)

    assert frame.columns == list(ACCOUNT_SCHEMA)
    assert frame.row(0, named=True) == ACCOUNTS.row(1, named=True)


def test_a_required_account_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "accounts.csv", "account_id,country\nACC-1,US\n")

    with pytest.raises(DirectoryError, match=r"accounts\.csv: missing column\(s\) name, currency"):
        read_accounts(path)


def test_accounts_without_id_or_currency_are_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts.csv",
        "account_id,name,currency\nACC-1,Acme,\n,Nobody,USD\nACC-3,Ok,USD\n",
    )

    with pytest.raises(DirectoryError, match=r"2 account\(s\) lack an id or currency"):
        read_accounts(path)


def test_duplicate_account_ids_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts.yaml",
        "- {account_id: ACC-1, name: Acme, currency: USD}\n"
        "- {account_id: ACC-2, name: Bolt, currency: EUR}\n"
        "- {account_id: ACC-1, name: Acme again, currency: USD}\n",
    )

    with pytest.raises(DirectoryError, match=r"accounts\.yaml: duplicate account_id ACC-1 in row"):
        read_accounts(path)


def test_duplicate_account_ids_are_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts.csv",
        "account_id,name,currency\nACC-1,Acme,USD\nACC-2,Bolt,EUR\nACC-1,Acme again,USD\n",
    )

    with pytest.raises(DirectoryError, match=r"ACC-1") as raised:
        read_accounts(path)
    assert "row 3" in str(raised.value)


# --------------------------------------------------------------------------------------
# subscriptions


def test_subscriptions_from_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions.csv",
        "subscription_id,account_id,plan_id,start_date,end_date,quantity,add_ons\n"
        "S-1,ACC-1,ucaas-business,2026-01-01,2026-10-16, 25 ,call-recording\n"
        "S-2,ACC-2,ucaas-starter,2026-10-16,,,\n",
    )

    assert_frame_equal(read_subscriptions(path), SUBSCRIPTIONS)


def test_subscriptions_from_yaml(tmp_path: Path) -> None:
    # Unquoted YAML dates and numbers are read back as text, then typed like CSV cells.
    path = write(
        tmp_path,
        "subscriptions.yml",
        "- subscription_id: S-1\n"
        "  account_id: ACC-1\n"
        "  plan_id: ucaas-business\n"
        "  start_date: 2026-01-01\n"
        "  end_date: 2026-10-16\n"
        "  quantity: 25\n"
        "  add_ons: call-recording\n"
        "- {subscription_id: S-2, account_id: ACC-2, plan_id: ucaas-starter,\n"
        "   start_date: '2026-10-16'}\n",
    )

    assert_frame_equal(read_subscriptions(path), SUBSCRIPTIONS)


def test_quantity_defaults_to_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions.csv",
        "subscription_id,account_id,plan_id,start_date\nS-2,ACC-2,ucaas-starter,2026-10-16\n",
    )

    frame = read_subscriptions(path)

    assert frame.columns == list(SUBSCRIPTION_SCHEMA)
    assert frame.row(0, named=True) == SUBSCRIPTIONS.row(1, named=True)


def test_bad_dates_and_numbers_are_reported_with_their_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions.csv",
        "subscription_id,account_id,plan_id,start_date,end_date,quantity\n"
        "S-1,ACC-1,p,2026-10-01,,2\n"
        "S-2,ACC-1,p,01/10/2026,,2\n"
        "S-3,ACC-1,p,2026-10-01,2026-02-30,1.5\n"
        "S-4,ACC-1,p,2026-10-01,,ten\n",
    )

    with pytest.raises(DirectoryError) as raised:
        read_subscriptions(path)

    # Every problem at once, numbered from the first data row.
    assert str(raised.value) == (
        f"{path}:\n"
        "  row 2: start_date '01/10/2026' is not a date YYYY-MM-DD\n"
        "  row 3: end_date '2026-02-30' is not a date YYYY-MM-DD\n"
        "  row 3: quantity '1.5' is not a whole number\n"
        "  row 4: quantity 'ten' is not a whole number"
    )


def test_bad_yaml_values_are_reported_with_their_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions.yaml",
        "- {subscription_id: S-1, account_id: A, plan_id: p, start_date: 2026-10-01}\n"
        "- {subscription_id: S-2, account_id: A, plan_id: p, start_date: 2026-10-01,"
        " quantity: lots}\n",
    )

    with pytest.raises(DirectoryError, match=r"row 2: quantity 'lots' is not a whole number"):
        read_subscriptions(path)


@pytest.mark.parametrize("end_date", ["2026-10-01", "2026-09-30"])
def test_a_subscription_must_end_after_it_starts(tmp_path: Path, end_date: str) -> None:
    path = write(
        tmp_path,
        "subscriptions.csv",
        "subscription_id,account_id,plan_id,start_date,end_date\n"
        "S-1,ACC-1,p,2026-01-01,\n"
        f"S-2,ACC-1,p,2026-10-01,{end_date}\n",
    )

    with pytest.raises(
        DirectoryError,
        match=r"1 subscription\(s\) .*end on or before they start.*'subscription_id': 'S-2'",
    ):
        read_subscriptions(path)


def test_negative_seats_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions.csv",
        "subscription_id,account_id,plan_id,start_date,quantity\nS-1,ACC-1,p,2026-01-01,-3\n",
    )

    with pytest.raises(DirectoryError, match=r"negative seats, e\.g\. .*'quantity': -3"):
        read_subscriptions(path)


def test_duplicate_subscription_ids_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions.csv",
        "subscription_id,account_id,plan_id,start_date\n"
        "S-1,ACC-1,p,2026-01-01\n"
        "S-1,ACC-2,p,2026-02-01\n",
    )

    with pytest.raises(DirectoryError, match="duplicate subscription_id S-1 in row 1, row 2"):
        read_subscriptions(path)


# --------------------------------------------------------------------------------------
# files


def test_files_must_exist_and_be_csv_or_yaml(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match=r"accounts\.csv does not exist"):
        read_accounts(tmp_path / "accounts.csv")
    with pytest.raises(DirectoryError, match=r"use \.csv, \.yaml or \.yml"):
        read_accounts(write(tmp_path, "accounts.json", "[]"))
    with pytest.raises(DirectoryError, match="expected a list of records"):
        read_accounts(write(tmp_path, "accounts.yaml", "account_id: ACC-1\n"))


def test_a_yaml_key_written_twice_or_bad_yaml_is_an_error_with_its_line(tmp_path: Path) -> None:
    twice = "- {account_id: ACC-1, name: Acme Ltd, currency: USD, currency: EUR}\n"
    with pytest.raises(DirectoryError, match=r"the key 'currency' is written twice"):
        read_accounts(write(tmp_path, "accounts.yaml", twice))
    with pytest.raises(DirectoryError, match=r"accounts\.yaml: not valid YAML"):
        read_accounts(write(tmp_path, "accounts.yaml", "- {account_id: ACC-1\n"))


# --------------------------------------------------------------------------------------
# terms


def test_terms_from_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "terms.yaml",
        "- account_id: ACC-1\n"
        "  tax_jurisdiction: GB\n"
        '  credits: [{id: prepay-1, amount: "500.00", currency: USD, granted_on: 2026-09-15}]\n'
        "- {account_id: ACC-2, tax_exempt: true}\n",
    )

    terms = read_terms(path)

    assert [(t.account_id, t.tax_jurisdiction, t.tax_exempt) for t in terms] == [
        ("ACC-1", "GB", False),
        ("ACC-2", None, True),
    ]
    assert [(c.id, str(c.amount), c.granted_on) for c in terms[0].credits] == [
        ("prepay-1", "500.00", date(2026, 9, 15))
    ]
    assert read_terms(write(tmp_path, "empty.yaml", "")) == []


def test_terms_errors_name_the_index_and_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "terms.yaml",
        "- account_id: ACC-1\n"
        '  credits: [{id: prepay-1, amount: "-5", currency: USD, granted_on: 2026-09-15}]\n'
        "- {account_id: ACC-2, tax_exemp: true}\n"
        "- {tax_exempt: true}\n"
        "- account_id: ACC-4\n"
        '  credits: [{id: c, amount: "1.0005", currency: BHD, granted_on: 2026-09-15}]\n',
    )

    with pytest.raises(DirectoryError) as raised:
        read_terms(path)

    # All four entries are reported, not only the first.
    assert str(raised.value) == (
        f"{path}:\n"
        "  [0].credits.0.amount: Value error, must not be negative\n"
        "  [1].tax_exemp: Extra inputs are not permitted\n"
        "  [2].account_id: Field required\n"
        "  [3].credits.0: amount 1.0005 has more decimal places than BHD has (3)"
    )


def test_terms_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="expected a list of account terms"):
        read_terms(write(tmp_path, "terms.yaml", "account_id: ACC-1\n"))
    with pytest.raises(DirectoryError, match="does not exist"):
        read_terms(tmp_path / "missing.yaml")


def test_histories_become_subscription_rows_that_keep_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "histories.yaml",
        """
- subscription_id: S-1
  account_id: ACC-1
  billing_from: 2026-10-01
  changes:
    - {action: start, day: 2026-01-15, plan: pro, seats: 5}
    - {action: change_plan, day: 2026-10-16, plan: max}
    - {action: cancel, day: 2026-12-05}
- subscription_id: S-2
  account_id: ACC-2
  changes:
    - {action: start, day: 2026-03-01, plan: pro}
    - {action: cancel, day: 2026-03-09, timing: immediate}
""",
    )
    rows = read_histories(path).drop("history").to_dicts()
    # Cancelled at the period end by default (December 5 -> January 1); immediately on
    # March 9 for S-2. Plan and seats are the first ones; rating uses those in force.
    assert rows == [
        {
            "subscription_id": "S-1",
            "account_id": "ACC-1",
            "plan_id": "pro",
            "start_date": date(2026, 1, 15),
            "end_date": date(2027, 1, 1),
            "quantity": 5,
        },
        {
            "subscription_id": "S-2",
            "account_id": "ACC-2",
            "plan_id": "pro",
            "start_date": date(2026, 3, 1),
            "end_date": date(2026, 3, 9),
            "quantity": 1,
        },
    ]
    stored = read_histories(path)["history"][0]
    assert '"billing_from":"2026-10-01"' in stored and '"plan":"max"' in stored


def test_bad_histories_are_reported_with_their_place(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "histories.yaml",
        """
- subscription_id: S-1
  account_id: ACC-1
  changes: [{action: resume, day: 2026-01-15}]
- subscription_id: S-2
  changes: [{action: start, day: 2026-01-15, plan: pro}]
- subscription_id: S-3
  account_id: ACC-3
  changes: [{action: start, day: 2026-13-01, plan: pro}]
""",
    )
    with pytest.raises(DirectoryError) as raised:
        read_histories(path)
    message = str(raised.value)
    assert (
        "[0]: Value error, changes[0] (resume on 2026-01-15): a history has exactly one start"
        in message
    )
    assert "[1]: needs account_id, subscription_id and changes" in message
    assert "[2].changes.0.day" in message


def test_the_readme_terms_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("Account terms are a YAML list:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    (terms,) = read_terms(write(tmp_path, "terms.yaml", block))
    (contract,) = terms.contracts
    # Phases: 20% off 2026, 10% off 2027, then the 179.00 platform price from 2028 on.
    assert [(d.value, d.valid_from, d.valid_to) for d in terms.effective_discounts()][1:] == [
        (Decimal(20), date(2026, 1, 1), date(2027, 1, 1)),
        (Decimal(10), date(2027, 1, 1), date(2028, 1, 1)),
    ]
    (override,) = contract.overrides()
    assert (override.amount, override.valid_from, override.valid_to) == (
        Decimal(179),
        date(2028, 1, 1),
        None,
    )
