"""Behaviour of infra.object_store on both backends: a local folder and S3 (moto's HTTP
server, reached through boto3 over real sockets; no mock_aws)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.retries.standard
import polars as pl
import pytest

from infra.object_store import (
    InvalidKeyError,
    LocalFolderStore,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
    S3Store,
    open_store,
)
from tests.support.s3 import (
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
    FaultProxy,
    shared_s3_client,
)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def open_s3(url: str, endpoint_url: str, **kwargs: Any) -> S3Store:
    store = open_store(
        url,
        endpoint_url=endpoint_url,
        access_key_id=TEST_ACCESS_KEY_ID,
        secret_access_key=TEST_SECRET_ACCESS_KEY,
        **kwargs,
    )
    assert isinstance(store, S3Store)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("moto_endpoint")
    # A key prefix, so that the tests also check keys come back relative to the root.
    return open_s3(f"s3://{bucket}/store-root", endpoint)


@pytest.fixture
def backoff_delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Keep botocore's standard-mode backoff (SlowDown backs off 1 s, 2 s, 4 s, ... with
    jitter) out of the test run time: record each computed delay, sleep 10 ms at most."""
    delays: list[float] = []
    original = botocore.retries.standard.ExponentialBackoff.delay_amount

    def delay_amount(self: Any, context: Any) -> float:
        delay = float(original(self, context))
        delays.append(delay)
        return min(delay, 0.01)

    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", delay_amount)
    return delays


# --------------------------------------------------------------------------------------
# Both backends
# --------------------------------------------------------------------------------------


def test_store_satisfies_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert store.url.startswith(("file:///", "s3://"))


def test_put_get_head_and_overwrite(store: ObjectStore) -> None:
    info = store.put("runs/r1/rated.parquet", b"first", content_type="application/x-parquet")
    assert info == ObjectInfo("runs/r1/rated.parquet", 5, md5(b"first"))
    assert store.get("runs/r1/rated.parquet") == b"first"
    assert store.head("runs/r1/rated.parquet") == info

    again = store.put("runs/r1/rated.parquet", b"second!")
    assert again == ObjectInfo("runs/r1/rated.parquet", 7, md5(b"second!"))
    assert store.get("runs/r1/rated.parquet") == b"second!"
    assert store.head("runs/r1/rated.parquet") == again


def test_empty_object(store: ObjectStore) -> None:
    assert store.put("empty", b"") == ObjectInfo("empty", 0, md5(b""))
    assert store.get("empty") == b""


def test_head_missing_is_none(store: ObjectStore) -> None:
    assert store.head("nope/missing.parquet") is None
    store.put("nope/other", b"x")
    assert store.head("nope") is None  # a "folder" is not an object


def test_get_missing_raises_clear_error(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError) as excinfo:
        store.get("invoices/2026-11/missing.pdf")
    err = excinfo.value
    assert isinstance(err, ObjectStoreError)
    message = str(err)
    assert "get" in message
    assert store.url in message
    assert "invoices/2026-11/missing.pdf" in message
    assert (err.operation, err.url, err.key) == ("get", store.url, "invoices/2026-11/missing.pdf")


def test_list_is_recursive_sorted_and_relative(store: ObjectStore) -> None:
    keys = [
        "usage/2026-11/b.csv",
        "runs/r10/x.parquet",
        "runs/r1/b.parquet",
        "runs/r1/a.parquet",
        "runs/r1/deep/er/c.parquet",
        "invoices/INV-1.pdf",
        "runs-summary.json",
    ]
    for i, key in enumerate(keys):
        store.put(key, b"x" * i)

    listed = store.list("")
    assert [o.key for o in listed] == sorted(keys)
    assert {o.key: (o.size, o.etag) for o in listed} == {
        key: (i, md5(b"x" * i)) for i, key in enumerate(keys)
    }

    assert [o.key for o in store.list("runs/r1/")] == [
        "runs/r1/a.parquet",
        "runs/r1/b.parquet",
        "runs/r1/deep/er/c.parquet",
    ]
    # A prefix is a string prefix, not a folder: "runs/r1" also matches "runs/r10/...".
    assert [o.key for o in store.list("runs/r1")] == [
        "runs/r1/a.parquet",
        "runs/r1/b.parquet",
        "runs/r1/deep/er/c.parquet",
        "runs/r10/x.parquet",
    ]
    assert [o.key for o in store.list("runs")] == [
        "runs-summary.json",
        "runs/r1/a.parquet",
        "runs/r1/b.parquet",
        "runs/r1/deep/er/c.parquet",
        "runs/r10/x.parquet",
    ]
    assert store.list("nothing/here/") == []
    assert store.list("runs/r2") == []


