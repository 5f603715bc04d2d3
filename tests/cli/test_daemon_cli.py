"""Operator commands: route explain, status, messages list/show/resend/cancel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import NodeSpec, PartnerSpec, write_config
from transports.memory import MemoryNetwork

A, B, HUB = "fips:0600000", "fips:4800000", "fips:1100000"



@pytest.fixture
def node(tmp_path: Path, key_cache: Path) -> NodeSpec:
    a = NodeSpec("a", A, tmp_path / "a", routes=[("fips:48", B), ("default", HUB)])
    a.partners = [PartnerSpec(B, [("memory://cli-b", {}), ("file:///nonexistent", {})]),
                  PartnerSpec(HUB, [("memory://cli-hub", {})])]
    b = NodeSpec("b", B, tmp_path / "b")
    hub = NodeSpec("hub", HUB, tmp_path / "hub")
    write_config(a, key_cache, [a, b, hub])
    return a


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_route_explain(node: NodeSpec, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "tx.xml"
    doc.write_bytes(interstate_transaction("0600000", "4812300", seed=1))
    code, text = cli(capsys, "--config", str(node.config_path), "route", "explain", str(doc))
    assert code == 0
    assert "destination: fips:4812300" in text
    assert "state 'fips:48' (routes[0])" in text
    assert "memory://cli-b" in text
    assert "fallback:  file:///nonexistent" in text
    doc.write_bytes(interstate_transaction("0600000", "1200000", seed=1))
    code, text = cli(capsys, "--config", str(node.config_path), "route", "explain", str(doc),
                     "--format", "json")
    assert code == 0
    result = json.loads(text)
    assert result["partner"] == HUB
    assert result["rule_kind"] == "default"


def test_status_and_messages(node: NodeSpec, capsys: pytest.CaptureFixture[str]) -> None:
    net = MemoryNetwork()
    net.fail_next("cli-b", 1000)
    gw = Gateway(load_config(node.config_path), transport_options={"memory": {"network": net}})
    try:
        node.outbox.mkdir(exist_ok=True)
        for i in range(2):
            (node.outbox / f"t{i}.xml").write_bytes(
                interstate_transaction("0600000", "4800000", seed=i))
            (node.outbox / f"t{i}.xml.ready").write_bytes(b"")
        gw.scan()
        gw.send_all()
    finally:
        gw.stop()
    cfg = ["--config", str(node.config_path)]
    code, text = cli(capsys, *cfg, "status", "--format", "json")
    assert code == 0
    status = json.loads(text)
    assert {"direction": "out", "state": "retrying", "partner": B, "count": 2} in \
        status["counts"]
    assert status["oldest_pending_seconds"] >= 0
    assert status["keys_error"] is None
    code, text = cli(capsys, *cfg, "messages", "list", "--state", "retrying")
    assert code == 0
    assert text.count("retrying") == 2
    spool = SqliteSpool(load_config(node.config_path).spool.database)
    first = spool.select(direction=Direction.OUT)[0]
    code, text = cli(capsys, *cfg, "messages", "show", first.message_id or "", "--format",
                     "json")
    assert code == 0
    shown = json.loads(text)
    assert shown["state"] == "retrying"
    assert shown["payloads"] == ["document", "envelope"]
    code, text = cli(capsys, *cfg, "messages", "resend", str(first.id),
                     "--reason", "partner-recovered")
    assert code == 2  # a usage error: only failed or cancelled messages can be resent
    assert "cannot resend" in text
    code, text = cli(capsys, *cfg, "messages", "cancel", str(first.id),
                     "--reason", "sent-in-error")
    assert code == 0
    assert spool.get(first.id).state is State.CANCELLED
    code, text = cli(capsys, *cfg, "messages", "resend", str(first.id),
                     "--reason", "partner-recovered")
    assert code == 0
    again = spool.get(first.id)
    assert again.state is State.SEALED
    assert again.error_code is None
    code, text = cli(capsys, *cfg, "messages", "show", "no-such-id")
    assert code == 1
    assert "MessageNotFound" in text
    spool.close()


def test_run_refuses_a_listener_port_in_use(tmp_path: Path, key_cache: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from tests.support.pki import TestPki

    pki = TestPki(tmp_path / "pki")
    server = pki.server("a-server")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        a = NodeSpec("a", A, tmp_path / "a", https={
            "host": "127.0.0.1", "port": port, "cert": str(server.cert),
            "key": str(server.key), "client_ca": str(pki.ca.cert)})
        write_config(a, key_cache, [a])
        code, text = cli(capsys, "--config", str(a.config_path), "run")
    assert code == 2
    assert "ConfigInvalid" in text
    assert "listeners.https" in text
    assert "cannot start the HTTPS listener" in text
