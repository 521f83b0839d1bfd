"""infra.settings: defaults under `home`, then file < environment < explicit overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from infra.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TALLYFLOW_* variables from the outer environment; a relative `home` lands in
    tmp_path."""
    for name in list(os.environ):
        if name.upper().startswith("TALLYFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_embed_everything_under_home(tmp_path: Path) -> None:
    settings = load_settings()

    assert settings.home == Path(".tallyflow")
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / '.tallyflow' / 'tallyflow.db'}"
    assert settings.resolved_store_url == str(tmp_path / ".tallyflow" / "store")
    assert settings.resolved_usage_url == settings.resolved_store_url
    assert (settings.approval_policy, settings.s3_region, settings.webhook_url) == (
        "manual",
        "us-east-1",
        None,
    )


def test_defaults_follow_home(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "state")

    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'state' / 'tallyflow.db'}"
    assert settings.resolved_store_url == str(tmp_path / "state" / "store")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYFLOW_DATABASE_URL", "postgresql://billing@db/tallyflow")
    monkeypatch.setenv("TALLYFLOW_STORE_URL", "s3://invoices/prod")
    monkeypatch.setenv("TALLYFLOW_USAGE_URL", "s3://usage-landing")
    monkeypatch.setenv("TALLYFLOW_APPROVAL_POLICY", "auto")
    monkeypatch.setenv("TALLYFLOW_S3_MAX_ATTEMPTS", "9")

    settings = load_settings()

    assert settings.resolved_database_url == "postgresql://billing@db/tallyflow"
    assert settings.resolved_store_url == "s3://invoices/prod"
    assert settings.resolved_usage_url == "s3://usage-landing"
    assert (settings.approval_policy, settings.s3_max_attempts) == ("auto", 9)


def test_a_settings_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "tallyflow.env"
    env_file.write_text(
        "# billing box\n"
        "TALLYFLOW_STORE_URL=s3://from-file\n"
        "TALLYFLOW_WEBHOOK_URL=https://hooks.example/T000/B000/XXXX\n"
        "TALLYFLOW_APPROVAL_TIMEOUT_SECONDS=3600\n"
    )

    settings = load_settings(env_file)

    assert settings.store_url == "s3://from-file"
    assert settings.webhook_url is not None
    assert settings.webhook_url.get_secret_value() == "https://hooks.example/T000/B000/XXXX"
    assert settings.approval_timeout_seconds == 3600


def test_environment_wins_over_the_file_and_overrides_win_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "tallyflow.env"
    env_file.write_text("TALLYFLOW_STORE_URL=s3://from-file\nTALLYFLOW_S3_REGION=eu-west-1\n")
    monkeypatch.setenv("TALLYFLOW_STORE_URL", "s3://from-env")
    monkeypatch.setenv("TALLYFLOW_APPROVAL_POLICY", "auto")

    from_env = load_settings(env_file)
    overridden = load_settings(env_file, store_url="/srv/store", approval_policy="manual")

    assert (from_env.store_url, from_env.s3_region, from_env.approval_policy) == (
        "s3://from-env",
        "eu-west-1",
        "auto",
    )
    assert (overridden.store_url, overridden.s3_region, overridden.approval_policy) == (
        "/srv/store",
        "eu-west-1",
        "manual",
    )


def test_a_missing_settings_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"settings file .*missing\.env does not exist"):
        load_settings(tmp_path / "missing.env")


def test_an_unknown_key_in_the_file_is_rejected(tmp_path: Path) -> None:
    env_file = tmp_path / "tallyflow.env"
    env_file.write_text("TALLYFLOW_DATABSE_URL=postgresql://typo@db/x\n")

    with pytest.raises(ValidationError, match=r"tallyflow_databse_url\n  Extra inputs"):
        load_settings(env_file)


def test_a_key_without_the_prefix_in_the_file_is_rejected_too(tmp_path: Path) -> None:
    # pydantic-settings with extra="forbid" rejects every unused line of the file, so a
    # .env shared with other tools (here docker compose's) cannot be used as it is.
    env_file = tmp_path / "shared.env"
    env_file.write_text("TALLYFLOW_S3_REGION=eu-west-1\nCOMPOSE_PROJECT_NAME=billing\n")

    with pytest.raises(ValidationError, match=r"compose_project_name\n  Extra inputs"):
        load_settings(env_file)


def test_an_unknown_key_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A misspelt variable would otherwise pass silently and bill against the default
    # embedded SQLite database.
    monkeypatch.setenv("TALLYFLOW_DATABSE_URL", "postgresql://typo@db/x")

    with pytest.raises(ValueError, match="TALLYFLOW_DATABSE_URL"):
        load_settings()


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYFLOW_APPROVAL_POLICY", "sometimes")

    with pytest.raises(ValidationError, match="approval_policy"):
        load_settings()
    with pytest.raises(ValidationError, match="s3_max_attempts"):
        load_settings(approval_policy="auto", s3_max_attempts=0)


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYFLOW_AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret")
    settings = Settings(
        aws_access_key_id=SecretStr("AKIA-visible-nowhere"),
        webhook_url="https://hooks.example/T000/B000/token-123",
    )

    shown = repr(settings) + str(settings) + str(settings.model_dump())

    for secret in ("wJalrXUtnFEMI-secret", "AKIA-visible-nowhere", "token-123"):
        assert secret not in shown
    assert "**********" in repr(settings)
    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == "wJalrXUtnFEMI-secret"


def test_a_misspelt_setting_in_the_environment_is_an_error() -> None:
    from infra.settings import load_settings

    with pytest.raises(ValueError, match=r"unknown setting.*TALLYFLOW_DATABSE_URL"):
        load_settings(environ={"TALLYFLOW_DATABSE_URL": "postgresql://x/y"})
    # Test-only variables are not settings and are allowed.
    assert load_settings(environ={"TALLYFLOW_TEST_PG_ADMIN": "x"}).approval_policy == "manual"


def test_billing_rules_settings_reach_the_rating_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.rate import account_inputs

    monkeypatch.setenv("TALLYFLOW_PRORATION", "second")
    monkeypatch.setenv("TALLYFLOW_LATE_USAGE_GRACE_PERIODS", "0")
    settings = load_settings(home=tmp_path)

    assert (settings.proration, settings.late_usage_grace_periods) == ("second", 0)
    assert account_inputs(settings, "2026-10").proration == "second"
    monkeypatch.setenv("TALLYFLOW_PRORATION", "hour")
    with pytest.raises(ValidationError, match="proration"):
        load_settings(home=tmp_path)
