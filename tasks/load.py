"""load: read every manifest file, in any format, into one staged raw frame."""

from __future__ import annotations

from logging import Logger

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.object_store import ObjectStore
from infra.settings import Settings
from tasks.common import object_store, retry_transient, stage, step_artifact, timed, usage_store
from validation.formats import UsageFileError, read_usage_file
from validation.usage import conform_raw


def read_usage_objects(
    source: ObjectStore, manifest: list[tuple[str, int, str]], progress: Logger | None = None
) -> pl.DataFrame:
    """Every row of every manifest object, as text, with `source_key` and `source_row`."""
    frames = []
    for number, (key, size, _etag) in enumerate(manifest, start=1):
        body = source.get(key)
        if len(body) != size:
            # Replaced between discover and load: the manifest would not be the truth.
            raise UsageFileError(
                f"{key}: changed since discover ({size} bytes listed, {len(body)} read); "
                "run the period again"
            )
        frame = read_usage_file(key, body)
        try:
            frames.append(conform_raw(frame))
        except ValueError as exc:
            raise UsageFileError(f"{key}: {exc}") from exc
        if progress is not None and (number % 25 == 0 or number == len(manifest)):
            progress.info("load: %d/%d files read", number, len(manifest))
    if frames:
        return pl.concat(frames, how="diagonal")
    columns = ("event_id", "account_id", "metric", "quantity", "timestamp", "source_key")
    return conform_raw(
        pl.DataFrame(
            {c: [] for c in (*columns, "source_row")}, schema_overrides={"source_row": pl.Int64}
        )
    )


@task(
    name="load",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def load(settings: Settings, run_id: str, manifest: list[tuple[str, int, str]]) -> int:
    """Stage `raw.parquet`; returns the number of rows read (every row, good or bad)."""
    logger = get_run_logger()
    with timed() as clock:
        raw = read_usage_objects(usage_store(settings), manifest, logger)  # type: ignore[arg-type]
        stage(object_store(settings), run_id, "raw", raw)
    logger.info("load: %d rows from %d files", raw.height, len(manifest))
    step_artifact("load", run_id, {"files": len(manifest), "rows read": raw.height}, clock.seconds)
    return raw.height
