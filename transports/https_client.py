"""HTTPS client transport with mutual TLS: ``https://host:port/v1/messages``.

``send(name, data)`` POSTs ``data`` and returns the response body (the receipt) for a 2xx
answer. Any other status raises ``HttpStatus`` carrying ``.status`` and ``.body`` (a 4xx
from a gateway carries its Rejected receipt): permanent for 4xx, retryable for 5xx, 408
and 429; 413 raises ``HttpTooLarge``. No answer, a reset or a timeout is retryable.

TLS: the partner's CA is pinned (only ``ca`` is trusted, never the system store), the
server name (or IP) is checked against its certificate, this node presents ``cert`` and
``key``, TLS 1.2 is the minimum. Connections are kept alive in a small pool; an idle
connection the server has closed is noticed before use and replaced. A request is retried
once, on a fresh connection, only when sending it over a reused connection failed, i.e.
the server surely did not get the whole request. This transport is push-only: ``list``,
``fetch`` and ``acknowledge`` raise ``NotSupported``.

``send_batch([(name, data), ...])`` POSTs several envelopes in one multipart/mixed request
to the URL's path + ``/batch`` and returns one ``(status, body)`` per envelope, in order
(:mod:`transports.multipart`); a partner without that endpoint (404, 405, 501) raises
``NotSupported``, so the caller can fall back to ``send``.
"""

from __future__ import annotations

import builtins
import http.client
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from transports.base import check_name
from transports.errors import (
    ConnectionLost,
    EndpointInvalid,
    NotSupported,
    RemoteFailed,
    Timeout,
    TlsRejected,
    TooLarge,
    TransportClosed,
    TransportError,
    connect_error,
    http_error,
)
from transports.multipart import (
    MultipartError,
    decode_http_response,
    decode_multipart,
    encode_multipart,
)

__all__ = ["BATCH_SUFFIX", "HttpsTransport", "check_health", "client_context", "probe"]

log = logging.getLogger("gateway.transports.https_client")

BATCH_SUFFIX = "/batch"
_NO_BATCH_STATUSES = frozenset({404, 405, 501})  # the partner has no batch endpoint
_ANSWER_PART_TYPES = frozenset({"application/http"})


def client_context(
    *,
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str],
    key_password: str | None = None,
) -> ssl.SSLContext:
    """The client TLS context: ``ca`` pinned, our certificate presented, TLS >= 1.2."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        raise EndpointInvalid(
            f"cannot load the partner CA file {ca}: "
            f"{getattr(exc, 'reason', None) or type(exc).__name__}"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, key_password)
    except (OSError, ssl.SSLError) as exc:
        raise EndpointInvalid(
            f"cannot load the client certificate {cert} and key {key}: "
            f"{getattr(exc, 'reason', None) or type(exc).__name__}"
        ) from None
    return context


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"server certificate not accepted: {exc.verify_message}"
    return f"TLS refused: {exc.reason or exc.strerror or type(exc).__name__}"


def _is_tls_refusal(exc: ssl.SSLError) -> bool:
    """A certificate problem or an alert from the peer (not a transport hiccup)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    reason = (exc.reason or "").upper()
    return "ALERT" in reason or "CERTIFICATE" in reason or "HANDSHAKE" in reason


class _Conn:
    def __init__(self, conn: http.client.HTTPSConnection) -> None:
        self.conn = conn
        self.idle_since = time.monotonic()
        self.reused = False

    def dropped(self) -> bool:
        """True when the server has closed this idle connection (or sent junk)."""
        sock = self.conn.sock
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.conn.close()


