"""``gateway partner ping`` and the service function behind it, against real partners on
loopback: a node whose HTTPS listener (mutual TLS) runs in process answers a signed ping
with a signed receipt; a node it does not know is refused with the reason; a partner that
is down gives a clear error; a local folder is listed. Each ping is an audit event naming
the operator, on both sides; nothing is stored or delivered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.nodekeys import load_node_keys
from gateway.node.ping import ping_transport
from gateway.service.context import NodeContext
from gateway.service.partners import ping_partner
from gateway.store.states import Direction
from tests.support.gwnodes import (
    NodeSpec,
    PartnerSpec,
    free_port,
    https_node,
    https_to,
    write_config,
)
from tests.support.pki import TestPki
from tests.support.sshd import SshServer
from transports.errors import HttpStatus

pytestmark = [pytest.mark.integration]

A, B, X = "fips:0600000", "fips:4800000", "fips:5300000"


@dataclass
class Net:
    a: NodeSpec
    b: NodeSpec
    x: NodeSpec  # a node B has never registered
    r: NodeSpec  # a node that has no encryption certificate of B (as a relay's partners)
    gateway_b: Gateway
    folder: Path


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    cache = tmp_path / "keys"
    cache.mkdir()
    pki = TestPki(tmp_path / "pki")
    b_port = free_port()
    folder = tmp_path / "exchange"
    folder.mkdir()
    a = NodeSpec("a", A, tmp_path / "a")
    x = NodeSpec("x", X, tmp_path / "x")
    r = NodeSpec("r", A, tmp_path / "r")
    b = https_node("b", B, tmp_path, pki, b_port)
    a.partners = [PartnerSpec(B, [https_to(pki, "a", b_port), (folder.as_uri(), {})])]
    x.partners = [PartnerSpec(B, [https_to(pki, "x", b_port)])]
    r.partners = [PartnerSpec(B, [https_to(pki, "r", b_port)])]
    b.partners = [PartnerSpec(A, [("file:///nonexistent", {})])]
    write_config(a, cache, [a, b])
    write_config(b, cache, [a, b])
    write_config(x, cache, [x, b])
    write_config(r, cache, [r])
    gateway_b = Gateway(load_config(b.config_path)).start(schedule=False)
    try:
        yield Net(a, b, x, r, gateway_b, folder)
    finally:
        gateway_b.stop()


def events(spec: NodeSpec, code: str) -> list[dict[str, object]]:
    with NodeContext.open(spec.config_path) as ctx, ctx.audit() as log:
        return [e.to_dict() for e in log.query(code=code)]


def test_a_signed_ping_is_answered_with_a_verified_receipt(net: Net) -> None:
    with NodeContext.open(net.a.config_path) as ctx:
        https, folder = ping_partner(ctx, B, operator="olga", now=datetime.now(UTC))
    assert https.ok, https
    assert (https.check, https.code) == ("message", None)
    assert "signed receipt verified" in https.reason
    assert 0 <= https.latency_ms < 10_000
    assert (folder.ok, folder.check) == (True, "session")
    assert "0 file(s) waiting" in folder.reason
    # recorded on our side, naming the operator; on B's, who pinged it
    pinged = events(net.a, "partner_pinged")
    assert [(e["actor"], e["partner"], e["error_code"], e["detail"]["ok"], e["transport"])
            for e in pinged] == [("olga", B, None, 1, "https"), ("olga", B, None, 1, "file")]
    (answered,) = events(net.b, "ping_answered")
    assert (answered["from_party"], answered["error_code"]) == (A, None)
    # B neither stored nor delivered anything
    with NodeContext.open(net.b.config_path) as ctx:
        assert all(ctx.spool.select(direction=d) == [] for d in Direction)
    assert not net.b.inbox.exists() or list(net.b.inbox.iterdir()) == []


def test_an_unknown_sender_is_refused_with_the_reason(net: Net) -> None:
    with NodeContext.open(net.x.config_path) as ctx:
        (result,) = ping_partner(ctx, B, operator="olga", now=datetime.now(UTC))
    assert not result.ok
    assert result.code == "CertificateUntrusted", result
    assert "refused the ping" in result.reason
    (answered,) = events(net.b, "ping_answered")
    assert answered["error_code"] == "CertificateUntrusted"


def test_without_the_partners_encryption_certificate_tls_is_checked(net: Net) -> None:
    # a relay's partners register no encryption certificate for it (it never opens
    # messages): there is nothing to seal a ping to, so the connection is what is checked
    with NodeContext.open(net.r.config_path) as ctx:
        (result,) = ping_partner(ctx, B, operator="olga", now=datetime.now(UTC))
    assert (result.ok, result.check) == (True, "tls"), result
    assert "mutual TLS established; the endpoint answered HTTP 404" in result.reason
    assert "no encryption certificate of fips:4800000 is registered here" in result.reason
    assert events(net.b, "ping_answered") == []


def test_partner_down_and_the_cli(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(net.a.config_path)
    assert main(["--config", config, "partner", "ping", B]) == 0
    text = capsys.readouterr().out
    assert "https://127.0.0.1:" in text
    assert "signed receipt verified" in text
    net.gateway_b.stop()
    assert main(["--config", config, "partner", "ping", B, "--format", "json"]) == 1
    https, folder = json.loads(capsys.readouterr().out)
    assert (https["ok"], https["code"]) == (False, "ConnectFailed")
    assert "cannot connect to 127.0.0.1:" in https["reason"]
    assert folder["ok"] is True
    assert main(["--config", config, "partner", "ping", "fips:9900000"]) == 2
    assert "no partner" in capsys.readouterr().err
    pinged = events(net.a, "partner_pinged")
    assert [e["error_code"] for e in pinged] == [None, None, "ConnectFailed", None]


def test_sftp_connects_and_lists_and_an_unknown_host_key_is_named(tmp_path: Path) -> None:
    root = tmp_path / "sftp-root"
    inbox = root / "b-in"
    inbox.mkdir(parents=True)
    (inbox / "waiting.xml").write_bytes(b"<x/>")
    empty_known_hosts = tmp_path / "known_hosts.empty"
    empty_known_hosts.write_text("")
    cache = tmp_path / "keys"
    cache.mkdir()
    with SshServer(root, tmp_path / "sshd") as server:
        a = NodeSpec("a", A, tmp_path / "a")
        b = NodeSpec("b", B, tmp_path / "b")
        good = {"key_file": str(server.client_key), "known_hosts": str(server.known_hosts)}
        a.partners = [PartnerSpec(B, [(server.url(inbox), good),
                                      (server.url(inbox), {**good, "known_hosts":
                                                           str(empty_known_hosts)})])]
        write_config(a, cache, [a, b])
        with NodeContext.open(a.config_path) as ctx:
            listed, refused = ping_partner(ctx, B, operator="olga", now=datetime.now(UTC))
    assert (listed.ok, listed.check) == (True, "session")
    assert "1 file(s) waiting" in listed.reason
    assert "waiting.xml" not in listed.reason
    assert not refused.ok
    assert refused.code == "HostKeyRejected", refused
    assert "refusing to connect" in refused.reason


class Busy:
    """A partner's HTTPS front that answers every POST 503 with a page (the fault this
    test injects, in place of the network: the ping's own code runs unchanged)."""

    def __init__(self, url: str, **options: object) -> None:
        self.closed = False

    def send(self, name: str, data: bytes) -> bytes | None:
        raise HttpStatus("HTTP 503 Service Unavailable", status=503, body=b"<html>busy</html>")

    def close(self) -> None:
        self.closed = True


def test_a_busy_answer_with_a_body_is_not_read_as_a_receipt(net: Net) -> None:
    config = load_config(net.a.config_path)
    (partner,) = config.partners
    opened: list[Busy] = []

    def opener(url: str, **options: object) -> Busy:
        opened.append(Busy(url, **options))
        return opened[-1]

    result = ping_transport(load_node_keys(config), partner, partner.transports[0],
                            now=datetime.now(UTC), opener=opener)  # type: ignore[arg-type]
    assert (result.ok, result.check, result.code) == (False, "message", "HttpStatus"), result
    assert "503" in result.reason
    assert [t.closed for t in opened] == [True]
