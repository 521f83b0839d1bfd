"""Usage files of any supported format, read into one raw frame shape."""

from __future__ import annotations

import gzip
import io
import json

import polars as pl

from validation.schemas import RAW_USAGE_COLUMNS

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
        if not data.strip() and name.endswith((".csv", ".jsonl", ".ndjson")):
            frame = pl.DataFrame(schema=dict.fromkeys(RAW_USAGE_COLUMNS, pl.String))
        elif name.endswith(".parquet"):
            frame = pl.read_parquet(io.BytesIO(data))
        elif name.endswith(".csv"):
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
        elif name.endswith((".jsonl", ".ndjson")):
            frame = _read_json_lines(data)
        else:
            raise UsageFileError(f"{key}: unsupported usage file type")
    except UsageFileError as exc:
        raise UsageFileError(f"{key}: cannot be read: {exc}") from exc
    except (pl.exceptions.PolarsError, OSError, EOFError) as exc:
        raise UsageFileError(f"{key}: cannot be read: {exc}") from exc
    return frame.with_columns(
        pl.lit(key).alias("source_key"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
    )


def _read_json_lines(data: bytes) -> pl.DataFrame:
    """JSON Lines with every value as text. Numbers keep every digit: Polars' own reader
    parses them as Float64 first, which would change a long quantity before validation."""
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=str, parse_int=str)
        except json.JSONDecodeError as exc:
            raise UsageFileError(f"line {number} is not JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise UsageFileError(f"line {number} is not a JSON object")
        rows.append({k: None if v is None else _text(v) for k, v in record.items()})
    if not rows:
        return pl.DataFrame(schema=dict.fromkeys(RAW_USAGE_COLUMNS, pl.String))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String))


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