def test_put_if_absent_never_overwrites(store: ObjectStore) -> None:
    assert store.put_if_absent("runs/r1/_claimed", b"worker-a") is True
    assert store.put_if_absent("runs/r1/_claimed", b"worker-b") is False
    assert store.get("runs/r1/_claimed") == b"worker-a"
    assert store.head("runs/r1/_claimed") == ObjectInfo("runs/r1/_claimed", 8, md5(b"worker-a"))
    # An existing object written by plain put counts as present too.
    store.put("invoices/INV-7.pdf", b"pdf")
    assert store.put_if_absent("invoices/INV-7.pdf", b"other") is False
    assert store.get("invoices/INV-7.pdf") == b"pdf"


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "runs/../../outside",
    "runs//x",
    "./x",
    "runs/.",
    "a\\b",
]
BAD_PREFIXES = ["/abs", "../", "runs/../..", "a//"]


def test_invalid_keys_rejected(store: ObjectStore) -> None:
    # One test over all bad keys (not parametrized) to keep S3 bucket setups down.
    for bad_key in BAD_KEYS:
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (store.put, (bad_key, b"x")),
            (store.put_if_absent, (bad_key, b"x")),
            (store.get, (bad_key,)),
            (store.head, (bad_key,)),
            (store.uri, (bad_key,)),
        ]
        for method, args in calls:
            with pytest.raises(InvalidKeyError, match=r"keys? ") as excinfo:
                method(*args)
            assert store.url in str(excinfo.value)
    for bad_prefix in BAD_PREFIXES:
        with pytest.raises(InvalidKeyError):
            store.list(bad_prefix)
    assert store.list("") == []


def test_uri_is_readable_by_polars(store: ObjectStore) -> None:
    frame = pl.DataFrame({"account": ["a", "b"], "cents": [125, 9900]})
    buf = io.BytesIO()
    frame.write_parquet(buf)
    store.put("runs/r1/rated.parquet", buf.getvalue())

    options = store.polars_storage_options()
    uri = store.uri("runs/r1/rated.parquet")
    assert pl.read_parquet(uri, storage_options=options).equals(frame)
    lazy = pl.scan_parquet(uri, storage_options=options).filter(pl.col("cents") > 200)
    assert lazy.collect()["account"].to_list() == ["b"]


# --------------------------------------------------------------------------------------
# Local folder specifics
# --------------------------------------------------------------------------------------


def test_local_rejects_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalFolderStore(tmp_path / "store")
    (store.root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKeyError, match="outside the store"):
        store.put("link/x", b"x")
    assert list(outside.iterdir()) == []


