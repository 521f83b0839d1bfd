"""Object storage for usage input, per-run staging and published invoices.

Two backends share the small :class:`ObjectStore` interface:

* :class:`LocalFolderStore` keeps objects as files below a root folder
  (``file:///abs/.tallyflow/store``). Writes are atomic: the body goes to a temporary
  file in the target folder, which is then renamed (``put``) or hard-linked
  (``put_if_absent``) into place.
* :class:`S3Store` keeps objects in an S3 bucket, optionally below a key prefix
  (``s3://bucket/prefix``). It works against AWS, MinIO and moto.

Keys are ``/``-separated relative paths such as ``runs/<run_id>/rated.parquet``. Both
backends reject keys that are empty, absolute, or contain empty, ``.`` or ``..``
segments, so that a key means the same object in both backends and its :meth:`uri` is
readable by Polars (whose object_store layer refuses such paths too).

Errors: every storage failure is raised as :class:`ObjectStoreError`, whose message names
the operation, the store URL and the key. ``get`` of a missing key raises
:class:`ObjectNotFoundError`, a subclass of :class:`ObjectStoreError` (not of ``KeyError``).
Invalid keys raise :class:`InvalidKeyError`, also a subclass. Invalid store URLs passed to
:func:`open_store` raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import boto3
import botocore.exceptions
from botocore.config import Config

__all__ = [
    "InvalidKeyError",
    "LocalFolderStore",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "S3Store",
    "open_store",
]

DEFAULT_REGION = "us-east-1"
# Temporary files written by LocalFolderStore start with this; listing skips them and keys
# may not use it.
_TMP_MARKER = ".~tmp."
_HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object."""

    key: str  # relative to the store root
    size: int  # bytes
    etag: str  # S3: ETag without quotes; local: md5 hex digest of the content


