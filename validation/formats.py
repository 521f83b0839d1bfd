"""Usage files of any supported format, read into one raw frame shape."""

from __future__ import annotations

import gzip
import io

import polars as pl

USAGE_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")


class UsageFileError(ValueError):
    """A file could not be read at all; its rows are unknown, so the run must stop."""


def is_usage_file(key: str) -> bool:
    return key.endswith(USAGE_SUFFIXES)


def read_usage_file(key: str, body: bytes) -> pl.DataFrame:
    """Parse Parquet, CSV or JSON Lines (optionally gzip) and add `source_key`/`source_row`.

    Text formats are read with every column as text, so a malformed value reaches
    validation (and quarantine) instead of failing the whole file.
    """
    try:
        data = gzip.decompress(body) if key.endswith(".gz") else body
        name = key.removesuffix(".gz")
        if name.endswith(".parquet"):
            frame = pl.read_parquet(io.BytesIO(data))
        elif name.endswith(".csv"):
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
        elif name.endswith((".jsonl", ".ndjson")):
            frame = _read_json_lines(data)
        else:
            raise UsageFileError(f"{key}: unsupported usage file type")
    except (pl.exceptions.PolarsError, OSError, EOFError) as exc:
        raise UsageFileError(f"{key}: cannot be read: {exc}") from exc
    return frame.with_columns(
        pl.lit(key).alias("source_key"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
    )


def _read_json_lines(data: bytes) -> pl.DataFrame:
    if not data.strip():
        return pl.DataFrame()
    frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    return frame.select(
        pl.col(name).cast(pl.String) if not isinstance(dtype, pl.Datetime) else pl.col(name)
        for name, dtype in frame.schema.items()
    )