def test_local_writes_leave_no_temp_files_and_skip_stray_ones(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    store.put("runs/r1/a", b"1")
    store.put("runs/r1/a", b"2")
    assert store.put_if_absent("runs/r1/a", b"3") is False
    assert store.put_if_absent("runs/r1/b", b"4") is True
    assert sorted(p.name for p in (store.root / "runs" / "r1").iterdir()) == ["a", "b"]
    # A temp file left behind by a crash is never listed as an object.
    (store.root / "runs" / "r1" / ".~tmp.deadbeef").write_bytes(b"partial")
    assert [o.key for o in store.list("")] == ["runs/r1/a", "runs/r1/b"]
    with pytest.raises(InvalidKeyError):
        store.put(".~tmp.x", b"x")


def test_local_put_if_absent_has_one_winner_under_contention(tmp_path: Path) -> None:
    # Local only: moto's conditional write is a check-then-put without a lock, so it does
    # not model S3's atomicity under concurrent requests.
    store = LocalFolderStore(tmp_path / "store")
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        barrier.wait()
        won = store.put_if_absent("runs/r1/_claimed", f"worker-{i}".encode())
        with lock:
            results.append(won)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(results) == [False] * 7 + [True]
    assert store.get("runs/r1/_claimed").startswith(b"worker-")


def test_local_key_below_a_file_is_missing(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    store.put("runs", b"a file, not a folder")
    assert store.head("runs/r1/x") is None
    with pytest.raises(ObjectNotFoundError):
        store.get("runs/r1/x")
    assert store.list("runs/r1/") == []


def test_local_etag_follows_content_changes(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    store.put("k", b"one")
    assert store.head("k") == ObjectInfo("k", 3, md5(b"one"))
    # Replaced behind the store's back (e.g. by another process): the etag follows.
    path = store.root / "k"
    tmp = tmp_path / "replacement"
    tmp.write_bytes(b"two!")
    os.replace(tmp, path)
    assert store.head("k") == ObjectInfo("k", 4, md5(b"two!"))


# --------------------------------------------------------------------------------------
# open_store
# --------------------------------------------------------------------------------------


def test_open_store_local_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a store"
    by_url = open_store(target.as_uri())
    assert isinstance(by_url, LocalFolderStore)
    assert by_url.root == target.resolve()
    assert by_url.url == target.resolve().as_uri()
    assert target.is_dir()

    by_path = open_store(str(target))
    assert isinstance(by_path, LocalFolderStore)
    assert by_path.root == target.resolve()

    monkeypatch.chdir(tmp_path)
    relative = open_store(".tallyflow/store")
    assert isinstance(relative, LocalFolderStore)
    assert relative.root == (tmp_path / ".tallyflow" / "store").resolve()
    assert relative.url.startswith("file:///")


@pytest.mark.parametrize(
    "url", ["", "gs://bucket/x", "s3://", "s3:///prefix", "file://host/x", "s3://b/a/../c"]
)
def test_open_store_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|prefix"):
        open_store(url)


def test_open_store_s3_client_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No request is made: building a client is offline. Keep the machine's AWS
    # configuration out of it.
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    store = open_store(
        "s3://billing-bucket/env/prod/",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="AKID",
        secret_access_key="SECRET",
        max_attempts=7,
        connect_timeout=1.5,
        read_timeout=12.0,
    )
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.url) == (
        "billing-bucket",
        "env/prod",
        "s3://billing-bucket/env/prod",
    )
    config = store.client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 7}
    assert (config.connect_timeout, config.read_timeout) == (1.5, 12.0)
    assert config.s3 == {"addressing_style": "path"}
    assert store.client.meta.region_name == "us-east-1"
    assert store.uri("runs/r1/x.parquet") == "s3://billing-bucket/env/prod/runs/r1/x.parquet"
    assert store.polars_storage_options() == {
        "aws_region": "us-east-1",
        "aws_endpoint_url": "http://127.0.0.1:9",
        "aws_allow_http": "true",
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": "SECRET",
    }

    eu = open_store("s3://b-eu", region="eu-west-1", access_key_id="A", secret_access_key="S")
    assert isinstance(eu, S3Store)
    assert eu.client.meta.region_name == "eu-west-1"
    assert eu.client.meta.config.s3 is None  # virtual-hosted style on AWS itself
    assert eu.prefix == ""
    assert eu.uri("k") == "s3://b-eu/k"

    with pytest.raises(ValueError, match="both"):
        open_store("s3://b", access_key_id="only-the-id")


def test_errors_pickle_round_trip() -> None:
    for cls in (ObjectStoreError, ObjectNotFoundError, InvalidKeyError):
        err = cls("get", "s3://b/p", "runs/r1/x", "no such object")
        copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
        assert type(copy) is cls
        assert str(copy) == str(err)
        assert (copy.operation, copy.url, copy.key, copy.detail) == (
            "get",
            "s3://b/p",
            "runs/r1/x",
            "no such object",
        )


# --------------------------------------------------------------------------------------
# S3 specifics
# --------------------------------------------------------------------------------------


def test_s3_list_paginates(s3_bucket: str, moto_endpoint: str) -> None:
    store = open_s3(f"s3://{s3_bucket}/p", moto_endpoint)
    store = S3Store(s3_bucket, "p", client=store.client, endpoint_url=moto_endpoint, page_size=3)
    calls: list[dict[str, Any]] = []
    store.client.meta.events.register(
        "before-call.s3.ListObjectsV2",
        lambda params, **_: calls.append(params),
    )
    keys = [f"runs/r1/part-{i:02d}.parquet" for i in range(10)]
    for key in reversed(keys):
        store.put(key, key.encode())
    assert [o.key for o in store.list("runs/")] == keys
    assert len(calls) == 4  # 3 + 3 + 3 + 1


def test_s3_store_prefix_isolates_siblings(s3_bucket: str, moto_endpoint: str) -> None:
    a = open_s3(f"s3://{s3_bucket}/tenant", moto_endpoint)
    ab = open_s3(f"s3://{s3_bucket}/tenant-b", moto_endpoint)
    a.put("x", b"a")
    ab.put("x", b"ab")
    assert [o.key for o in a.list("")] == ["x"]
    assert a.get("x") == b"a"
    client = shared_s3_client(moto_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["tenant-b/x", "tenant/x"]


def test_s3_list_skips_folder_markers(s3_bucket: str, moto_endpoint: str) -> None:
    client = shared_s3_client(moto_endpoint)
    client.put_object(Bucket=s3_bucket, Key="root/", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="root/runs/", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="root/runs/a", Body=b"a")
    store = open_s3(f"s3://{s3_bucket}/root", moto_endpoint)
    assert [o.key for o in store.list("")] == ["runs/a"]


def test_s3_content_type_is_stored(s3_bucket: str, moto_endpoint: str) -> None:
    store = open_s3(f"s3://{s3_bucket}", moto_endpoint)
    store.put("invoices/INV-1.pdf", b"%PDF", content_type="application/pdf")
    store.put_if_absent("invoices/INV-2.pdf", b"%PDF", content_type="application/pdf")
    client = shared_s3_client(moto_endpoint)
    for key in ("invoices/INV-1.pdf", "invoices/INV-2.pdf"):
        assert client.head_object(Bucket=s3_bucket, Key=key)["ContentType"] == "application/pdf"


def test_s3_missing_bucket_is_a_clear_error(moto_endpoint: str) -> None:
    store = open_s3("s3://tallyflow-no-such-bucket", moto_endpoint, max_attempts=1)
    with pytest.raises(ObjectStoreError, match="NoSuchBucket") as excinfo:
        store.put("k", b"x")
    assert "s3://tallyflow-no-such-bucket" in str(excinfo.value)
    assert not isinstance(excinfo.value, ObjectNotFoundError)


# --------------------------------------------------------------------------------------
# Retries through the fault-injecting proxy
# --------------------------------------------------------------------------------------


@pytest.fixture
def proxied_bucket(s3_bucket: str, fault_proxy: FaultProxy) -> Iterator[str]:
    yield s3_bucket
    assert fault_proxy.pending_faults == 0, "a test left injected faults unused"


def test_503s_are_retried_until_success(
    proxied_bucket: str, fault_proxy: FaultProxy, backoff_delays: list[float]
) -> None:
    store = open_s3(f"s3://{proxied_bucket}", fault_proxy.endpoint_url, max_attempts=5)
    fault_proxy.fail_next(3)
    assert store.put("runs/r1/a.parquet", b"payload") == ObjectInfo(
        "runs/r1/a.parquet", 7, md5(b"payload")
    )
    assert fault_proxy.request_count == 4
    assert [r.outcome for r in fault_proxy.requests] == ["503", "503", "503", "forwarded"]
    assert len(backoff_delays) == 3  # botocore's standard retry mode did the retrying

    fault_proxy.clear()
    fault_proxy.fail_next(3)
    assert store.get("runs/r1/a.parquet") == b"payload"
    assert fault_proxy.request_count == 4


def test_put_if_absent_survives_503s(
    proxied_bucket: str, fault_proxy: FaultProxy, backoff_delays: list[float]
) -> None:
    store = open_s3(f"s3://{proxied_bucket}", fault_proxy.endpoint_url, max_attempts=5)
    fault_proxy.fail_next(2)
    assert store.put_if_absent("runs/r1/_claimed", b"a") is True
    fault_proxy.fail_next(2)
    assert store.put_if_absent("runs/r1/_claimed", b"b") is False
    assert fault_proxy.request_count == 6
    assert store.get("runs/r1/_claimed") == b"a"


def test_connection_resets_are_retried(
    proxied_bucket: str, fault_proxy: FaultProxy, backoff_delays: list[float]
) -> None:
    store = open_s3(f"s3://{proxied_bucket}", fault_proxy.endpoint_url, max_attempts=5)
    fault_proxy.reset_next(2)
    store.put("usage/2026-11/calls.csv", b"a,b\n1,2\n")
    assert [r.outcome for r in fault_proxy.requests] == ["reset", "reset", "forwarded"]

    fault_proxy.clear()
    fault_proxy.reset_next(2)
    assert store.get("usage/2026-11/calls.csv") == b"a,b\n1,2\n"
    fault_proxy.reset_next(1)
    assert [o.key for o in store.list("usage/")] == ["usage/2026-11/calls.csv"]
    fault_proxy.reset_next(1)
    assert store.head("usage/2026-11/calls.csv") is not None
    assert fault_proxy.request_count == 3 + 2 + 2
    assert len(backoff_delays) == 6


def test_retry_limit_gives_clear_error(
    proxied_bucket: str, fault_proxy: FaultProxy, backoff_delays: list[float]
) -> None:
    store = open_s3(f"s3://{proxied_bucket}", fault_proxy.endpoint_url, max_attempts=2)
    fault_proxy.fail_next(5)
    with pytest.raises(ObjectStoreError) as excinfo:
        store.put("runs/r1/a.parquet", b"payload")
    message = str(excinfo.value)
    assert "put" in message
    assert f"s3://{proxied_bucket}" in message
    assert "runs/r1/a.parquet" in message
    assert "SlowDown" in message
    assert "503" in message
    assert "2 attempts" in message
    assert fault_proxy.request_count == 2
    fault_proxy.clear()  # 3 of the 5 faults were never used
    assert store.head("runs/r1/a.parquet") is None


def test_resets_beyond_retry_limit_give_clear_error(
    proxied_bucket: str, fault_proxy: FaultProxy, backoff_delays: list[float]
) -> None:
    store = open_s3(f"s3://{proxied_bucket}", fault_proxy.endpoint_url, max_attempts=2)
    fault_proxy.reset_next(2)
    with pytest.raises(ObjectStoreError) as excinfo:
        store.get("runs/r1/a.parquet")
    assert not isinstance(excinfo.value, ObjectNotFoundError)
    message = str(excinfo.value)
    assert "get" in message
    assert f"s3://{proxied_bucket}" in message
    assert "runs/r1/a.parquet" in message
    assert fault_proxy.request_count == 2


def test_download_breaking_off_is_retried(
    proxied_bucket: str, fault_proxy: FaultProxy, backoff_delays: list[float]
) -> None:
    store = open_s3(f"s3://{proxied_bucket}", fault_proxy.endpoint_url, max_attempts=3)
    payload = os.urandom(256 * 1024)
    store.put("usage/big.csv", payload)
    fault_proxy.clear()
    fault_proxy.truncate_next(2)
    assert store.get("usage/big.csv") == payload
    assert [r.outcome for r in fault_proxy.requests] == ["truncated", "truncated", "forwarded"]
    assert backoff_delays == []  # S3Store.get retried the download, not botocore


def test_download_breaking_off_every_time_gives_clear_error(
    proxied_bucket: str, fault_proxy: FaultProxy, backoff_delays: list[float]
) -> None:
    store = open_s3(f"s3://{proxied_bucket}", fault_proxy.endpoint_url, max_attempts=2)
    store.put("usage/big.csv", os.urandom(256 * 1024))
    fault_proxy.truncate_next(2)
    with pytest.raises(ObjectStoreError, match="broke off, 2 attempts") as excinfo:
        store.get("usage/big.csv")
    assert "usage/big.csv" in str(excinfo.value)
