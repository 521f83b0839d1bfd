"""All configuration in one typed place, built at the entrypoint and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Tallyflow settings from `TALLYFLOW_*` environment variables or a `.env`-style file.

    With nothing set, everything is embedded under `.tallyflow/`: a SQLite database and a
    local folder as the object store.
    """

    model_config = SettingsConfigDict(env_prefix="TALLYFLOW_", extra="forbid")

    home: Path = Field(Path(".tallyflow"), description="Folder for embedded state.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<home>/tallyflow.db. "
        "Use postgresql://user@host/db for PostgreSQL (psycopg 3).",
    )
    store_url: str | None = Field(
        None, description="Object store for staging and invoices: a folder or s3://bucket/prefix."
    )
    usage_url: str | None = Field(None, description="Where usage lands; default: store_url.")
    usage_prefix: str = "usage/"
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, R2).")
    s3_region: str = "us-east-1"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    s3_max_attempts: int = Field(5, ge=1, description="Total attempts per S3 request.")
    catalog_path: Path = Path("catalog/catalog.yaml")
    webhook_url: SecretStr | None = Field(None, description="Slack-compatible alert webhook.")
    approval_policy: Literal["manual", "auto", "low_risk"] = Field(
        "manual",
        description="manual: pause for finance in the Prefect UI; auto: approve and record "
        "that the policy approved; low_risk: approve by policy only when no finding is "
        "high or critical, otherwise pause for finance.",
    )
    proration: Literal["day", "second"] = Field(
        "day",
        description="How fixed fees of subscriptions with a history, or on their own cycle, "
        "are prorated: by whole days or by the second.",
    )
    late_usage_grace_periods: int = Field(
        2,
        ge=0,
        le=24,
        description="A run also bills usage that arrived late for this many closed periods "
        "before its own, as labelled adjustments; 0 turns this off (late usage is then only "
        "a finding).",
    )
    late_usage_lookback_periods: int = Field(
        12,
        ge=0,
        le=120,
        description="Closed periods, counted back from the run's, whose usage objects are "
        "checked for files no invoice billed; those beyond the grace window are a "
        "`late_usage_outside_grace` finding, to be billed by re-rating the period.",
    )
    approval_timeout_seconds: int = Field(7 * 24 * 3600, ge=1)
    approval_poll_seconds: int = Field(10, ge=1)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'tallyflow.db').resolve()}"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or str((self.home / "store").resolve())

    @property
    def resolved_usage_url(self) -> str:
        return self.usage_url or self.resolved_store_url


def load_settings(
    env_file: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Explicit overrides win over the environment, which wins over the optional file.

    A `TALLYFLOW_*` variable that names no setting is an error: a misspelt
    `TALLYFLOW_DATABSE_URL` would otherwise bill against the embedded SQLite database.
    """
    if env_file is not None and not env_file.is_file():
        raise FileNotFoundError(f"settings file {env_file} does not exist")
    known = {f"TALLYFLOW_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(
        key
        for key in (os.environ if environ is None else environ)
        if key.upper().startswith("TALLYFLOW_")
        and not key.upper().startswith("TALLYFLOW_TEST_")
        and key.upper() not in known
    )
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return Settings(_env_file=env_file, **overrides)
