"""What every task shares: IO clients from settings, staging by reference, step artifacts."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
from prefect.artifacts import create_markdown_artifact

from infra.db import Ledger
from infra.object_store import ObjectStore, open_store
from infra.settings import Settings
from validation.formats import UsageFileError


def store_for(settings: Settings, url: str) -> ObjectStore:
    return open_store(
        url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.aws_access_key_id.get_secret_value()
        if settings.aws_access_key_id
        else None,
        secret_access_key=settings.aws_secret_access_key.get_secret_value()
        if settings.aws_secret_access_key
        else None,
        max_attempts=settings.s3_max_attempts,
    )


def object_store(settings: Settings) -> ObjectStore:
    return store_for(settings, settings.resolved_store_url)


def usage_store(settings: Settings) -> ObjectStore:
    return store_for(settings, settings.resolved_usage_url)


_LEDGERS: dict[str, Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def _ledger(url: str) -> Ledger:
    """One migrated engine per database URL for the process."""
    with _LEDGERS_LOCK:
        if url not in _LEDGERS:
            ledger = Ledger(url)
            ledger.migrate()
            _LEDGERS[url] = ledger
        return _LEDGERS[url]


def ledger(settings: Settings) -> Ledger:
    return _ledger(settings.resolved_database_url)


def forget_ledgers() -> None:
    """Dispose every cached engine (tests and long-lived workers switching databases)."""
    for url in list(_LEDGERS):
        _LEDGERS.pop(url).dispose()


def staged_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{name}.parquet"


def stage(store: ObjectStore, run_id: str, name: str, frame: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    key = staged_key(run_id, name)
    store.put(key, buffer.getvalue(), content_type="application/vnd.apache.parquet")
    return key


def read_staged(store: ObjectStore, run_id: str, name: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.get(staged_key(run_id, name))))


class StepClock:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


@contextmanager
def timed() -> Iterator[StepClock]:
    yield StepClock()


def step_artifact(
    step: str, run_id: str, rows: dict[str, object], seconds: float, note: str = ""
) -> None:
    """A markdown artifact per step: what it counted, what it staged, how long it took."""
    table = "\n".join(f"| {name} | {value} |" for name, value in rows.items())
    create_markdown_artifact(
        key=f"tallyflow-{step}",
        markdown=f"### {step} — run `{run_id}`\n\n| measure | value |\n|---|---|\n{table}\n"
        f"| duration | {seconds:.2f} s |\n\n{note}",
        description=f"Tallyflow {step} step of run {run_id}",
    )


class BasisChangedError(RuntimeError):
    """Another run billed a closed period after this run priced a correction of it."""


def retry_transient(_task: object, _run: object, state: object) -> bool:
    """Retry a failed task unless a retry cannot change the outcome: an unreadable usage
    file, or a correction priced against a billing that has changed since."""
    try:
        state.result()  # type: ignore[attr-defined]
    except (UsageFileError, BasisChangedError):
        return False
    except Exception:
        return True
    return False


def basis_rows(
    basis: dict[str, list[str]], period: str, accounts: set[str]
) -> list[dict[str, str]]:
    """What `accounts` were billed for closed `period` (`Ledger.billing_basis`, taken
    before the correction was priced), as the runs that billed it."""
    return [
        {"account_id": account, "period": period, "runs": "|".join(basis.get(account, []))}
        for account in sorted(accounts)
    ]


def stage_basis(store: ObjectStore, run_id: str, rows: list[dict[str, str]]) -> None:
    schema = {"account_id": pl.String, "period": pl.String, "runs": pl.String}
    stage(store, run_id, "basis", pl.DataFrame(rows, schema=schema))


def check_basis(
    settings: Settings, run_id: str, accounts: set[str], period: str | None = None
) -> None:
    """Refuse to publish corrections of a closed period for `accounts` if another run has
    billed that period for them since this run priced the corrections: publishing both
    would bill the same usage twice. A new run prices against what is billed now.

    With `period` (a re-rating's), an account the basis does not list had not been
    billed for it when the basis was taken: its basis is empty."""
    store = object_store(settings)
    if store.head(staged_key(run_id, "basis")) is None:
        return
    staged = read_staged(store, run_id, "basis").filter(
        pl.col("account_id").is_in(sorted(accounts))
    )
    if period is not None:
        unlisted = sorted(accounts - set(staged["account_id"].to_list()))
        staged = pl.concat(
            [staged, pl.DataFrame(basis_rows({}, period, set(unlisted)), schema=staged.schema)]
        )
    db = ledger(settings)
    changed = []
    for (closed,), rows in staged.group_by(["period"], maintain_order=True):
        now = db.billing_basis(str(closed))
        for account, runs in rows.select("account_id", "runs").iter_rows():
            current = "|".join(r for r in now.get(account, []) if r != run_id)
            if current != runs:
                added = sorted(set(current.split("|")) - set(runs.split("|")) - {""})
                changed.append(f"{account} for {closed} (by {', '.join(added) or 'a change'})")
    if changed:
        raise BasisChangedError(
            f"{len(changed)} account(s) were billed again after run {run_id} priced its "
            f"corrections: {'; '.join(changed[:10])}. Nothing was published; start a new "
            "run to price against what is billed now."
        )