class ObjectStoreError(RuntimeError):
    """A storage operation failed. The message names the operation, store URL and key."""

    def __init__(self, operation: str, url: str, key: str | None, detail: str) -> None:
        self.operation = operation
        self.url = url
        self.key = key
        self.detail = detail
        where = url if key is None else f"{url} key {key!r}"
        super().__init__(f"object store {operation} failed for {where}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle with the constructor's arguments (Prefect and Dask pickle exceptions).
        return (type(self), (self.operation, self.url, self.key, self.detail))


class ObjectNotFoundError(ObjectStoreError):
    """``get`` was asked for a key that does not exist."""


class InvalidKeyError(ObjectStoreError):
    """The key (or list prefix) is not a valid relative object key."""


@runtime_checkable
class ObjectStore(Protocol):
    """What the pipeline needs from object storage."""

    url: str

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """All objects whose key starts with ``prefix`` (recursive), sorted by key.

        ``prefix`` is a plain string prefix: ``"runs/r1"`` also matches ``"runs/r10/x"``;
        use ``"runs/r1/"`` for one folder."""
        ...

    def get(self, key: str) -> bytes:
        """The object's content. A missing key raises :class:`ObjectNotFoundError`."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or ``None`` when it does not exist."""
        ...

    def put(self, key: str, body: bytes, content_type: str | None = None) -> ObjectInfo:
        """Write (or overwrite) the object."""
        ...

    def put_if_absent(self, key: str, body: bytes, content_type: str | None = None) -> bool:
        """Write the object only if the key does not exist yet; True if it was written."""
        ...

    def uri(self, key: str) -> str:
        """A local path or ``s3://`` URI for the key that Polars can read."""
        ...

    def polars_storage_options(self) -> dict[str, str]:
        """``storage_options`` to pass to Polars along with :meth:`uri` (``{}`` locally)."""
        ...


def _validate_key(url: str, operation: str, key: str) -> None:
    if not key:
        raise InvalidKeyError(operation, url, key, "the key is empty")
    _validate_path_like(url, operation, key, key.split("/"))


def _validate_prefix(url: str, operation: str, prefix: str) -> None:
    # A list prefix need not end on a segment boundary ("runs/ab" matches "runs/abc/x"),
    # and may end with "/"; only the complete segments before the last one are checked,
    # plus the last one for "." and "..".
    if not prefix:
        return
    parts = prefix.split("/")
    if parts[-1] == "":
        parts = parts[:-1]
    _validate_path_like(url, operation, prefix, parts)


def _validate_path_like(url: str, operation: str, key: str, parts: list[str]) -> None:
    if key.startswith("/"):
        raise InvalidKeyError(operation, url, key, "keys must be relative, not start with '/'")
    if "\\" in key or "\x00" in key:
        raise InvalidKeyError(operation, url, key, "keys may not contain '\\' or NUL")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidKeyError(
                operation, url, key, "keys may not contain empty, '.' or '..' segments"
            )
        if part.startswith(_TMP_MARKER):
            raise InvalidKeyError(
                operation, url, key, f"key segments may not start with {_TMP_MARKER!r}"
            )


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------------------
# Local folder
# --------------------------------------------------------------------------------------


class LocalFolderStore:
    """Objects as files below ``root``. The folder is created if it does not exist."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreError("open", self.url, None, str(exc)) from exc
        # (inode, size, mtime_ns) -> md5; files are only ever replaced, never edited in
        # place, so a changed file has a new inode or mtime.
        self._md5_cache: dict[tuple[str, int, int, int], str] = {}
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalFolderStore({str(self.root)!r})"

    def _path(self, operation: str, key: str) -> Path:
        _validate_key(self.url, operation, key)
        path = self.root.joinpath(*key.split("/"))
        # Symlinks inside the root could still point outside it.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKeyError(operation, self.url, key, "the key resolves outside the store")
        return path

    def _key_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _etag(self, path: Path, st: os.stat_result) -> str:
        cache_key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        with self._cache_lock:
            cached = self._md5_cache.get(cache_key)
        if cached is not None:
            return cached
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
        etag = digest.hexdigest()
        with self._cache_lock:
            if len(self._md5_cache) > 100_000:
                self._md5_cache.clear()
            self._md5_cache[cache_key] = etag
        return etag

    def _remember(self, path: Path, etag: str) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        with self._cache_lock:
            self._md5_cache[(str(path), st.st_ino, st.st_size, st.st_mtime_ns)] = etag

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        _validate_prefix(self.url, "list", prefix)
        # Walk only the deepest folder that is certainly inside the prefix.
        folder_parts = prefix.split("/")[:-1]
        start = self.root.joinpath(*folder_parts)
        found: list[ObjectInfo] = []
        try:
            for path in self._walk(start):
                key = self._key_of(path)
                if not key.startswith(prefix):
                    continue
                try:
                    st = path.stat()
                    found.append(ObjectInfo(key, st.st_size, self._etag(path, st)))
                except FileNotFoundError:
                    continue  # replaced or deleted while listing
        except OSError as exc:
            raise ObjectStoreError("list", self.url, prefix, str(exc)) from exc
        found.sort(key=lambda info: info.key)
        return found

    def _walk(self, start: Path) -> Iterator[Path]:
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_MARKER)]
            for name in filenames:
                if not name.startswith(_TMP_MARKER):
                    yield Path(dirpath, name)

    def get(self, key: str) -> bytes:
        path = self._path("get", key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError("get", self.url, key, "no such object") from None
        except IsADirectoryError:
            raise ObjectNotFoundError(
                "get", self.url, key, "no such object (it is a folder)"
            ) from None
        except OSError as exc:
            raise ObjectStoreError("get", self.url, key, str(exc)) from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path("head", key)
        try:
            st = path.stat()
            if not path.is_file():
                return None
            return ObjectInfo(key, st.st_size, self._etag(path, st))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise ObjectStoreError("head", self.url, key, str(exc)) from exc

    def put(self, key: str, body: bytes, content_type: str | None = None) -> ObjectInfo:
        """Atomically write ``key``; ``content_type`` is ignored by this backend."""
        path = self._path("put", key)
        try:
            with self._tmp_file(path, body) as tmp:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise ObjectStoreError("put", self.url, key, str(exc)) from exc
        etag = _md5_hex(body)
        self._remember(path, etag)
        return ObjectInfo(key, len(body), etag)

    def put_if_absent(self, key: str, body: bytes, content_type: str | None = None) -> bool:
        """Create ``key`` atomically unless it exists: the fully written temporary file is
        hard-linked into place, which fails if the name is taken. On file systems
        without hard links it falls back to ``O_CREAT | O_EXCL``, where a concurrent
        reader may briefly see a partly written file."""
        path = self._path("put_if_absent", key)
        try:
            with self._tmp_file(path, body) as tmp:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    if not self._create_exclusive(path, body):
                        return False
            _fsync_dir(path.parent)
        except OSError as exc:
            raise ObjectStoreError("put_if_absent", self.url, key, str(exc)) from exc
        self._remember(path, _md5_hex(body))
        return True

    @staticmethod
    def _create_exclusive(path: Path, body: bytes) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    @contextlib.contextmanager
    def _tmp_file(self, path: Path, body: bytes) -> Iterator[Path]:
        """A fully written, fsynced temporary file next to ``path``; removed afterwards."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{_TMP_MARKER}{uuid.uuid4().hex}")
        try:
            with tmp.open("xb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def uri(self, key: str) -> str:
        """The absolute file path of ``key`` (Polars reads plain paths)."""
        return str(self._path("uri", key))

    def polars_storage_options(self) -> dict[str, str]:
        """No options are needed for local files."""
        return {}


def _fsync_dir(folder: Path) -> None:
    """Make a rename/link in ``folder`` durable (best effort; not all systems allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------


class S3Store:
    """Objects in ``bucket`` below ``prefix`` (no leading or trailing ``/`` needed).

    ``client`` is a boto3 S3 client; its retry/timeout configuration applies to every
    call (see :func:`open_store`). ``page_size`` is the ``MaxKeys`` of each
    ListObjectsV2 page (S3 caps it at 1000). ``endpoint_url`` and ``credentials`` are
    only used by :meth:`polars_storage_options`.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any,
        endpoint_url: str | None = None,
        credentials: Any = None,
        page_size: int = 1000,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000, not {page_size}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if self.prefix:
            try:
                _validate_key(self.url, "open", self.prefix)
            except InvalidKeyError as exc:
                raise ValueError(f"invalid S3 store prefix {prefix!r}: {exc.detail}") from None
        self.client = client
        self.endpoint_url = endpoint_url
        self._credentials = credentials
        self.page_size = page_size

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _full_key(self, operation: str, key: str) -> str:
        _validate_key(self.url, operation, key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(
        self, operation: str, key: str | None, exc: Exception, *, note: str = ""
    ) -> ObjectStoreError:
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode", "?")
            code = err.get("Code", "?")
            message = err.get("Message") or ""
            detail = f"{code} (HTTP {status})" + (f": {message}" if message else "")
            attempts = meta.get("RetryAttempts")
            if attempts:
                detail += f" after {int(attempts) + 1} attempts"
                if meta.get("MaxAttemptsReached"):
                    detail += " (retry limit reached)"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        if note:
            detail += f" ({note})"
        return ObjectStoreError(operation, self.url, key, detail)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        _validate_prefix(self.url, "list", prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": root + prefix,
            "MaxKeys": self.page_size,
        }
        found: list[ObjectInfo] = []
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                for item in page.get("Contents", []):
                    full_key = str(item["Key"])
                    if full_key.endswith("/"):
                        continue  # a console "folder" marker, not an object
                    found.append(
                        ObjectInfo(
                            full_key[len(root) :],
                            int(item["Size"]),
                            str(item.get("ETag", "")).strip('"'),
                        )
                    )
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
                kwargs["ContinuationToken"] = token
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("list", prefix, exc) from exc
        found.sort(key=lambda info: info.key)
        return found

    def get(self, key: str) -> bytes:
        """Download the object. botocore retries failed requests, but not a connection
        that breaks while the body is streaming; such reads are retried here, up to the
        client's total attempt limit."""
        full_key = self._full_key("get", key)
        attempts = self._max_attempts()
        for attempt in range(1, attempts + 1):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full_key)
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in ("NoSuchKey", "404"):
                    raise ObjectNotFoundError("get", self.url, key, "no such object") from None
                raise self._error("get", key, exc) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error("get", key, exc) from exc
            try:
                body: bytes = response["Body"].read()
            except _BODY_READ_ERRORS as exc:
                response["Body"].close()
                if attempt >= attempts:
                    note = f"the download broke off, {attempt} attempts"
                    raise self._error("get", key, exc, note=note) from exc
                time.sleep(random.uniform(0, min(0.05 * 2**attempt, 2.0)))
                continue
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    def _max_attempts(self) -> int:
        retries = getattr(self.client.meta.config, "retries", None) or {}
        total = retries.get("total_max_attempts")
        if total is None and retries.get("max_attempts") is not None:
            total = int(retries["max_attempts"]) + 1
        return max(1, int(total or 3))

    def head(self, key: str) -> ObjectInfo | None:
        full_key = self._full_key("head", key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=full_key)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error("head", key, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error("head", key, exc) from exc
        return ObjectInfo(key, int(response["ContentLength"]), str(response["ETag"]).strip('"'))

    def _put_kwargs(self, full_key: str, body: bytes, content_type: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full_key, "Body": body}
        if content_type is not None:
            kwargs["ContentType"] = content_type
        return kwargs

    def put(self, key: str, body: bytes, content_type: str | None = None) -> ObjectInfo:
        full_key = self._full_key("put", key)
        try:
            response = self.client.put_object(**self._put_kwargs(full_key, body, content_type))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("put", key, exc) from exc
        return ObjectInfo(key, len(body), str(response.get("ETag", "")).strip('"'))

    def put_if_absent(self, key: str, body: bytes, content_type: str | None = None) -> bool:
        """Conditional PutObject with ``IfNoneMatch="*"`` (S3 conditional writes; moto 5
        and MinIO support it too), so the check and the write are one atomic request.

        ``412 PreconditionFailed`` means the key exists: returns False. ``409
        ConditionalRequestConflict`` (a concurrent conditional write to the same key) is
        retried a few times, as AWS recommends. Caveat: if a write succeeded but its
        response was lost and botocore retried it, the retry sees our own object and this
        returns False; callers should treat False as "the key exists", not "someone else
        wrote it".
        """
        full_key = self._full_key("put_if_absent", key)
        kwargs = self._put_kwargs(full_key, body, content_type)
        kwargs["IfNoneMatch"] = "*"
        for attempt in range(1, 6):
            try:
                self.client.put_object(**kwargs)
            except botocore.exceptions.ClientError as exc:
                code = _error_code(exc)
                if code == "PreconditionFailed":
                    return False
                if code == "ConditionalRequestConflict" and attempt < 5:
                    continue
                raise self._error("put_if_absent", key, exc) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error("put_if_absent", key, exc) from exc
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full_key('uri', key)}"

    def polars_storage_options(self) -> dict[str, str]:
        """``storage_options`` for ``pl.scan_parquet(store.uri(key), storage_options=...)``.

        Contains ``aws_region``, plus ``aws_endpoint_url`` (and ``aws_allow_http`` for an
        ``http://`` endpoint) when a custom endpoint is used, and the resolved
        credentials (``aws_access_key_id``, ``aws_secret_access_key`` and, if any,
        ``aws_session_token``). Without known credentials Polars uses its own AWS
        credential chain. The dict holds secrets: do not log it.
        """
        options: dict[str, str] = {"aws_region": str(self.client.meta.region_name)}
        if self.endpoint_url:
            options["aws_endpoint_url"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        if self._credentials is not None:
            frozen = self._credentials.get_frozen_credentials()
            options["aws_access_key_id"] = str(frozen.access_key)
            options["aws_secret_access_key"] = str(frozen.secret_key)
            if frozen.token:
                options["aws_session_token"] = str(frozen.token)
        return options


_BODY_READ_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
)


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------


def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
) -> ObjectStore:
    """Open ``file:///abs/path``, a plain relative/absolute path, or ``s3://bucket[/prefix]``.

    For S3 the client uses botocore's standard retry mode with ``max_attempts`` requests
    in total (first try included), the given timeouts, path-style addressing when
    ``endpoint_url`` is given (MinIO, moto), and the given credentials and region. Without
    explicit credentials boto3's usual chain (environment, profile, ...) applies; the
    region defaults to the configured one, else ``us-east-1``. Raises ``ValueError`` for
    an unsupported URL.
    """
    if not url:
        raise ValueError("object store URL is empty")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        bucket = parts.netloc
        if not bucket:
            raise ValueError(f"S3 store URL {url!r} has no bucket")
        if parts.query or parts.fragment:
            raise ValueError(f"S3 store URL {url!r} may not have a query or fragment")
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        config = Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or session.region_name or DEFAULT_REGION,
            config=config,
        )
        return S3Store(
            bucket,
            unquote(parts.path),
            client=client,
            endpoint_url=endpoint_url,
            credentials=session.get_credentials(),
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL {url!r} names a remote host; use file:///abs/path")
        return LocalFolderStore(url2pathname(parts.path))
    if len(scheme) > 1:  # one letter would be a Windows drive ("C:\\...")
        raise ValueError(f"unsupported object store URL {url!r} (use file://, s3:// or a path)")
    return LocalFolderStore(url)
