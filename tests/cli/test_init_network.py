"""From nothing to two running nodes exchanging messages, only with `gateway` commands:
init both, export and import bundles both ways, run both as real daemons (HTTPS with
mutual TLS on loopback), send each way and check the signed receipts. No file is edited by
hand. Also: import keeps the operator's comments, refuses what it must, and `gateway run`
speaks systemd's readiness protocol."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import Daemon, NodeSpec, free_port, wait_until

pytestmark = pytest.mark.integration

A, B = "fips:0600000", "fips:4800000"


def gw(*argv: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("GATEWAY_CONFIG", None)
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run([sys.executable, "-m", "gateway", *argv], input=stdin,
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
                          check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def is_subsequence(lines: list[str], of: list[str]) -> bool:
    it = iter(of)
    return all(any(line == other for other in it) for line in lines)


@pytest.fixture
def nodes(tmp_path: Path) -> tuple[NodeSpec, NodeSpec]:
    a = NodeSpec("a", A, tmp_path / "a")
    b = NodeSpec("b", B, tmp_path / "b")
    for spec in (a, b):
        ok(gw("init", str(spec.root), "--party", spec.party, "--listen",
              f"127.0.0.1:{free_port()}", "--rsa-bits", "2048"))
    return a, b


def test_two_nodes_from_init_to_receipts(nodes: tuple[NodeSpec, NodeSpec], tmp_path: Path) -> None:
    a, b = nodes
    original = a.config_path.read_text().splitlines()
    for spec in (a, b):
        ok(gw("--config", str(spec.config_path), "partner", "export", "-o",
              str(tmp_path / f"{spec.name}.json")))
    # a confirms interactively (after a first "no", which changes nothing), b with --yes
    refused = gw("--config", str(a.config_path), "partner", "import", str(tmp_path / "b.json"),
                 stdin="n\n")
    assert refused.returncode == 1
    assert "not imported" in refused.stderr
    assert a.config_path.read_text().splitlines() == original
    assert not (a.keys / "partners" / "fips_4800000").exists()
    shown = ok(gw("--config", str(a.config_path), "partner", "import",
                  str(tmp_path / "b.json"), stdin="y\n"))
    sign_b = ok(gw("keys", "list", "--keys", str(b.keys), "--format", "json"))
    assert '"role": "sign"' in sign_b
    for line in shown.splitlines():
        if line.startswith("sign "):
            assert line.split()[2] in sign_b  # the fingerprint shown is b's own
    ok(gw("--config", str(b.config_path), "partner", "import", str(tmp_path / "a.json"),
          "--yes"))
    # every line the operator had is still there, in order; the partner and route follow
    edited = a.config_path.read_text()
    assert is_subsequence(original, edited.splitlines())
    doc = tomllib.loads(edited)
    assert doc["partners"][0]["party"] == B
    assert doc["routes"] == [{"to": "fips:48", "partner": B}]
    assert "configuration problem" not in ok(gw("--config", str(a.config_path), "config",
                                               "check"))
    ok(gw("--config", str(b.config_path), "config", "check"))

    daemons = [Daemon(a).start(), Daemon(b).start()]
    try:
        for spec in (a, b):
            assert "ok: https://127.0.0.1:" in ok(gw("--config", str(spec.config_path),
                                                     "health"))
        (a.outbox / "to-tx.xml").write_bytes(interstate_transaction("0600000", "4800000",
                                                                    seed=20))
        (b.outbox / "to-ca.xml").write_bytes(interstate_transaction("4800000", "0600000",
                                                                    seed=21))
        for sender, receiver in ((a, b), (b, a)):
            def delivered(spec: NodeSpec = sender) -> bool:
                spool = SqliteSpool(spec.root / "spool" / "gateway.db")
                try:
                    return [m.state for m in spool.select(direction=Direction.OUT)] == [
                        State.DELIVERED]
                finally:
                    spool.close()
            wait_until(delivered, 60, f"{sender.name}'s message to be delivered")
            assert len(list(receiver.inbox.glob("InterstateTransaction-*.xml"))) == 1
            shown = ok(gw("--config", str(sender.config_path), "audit", "show",
                          _message_id(sender)))
            assert "signature: verified: Delivered" in shown
            assert f"signed by {receiver.party}" in shown
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes == [0, 0]
    for spec in (a, b):
        ok(gw("--config", str(spec.config_path), "audit", "verify"))


def _message_id(spec: NodeSpec) -> str:
    spool = SqliteSpool(spec.root / "spool" / "gateway.db")
    try:
        (message,) = spool.select(direction=Direction.OUT)
        return str(message.message_id)
    finally:
        spool.close()


def test_import_refuses_what_it_must(nodes: tuple[NodeSpec, NodeSpec], tmp_path: Path) -> None:
    a, b = nodes
    down = gw("--config", str(a.config_path), "health", "--timeout", "2")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "ConnectFailed" in down.stderr  # nothing listens: the check says so
    ok(gw("--config", str(a.config_path), "partner", "export", "-o", str(tmp_path / "a.json")))
    ok(gw("--config", str(b.config_path), "partner", "export", "-o", str(tmp_path / "b.json")))
    before = a.config_path.read_bytes()
    # its own bundle
    own = gw("--config", str(a.config_path), "partner", "import", str(tmp_path / "a.json"),
             "--yes")
    assert own.returncode == 2
    assert "own" in own.stderr
    # a bundle whose signing certificate was replaced by another node's: does not chain
    forged = tmp_path / "forged.json"
    text = (tmp_path / "b.json").read_text()
    doc = json.loads(text)
    doc["certificates"]["sign"] = json.loads((tmp_path / "a.json").read_text())[
        "certificates"]["sign"]
    forged.write_text(json.dumps(doc))
    bad = gw("--config", str(a.config_path), "partner", "import", str(forged), "--yes")
    assert bad.returncode == 1, bad.stderr
    assert "CertificateUntrusted" in bad.stderr
    assert a.config_path.read_bytes() == before
    assert not (a.root / "tls" / "partners" / "fips_4800000.crt").exists()
    assert not (a.keys / "partners" / "fips_4800000").exists()
    # not a bundle at all
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    bad = gw("--config", str(a.config_path), "partner", "import", str(junk), "--yes")
    assert bad.returncode == 1
    assert "not a partner bundle" in bad.stderr
    # twice
    ok(gw("--config", str(a.config_path), "partner", "import", str(tmp_path / "b.json"),
          "--yes"))
    again = gw("--config", str(a.config_path), "partner", "import", str(tmp_path / "b.json"),
               "--yes")
    assert again.returncode == 2
    assert "already a partner" in again.stderr
    assert len(load_config(a.config_path).partners) == 1


def test_run_reports_readiness_reload_and_stop_to_systemd(
        nodes: tuple[NodeSpec, NodeSpec], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = nodes
    address = f"/tmp/gw-notify-{os.getpid()}-{free_port()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    daemon = Daemon(a)
    try:
        daemon.start()
        assert sock.recv(4096).decode().startswith("READY=1\nSTATUS=gateway fips:0600000")
        assert daemon.process is not None
        daemon.process.send_signal(1)  # SIGHUP: reload the key directory
        assert sock.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert sock.recv(4096) == b"READY=1"
        assert daemon.terminate() == 0
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        daemon.terminate()
        sock.close()
        os.unlink(address)
