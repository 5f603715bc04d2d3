"""Batches over HTTPS (``POST /v1/messages/batch``): our client and server with real mutual
TLS on 127.0.0.1, raw ``http.client`` requests for what our client never sends, and curl
plus the ``email`` package as an independent client and multipart reader."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from tests.support.pki import TestPki, TlsFiles
from transports import BatchSender, PeerInfo, Transport, open_transport
from transports.errors import (
    EndpointInvalid,
    HttpStatus,
    HttpTooLarge,
    InvalidName,
    NotSupported,
    RemoteFailed,
    TooLarge,
)
from transports.https_client import HttpsTransport
from transports.https_server import HttpsServer
from transports.multipart import encode_http_response, encode_multipart

pytestmark = pytest.mark.integration

RECEIPT = b"<Receipt status='Delivered'/>"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server_tls(pki: TestPki) -> TlsFiles:
    return pki.server()


@pytest.fixture(scope="module")
def client_tls(pki: TestPki) -> TlsFiles:
    return pki.client("node-a")


def answer_for(part: bytes) -> tuple[int, bytes]:
    """What the test gateway answers an envelope: its first byte chooses."""
    kind = part[:1]
    return {
        b"A": (200, RECEIPT),
        b"R": (400, b"<Receipt status='Rejected'/>"),
        b"B": (400, b""),
        b"U": (503, b""),
        b"L": (413, b""),
        b"Q": (202, b""),
    }.get(kind, (200, b"<Receipt n='" + str(len(part)).encode() + b"'/>"))


@dataclass
class Gateway:
    """Both handlers of a test server; records what arrived (parts, peer)."""

    singles: list[tuple[bytes, PeerInfo]] = field(default_factory=list)
    batches: list[tuple[list[bytes], PeerInfo]] = field(default_factory=list)
    answer: Callable[[list[bytes]], Sequence[tuple[int, bytes]]] = (
        lambda parts: [answer_for(p) for p in parts])
    lock: threading.Lock = field(default_factory=threading.Lock)

    def single(self, body: bytes, peer: PeerInfo) -> tuple[int, bytes]:
        with self.lock:
            self.singles.append((body, peer))
        return answer_for(body)

    def batch(self, parts: list[bytes], peer: PeerInfo) -> Sequence[tuple[int, bytes]]:
        with self.lock:
            self.batches.append((parts, peer))
        return self.answer(parts)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


def start(pki: TestPki, tls: TlsFiles, gateway: Gateway, *, batch: bool = True,
          **options: object) -> HttpsServer:
    return HttpsServer("127.0.0.1", 0, cert=tls.cert, key=tls.key, client_ca=pki.ca.cert,
                       handler=gateway.single,
                       batch_handler=gateway.batch if batch else None,
                       **{"max_body": 4 * 1024 * 1024, **options}).start()  # type: ignore[arg-type]


@pytest.fixture
def server(pki: TestPki, server_tls: TlsFiles, gateway: Gateway) -> Iterator[HttpsServer]:
    srv = start(pki, server_tls, gateway, max_batch=16)
    yield srv
    srv.stop()


@pytest.fixture
def connect(client_tls: TlsFiles, pki: TestPki) -> Iterator[Callable[..., HttpsTransport]]:
    opened: list[HttpsTransport] = []

    def make(url: str, **options: object) -> HttpsTransport:
        t = open_transport(url, cert=client_tls.cert, key=client_tls.key, ca=pki.ca.cert,
                           **options)
        assert isinstance(t, HttpsTransport)
        opened.append(t)
        return t

    yield make
    for t in opened:
        t.close()


def raw_post(server: HttpsServer, client_tls: TlsFiles, pki: TestPki, *, path: str,
             content_type: str, body: bytes) -> tuple[int, bytes, str]:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(client_tls.cert, client_tls.key)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


# --- our client and server ---------------------------------------------------------------


def test_a_batch_gets_one_answer_per_envelope_in_order(
        server: HttpsServer, gateway: Gateway, connect: Callable[..., HttpsTransport],
        client_tls: TlsFiles) -> None:
    envelopes = [b"A<Envelope/>", b"R<Envelope/>", b"B", b"U", b"L", b"Q",
                 b"x" * 10_240, b"A\r\n--cse-batch-0\r\n", b""]
    t = connect(server.url)
    assert isinstance(t, BatchSender)
    assert isinstance(t, Transport)
    answers = t.send_batch([(f"m{i}.xml", e) for i, e in enumerate(envelopes)])
    assert answers == [answer_for(e) for e in envelopes]
    assert answers[1] == (400, b"<Receipt status='Rejected'/>")
    assert answers[2:6] == [(400, b""), (503, b""), (413, b""), (202, b"")]
    [(parts, peer)] = gateway.batches
    assert parts == envelopes  # byte-exact, in order
    assert peer.subject == client_tls.subject
    assert peer.content_type.startswith("multipart/mixed; boundary=cse-batch-")
    assert gateway.singles == []


def test_a_full_batch_of_10_kb_envelopes(server: HttpsServer, gateway: Gateway,
                                         connect: Callable[..., HttpsTransport]) -> None:
    envelopes = [bytes([65 + i]) * 10_240 for i in range(16)]
    answers = connect(server.url).send_batch([(f"m{i}", e) for i, e in enumerate(envelopes)])
    assert answers == [answer_for(e) for e in envelopes]
    assert gateway.batches[0][0] == envelopes


def test_batches_and_single_posts_share_one_kept_alive_connection(
        server: HttpsServer, gateway: Gateway,
        connect: Callable[..., HttpsTransport]) -> None:
    t = connect(server.url, pool_size=1)
    assert t.send_batch([("a", b"A1"), ("b", b"A2")]) == [(200, RECEIPT)] * 2
    assert t.send("c", b"A3") == RECEIPT
    assert t.send_batch([("d", b"A4")]) == [(200, RECEIPT)]
    addresses = {peer.address for _, peer in gateway.batches} | {
        peer.address for _, peer in gateway.singles}
    assert len(addresses) == 1  # the same client port: one connection
    assert len(t._idle) == 1


def test_a_server_without_a_batch_handler_is_not_supported(
        pki: TestPki, server_tls: TlsFiles, gateway: Gateway,
        connect: Callable[..., HttpsTransport]) -> None:
    srv = start(pki, server_tls, gateway, batch=False)
    try:
        t = connect(srv.url)
        with pytest.raises(NotSupported, match="does not accept batches") as info:
            t.send_batch([("a", b"A1")])
        assert info.value.retryable is False
        assert "HTTP 404 for /v1/messages/batch" in str(info.value)
        assert t.send("a", b"A1") == RECEIPT  # the fallback: one by one
        assert gateway.batches == []
    finally:
        srv.stop()


@pytest.mark.parametrize("status", [404, 405, 501])
def test_no_batch_endpoint_statuses_are_not_supported(
        pki: TestPki, server_tls: TlsFiles, gateway: Gateway,
        connect: Callable[..., HttpsTransport], status: int) -> None:
    """A partner whose server answers the batch path with 404, 405 or 501 (a route of
    ours standing in for another server: the URL's path + /batch)."""
    srv = HttpsServer("127.0.0.1", 0, cert=server_tls.cert, key=server_tls.key,
                      client_ca=pki.ca.cert, handler=gateway.single,
                      routes={"/partner/batch": (lambda body, peer: (status, b"no"),
                                                 "text/plain")}).start()
    try:
        t = connect(f"https://127.0.0.1:{srv.port}/partner")
        with pytest.raises(NotSupported, match=f"HTTP {status} for /partner/batch"):
            t.send_batch([("a", b"A1")])
    finally:
        srv.stop()


def test_too_many_parts_is_413_before_the_handler(
        pki: TestPki, server_tls: TlsFiles, gateway: Gateway,
        connect: Callable[..., HttpsTransport]) -> None:
    srv = start(pki, server_tls, gateway, max_batch=4)
    try:
        t = connect(srv.url)
        assert len(t.send_batch([(f"m{i}", b"A") for i in range(4)])) == 4
        with pytest.raises(HttpTooLarge) as info:
            t.send_batch([(f"m{i}", b"A") for i in range(5)])
        assert isinstance(info.value, HttpStatus)
        assert info.value.status == 413
        assert info.value.body == b"more than 4 parts\n"
        assert info.value.retryable is False
        assert len(gateway.batches) == 1
        assert t.send_batch([("again", b"A")]) == [(200, RECEIPT)]
    finally:
        srv.stop()


def test_a_batch_over_max_body_is_413(pki: TestPki, server_tls: TlsFiles, gateway: Gateway,
                                      connect: Callable[..., HttpsTransport]) -> None:
    srv = start(pki, server_tls, gateway, max_body=50_000)
    try:
        with pytest.raises(HttpTooLarge):
            connect(srv.url).send_batch([(f"m{i}", b"A" * 10_000) for i in range(5)])
        assert gateway.batches == []
    finally:
        srv.stop()


@pytest.mark.parametrize(("content_type", "body", "detail"), [
    ("multipart/mixed; boundary=B", b"--B\r\nContent-Type: application/xml\r\n\r\n<a/>\r\n",
     b"no close delimiter after the last part (part index 0, byte 5)"),
    ("multipart/mixed; boundary=B", b"--B--\r\n", b"a multipart body with no parts (byte 0)"),
    ("application/xml", b"<Envelope/>", b"Content-Type is not multipart/mixed"),
    ("multipart/mixed", b"--B\r\n\r\nx\r\n--B--\r\n",
     b"Content-Type needs exactly one boundary parameter"),
    ("multipart/mixed; boundary=B", b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n",
     b"a part whose Content-Type is not application/xml (part index 0, byte 5)"),
    ("multipart/mixed; boundary=B", b"--B\nContent-Type: application/xml\n\nx\n--B--\n",
     b"a delimiter is not followed by CRLF (byte 0)"),
])
def test_broken_framing_is_a_bare_400(  # noqa: PLR0917 - fixtures
                                      server: HttpsServer, gateway: Gateway,
                                      client_tls: TlsFiles, pki: TestPki, content_type: str,
                                      body: bytes, detail: bytes) -> None:
    status, answer, answer_type = raw_post(server, client_tls, pki, path="/v1/messages/batch",
                                           content_type=content_type, body=body)
    assert status == 400
    assert answer == b"not a valid batch: " + detail + b"\n"
    assert not answer_type.startswith("multipart/")
    assert gateway.batches == []


def test_handler_failures_are_a_retryable_500(
        server: HttpsServer, gateway: Gateway,
        connect: Callable[..., HttpsTransport], caplog: pytest.LogCaptureFixture) -> None:
    t = connect(server.url)

    def boom(parts: list[bytes]) -> list[tuple[int, bytes]]:
        raise RuntimeError("handler bug")

    for wrong in (boom, lambda parts: [(200, b"")] * (len(parts) - 1),
                  lambda parts: [(99, b"")] * len(parts)):
        gateway.answer = wrong
        with pytest.raises(HttpStatus) as info:
            t.send_batch([("a", b"A-987-65-4321"), ("b", b"A")])
        assert info.value.status == 500
        assert info.value.retryable is True
    assert "987-65-4321" not in caplog.text
    assert "batch handler failed (2 parts)" in caplog.text


@pytest.mark.parametrize(("content_type", "answer", "detail"), [
    ("application/xml", RECEIPT, "Content-Type is not multipart/mixed"),
    (encode_multipart([encode_http_response(200, RECEIPT)], part_type="application/http",
                      boundary="X")[0],
     encode_multipart([encode_http_response(200, RECEIPT)], part_type="application/http",
                      boundary="X")[1], "1 answer parts for 2 envelopes"),
    (encode_multipart([encode_http_response(200, RECEIPT)] * 3,
                      part_type="application/http", boundary="X")[0],
     encode_multipart([encode_http_response(200, RECEIPT)] * 3,
                      part_type="application/http", boundary="X")[1],
     "more than 2 parts (part index 2"),
    ("multipart/mixed; boundary=X", b"--X\r\nContent-Type: application/http\r\n\r\n"
     b"HTTP/1.1 200 OK\r\n\r\n", "no close delimiter"),
    (encode_multipart([encode_http_response(200, RECEIPT)] * 2, boundary="X")[0],
     encode_multipart([encode_http_response(200, RECEIPT)] * 2, boundary="X")[1],
     "a part whose Content-Type is not application/http (part index 0"),
    (encode_multipart([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"] * 2,
                      part_type="application/http", boundary="X")[0],
     encode_multipart([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"] * 2,
                      part_type="application/http", boundary="X")[1],
     "Content-Length does not match the 5-byte body (part index 0"),
])
def test_a_broken_2xx_answer_is_a_retryable_error(  # noqa: PLR0917 - fixtures
        pki: TestPki, server_tls: TlsFiles, gateway: Gateway,
        connect: Callable[..., HttpsTransport], content_type: str, answer: bytes,
        detail: str) -> None:
    """A partner answering the batch with 200 but not one application/http part per
    envelope (a route of ours standing in for a broken server)."""
    srv = HttpsServer("127.0.0.1", 0, cert=server_tls.cert, key=server_tls.key,
                      client_ca=pki.ca.cert, handler=gateway.single,
                      routes={"/odd/batch": (lambda body, peer: (200, answer),
                                             content_type)}).start()
    try:
        t = connect(f"https://127.0.0.1:{srv.port}/odd")
        with pytest.raises(RemoteFailed) as info:
            t.send_batch([("a", b"A1"), ("b", b"A2")])
        assert info.value.retryable is True
        assert "not one application/http part per envelope" in str(info.value)
        assert detail in str(info.value)
    finally:
        srv.stop()


def test_names_are_checked_and_an_empty_batch_sends_nothing(
        server: HttpsServer, gateway: Gateway, connect: Callable[..., HttpsTransport]) -> None:
    t = connect(server.url)
    with pytest.raises(InvalidName):
        t.send_batch([("good", b"A"), ("../bad", b"A")])
    assert t.send_batch([]) == []
    assert gateway.batches == []
    assert t._idle == []  # no connection was even made


def test_max_response_applies_to_the_whole_batch_answer(
        server: HttpsServer, connect: Callable[..., HttpsTransport]) -> None:
    t = connect(server.url, max_response=1000)
    assert len(t.send_batch([(f"m{i}", b"A") for i in range(4)])) == 4  # ~ 800 bytes
    with pytest.raises(TooLarge):
        t.send_batch([(f"m{i}", b"A") for i in range(8)])


def test_a_query_string_stays_after_the_batch_path(
        pki: TestPki, server_tls: TlsFiles, gateway: Gateway,
        connect: Callable[..., HttpsTransport]) -> None:
    t = connect("https://127.0.0.1:1/v1/messages?x=1")
    assert t.batch_path == "/v1/messages/batch?x=1"
    assert t.path == "/v1/messages?x=1"


# --- curl and the email package, independent of our client ---------------------------------------


def test_curl_posts_a_hand_made_multipart_and_email_reads_the_answer(
        server: HttpsServer, gateway: Gateway, client_tls: TlsFiles, pki: TestPki,
        tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:  # scripts/os-deps.sh installs it; make test runs that first
        pytest.fail("curl is needed as an independent HTTPS client: apt-get install curl")
    body = (b"preamble\r\n"
            b"--hand made\r\nContent-Type: application/xml\r\n\r\nA<Envelope/>\r\n"
            b"--hand made\r\nContent-Type: application/xml; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\nR<Envelope>\xc3\xa9</Envelope>\r\n"
            b"--hand made\r\nContent-Type: application/xml\r\n\r\nU\r\n"
            b"--hand made--\r\n")
    (tmp_path / "batch").write_bytes(body)
    result = subprocess.run(
        [curl, "-sS", "--max-time", "10", "--cert", str(client_tls.cert), "--key",
         str(client_tls.key), "--cacert", str(pki.ca.cert),
         "-H", 'Content-Type: multipart/mixed; boundary="hand made"',
         "--data-binary", f"@{tmp_path / 'batch'}", "-o", str(tmp_path / "answer"),
         "-w", "%{http_code} %{content_type}", f"{server.url}/batch"],
        capture_output=True, timeout=20, check=False)
    assert result.returncode == 0, result.stderr
    code, _, content_type = result.stdout.decode().partition(" ")
    assert code == "200"
    assert gateway.batches[0][0] == [b"A<Envelope/>", b"R<Envelope>\xc3\xa9</Envelope>", b"U"]
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n"
        + (tmp_path / "answer").read_bytes())
    assert isinstance(message, EmailMessage)
    assert not message.defects
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/http"] * 3
    heads = []
    for part in parts:
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        head, _, answer = payload.partition(b"\r\n\r\n")
        status_line, *fields = head.split(b"\r\n")
        assert f"Content-Length: {len(answer)}".encode() in fields
        heads.append((status_line, answer))
    assert heads == [(b"HTTP/1.1 200 OK", RECEIPT),
                     (b"HTTP/1.1 400 Bad Request", b"<Receipt status='Rejected'/>"),
                     (b"HTTP/1.1 503 Service Unavailable", b"")]


def test_batch_options_are_checked(pki: TestPki, server_tls: TlsFiles, gateway: Gateway,
                                   tmp_path: Path) -> None:
    with pytest.raises(EndpointInvalid, match="max_batch"):
        start(pki, server_tls, gateway, max_batch=0)
    with pytest.raises(EndpointInvalid, match="repeats the messages, batch or health path"):
        HttpsServer("127.0.0.1", 0, cert=server_tls.cert, key=server_tls.key,
                    client_ca=pki.ca.cert, handler=gateway.single, batch_handler=gateway.batch,
                    routes={"/v1/messages/batch": (gateway.single, "text/plain")})
    local = open_transport(f"file://{tmp_path}")
    assert not isinstance(local, BatchSender)  # only HTTPS batches


def test_a_chunked_batch_is_read(server: HttpsServer, gateway: Gateway, client_tls: TlsFiles,
                                 pki: TestPki) -> None:
    """Transfer-Encoding: chunked (what Apache CXF sends by default) frames a batch too."""
    content_type, body = encode_multipart([b"A1", b"R2" * 5000])
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(client_tls.cert, client_tls.key)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        conn.request("POST", "/v1/messages/batch",
                     body=iter([body[:1000], body[1000:7000], body[7000:]]),
                     headers={"Content-Type": content_type}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    finally:
        conn.close()
    assert gateway.batches[0][0] == [b"A1", b"R2" * 5000]


def test_a_batch_that_could_not_be_written_on_a_reused_connection_is_resent_once(
        server: HttpsServer, gateway: Gateway, connect: Callable[..., HttpsTransport],
        monkeypatch: pytest.MonkeyPatch) -> None:
    t = connect(server.url)
    t.send("a", b"A1")
    pooled = t._idle[-1].conn

    def broken(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(pooled, "request", broken)
    assert t.send_batch([("b", b"A2"), ("c", b"A3")]) == [(200, RECEIPT)] * 2
    assert [parts for parts, _ in gateway.batches] == [[b"A2", b"A3"]]  # sent once
