"""The HTTPS server's request handling on the wire (transports.http1 inside
transports.https_server): raw requests over real mutual TLS on 127.0.0.1, the answers
and the connection handling they get. The parsing itself is compared with the standard
library's in test_http1_differential.py."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.pki import TestPki, TlsFiles
from transports import PeerInfo, https_server
from transports.https_server import HttpsServer

pytestmark = pytest.mark.integration


class Handler:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, PeerInfo]] = []
        self.lock = threading.Lock()

    def __call__(self, body: bytes, peer: PeerInfo) -> tuple[int, bytes]:
        with self.lock:
            self.calls.append((body, peer))
        return 200, b"got " + body


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def client_tls(pki: TestPki) -> TlsFiles:
    return pki.client("node-a")


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler()


@pytest.fixture(scope="module")
def server(pki: TestPki, handler: Handler) -> Iterator[HttpsServer]:
    tls = pki.server()
    srv = HttpsServer("127.0.0.1", 0, cert=tls.cert, key=tls.key, client_ca=pki.ca.cert,
                      handler=handler, max_body=1000, read_timeout=5).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _fresh_calls(handler: Handler) -> None:
    handler.calls.clear()


def exchange(server: HttpsServer, pki: TestPki, tls: TlsFiles, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(tls.cert, tls.key)
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(data)
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (ssl.SSLError, ConnectionResetError):
            pass  # a reset after the answer (the server closed with unread bytes)
    return received


def statuses(answer: bytes) -> list[int]:
    """The status of each answer (bodies here never contain a status line)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", answer)]


POST = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"