class HttpsTransport:
    """A push-only ``Transport`` POSTing blobs to a partner over mutual TLS."""

    def __init__(
        self,
        url: str,
        *,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        ca: str | os.PathLike[str],
        key_password: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        pool_size: int = 4,
        idle_timeout: float = 30.0,
        max_response: int = 16 * 1024 * 1024,
        content_type: str = "application/octet-stream",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise EndpointInvalid(f"not an https:// URL: {parts.scheme}://{parts.hostname}")
        if parts.username or parts.password:
            raise EndpointInvalid("HTTPS URL must not carry credentials (mutual TLS only)")
        self.host = parts.hostname
        try:
            self.port = parts.port or 443
        except ValueError:
            raise EndpointInvalid("HTTPS URL has a bad port") from None
        query = f"?{parts.query}" if parts.query else ""
        self.path = (parts.path or "/v1/messages") + query
        self.batch_path = (parts.path or "/v1/messages") + BATCH_SUFFIX + query
        self.endpoint = f"https://{self.host}:{self.port}{parts.path or '/v1/messages'}"
        if timeout <= 0 or connect_timeout <= 0 or pool_size < 1:
            raise EndpointInvalid("timeouts must be positive and pool_size >= 1",
                                  endpoint=self.endpoint)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.pool_size = int(pool_size)
        self.idle_timeout = float(idle_timeout)
        self.max_response = int(max_response)
        self.content_type = content_type
        self._context = client_context(cert=cert, key=key, ca=ca, key_password=key_password)
        self._lock = threading.Lock()
        self._idle: list[_Conn] = []
        self._closed = False

    # -- pool ---------------------------------------------------------------------------

    def _acquire(self) -> _Conn:
        with self._lock:
            if self._closed:
                raise TransportClosed("transport is closed", endpoint=self.endpoint)
            while self._idle:
                conn = self._idle.pop()
                fresh = time.monotonic() - conn.idle_since < self.idle_timeout
                if fresh and not conn.dropped():
                    conn.reused = True
                    return conn
                conn.close()
        return self._connect()

    def _release(self, conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._closed and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> _Conn:
        where = f"{self.host}:{self.port}"
        conn = http.client.HTTPSConnection(
            self.host, self.port, timeout=self.connect_timeout, context=self._context
        )
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            if _is_tls_refusal(exc):
                raise TlsRejected(f"{where}: {_tls_reason(exc)}", endpoint=self.endpoint) from exc
            raise ConnectionLost(f"TLS handshake with {where} failed: {exc.reason}",
                                 endpoint=self.endpoint) from exc
        except OSError as exc:
            conn.close()
            raise connect_error(exc, where, endpoint=self.endpoint) from exc
        assert conn.sock is not None  # noqa: S101 - set by a successful connect()
        conn.sock.settimeout(self.timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(conn)

    # -- Transport ----------------------------------------------------------------------

    def send(self, name: str, data: bytes, *, content_type: str | None = None) -> bytes | None:
        """POST ``data``; ``content_type`` overrides the transport's for this message (an
        AS4 multipart body names its own boundary)."""
        check_name(name, endpoint=self.endpoint)
        status, body, _ = self._exchange(bytes(data), content_type or self.content_type,
                                         self.path)
        if 200 <= status < 300:
            return body
        raise http_error(status, body, endpoint=self.endpoint)

    def send_batch(self, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
        """POST the envelopes ``items`` (``(name, data)`` pairs, names checked as by
        ``send``) in one multipart/mixed request to ``<path>/batch``; return each
        envelope's answer ``(status, body)``, in order: what a ``send`` of it alone
        would have got as an answer (2xx with a receipt, 4xx with a Rejected receipt, a
        bare 503, ...). Raises ``NotSupported`` when the partner has no batch endpoint
        (404, 405 or 501 to the whole request: send one by one instead), the error of
        ``send`` for any other non-2xx answer to the whole request (413: too many
        envelopes or too many bytes), and a retryable ``RemoteFailed`` for a 2xx answer
        that is not one well-formed application/http part per envelope (resending is
        safe: the receiver deduplicates). An empty ``items`` sends nothing."""
        for name, _ in items:
            check_name(name, endpoint=self.endpoint)
        if not items:
            return []
        content_type, body = encode_multipart([bytes(data) for _, data in items])
        status, answer, answer_type = self._exchange(body, content_type, self.batch_path)
        if status in _NO_BATCH_STATUSES:
            raise NotSupported(
                f"the partner does not accept batches (HTTP {status} for "
                f"{self.batch_path.partition('?')[0]}): send one message per request",
                endpoint=self.endpoint)
        if not 200 <= status < 300:
            raise http_error(status, answer, endpoint=self.endpoint)
        try:
            parts = decode_multipart(answer_type, answer, max_parts=len(items),
                                     part_types=_ANSWER_PART_TYPES)
            if len(parts) != len(items):
                raise MultipartError(f"{len(parts)} answer parts for {len(items)} envelopes")
            return [decode_http_response(part, index=i) for i, part in enumerate(parts)]
        except MultipartError as exc:
            raise RemoteFailed(
                f"the batch answer (HTTP {status}) is not one application/http part per "
                f"envelope: {exc}", endpoint=self.endpoint) from None

    def _exchange(self, data: bytes, content_type: str,
                  path: str) -> tuple[int, bytes, str]:
        """POST ``data`` to ``path``; return the status, body and Content-Type of the
        answer. The connection goes back to the pool only after a complete answer on a
        connection the server keeps open."""
        for attempt in (1, 2):
            conn = self._acquire()
            try:
                try:
                    conn.conn.request(
                        "POST", path, body=data, headers={"Content-Type": content_type}
                    )
                except (ConnectionError, ssl.SSLEOFError) as exc:
                    if conn.reused and attempt == 1:
                        # The server closed the kept-alive connection before taking the
                        # request: it surely did not process it. Try once more, fresh.
                        log.info("%s: kept-alive connection closed by the server; retrying",
                                 self.endpoint)
                        conn.close()
                        continue
                    early = self._early_answer(conn)
                    if early is not None:
                        return early
                    raise self._error(exc, "sending the request") from exc
                return self._answer(conn)
            except TransportError:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._error(exc, "waiting for the answer") from exc
        raise AssertionError("unreachable")

    def _early_answer(self, conn: _Conn) -> tuple[int, bytes, str] | None:
        """The server may have answered (413) and stopped reading before the body was
        all sent: read that answer if it is there, else None."""
        try:
            return self._answer(conn)
        except TransportError:
            raise
        except ssl.SSLError as exc:
            if _is_tls_refusal(exc):  # the alert explaining why the server hung up
                raise self._error(exc, "sending the request") from exc
            return None
        except (OSError, http.client.HTTPException):
            return None

    def _answer(self, conn: _Conn) -> tuple[int, bytes, str]:
        response = conn.conn.getresponse()
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.max_response:
            raise TooLarge(
                f"the answer is {length} bytes; at most {self.max_response} accepted",
                endpoint=self.endpoint,
            )
        body = response.read(self.max_response + 1)
        if len(body) > self.max_response:
            raise TooLarge(
                f"the answer exceeds {self.max_response} bytes", endpoint=self.endpoint
            )
        if length is not None and length.isdigit() and len(body) < int(length):
            # read(amt) returns what arrived before the peer closed, without raising: a
            # partner killed between its headers and its body must not look like an
            # (empty) answer, which would mean "accepted, receipt later"
            conn.close()
            raise ConnectionLost(
                f"the answer from {self.host}:{self.port} was cut short ({len(body)} of "
                f"{length} bytes)", endpoint=self.endpoint)
        if response.will_close or not response.isclosed():
            conn.close()
        else:
            self._release(conn)
        return response.status, body, response.getheader("Content-Type") or ""

    def _error(self, exc: BaseException, doing: str) -> TransportError:
        where = f"{self.host}:{self.port}"
        if isinstance(exc, ssl.SSLError) and _is_tls_refusal(exc):
            return TlsRejected(f"{where}: {_tls_reason(exc)}", endpoint=self.endpoint)
        if isinstance(exc, TimeoutError):
            return Timeout(f"{doing} to/from {where} timed out after {self.timeout:g} s",
                           endpoint=self.endpoint)
        if isinstance(exc, http.client.RemoteDisconnected):
            return ConnectionLost(f"{doing}: {where} closed the connection without answering",
                                  endpoint=self.endpoint)
        return ConnectionLost(f"{doing}: connection to {where} lost ({type(exc).__name__})",
                              endpoint=self.endpoint)

    def list(self) -> builtins.list[str]:
        raise NotSupported("HTTPS is push-only: nothing to list", endpoint=self.endpoint)

    def fetch(self, name: str) -> bytes:
        raise NotSupported("HTTPS is push-only: nothing to fetch", endpoint=self.endpoint)

    def acknowledge(self, name: str) -> None:
        raise NotSupported("HTTPS is push-only: nothing to acknowledge", endpoint=self.endpoint)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _get(conn: http.client.HTTPSConnection, path: str, *, where: str, endpoint: str,
         timeout: float, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One ``GET`` on a connection made for it (closed afterwards): the answer's status
    and the first 4 KB of its body; no answer raises the :class:`TransportError` saying
    why (the health check's and the probe's shared error mapping)."""
    try:
        conn.request("GET", path, headers=headers or {})
        answer = conn.getresponse()
        body = answer.read(4096)
    except ssl.SSLError as exc:
        if _is_tls_refusal(exc):
            raise TlsRejected(f"{where}: {_tls_reason(exc)}", endpoint=endpoint) from exc
        raise ConnectionLost(f"TLS with {where} failed: {exc.reason}",
                             endpoint=endpoint) from exc
    except TimeoutError as exc:
        raise Timeout(f"{where}: no answer within {timeout:g} s", endpoint=endpoint) from exc
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
            http.client.HTTPException) as exc:
        raise ConnectionLost(f"{where} closed the connection without answering "
                             f"({type(exc).__name__})", endpoint=endpoint) from exc
    except OSError as exc:
        raise connect_error(exc, where, endpoint=endpoint) from exc
    finally:
        conn.close()
    return int(answer.status), body


def check_health(
    host: str,
    port: int,
    *,
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    server_cert: str | os.PathLike[str],
    path: str = "/healthz",
    timeout: float = 5.0,
) -> bytes:
    """``GET /healthz`` on a gateway's own listener, as its health check (container
    HEALTHCHECK, systemd, monitoring): presents ``cert``/``key`` (mutual TLS is always
    required) and accepts only the exact server certificate in ``server_cert`` (pinned as
    the one trust anchor, so no name check is needed for ``127.0.0.1``). Returns the body
    of a 200 answer; raises a :class:`TransportError` otherwise."""
    where = f"{host}:{port}"
    endpoint = f"https://{where}{path}"
    context = client_context(cert=cert, key=key, ca=server_cert)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the anchor
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    status, body = _get(conn, path, where=where, endpoint=endpoint, timeout=timeout)
    if status != 200:
        raise http_error(status, body, endpoint=endpoint)
    return body


def probe(
    url: str,
    *,
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str],
    timeout: float = 5.0,
) -> int:
    """``GET`` the path of an HTTPS endpoint with mutual TLS (``ca`` pinned, the server
    name checked, ``cert``/``key`` presented) and return the answer's HTTP status,
    whatever it is: proof that TLS works both ways and a server answers, with nothing
    sent (a partner's connectivity check, e.g. an AS4 access point's). Raises a
    :class:`TransportError` when there is no answer."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise EndpointInvalid(f"not an https:// URL: {url}")
    host, port = parts.hostname, parts.port or 443
    conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                       context=client_context(cert=cert, key=key, ca=ca))
    status, _ = _get(conn, parts.path or "/", where=f"{host}:{port}", endpoint=url,
                     timeout=timeout, headers={"Connection": "close"})
    return status
