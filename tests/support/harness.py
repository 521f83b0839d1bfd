"""Fixtures for end-to-end runs: one Prefect harness per session, real PostgreSQL,
a local webhook receiver, and settings that point a run at them."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra.demo_data import DemoMonth, generate_demo_month
from infra.settings import Settings
from tasks.common import ledger, usage_store
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "catalog" / "catalog.yaml"
PG_ADMIN = os.environ.get(
    "TALLYFLOW_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """The real Prefect engine against one temporary server for the whole session."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    name = f"tallyflow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    yield url
    forget_ledgers()
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def forget_ledgers() -> None:
    """Close the pooled connections the tasks opened, so a test database can be dropped."""
    from tasks.common import forget_ledgers as forget

    forget()


@dataclass
class WebhookReceiver:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0

    @property
    def finding_lines(self) -> list[str]:
        return [
            block["text"]["text"]
            for body in self.bodies
            for block in body["blocks"]
            if block["type"] == "section"
        ]


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A local HTTP endpoint that records JSON bodies; can answer 500 to the next N posts."""
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if receiver.fail_next > 0:
                receiver.fail_next -= 1
                self.send_response(500)
                self.end_headers()
                return
            receiver.bodies.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/billing"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def small_month() -> DemoMonth:
    """A small but complete demo month: every planted problem, every file format."""
    return generate_demo_month(period="2026-10", accounts=12, events=6_000, seed=7)


def make_settings(
    home: Path,
    *,
    database_url: str | None = None,
    store_url: str | None = None,
    s3_endpoint: str | None = None,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "store_url": store_url,
        "catalog_path": CATALOG,
        "approval_poll_seconds": 1,
        "approval_timeout_seconds": 120,
    }
    if s3_endpoint:
        values |= {
            "s3_endpoint_url": s3_endpoint,
            "s3_region": TEST_REGION,
            "aws_access_key_id": TEST_ACCESS_KEY_ID,
            "aws_secret_access_key": TEST_SECRET_ACCESS_KEY,
        }
    return Settings(**(values | overrides))


def land_month(settings: Settings, month: DemoMonth) -> None:
    """Put the month's usage files in the usage store and its directory in the ledger."""
    store = usage_store(settings)
    for file in month.files:
        store.put(file.key, file.body)
    db = ledger(settings)
    db.upsert_accounts(month.accounts)
    db.upsert_subscriptions(month.subscriptions)


SettingsFactory = Callable[..., Settings]