def test_pipelined_keep_alive_requests_get_an_answer_each(
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles, handler: Handler
) -> None:
    data = (POST + b"Content-Length: 3\r\nContent-Type: text/plain \t\r\n\r\none"
            + POST + b"Content-Length: 3\r\n\r\ntwo"
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = exchange(server, pki, client_tls, data)
    assert statuses(answer) == [200, 200, 200]
    assert b"got one" in answer
    assert b"got two" in answer
    assert answer.endswith(b"ok\n")
    assert [body for body, _ in handler.calls] == [b"one", b"two"]
    first, second = (peer for _, peer in handler.calls)
    assert first.content_type == "text/plain"  # surrounding blanks are not the value
    assert second.content_type == ""
    assert first.subject == second.subject
    assert "node-a" in first.subject


def test_peer_info_is_read_once_per_connection(
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles, handler: Handler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    real = https_server._peer_info

    def counted(conn: ssl.SSLSocket, address: Any) -> PeerInfo:
        peer = real(conn, address)
        seen.append(peer.subject)
        return peer

    monkeypatch.setattr(https_server, "_peer_info", counted)
    one = POST + b"Content-Length: 1\r\n\r\nx"
    answer = exchange(server, pki, client_tls,
                      one * 3 + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert statuses(answer) == [200, 200, 200, 200]
    assert len(handler.calls) == 3
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (POST + b"X-A: 1\r\n continued\r\nContent-Length: 1\r\n\r\nx", 400),  # obs-fold
        (POST + b"X-A: 1\rContent-Length: 1\r\n\r\nx", 400),  # bare CR
        (POST + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
        (POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400),
        (POST + b"Content-Length: +1\r\n\r\nx", 400),
        (POST + b"Content-Length : 1\r\n\r\nx", 400),
        (POST + b"X-A: \x00\r\nContent-Length: 1\r\n\r\nx", 400),
        (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 411),
        (POST + b"Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n1\r\nx\r\n0\r\n\r\n",
         400),  # both framings: a smuggling attempt (RFC 9112 6.3)
        (POST + b"Transfer-Encoding:\r\nContent-Length: 1\r\n\r\nx", 411),
        (CHUNKED + b"1x\r\nx\r\n0\r\n\r\n", 400),  # not a hex size
        (CHUNKED + b" 1\r\nx\r\n0\r\n\r\n", 400),
        (CHUNKED + b"0x1\r\nx\r\n0\r\n\r\n", 400),
        (CHUNKED + b"-1\r\nx\r\n0\r\n\r\n", 400),
        (CHUNKED + b"1\nx\r\n0\r\n\r\n", 400),  # a chunk line ends in CRLF
        (CHUNKED + b"1\r\nxy\r\n0\r\n\r\n", 400),  # more data than its size
        (CHUNKED + b"1;a=\x00\r\nx\r\n0\r\n\r\n", 400),  # a control character
        (CHUNKED + b"1\r\nx\r\n0\r\nbroken\r\n\r\n", 400),  # a trailer line
        (CHUNKED + b"1\r\nx\r\n0\r\n" + b"T: 1\r\n" * 100 + b"\r\n", 431),
        (CHUNKED + b"3e9\r\n", 413),  # 1001 announced: refused before it is sent
        (CHUNKED + b"200\r\n" + b"x" * 512 + b"\r\n1e9\r\n", 413),  # 512 + 489 > 1000
        (CHUNKED + b"ffffffffffffffff\r\n", 413),
        (CHUNKED + b"1ffffffffffffffff\r\n", 400),  # over 16 hex digits
        (POST + b"\r\n", 411),
        (POST + b"Content-Length: 1001\r\n\r\n", 413),
        (POST + b"X: 1\r\n" * 99 + b"Content-Length: 1\r\n\r\nx", 431),
        (POST + b"X: " + b"a" * 65536 + b"\r\nContent-Length: 1\r\n\r\nx", 431),
        (b"POST /" + b"a" * 65536 + b" HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 414),
        (b"POST /v1/messages HTTP/2.0\r\nContent-Length: 1\r\n\r\nx", 505),
        (b"POST /v1/messages HTTP/0.9\r\nContent-Length: 1\r\n\r\nx", 505),
        (b"POST  /v1/messages HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400),
        (b"GET /healthz\r\n\r\n", 400),
        (b"PUT /v1/messages HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 501),
        (b"POST /elsewhere HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 404),
    ],
)
def test_refused_requests_are_answered_and_closed(  # noqa: PLR0917 - fixtures
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles, handler: Handler,
    head: bytes, status: int,
) -> None:
    # a well-formed request after the refused one must not be read from the same
    # connection: the server answers once and closes
    follow = POST + b"Content-Length: 1\r\n\r\ny"
    answer = exchange(server, pki, client_tls, head + follow)
    assert statuses(answer) == [status]
    assert b"Connection: close" in answer
    assert handler.calls == []


def test_connection_close_http_1_0_and_keep_alive(
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles, handler: Handler
) -> None:
    body = b"Content-Length: 1\r\n\r\nx"
    # "close" among other tokens closes after the answer: the second request is not read
    answer = exchange(server, pki, client_tls,
                      POST + b"Connection: TE, close\r\n" + body + POST + body)
    assert statuses(answer) == [200]
    # HTTP/1.0 closes unless it asks for keep-alive
    answer = exchange(server, pki, client_tls,
                      b"POST /v1/messages HTTP/1.0\r\n" + body + POST + body)
    assert statuses(answer) == [200]
    answer = exchange(server, pki, client_tls,
                      b"POST /v1/messages HTTP/1.0\r\nConnection: keep-alive\r\n" + body
                      + POST + b"Connection: close\r\n" + body)
    assert statuses(answer) == [200, 200]
    assert len(handler.calls) == 4


def test_get_with_a_body_is_answered_then_closed(
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles, handler: Handler
) -> None:
    """The body a GET announces is not read, so it must not be taken for the next
    request on the connection (the standard library's server would have)."""
    smuggled = POST + b"Content-Length: 1\r\n\r\nz"
    answer = exchange(server, pki, client_tls,
                      b"GET /healthz HTTP/1.1\r\nContent-Length: "
                      + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
    assert statuses(answer) == [200]
    assert b"Connection: close" in answer
    assert handler.calls == []


def test_chunked_bodies_are_read_and_the_connection_kept(
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles, handler: Handler
) -> None:
    data = (CHUNKED + b"3;name=value\r\none\r\nA;x\r\n, and ten!\r\n0\r\n\r\n"
            + CHUNKED + b"3E8\r\n" + b"y" * 1000 + b"\r\n0\r\nTrailer: t\r\n\r\n"
            + CHUNKED + b"0\r\n\r\n"  # an empty body
            + POST + b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"2\r\nhi\r\n0\r\n\r\n"
            + POST + b"Connection: close\r\nContent-Length: 3\r\n\r\nend")
    answer = exchange(server, pki, client_tls, data)
    assert statuses(answer) == [200, 200, 200, 100, 200, 200]
    assert [body for body, _ in handler.calls] == [b"one, and ten!", b"y" * 1000, b"", b"hi",
                                                   b"end"]


def test_expect_100_continue_within_the_limit(
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles, handler: Handler
) -> None:
    answer = exchange(server, pki, client_tls,
                      POST + b"Expect: 100-continue\r\nConnection: close\r\n"
                      b"Content-Length: 4\r\n\r\nbody")
    assert statuses(answer) == [100, 200]
    assert answer.endswith(b"got body")


def test_connection_ending_inside_the_head_gets_no_answer(
    server: HttpsServer, pki: TestPki, client_tls: TlsFiles
) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(client_tls.cert, client_tls.key)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # the client is done, no blank line will come (SSLSocket.shutdown would drop TLS)
        socket.socket.shutdown(conn, socket.SHUT_WR)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (ssl.SSLError, ConnectionResetError):
            pass
    assert received == b""
