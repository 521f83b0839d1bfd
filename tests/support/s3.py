"""S3 test helpers: moto as a real HTTP server, and a fault-injecting proxy in front of it.

Everything listens on 127.0.0.1 only, on a port the OS picks.

* :func:`running_moto_server` starts ``moto.server.ThreadedMotoServer`` and yields its
  endpoint URL.
* :class:`FaultProxy` forwards HTTP requests to an upstream endpoint (moto). It can be
  told to answer the next N requests with ``503 SlowDown`` (:meth:`FaultProxy.fail_next`)
  and to reset the connection of the next M requests (:meth:`FaultProxy.reset_next`,
  an abortive close with ``SO_LINGER`` 0, so the client sees ``ECONNRESET``), and to
  forward the next K requests but reset the connection halfway through sending the
  response body (:meth:`FaultProxy.truncate_next`). It counts every request it
  receives, faulted or not. Faults are taken in order: pending resets first, then 503s,
  then truncations.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.server
import socket
import socketserver
import struct
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

TEST_ACCESS_KEY_ID = "testing"
TEST_SECRET_ACCESS_KEY = "testing"
TEST_REGION = "us-east-1"

# Bounds, so that a misbehaving client cannot make the proxy hang or eat memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
SOCKET_TIMEOUT_S = 10.0
MAX_LOGGED_REQUESTS = 10_000

SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>"
)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)


@contextlib.contextmanager
def running_moto_server() -> Iterator[str]:
    """Start moto's threaded HTTP server on 127.0.0.1 and a free port; yield its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_s3_client(endpoint_url: str, **config: Any) -> Any:
    """A plain boto3 S3 client for test setup, with the fake test credentials."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=TEST_REGION,
        aws_access_key_id=TEST_ACCESS_KEY_ID,
        aws_secret_access_key=TEST_SECRET_ACCESS_KEY,
        config=Config(s3={"addressing_style": "path"}, **config),
    )


@functools.cache
def shared_s3_client(endpoint_url: str) -> Any:
    """One :func:`make_s3_client` per endpoint, reused (clients are thread-safe and cost
    ~50 ms each to build)."""
    return make_s3_client(endpoint_url)


def unique_bucket_name(prefix: str = "tallyflow-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    outcome: str  # "forwarded", "503", "reset" or "truncated"


class _ProxyServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False  # FaultProxy.stop() closes connections and joins itself
    allow_reuse_address = True

    proxy: FaultProxy


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and "Expect: 100-continue" like S3
    timeout = SOCKET_TIMEOUT_S
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; FaultProxy.requests keeps a log

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        fault = proxy._take_fault()
        proxy._record(SeenRequest(self.command, self.path, fault or "forwarded"))
        if fault == "reset":
            self._reset_connection()
            return
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(413)
            self.close_connection = True
            return
        if fault == "503":
            self._send(503, [("Content-Type", "application/xml")], SLOW_DOWN_BODY)
            return
        self._forward(body, truncate=fault == "truncated")

    def _reset_connection(self) -> None:
        # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True

    def _forward(self, body: bytes, *, truncate: bool = False) -> None:
        proxy = self.server.proxy
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=SOCKET_TIMEOUT_S
        )
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        except OSError as exc:
            message = f"fault proxy: upstream failed: {exc}".encode()
            self._send(502, [("Content-Type", "text/plain")], message)
            return
        finally:
            upstream.close()
        # send_response() adds its own Server and Date headers.
        out_headers = [
            (k, v)
            for k, v in response.getheaders()
            if k.lower() not in _HOP_BY_HOP and k.lower() not in ("server", "date")
        ]
        if truncate:
            # Promise the whole body, send half of it, then reset the connection.
            out_headers.append(("Content-Length", str(len(payload))))
            half = payload[: len(payload) // 2]
            self._send(response.status, out_headers, half, set_length=False)
            self._reset_connection()
        elif self.command == "HEAD":
            length = response.getheader("Content-Length")
            if length is not None:
                out_headers.append(("Content-Length", length))
            self._send(response.status, out_headers, b"", set_length=False)
        else:
            self._send(response.status, out_headers, payload)

    def _send(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        set_length: bool = True,
    ) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        if set_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 that forwards to ``upstream_url``, with faults.

    Use as a context manager or call :meth:`start` / :meth:`stop`. Point a client's
    ``endpoint_url`` at :attr:`endpoint_url`.
    """

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"FaultProxy only forwards to http://127.0.0.1, not {upstream_url}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self._lock = threading.Lock()
        self._pending_503 = 0
        self._pending_resets = 0
        self._pending_truncations = 0
        self._requests: deque[SeenRequest] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._request_count = 0
        self._connections: set[socket.socket] = set()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------

    def fail_next(self, n: int) -> None:
        """Answer the next ``n`` requests with ``503 SlowDown`` (without forwarding)."""
        with self._lock:
            self._pending_503 += n

    def reset_next(self, n: int) -> None:
        """Reset the connection of the next ``n`` requests (without forwarding)."""
        with self._lock:
            self._pending_resets += n

    def truncate_next(self, n: int) -> None:
        """Forward the next ``n`` requests, but break off each response halfway through
        its body with a connection reset (the upstream has already acted on them)."""
        with self._lock:
            self._pending_truncations += n

    def clear(self) -> None:
        """Drop pending faults and zero the request counter and log."""
        with self._lock:
            self._pending_503 = 0
            self._pending_resets = 0
            self._pending_truncations = 0
            self._request_count = 0
            self._requests.clear()

    @property
    def request_count(self) -> int:
        """Requests received since start (or :meth:`clear`), faulted ones included."""
        with self._lock:
            return self._request_count

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return self._pending_503 + self._pending_resets + self._pending_truncations

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FaultProxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fault-proxy",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()  # stop accepting; returns once serve_forever has exited
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:  # wake handler threads blocked on keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- used by the handler ------------------------------------------------------------

    def _take_fault(self) -> str | None:
        with self._lock:
            self._request_count += 1
            if self._pending_resets > 0:
                self._pending_resets -= 1
                return "reset"
            if self._pending_503 > 0:
                self._pending_503 -= 1
                return "503"
            if self._pending_truncations > 0:
                self._pending_truncations -= 1
                return "truncated"
            return None

    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
