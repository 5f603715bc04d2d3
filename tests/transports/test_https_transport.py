"""HTTPS client and server with real mutual TLS on 127.0.0.1, plus curl as an independent
client. Certificates are minted per test session by tests/support/pki.py."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.gwnodes import free_port
from tests.support.pki import TestPki, TlsFiles
from transports import PeerInfo, open_transport
from transports.errors import (
    ConnectFailed,
    ConnectionLost,
    EndpointInvalid,
    HttpStatus,
    NotSupported,
    Timeout,
    TlsRejected,
    TooLarge,
    TransportClosed,
    TransportError,
)
from transports.https_client import HttpsTransport, check_health, probe
from transports.https_server import HttpsServer

pytestmark = pytest.mark.integration

CURL = shutil.which("curl") or "/usr/bin/curl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server_tls(pki: TestPki) -> TlsFiles:
    return pki.server()


@pytest.fixture(scope="module")
def client_tls(pki: TestPki) -> TlsFiles:
    return pki.client("node-a")


@dataclass
class Recorder:
    """The server-side handler: records what arrived, answers what the test says."""

    calls: list[tuple[bytes, PeerInfo]] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"<Receipt status='Delivered'/>"
    delay: float = 0.0
    fail: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, body: bytes, peer: PeerInfo) -> tuple[int, bytes]:
        with self.lock:
            self.calls.append((body, peer))
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("handler bug")
        return self.status, self.answer


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_server(
    pki: TestPki, server_tls: TlsFiles, handler: Recorder, **options: float | int
) -> HttpsServer:
    return HttpsServer(
        "127.0.0.1",
        0,
        cert=server_tls.cert,
        key=server_tls.key,
        client_ca=pki.ca.cert,
        handler=handler,
        **{"max_body": 64 * 1024, **options},  # type: ignore[arg-type]
    ).start()


@pytest.fixture
def server(pki: TestPki, server_tls: TlsFiles, recorder: Recorder) -> Iterator[HttpsServer]:
    srv = make_server(pki, server_tls, recorder)
    yield srv
    srv.stop()


_opened: list[HttpsTransport] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def client(url: str, tls: TlsFiles, ca: Path, **options: float) -> HttpsTransport:
    t = open_transport(url, cert=tls.cert, key=tls.key, ca=ca, **options)
    assert isinstance(t, HttpsTransport)
    _opened.append(t)
    return t


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    if not Path(CURL).exists():
        pytest.fail("curl is needed as an independent HTTPS client: apt-get install curl")
    return subprocess.run(
        [CURL, "-sS", "--max-time", "10", *args], capture_output=True, timeout=timeout,
        check=False,
    )


# --- the happy path ---------------------------------------------------------------------


def test_send_returns_the_answer_and_the_handler_sees_the_client(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    t = client(server.url, client_tls, pki.ca.cert)
    body = b"<Envelope>" + bytes(range(256)) * 10 + b"</Envelope>"
    assert t.send("m1.xml", body) == recorder.answer
    (got, peer), = recorder.calls
    assert got == body
    assert peer.subject == client_tls.subject
    assert peer.fingerprint == client_tls.fingerprint
    assert peer.address.startswith("127.0.0.1:")
    t.close()


def test_keep_alive_reuses_one_connection(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    t = client(server.url, client_tls, pki.ca.cert)
    for i in range(20):
        t.send(f"m{i}", b"x" * 10_000)
    ports = {peer.address for _, peer in recorder.calls}
    assert len(ports) == 1, ports
    t.close()


def test_stale_kept_alive_connection_is_replaced(
    pki: TestPki, server_tls: TlsFiles, recorder: Recorder, client_tls: TlsFiles
) -> None:
    srv = make_server(pki, server_tls, recorder, read_timeout=0.3)
    try:
        t = client(srv.url, client_tls, pki.ca.cert)
        t.send("a", b"1")
        time.sleep(0.8)  # the server closes the idle connection
        assert t.send("b", b"2") == recorder.answer
        assert [b for b, _ in recorder.calls] == [b"1", b"2"]
        assert len({p.address for _, p in recorder.calls}) == 2
        t.close()
    finally:
        srv.stop()


def test_concurrent_clients(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        t = client(server.url, client_tls, pki.ca.cert)
        try:
            for i in range(15):
                assert t.send(f"w{n}-{i}", b"%d-%d" % (n, i)) == recorder.answer
        except BaseException as exc:
            errors.append(exc)
        finally:
            t.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert sorted(b for b, _ in recorder.calls) == sorted(
        b"%d-%d" % (n, i) for n in range(8) for i in range(15)
    )


def test_body_at_the_limit_is_accepted(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    t = client(server.url, client_tls, pki.ca.cert)
    assert t.send("max", b"z" * server.max_body) == recorder.answer
    t.close()


def test_healthz_and_unknown_paths(server: HttpsServer, client_tls: TlsFiles, pki: TestPki) -> None:
    base = f"https://127.0.0.1:{server.port}"
    tls = ["--cert", str(client_tls.cert), "--key", str(client_tls.key), "--cacert",
           str(pki.ca.cert)]
    ok = curl(*tls, f"{base}/healthz")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == b"ok\n"
    missing = curl(*tls, "-o", "/dev/null", "-w", "%{http_code}", f"{base}/nope")
    assert missing.stdout == b"404"


def test_probe_and_health_check_answer_or_say_why(
    server: HttpsServer, server_tls: TlsFiles, client_tls: TlsFiles, pki: TestPki,
    tmp_path: Path,
) -> None:
    """The one-GET helpers (a partner's connectivity probe, the listener's health check):
    an answer's status or body; no answer is a TransportError naming why."""
    tls = {"cert": client_tls.cert, "key": client_tls.key}
    assert probe(f"https://localhost:{server.port}/healthz", ca=pki.ca.cert, **tls) == 200
    assert probe(f"https://localhost:{server.port}/nope", ca=pki.ca.cert, **tls) == 404
    assert check_health("127.0.0.1", server.port, server_cert=server_tls.cert,
                        **tls) == b"ok\n"
    with pytest.raises(HttpStatus):
        check_health("127.0.0.1", server.port, server_cert=server_tls.cert, path="/nope",
                     **tls)
    with pytest.raises(EndpointInvalid):
        probe(f"http://localhost:{server.port}/", ca=pki.ca.cert, **tls)
    with pytest.raises(ConnectFailed):
        probe(f"https://localhost:{free_port()}/", ca=pki.ca.cert, **tls)
    stranger = TestPki(tmp_path / "other")  # a CA that never signed the server
    with pytest.raises((TlsRejected, ConnectionLost)) as refused:
        probe(f"https://localhost:{server.port}/", ca=stranger.ca.cert, **tls)
    assert f"localhost:{server.port}" in str(refused.value)


