"""validation.formats: Parquet, CSV and JSON Lines (optionally gzip) into one raw shape."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from validation.formats import UsageFileError, is_usage_file, read_usage_file
from validation.schemas import RAW_USAGE_COLUMNS
from validation.usage import conform_raw

EVENTS = [
    {
        "event_id": "e1",
        "account_id": "A",
        "metric": "voice",
        "quantity": "90",
        "unit": "s",
        "timestamp": "2026-10-05T10:00:00Z",
        "destination": "+4420",
        "direction": "outbound",
    },
    {
        "event_id": "e2",
        "account_id": "B",
        "metric": "sms",
        "quantity": "1.5",
        "unit": "message",
        "timestamp": "2026-10-06T11:30:00.250Z",
        "destination": None,
        "direction": None,
    },
    {
        "event_id": "e3",
        "account_id": "B",
        "metric": "sms",
        "quantity": "not a number",
        "unit": "message",
        "timestamp": "yesterday",
        "destination": None,
        "direction": None,
    },
]


def expected(key: str) -> pl.DataFrame:
    """The conformed raw frame every format must give for EVENTS."""
    return pl.DataFrame(EVENTS, schema=dict.fromkeys(RAW_USAGE_COLUMNS, pl.String)).with_columns(
        pl.lit(key).alias("source_key"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
    )


def as_text_frame() -> pl.DataFrame:
    return pl.DataFrame(EVENTS, schema=dict.fromkeys(RAW_USAGE_COLUMNS, pl.String))


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    as_text_frame().write_parquet(buffer)
    return buffer.getvalue()


def csv_bytes() -> bytes:
    return as_text_frame().write_csv().encode()


def jsonl_bytes() -> bytes:
    return "".join(json.dumps(event) + "\n" for event in EVENTS).encode()


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("usage/2026-10-05.parquet", parquet_bytes()),
        ("usage/2026-10-05.csv", csv_bytes()),
        ("usage/2026-10-05.csv.gz", gzip.compress(csv_bytes())),
        ("usage/2026-10-05.jsonl", jsonl_bytes()),
        ("usage/2026-10-05.jsonl.gz", gzip.compress(jsonl_bytes())),
        ("usage/2026-10-05.ndjson", jsonl_bytes()),
        ("usage/2026-10-05.ndjson.gz", gzip.compress(jsonl_bytes())),
    ],
    ids=["parquet", "csv", "csv.gz", "jsonl", "jsonl.gz", "ndjson", "ndjson.gz"],
)
def test_round_trip_with_provenance(key: str, body: bytes) -> None:
    frame = read_usage_file(key, body)
    assert frame["source_key"].to_list() == [key] * 3
    assert frame["source_row"].to_list() == [0, 1, 2]
    assert frame.schema["source_row"] == pl.Int64
    assert_frame_equal(conform_raw(frame), expected(key))


def test_text_formats_keep_malformed_values_as_text() -> None:
    # nothing is parsed on read, so a bad value reaches validation (and quarantine)
    for key, body in [("u.csv", csv_bytes()), ("u.jsonl", jsonl_bytes())]:
        frame = read_usage_file(key, body)
        assert frame["quantity"].to_list() == ["90", "1.5", "not a number"]
        assert frame["timestamp"][2] == "yesterday"


def test_jsonl_numbers_become_text() -> None:
    body = (
        b'{"event_id": "e1", "account_id": "A", "metric": "voice", "quantity": 1.5, '
        b'"unit": "min", "timestamp": "2026-10-05T10:00:00Z"}\n'
        b'{"event_id": "e2", "account_id": "A", "metric": "voice", "quantity": 60, '
        b'"unit": "s", "timestamp": "2026-10-05T10:00:00Z"}\n'
    )
    frame = read_usage_file("u.jsonl", body)
    assert frame.schema["quantity"] == pl.String
    # a column of mixed integers and decimals is read as floats first: 60 -> "60.0"
    assert [Decimal(q) for q in frame["quantity"]] == [Decimal("1.5"), Decimal(60)]


# Regression: JSON numbers once went through Float64 before becoming text.
def test_jsonl_numbers_keep_every_digit() -> None:
    # 1234567.123456789012 fits Decimal(38, 12) exactly; 12345678901234567 fits Int64
    body = (
        b'{"event_id": "e1", "quantity": 1234567.123456789012}\n'
        b'{"event_id": "e2", "quantity": 12345678901234567}\n'
        b'{"event_id": "e3", "quantity": 1.5}\n'
    )
    frame = read_usage_file("u.jsonl", body)
    assert [Decimal(q) for q in frame["quantity"]] == [
        Decimal("1234567.123456789012"),
        Decimal(12345678901234567),
        Decimal("1.5"),
    ]


def test_typed_parquet_is_conformed_to_text() -> None:
    typed = pl.DataFrame(
        {
            "event_id": ["e1"],
            "account_id": ["A"],
            "metric": ["voice"],
            "quantity": [1.5],
            "unit": ["min"],
            "timestamp": pl.Series(
                [datetime(2026, 10, 5, 10, 0, tzinfo=UTC)], dtype=pl.Datetime("ms", "UTC")
            ),
        }
    )
    buffer = io.BytesIO()
    typed.write_parquet(buffer)
    frame = read_usage_file("u.parquet", buffer.getvalue())
    assert frame.schema["timestamp"] == pl.Datetime("ms", "UTC")
    conformed = conform_raw(frame)
    assert conformed.row(0, named=True) == {
        "event_id": "e1",
        "account_id": "A",
        "metric": "voice",
        "quantity": "1.5",
        "unit": "min",
        "timestamp": "2026-10-05T10:00:00Z",
        "destination": None,
        "direction": None,
        "source_key": "u.parquet",
        "source_row": 0,
    }


def test_a_header_only_csv_has_no_rows() -> None:
    frame = read_usage_file("u.csv", b"event_id,account_id,metric,quantity,unit,timestamp\n")
    assert frame.height == 0
    assert conform_raw(frame).height == 0


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("usage/bad.parquet", b"this is not parquet", "cannot be read"),
        ("usage/cut.parquet", parquet_bytes()[:40], "cannot be read"),
        ("usage/bad.csv.gz", b"not gzip at all", "cannot be read"),
        ("usage/cut.jsonl.gz", gzip.compress(jsonl_bytes())[:25], "cannot be read"),
        ("usage/bad.jsonl", b'{"event_id": "e1", \n', "cannot be read"),
        ("usage/notes.xml", b"<usage/>", "unsupported usage file type"),
    ],
    ids=["not-parquet", "cut-parquet", "not-gzip", "cut-gzip", "bad-json", "xml"],
)
def test_corrupt_files_raise_usage_file_error(key: str, body: bytes, message: str) -> None:
    with pytest.raises(UsageFileError, match=message) as raised:
        read_usage_file(key, body)
    assert str(raised.value).startswith(f"{key}: ")


def test_usage_file_error_is_a_value_error() -> None:
    assert issubclass(UsageFileError, ValueError)


@pytest.mark.parametrize(
    ("key", "usage"),
    [
        ("a/b.parquet", True),
        ("a/b.csv", True),
        ("a/b.csv.gz", True),
        ("a/b.jsonl", True),
        ("a/b.jsonl.gz", True),
        ("a/b.ndjson", True),
        ("a/b.ndjson.gz", True),
        ("a/b.json", False),
        ("a/b.parquet.gz", False),
        ("a/_manifest", False),
        ("a/b.csv.bak", False),
    ],
)
def test_is_usage_file(key: str, usage: bool) -> None:
    assert is_usage_file(key) is usage


# Regression: an empty JSON Lines file once lost its columns and failed conform_raw.
@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("usage/quiet-hour.jsonl", b""),
        ("usage/quiet-hour.jsonl.gz", gzip.compress(b"")),
        ("usage/quiet-hour.csv", b""),
    ],
    ids=["jsonl", "jsonl.gz", "csv"],
)
def test_an_empty_text_file_has_no_rows(key: str, body: bytes) -> None:
    frame = conform_raw(read_usage_file(key, body))
    assert frame.height == 0
    assert frame.columns == [*RAW_USAGE_COLUMNS, "source_key", "source_row"]
