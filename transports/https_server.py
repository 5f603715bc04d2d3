"""Inbound HTTPS endpoint with mutual TLS: ``POST /v1/messages`` and ``GET /healthz``.

Why the standard library's ``ThreadingHTTPServer`` and not uvicorn/starlette or
hypercorn: those enforce client certificates but do not hand the client certificate to
the application (measured, see docs/transports.md), and we want its subject and
fingerprint for logging and policy; the standard library exposes ``getpeercert()``, adds
no dependency, and a thread per connection is ample for a gateway that takes tens to
hundreds of messages a second. What it lacks we add here:

- the TLS handshake runs in the connection's own thread (a slow or silent client never
  blocks ``accept``), with a timeout;
- at most ``max_connections`` connections at once (more are closed at once);
- every read has ``read_timeout`` (also the keep-alive idle timeout), and a reaper thread
  closes any connection whose request is not fully read and answered within
  ``request_timeout`` (slow-drip clients);
- a body is framed by ``Content-Length``, checked against ``max_body`` before reading
  it, or chunked (``Transfer-Encoding: chunked``, what Apache CXF and so Domibus send
  by default), its running total checked against ``max_body`` before each chunk is
  read: over the limit answers 413 and closes;
- keep-alive (``HTTP/1.1``) with Nagle off (without it, delayed ACKs cap a connection at
  ~23 requests/s);
- client certificates are required (``CERT_REQUIRED``) and must chain to ``client_ca``;
  TLS 1.2 is the minimum; the certificate is read once per connection;
- request heads are read by :mod:`transports.http1` (strict HTTP/1.1, the standard
  library's limits and answers, no email parser; what it refuses is answered 400, 411,
  431, 414 or 505 and the connection closed); a GET announcing a body is answered and
  the connection closed; the answer's status line, headers and body go out in one write.

The handler gets ``(body, PeerInfo)`` and returns ``(status, response_body)``; an
exception in it answers 500 (logged without the body). ``PeerInfo.content_type`` carries
the request's Content-Type (a MIME multipart body needs its boundary). Further paths, each
with its own handler and response Content-Type, are given as ``routes`` (the AS4 endpoint
beside ``/v1/messages``).

Batches: given a ``batch_handler``, ``POST /v1/messages/batch`` takes a multipart/mixed
body of up to ``max_batch`` envelopes (:mod:`transports.multipart`), hands the list to
``batch_handler(parts, peer)`` and answers 200 with one ``application/http`` part per
envelope, in order, each the status and body the handler returned for it. A body that
is not well-formed multipart/mixed is answered 400, more parts than ``max_batch`` 413;
without a batch handler the path is unknown (404), as on an older gateway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cryptography import x509

from transports.base import PeerInfo
from transports.errors import EndpointInvalid
from transports.http1 import HeadError, RequestHead, body_length, read_chunked, read_head
from transports.multipart import (
    MultipartError,
    TooManyParts,
    decode_multipart,
    encode_http_response,
    encode_multipart,
)

__all__ = ["BatchHandler", "Handler", "HttpsServer", "PeerInfo"]

log = logging.getLogger("gateway.transports.https_server")

Handler = Callable[[bytes, PeerInfo], tuple[int, bytes]]
BatchHandler = Callable[[list[bytes], PeerInfo], Sequence[tuple[int, bytes]]]

MESSAGES_PATH = "/v1/messages"
BATCH_SUFFIX = "/batch"
_BATCH_PART_TYPES = frozenset({"application/xml"})
HEALTH_PATH = "/healthz"
_READ_CHUNK = 64 * 1024
_date: tuple[int, str] = (0, "")  # (second, its HTTP date), see date_time_string


def _peer_info(conn: ssl.SSLSocket, address: Any) -> PeerInfo:
    where = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
    der = conn.getpeercert(binary_form=True)
    if not der:
        return PeerInfo(address=where)
    try:
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        subject = "(unparsable certificate)"
    return PeerInfo(address=where, subject=subject, fingerprint=hashlib.sha256(der).hexdigest())


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "cse-gateway"
    sys_version = ""
    server: _Server

    head: RequestHead | None = None
    raw_requestline: bytes  # set by BaseHTTPRequestHandler.handle_one_request

    def setup(self) -> None:
        super().setup()  # applies the class's ``timeout`` (read_timeout) to the socket
        self.peer = _peer_info(self.connection, self.client_address)  # once per connection
        self.last_peer = self.peer  # with the last request's Content-Type

    def parse_request(self) -> bool:
        """Read the request head with :mod:`transports.http1` instead of the standard
        library's email parser; answer (or just close) what it refuses."""
        self.command = ""
        self.request_version = "HTTP/1.1"  # error answers carry a status line
        self.close_connection = True
        self.head = None
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        try:
            head = read_head(self.raw_requestline, self.rfile.readline)
        except HeadError as exc:
            log.debug("%s: request refused (%s): %s", self.peer.address, exc.reason,
                      exc.detail)
            if exc.status:
                self.send_error(exc.status, None, exc.detail)
            return False
        self.head = head
        self.command, self.path, self.request_version = head.method, head.path, head.version
        self.close_connection = not head.keep_alive
        return not head.expect_continue or self.handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("http: %s", format % args)

    def handle_one_request(self) -> None:
        owner = self.server.owner
        owner._arm(self.connection)
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("%s: connection closed: %s", self.peer.address, type(exc).__name__)
            self.close_connection = True
        finally:
            owner._disarm(self.connection)

    def handle_expect_100(self) -> bool:
        """Answer ``Expect: 100-continue`` with 413 when the announced body is too large,
        so the client does not send it at all."""
        assert self.head is not None  # noqa: S101 - set by parse_request before this
        length = self.head.content_length
        if length is not None and length > self.server.owner.max_body:
            self._reply(413, b"body too large\n", close=True)
            return False
        return super().handle_expect_100()

    def _reply(self, status: int, body: bytes, *, close: bool = False,
               content_type: str | None = None) -> None:
        """Status line, headers and body in one write (one TLS record for a small
        answer): a receipt is never split from its headers by a crash or a slow peer.
        The same lines ``send_response`` + ``send_header`` wrote, built at once."""
        self.log_request(status)
        reason = self.responses[status][0] if status in self.responses else ""
        head = (f"{self.protocol_version} {status} {reason}\r\n"
                f"Server: {self.version_string()}\r\nDate: {self.date_time_string()}\r\n"
                f"Content-Type: {content_type or self.server.owner.content_type}\r\n"
                f"Content-Length: {len(body)}\r\n")
        if close:
            head += "Connection: close\r\n"
            self.close_connection = True
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header's value, formatted once a second (not per answer)."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        global _date  # noqa: PLW0603 - a cache shared by every connection
        now = int(time.time())
        cached = _date
        if cached[0] != now:
            cached = _date = (now, email.utils.formatdate(now, usegmt=True))
        return cached[1]

    def do_GET(self) -> None:
        assert self.head is not None  # noqa: S101 - set by parse_request before this
        # a GET announcing a body we do not read: answer, then close rather than read
        # that body as the next request
        close = bool(self.head.content_length) or self.head.transfer_encoding is not None
        if self.path == HEALTH_PATH:
            self._reply(200, b"ok\n", close=close)
        else:
            self._reply(404, b"not found\n", close=close)

    def do_POST(self) -> None:
        owner = self.server.owner
        batch = owner.batch_handler is not None and self.path == owner.batch_path
        route = None if batch else owner.route(self.path)
        if route is None and not batch:
            self._reply(404, b"not found\n", close=True)
            return
        head = self.head
        assert head is not None  # noqa: S101 - set by parse_request before this
        try:
            length = body_length(head)  # Content-Length, or None: chunked
            if length is not None and length > owner.max_body:
                raise HeadError(413, "too-large",
                                f"a {length}-byte body (limit {owner.max_body})")
            body = (self._read_body(length) if length is not None else
                    read_chunked(self.rfile.readline, self.rfile.read, owner.max_body))
        except HeadError as exc:
            self._refuse_body(exc)
            return
        if body is None:
            return
        owner._disarm(self.connection)  # the handler's own time is not the client's
        content_type_in = (head.get("Content-Type") or "")[:1000]
        peer = self.last_peer
        if peer.content_type != content_type_in:  # usually the same on a connection
            peer = self.last_peer = dataclasses.replace(self.peer, content_type=content_type_in)
        if route is None:
            self._batch(body, peer)
            return
        handler, content_type = route
        try:
            status, answer = handler(body, peer)
            if not isinstance(status, int) or not 200 <= status <= 599:
                raise ValueError(f"handler returned status {status!r}")
            answer = bytes(answer)
        except Exception as exc:
            log.error("%s: handler failed: %s", self.peer.address, type(exc).__name__,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            self._reply(500, b"internal error\n")
            return
        self._reply(status, answer, content_type=content_type)

    def _batch(self, body: bytes, peer: PeerInfo) -> None:
        """``POST <path>/batch``: the envelopes of a multipart/mixed body to the batch
        handler, its answers back as application/http parts in the same order."""
        owner = self.server.owner
        assert owner.batch_handler is not None  # noqa: S101 - checked by do_POST
        try:
            parts = decode_multipart(peer.content_type, body, max_parts=owner.max_batch,
                                     part_types=_BATCH_PART_TYPES)
        except MultipartError as exc:
            log.info("%s: batch refused: %s", self.peer.address, exc)
            if isinstance(exc, TooManyParts):
                self._reply(413, f"more than {owner.max_batch} parts\n".encode())
            else:
                self._reply(400, f"not a valid batch: {exc}\n".encode())
            return
        try:
            answers = list(owner.batch_handler(parts, peer))
            if len(answers) != len(parts):
                raise ValueError(f"{len(answers)} answers for {len(parts)} parts")
            encoded = []
            for status, answer in answers:
                if not isinstance(status, int) or not 200 <= status <= 599:
                    raise ValueError(f"batch handler returned status {status!r}")
                encoded.append(encode_http_response(status, bytes(answer)))
            content_type, out = encode_multipart(encoded, part_type="application/http")
        except Exception as exc:
            log.error("%s: batch handler failed (%d parts): %s", self.peer.address,
                      len(parts), type(exc).__name__,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            self._reply(500, b"internal error\n")
            return
        self._reply(200, out, content_type=content_type)

    def _drain(self, seconds: float = 2.0) -> None:
        """After answering early (413), read and discard what the client is still
        sending for a moment, so it can read the answer instead of a reset."""
        self.wfile.flush()
        deadline = time.monotonic() + seconds
        with contextlib.suppress(OSError, ValueError):
            self.connection.settimeout(seconds)
            while time.monotonic() < deadline and self.connection.recv(_READ_CHUNK):
                pass

    def _refuse_body(self, exc: HeadError) -> None:
        """Answer a body refused by its framing or size (413: then drain for a moment, so
        the client reads the answer), or just close when the client ended inside it."""
        log.info("%s: request body refused (%s): %s", self.peer.address, exc.reason,
                 exc.detail)
        if exc.status:
            text = b"body too large\n" if exc.status == 413 else exc.detail.encode() + b"\n"
            self._reply(exc.status, text, close=True)
        if exc.status == 413:
            self._drain()
        self.close_connection = True

    def _read_body(self, length: int) -> bytes | None:
        parts: list[bytes] = []
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK))
            if not chunk:
                log.info("%s: client closed after %d of %d body bytes", self.peer.address,
                         length - remaining, length)
                self.close_connection = True
                return None
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: HttpsServer) -> None:
        self.owner = owner
        handler = type("RequestHandler", (_RequestHandler,), {"timeout": owner.read_timeout})
        super().__init__(address, handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.owner._slots.acquire(blocking=False):
            return True
        log.warning("refusing a connection from %s: %d connections open",
                    client_address[0], self.owner.max_connections)
        return False

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        owner = self.owner
        conn: ssl.SSLSocket | None = None
        try:
            request.settimeout(owner.read_timeout)
            conn = owner._context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
            try:
                conn.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                log.info("TLS handshake with %s failed: %s", client_address[0], reason)
                _lingering_close(conn)
                return
            owner._track(conn, True)
            self.finish_request(conn, client_address)
        except Exception:  # a bug in one connection must not take the server down
            log.exception("connection from %s failed", client_address[0])
        finally:
            if conn is not None:
                owner._track(conn, False)
                self.shutdown_request(conn)
            else:
                self.shutdown_request(request)
            owner._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called by socketserver from inside its except block.
        log.error("connection from %s failed", client_address[0], exc_info=True)  # noqa: LOG014


def _lingering_close(conn: ssl.SSLSocket) -> None:
    """After a failed handshake, let the TLS alert reach the client: stop writing, then
    drain (raw bytes, bypassing TLS) what it already sent, because closing with unread
    data would send a reset that can overtake the alert."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(conn, socket.SHUT_WR)
        conn.settimeout(1.0)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and socket.socket.recv(conn, 65536):
            pass


class HttpsServer:
    """The inbound endpoint: ``HttpsServer(host, port, cert=..., key=..., client_ca=...,
    handler=..., max_body=...).start()``; ``port`` 0 picks a free port."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        client_ca: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        handler: Handler,
        max_body: int = 64 * 1024 * 1024,
        key_password: str | None = None,
        read_timeout: float = 15.0,
        request_timeout: float = 120.0,
        max_connections: int = 64,
        path: str = MESSAGES_PATH,
        content_type: str = "application/octet-stream",
        routes: Mapping[str, tuple[Handler, str]] | None = None,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 64,
    ) -> None:
        self.host = host
        self.requested_port = int(port)
        self.handler = handler
        self.max_body = int(max_body)
        self.read_timeout = float(read_timeout)
        self.request_timeout = float(request_timeout)
        self.max_connections = int(max_connections)
        self.path = path
        self.content_type = content_type
        self.routes = dict(routes or {})
        self.batch_handler = batch_handler
        self.max_batch = int(max_batch)
        self.batch_path = path + BATCH_SUFFIX
        if path in self.routes or HEALTH_PATH in self.routes or (
                batch_handler is not None and self.batch_path in self.routes):
            raise EndpointInvalid("a route repeats the messages, batch or health path")
        if self.max_batch < 1:
            raise EndpointInvalid("max_batch must be at least 1")
        if self.max_body < 0 or self.read_timeout <= 0 or self.request_timeout <= 0:
            raise EndpointInvalid("max_body and timeouts must be positive")
        self._context = self._make_context(cert, key, key_password, client_ca)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._lock = threading.Lock()
        self._open: set[ssl.SSLSocket] = set()
        self._deadlines: dict[ssl.SSLSocket, float] = {}
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def route(self, path: str) -> tuple[Handler, str] | None:
        """The handler and response Content-Type for a POST to ``path``, if any."""
        if path == self.path:
            return self.handler, self.content_type
        return self.routes.get(path)

    @staticmethod
    def _make_context(
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        password: str | None,
        client_ca: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    ) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_cert_chain(cert, key, password)
        except (OSError, ssl.SSLError) as exc:
            raise EndpointInvalid(
                f"cannot load the server certificate {cert} and key {key}: "
                f"{getattr(exc, 'reason', None) or type(exc).__name__}"
            ) from None
        cas = [client_ca] if isinstance(client_ca, str | os.PathLike) else list(client_ca)
        if not cas:
            raise EndpointInvalid("client_ca: at least one CA file is required")
        for ca in cas:
            try:
                context.load_verify_locations(cafile=os.fspath(ca))
            except (OSError, ssl.SSLError) as exc:
                raise EndpointInvalid(
                    f"cannot load client CA file {ca}: "
                    f"{getattr(exc, 'reason', None) or type(exc).__name__}"
                ) from None
        return context

    # -- life cycle ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{self.path}"

    def start(self) -> HttpsServer:
        if self._server is not None:
            return self
        try:
            server = _Server((self.host, self.requested_port), self)
        except OSError as exc:
            raise EndpointInvalid(
                f"cannot listen on {self.host}:{self.requested_port}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from None
        self._server = server
        self._stopping.clear()
        serve = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"https-server-{self.port}", daemon=True,
        )
        reaper = threading.Thread(target=self._reap, name=f"https-reaper-{self.port}",
                                  daemon=True)
        self._threads = [serve, reaper]
        for thread in self._threads:
            thread.start()
        log.info("listening on https://%s:%d%s", self.host, self.port, self.path)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._open)
        for conn in connections:
            _abort(conn)
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    def __enter__(self) -> HttpsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connection bookkeeping -------------------------------------------------------------

    def _track(self, conn: ssl.SSLSocket, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(conn)
            else:
                self._open.discard(conn)
                self._deadlines.pop(conn, None)

    def _arm(self, conn: ssl.SSLSocket) -> None:
        with self._lock:
            self._deadlines[conn] = time.monotonic() + self.request_timeout

    def _disarm(self, conn: ssl.SSLSocket) -> None:
        with self._lock:
            self._deadlines.pop(conn, None)

    def _reap(self) -> None:
        """Close connections whose request takes longer than ``request_timeout``.

        The deadline runs from the start of waiting for a request (so it also bounds a
        keep-alive connection that dribbles its headers); reads are bounded by
        ``read_timeout`` on their own."""
        interval = min(0.5, self.request_timeout / 4)
        while not self._stopping.wait(interval):
            now = time.monotonic()
            with self._lock:
                late = [c for c, deadline in self._deadlines.items() if deadline < now]
                for conn in late:
                    del self._deadlines[conn]
            for conn in late:
                log.info("closing a connection that exceeded request_timeout (%.1f s)",
                         self.request_timeout)
                _abort(conn)


def _abort(conn: ssl.SSLSocket) -> None:
    """Shut the TCP connection down under a thread blocked reading it (bypassing
    SSLSocket.shutdown, which would pull the SSL object from under that thread)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(conn, socket.SHUT_RDWR)