# --- curl as an independent client ----------------------------------------------------------


def test_curl_with_client_certificate_posts_a_message(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki, tmp_path: Path
) -> None:
    body = tmp_path / "envelope.xml"
    body.write_bytes(b"<Envelope>curl</Envelope>\n" * 100)
    result = curl(
        "--cert", str(client_tls.cert), "--key", str(client_tls.key),
        "--cacert", str(pki.ca.cert), "--tlsv1.2",
        "-H", "Content-Type: application/xml", "--data-binary", f"@{body}", server.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == recorder.answer
    assert recorder.calls[0][0] == body.read_bytes()
    assert recorder.calls[0][1].subject == client_tls.subject


def test_curl_without_client_certificate_is_refused(
    server: HttpsServer, recorder: Recorder, pki: TestPki
) -> None:
    result = curl("--cacert", str(pki.ca.cert), "--data-binary", "x", server.url)
    assert result.returncode != 0
    assert recorder.calls == []


def test_curl_with_untrusted_client_certificate_is_refused(
    server: HttpsServer, recorder: Recorder, pki: TestPki
) -> None:
    rogue = pki.other_ca().issue("intruder", server=False)
    result = curl("--cert", str(rogue.cert), "--key", str(rogue.key), "--cacert",
                  str(pki.ca.cert), "--data-binary", "x", server.url)
    assert result.returncode != 0
    assert recorder.calls == []


def test_chunked_bodies_from_curl_and_http_client_are_read(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki, tmp_path: Path
) -> None:
    """Apache CXF (and so Domibus) sends a request over 4 KB chunked by default; two
    independent clients send chunked bodies, within and over the limit."""
    body = tmp_path / "envelope.xml"
    body.write_bytes(bytes(range(256)) * 200)  # 51,200 bytes: several chunks
    tls = ("--cert", str(client_tls.cert), "--key", str(client_tls.key), "--cacert",
           str(pki.ca.cert))
    result = curl(*tls, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{body}",
                  server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == recorder.answer
    assert recorder.calls[-1][0] == body.read_bytes()
    # the standard library's client, a generator's pieces each sent as one chunk
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(client_tls.cert, client_tls.key)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        pieces = [b"<Envelope>", b"x" * 5000, b"", b"</Envelope>"]
        conn.request("POST", "/v1/messages", body=iter(pieces), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        answer = conn.getresponse()
        assert (answer.status, answer.read()) == (200, recorder.answer)
        conn.request("POST", "/v1/messages", body=b"after")  # the same connection
        answer = conn.getresponse()
        assert (answer.status, answer.read()) == (200, recorder.answer)
    finally:
        conn.close()
    assert [b for b, _ in recorder.calls[-2:]] == [b"".join(pieces), b"after"]
    calls = len(recorder.calls)
    big = tmp_path / "big.xml"
    big.write_bytes(b"b" * (server.max_body + 1))
    result = curl(*tls, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{big}",
                  "-o", "/dev/null", "-w", "%{http_code}", server.url)
    assert result.stdout == b"413"
    assert len(recorder.calls) == calls


# --- status mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (403, False), (422, False), (429, True),
                              (500, True), (503, True)]
)
def test_non_2xx_status_carries_body_and_retryability(  # noqa: PLR0917 - fixtures
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki,
    status: int, retryable: bool,
) -> None:
    recorder.status = status
    recorder.answer = b"<Receipt status='Rejected'/>"
    t = client(server.url, client_tls, pki.ca.cert)
    with pytest.raises(HttpStatus) as info:
        t.send("m", b"SSN 987654321")
    assert info.value.status == status
    assert info.value.body == recorder.answer
    assert info.value.retryable is retryable
    assert info.value.code == "HttpStatus"
    assert "987654321" not in str(info.value)
    # the connection stays usable after an error status
    recorder.status = 200
    assert t.send("m2", b"x") == recorder.answer
    t.close()


def test_handler_exception_is_a_retryable_500(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    recorder.fail = True
    t = client(server.url, client_tls, pki.ca.cert)
    with pytest.raises(HttpStatus) as info:
        t.send("m", b"x")
    assert info.value.status == 500
    assert info.value.retryable is True
    t.close()


@pytest.mark.parametrize("excess", [1, 1024 * 1024, 20 * 1024 * 1024])
def test_oversized_body_is_refused_with_413_before_the_handler(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki, excess: int
) -> None:
    t = client(server.url, client_tls, pki.ca.cert)
    with pytest.raises(TooLarge) as info:
        t.send("big", b"b" * (server.max_body + excess))
    assert isinstance(info.value, HttpStatus)
    assert info.value.status == 413
    assert info.value.retryable is False
    assert recorder.calls == []
    assert t.send("small", b"s") == recorder.answer
    t.close()


def test_expect_100_continue_with_an_oversized_body_gets_413_unsent(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * (server.max_body + 1))
    result = curl(
        "--cert", str(client_tls.cert), "--key", str(client_tls.key), "--cacert",
        str(pki.ca.cert), "-H", "Expect: 100-continue", "--data-binary", f"@{big}",
        "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", server.url,
    )
    status, uploaded = result.stdout.decode().split()
    assert status == "413"
    assert float(uploaded) == 0  # the body was never sent
    assert recorder.calls == []


def test_connection_cap(pki: TestPki, server_tls: TlsFiles, client_tls: TlsFiles,
                        recorder: Recorder) -> None:
    srv = make_server(pki, server_tls, recorder, max_connections=2, read_timeout=5)
    holders = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
    try:
        time.sleep(0.3)  # both accepted and waiting in their TLS handshakes
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as third:
            assert third.recv(10) == b""  # closed at once, without a TLS handshake
        for h in holders:
            h.close()
        time.sleep(0.3)
        t = client(srv.url, client_tls, pki.ca.cert)
        assert t.send("m", b"x") == recorder.answer
    finally:
        for h in holders:
            h.close()
        srv.stop()


def test_oversized_answer_is_refused(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    recorder.answer = b"r" * 5000
    t = client(server.url, client_tls, pki.ca.cert, max_response=4096)
    with pytest.raises(TooLarge):
        t.send("m", b"x")
    t.close()


# --- TLS refusals (permanent) -----------------------------------------------------------


def test_untrusted_client_certificate_is_a_permanent_tls_error(
    server: HttpsServer, recorder: Recorder, pki: TestPki
) -> None:
    rogue = pki.other_ca().issue("intruder-2", server=False)
    t = client(server.url, rogue, pki.ca.cert)
    with pytest.raises(TlsRejected) as info:
        t.send("m", b"x")
    assert info.value.retryable is False
    assert recorder.calls == []


def test_expired_client_certificate_is_refused(
    server: HttpsServer, recorder: Recorder, pki: TestPki
) -> None:
    old = pki.client("node-old", expired=True)
    t = client(server.url, old, pki.ca.cert)
    with pytest.raises(TlsRejected) as info:
        t.send("m", b"x")
    assert info.value.retryable is False
    assert recorder.calls == []


def test_expired_server_certificate_is_refused(
    pki: TestPki, recorder: Recorder, client_tls: TlsFiles
) -> None:
    srv = make_server(pki, pki.server("old-server", expired=True), recorder)
    try:
        t = client(srv.url, client_tls, pki.ca.cert)
        with pytest.raises(TlsRejected) as info:
            t.send("m", b"x")
        assert "expired" in str(info.value)
        assert info.value.retryable is False
    finally:
        srv.stop()
    assert recorder.calls == []


def test_server_from_another_ca_is_refused(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    other = pki.other_ca()
    t = client(server.url, client_tls, other.cert)  # we pin a CA the server is not from
    with pytest.raises(TlsRejected) as info:
        t.send("m", b"x")
    assert info.value.code == "TlsRejected"
    assert recorder.calls == []


def test_client_without_certificate_is_refused_and_server_keeps_serving(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    with (  # noqa: PT012 - the refusal may surface at any of these steps
        pytest.raises((ssl.SSLError, ConnectionError)),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        tls.recv(100)
    assert recorder.calls == []
    t = client(server.url, client_tls, pki.ca.cert)
    assert t.send("after", b"ok") == recorder.answer
    t.close()


def test_server_requires_tls_1_2_and_client_certificates(server: HttpsServer) -> None:
    assert server._context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server._context.verify_mode == ssl.CERT_REQUIRED


# --- network faults (retryable) -----------------------------------------------------------


def test_partner_down_is_retryable(client_tls: TlsFiles, pki: TestPki) -> None:
    port = free_port()  # nothing listens there
    t = client(f"https://127.0.0.1:{port}/v1/messages", client_tls, pki.ca.cert)
    with pytest.raises(ConnectFailed) as info:
        t.send("m", b"x")
    assert info.value.retryable is True
    assert f"127.0.0.1:{port}" in str(info.value)


def test_server_that_accepts_but_never_answers_times_out(
    client_tls: TlsFiles, pki: TestPki
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        t = client(f"https://127.0.0.1:{port}/v1/messages", client_tls, pki.ca.cert,
                   connect_timeout=0.5, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            t.send("m", b"x")
        assert time.monotonic() - started < 5
        assert info.value.retryable is True


def test_handler_slower_than_the_client_timeout_is_retryable(
    pki: TestPki, server_tls: TlsFiles, recorder: Recorder, client_tls: TlsFiles
) -> None:
    recorder.delay = 1.5
    srv = make_server(pki, server_tls, recorder)
    try:
        t = client(srv.url, client_tls, pki.ca.cert, timeout=0.5)
        with pytest.raises(Timeout) as info:
            t.send("m", b"x")
        assert info.value.retryable is True
        recorder.delay = 0
        assert t.send("m2", b"y") == recorder.answer  # a new connection works
    finally:
        srv.stop()


def raw_tls_server_context(pki: TestPki, server_tls: TlsFiles) -> ssl.SSLContext:
    """A bare TLS server context (mutual TLS) for tests that misbehave on purpose."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_tls.cert, server_tls.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.ca.cert)
    return context


@pytest.mark.parametrize("body_size", [100, 5 * 1024 * 1024], ids=["before-answer", "mid-upload"])
def test_connection_reset_is_retryable(
    pki: TestPki, server_tls: TlsFiles, client_tls: TlsFiles, body_size: int
) -> None:
    """A TLS server that reads (part of) the request and then resets the connection."""
    context = raw_tls_server_context(pki, server_tls)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as tls:
            tls.recv(65536)
            # close with RST: linger on, timeout 0
            tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        listener.close()

    thread = threading.Thread(target=serve)
    thread.start()
    t = client(f"https://127.0.0.1:{port}/v1/messages", client_tls, pki.ca.cert, timeout=5)
    with pytest.raises(ConnectionLost) as info:
        t.send("m", b"x" * body_size)
    assert info.value.retryable is True
    thread.join(5)


@pytest.mark.parametrize("sent", [0, 10], ids=["headers-only", "part-of-body"])
def test_answer_cut_short_is_a_lost_connection(
    pki: TestPki, server_tls: TlsFiles, client_tls: TlsFiles, sent: int
) -> None:
    """A server that dies after its response headers (before all of the body it
    announced): the answer is lost, not an empty or partial one. Read as an empty 200, it
    looked like 'accepted, receipt later' and the message waited for the receipt
    timeout (found by the kill -9 crash test)."""
    context = raw_tls_server_context(pki, server_tls)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                request += tls.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                        b"Content-Length: 100\r\n\r\n" + b"<" * sent)
        listener.close()

    thread = threading.Thread(target=serve)
    thread.start()
    t = client(f"https://127.0.0.1:{port}/v1/messages", client_tls, pki.ca.cert, timeout=5)
    with pytest.raises(ConnectionLost, match="cut short") as info:
        t.send("m", b"x" * 1000)
    assert info.value.retryable is True
    thread.join(5)


def test_slow_client_is_closed(pki: TestPki, server_tls: TlsFiles, client_tls: TlsFiles,
                               recorder: Recorder) -> None:
    srv = make_server(pki, server_tls, recorder, read_timeout=0.6, request_timeout=1.0)
    try:
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(client_tls.cert, client_tls.key)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            started = time.monotonic()
            try:  # drip the body slower than the server allows
                for _ in range(20):
                    tls.sendall(b"x")
                    time.sleep(0.25)
                    if time.monotonic() - started > 4:
                        break
                data = tls.recv(100)
            except (OSError, ssl.SSLError):
                data = b""
            assert data == b""
            assert time.monotonic() - started < 4
        assert recorder.calls == []
    finally:
        srv.stop()


def test_silent_client_does_not_block_others(
    pki: TestPki, server_tls: TlsFiles, client_tls: TlsFiles, recorder: Recorder
) -> None:
    srv = make_server(pki, server_tls, recorder, read_timeout=5)
    try:
        with socket.create_connection(("127.0.0.1", srv.port)):  # never starts TLS
            t = client(srv.url, client_tls, pki.ca.cert, timeout=3)
            assert t.send("m", b"x") == recorder.answer
            t.close()
    finally:
        srv.stop()


# --- the push-only share of the transport contract ----------------------------------------


def test_push_only_and_close(server: HttpsServer, client_tls: TlsFiles, pki: TestPki) -> None:
    t = client(server.url, client_tls, pki.ca.cert)
    for call in (t.list, lambda: t.fetch("a"), lambda: t.acknowledge("a")):
        with pytest.raises(NotSupported) as info:
            call()
        assert isinstance(info.value, TransportError)
        assert info.value.retryable is False
    t.send("a", b"x")
    t.close()
    t.close()
    with pytest.raises(TransportClosed):
        t.send("b", b"y")


def test_bad_options_are_endpoint_errors(client_tls: TlsFiles, pki: TestPki,
                                         tmp_path: Path) -> None:
    with pytest.raises(EndpointInvalid):
        open_transport("https://127.0.0.1:1/v1/messages", cert=client_tls.cert)
    with pytest.raises(EndpointInvalid):
        open_transport("https://127.0.0.1:1/v1/messages", cert=client_tls.cert,
                       key=client_tls.key, ca=tmp_path / "missing.pem")
    with pytest.raises(EndpointInvalid):
        open_transport("https://127.0.0.1:1/v1/messages", cert=client_tls.cert,
                       key=client_tls.key, ca=pki.ca.cert, colour="blue")


def test_raw_http_client_sees_keep_alive(server: HttpsServer, client_tls: TlsFiles,
                                         pki: TestPki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(client_tls.cert, client_tls.key)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=5)
    for _ in range(3):
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.read() == b"ok\n"
        assert not response.will_close
    conn.close()


def test_answer_headers_and_body_arrive_in_one_record(server: HttpsServer,
                                                     recorder: Recorder,
                                                     client_tls: TlsFiles, pki: TestPki) -> None:
    """The server writes the status line, headers and a small body at once: the first
    TLS record the client reads holds all of it (a receipt is never split from its
    headers by a crash between two writes)."""
    recorder.answer = b"<Receipt>" + b"r" * 4000 + b"</Receipt>"
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(client_tls.cert, client_tls.key)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        body = b"<Envelope/>"
        tls.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body)
        first = tls.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    assert first.endswith(recorder.answer)


def test_server_certificate_for_another_name_is_refused(
    pki: TestPki, recorder: Recorder, client_tls: TlsFiles
) -> None:
    wrong = pki.ca.issue("elsewhere", server=True, ips=("10.9.9.9",), dns=("elsewhere.example",))
    srv = make_server(pki, wrong, recorder)
    try:
        t = client(srv.url, client_tls, pki.ca.cert)
        with pytest.raises(TlsRejected) as info:
            t.send("m", b"x")
        assert "127.0.0.1" in str(info.value)
        assert info.value.retryable is False
    finally:
        srv.stop()
    assert recorder.calls == []


def test_client_certificates_from_several_configured_cas(
    pki: TestPki, server_tls: TlsFiles, recorder: Recorder
) -> None:
    second = pki.other_ca()
    from_second = second.issue("node-c", server=False)
    srv = HttpsServer("127.0.0.1", 0, cert=server_tls.cert, key=server_tls.key,
                      client_ca=[pki.ca.cert, second.cert], handler=recorder,
                      max_body=1024).start()
    try:
        t = client(srv.url, from_second, pki.ca.cert)
        assert t.send("m", b"x") == recorder.answer
        assert recorder.calls[0][1].subject == from_second.subject
        third = pki.other_ca().issue("node-d", server=False)
        with pytest.raises(TlsRejected):
            client(srv.url, third, pki.ca.cert).send("m", b"y")
    finally:
        srv.stop()


def test_one_client_shared_by_threads_uses_a_pool(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki
) -> None:
    recorder.delay = 0.05  # keep requests overlapping
    t = client(server.url, client_tls, pki.ca.cert, pool_size=4)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                assert t.send(f"t{n}-{i}", b"%d-%d" % (n, i)) == recorder.answer
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert len(recorder.calls) == 40
    connections = {peer.address for _, peer in recorder.calls}
    assert 2 <= len(connections) <= 4  # parallel, and reused within the pool size


def test_request_that_could_not_be_written_on_a_reused_connection_is_resent_once(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = client(server.url, client_tls, pki.ca.cert)
    t.send("a", b"1")
    pooled = t._idle[-1].conn

    def broken(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(pooled, "request", broken)
    assert t.send("b", b"2") == recorder.answer  # resent on a fresh connection
    assert [b for b, _ in recorder.calls] == [b"1", b"2"]


def test_lost_answer_on_a_reused_connection_is_not_resent(
    server: HttpsServer, recorder: Recorder, client_tls: TlsFiles, pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = client(server.url, client_tls, pki.ca.cert)
    t.send("a", b"1")
    pooled = t._idle[-1].conn

    def no_answer(*args: object, **kwargs: object) -> None:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")

    monkeypatch.setattr(pooled, "getresponse", no_answer)
    with pytest.raises(ConnectionLost) as info:
        t.send("b", b"2")  # it may have been processed: the caller decides to retry
    assert info.value.retryable is True
    assert t.send("c", b"3") == recorder.answer


def test_an_extra_route_has_its_own_handler_and_content_types(
    pki: TestPki, server_tls: TlsFiles, recorder: Recorder, client_tls: TlsFiles
) -> None:
    """The AS4 endpoint beside /v1/messages: its own handler and response Content-Type, the
    request's Content-Type (a multipart boundary) handed to it, and per-message request
    Content-Types from the client."""
    other = Recorder(answer=b"<soap/>")
    srv = HttpsServer("127.0.0.1", 0, cert=server_tls.cert, key=server_tls.key,
                      client_ca=pki.ca.cert, handler=recorder,
                      routes={"/as4": (other, "application/soap+xml")}).start()
    try:
        mime_type = 'multipart/related; boundary="b1"; type="application/soap+xml"'
        t = client(f"https://127.0.0.1:{srv.port}/as4", client_tls, pki.ca.cert)
        assert t.send("m.xml", b"--b1\r\n\r\nx\r\n--b1--\r\n", content_type=mime_type) == b"<soap/>"
        assert other.calls[0][1].content_type == mime_type
        assert recorder.calls == []
        tls = ["--cert", str(client_tls.cert), "--key", str(client_tls.key), "--cacert",
               str(pki.ca.cert)]
        answered = curl(*tls, "-D", "-", "--data-binary", "x",
                        f"https://127.0.0.1:{srv.port}/as4")
        assert b"content-type: application/soap+xml" in answered.stdout.lower()
        plain = client(srv.url, client_tls, pki.ca.cert)
        assert plain.send("m.xml", b"<Envelope/>") == recorder.answer
        assert recorder.calls[0][1].content_type == "application/octet-stream"
    finally:
        srv.stop()
    with pytest.raises(EndpointInvalid):
        HttpsServer("127.0.0.1", 0, cert=server_tls.cert, key=server_tls.key,
                    client_ca=pki.ca.cert, handler=recorder,
                    routes={"/v1/messages": (other, "text/plain")})
