"""End to end: real `gateway run` daemons over real HTTPS (mutual TLS) and real SFTP
(OpenSSH sshd) on loopback, each node with its own config, keys and folders."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction, maintenance_application
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import (
    Daemon,
    NodeSpec,
    PartnerSpec,
    drop,
    free_port,
    generate_keys,
    https_node,
    https_to,
    inbox,
    register,
    wait_until,
    write_config,
)
from tests.support.pki import TestPki
from tests.support.sshd import SshServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B, HUB, NL = "fips:0600000", "fips:4800000", "fips:1100000", "iso3166:NL"
FAST = """
[retry]
base = "300ms"
factor = 2
max_delay = "2s"
jitter = 0.1
expiry = "5m"
[breaker]
failure_threshold = 3
reset_after = "1s"
[schedule]
outbox_scan = "200ms"
retry_scan = "200ms"
sftp_pull = "300ms"
"""





def states(spec: NodeSpec, direction: Direction = Direction.OUT) -> list[State]:
    spool = SqliteSpool(load_config(spec.config_path).spool.database)
    try:
        return [m.state for m in spool.select(direction=direction, limit=100_000)]
    finally:
        spool.close()


def test_https_partner_down_then_back(tmp_path: Path, key_cache: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    a_port, b_port = free_port(), free_port()
    a = https_node("a", A, tmp_path, pki, a_port, extra=FAST)
    b = https_node("b", B, tmp_path, pki, b_port, extra=FAST)
    a.partners = [PartnerSpec(B, [https_to(pki, "a", b_port)])]
    b.partners = [PartnerSpec(A, [https_to(pki, "b", a_port)])]
    for spec in (a, b):
        write_config(spec, key_cache, [a, b])
    daemon_a, daemon_b = Daemon(a), Daemon(b)
    try:
        daemon_a.start()
        docs = {f"tx{i:02}.xml": interstate_transaction("0600000", "4800000", seed=i)
                for i in range(10)}
        for name, data in docs.items():
            drop(a, name, data)
        bad = b"<InterstateTransaction xmlns='urn:cse-gateway:interstate:2'/>"
        drop(a, "bad.xml", bad)
        wait_until(lambda: states(a).count(State.RETRYING) == 10, 30,
                   "A to retry while B is down")
        report = json.loads((a.rejected / "bad.xml.error.json").read_text())
        assert report["errors"]
        assert (a.rejected / "bad.xml").read_bytes() == bad
        daemon_b.start()  # the partner comes back: the messages flow
        wait_until(lambda: states(a).count(State.DELIVERED) == 10, 60,
                   "every message to be delivered after B came back")
        assert inbox(b) == sorted(docs.values())
        assert sorted(states(b, Direction.IN)) == [State.DELIVERED] * 10
        assert list(a.outbox.iterdir()) == []
    finally:
        codes = (daemon_a.terminate(), daemon_b.terminate())
    assert codes == (0, 0), daemon_a.tail() + daemon_b.tail()


def test_https_relay_and_international(tmp_path: Path, key_cache: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    ports = {n: free_port() for n in ("a", "hub", "nl")}
    a = https_node("a", A, tmp_path, pki, ports["a"], extra=FAST)
    hub = https_node("hub", HUB, tmp_path, pki, ports["hub"], extra=FAST)
    nl = https_node("nl", NL, tmp_path, pki, ports["nl"], extra=FAST)
    a.partners = [PartnerSpec(HUB, [https_to(pki, "a", ports["hub"])])]
    a.routes = [("default", HUB)]
    nl.partners = [PartnerSpec(HUB, [https_to(pki, "nl", ports["hub"])])]
    nl.routes = [("default", HUB)]
    hub.partners = [PartnerSpec(A, [https_to(pki, "hub", ports["a"])]),
                    PartnerSpec(NL, [https_to(pki, "hub", ports["nl"])])]
    specs = [a, hub, nl]
    for spec in specs:
        write_config(spec, key_cache, specs)
    daemons = [Daemon(s).start() for s in specs]
    try:
        docs = {f"hague{i}.xml": maintenance_application("NL", "0600000", seed=i)
                for i in range(4)}
        for name, data in docs.items():
            drop(a, name, data)
        wait_until(lambda: states(a).count(State.DELIVERED) == 4, 60,
                   "receipts from NL back through the hub")
        assert inbox(nl) == sorted(docs.values())
        # 4 messages out, 4 receipts back. A records a receipt when the hub hands it
        # over; the hub records that relay once A's answer is back: a moment later
        wait_until(lambda: states(hub, Direction.RELAY).count(State.RELAYED) == 8, 30,
                   "the hub to record every relay")
        assert sorted(states(hub, Direction.RELAY)) == [State.RELAYED] * 8
        assert inbox(hub) == []  # the hub opened nothing
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes == [0, 0, 0]


def test_sftp_two_nodes(tmp_path: Path, key_cache: Path) -> None:
    root = tmp_path / "sftp-root"
    a_in, b_in = root / "a-in", root / "b-in"
    for d in (a_in, b_in):
        d.mkdir(parents=True)
    with SshServer(root, tmp_path / "sshd") as server:
        opts = {"key_file": str(server.client_key), "known_hosts": str(server.known_hosts)}
        a = NodeSpec("a", A, tmp_path / "a", extra=FAST, inbound_folders=[a_in])
        b = NodeSpec("b", B, tmp_path / "b", extra=FAST, inbound_folders=[b_in])
        a.partners = [PartnerSpec(B, [(server.url(b_in), opts)])]
        b.partners = [PartnerSpec(A, [(server.url(a_in), opts)])]
        for spec in (a, b):
            write_config(spec, key_cache, [a, b])
        daemons = [Daemon(a).start(), Daemon(b).start()]
        try:
            docs = {f"tx{i:02}.xml": interstate_transaction("0600000", "4800000", seed=i)
                    for i in range(10)}
            for name, data in docs.items():
                drop(a, name, data)
            wait_until(lambda: states(a).count(State.DELIVERED) == 10, 60,
                       "SFTP delivery and receipts back by SFTP")
            assert inbox(b) == sorted(docs.values())
            assert [p for p in b_in.iterdir() if not p.name.startswith(".")] == []
            assert states(b, Direction.RECEIPT) == [State.SENT] * 10
        finally:
            codes = [d.terminate() for d in daemons]
    assert codes == [0, 0]


def test_refused_message_comes_back_and_sighup_reloads_keys(tmp_path: Path,
                                                            key_cache: Path) -> None:
    """Real daemons over HTTPS. B has not registered A: A's first message is refused with
    a signed Rejected receipt, fails for good and comes back into A's rejected folder
    with its reason. A's certificates are then registered at B and B gets SIGHUP (no
    restart): the next message is delivered."""
    pki = TestPki(tmp_path / "pki")
    ports = {n: free_port() for n in ("a", "b")}
    a = https_node("a", A, tmp_path, pki, ports["a"], extra=FAST)
    b = https_node("b", B, tmp_path, pki, ports["b"], extra=FAST)
    a.partners = [PartnerSpec(B, [https_to(pki, "a", ports["b"])])]
    b.partners = [PartnerSpec(A, [https_to(pki, "b", ports["a"])])]
    write_config(a, key_cache, [a, b])
    write_config(b, key_cache, [b])
    daemons = [Daemon(s).start() for s in (a, b)]
    try:
        first = interstate_transaction("0600000", "4800000", seed=21)
        drop(a, "first.xml", first)
        # the error report is written first (it claims the name), the document after it
        wait_until(lambda: (a.rejected / "first.xml.error.json").exists()
                   and (a.rejected / "first.xml").exists(), 30,
                   "the failed message back in A's rejected folder")
        report = json.loads((a.rejected / "first.xml.error.json").read_text())
        assert (report["stage"], report["code"]) == ("delivery", "CertificateUntrusted")
        assert (a.rejected / "first.xml").read_bytes() == first
        register(b.keys, generate_keys(key_cache, A), A)
        assert daemons[1].process is not None
        daemons[1].process.send_signal(signal.SIGHUP)
        wait_until(lambda: "key directory reloaded" in daemons[1].log.read_text(), 15,
                   "B to reload its keys")
        second = interstate_transaction("0600000", "4800000", seed=22)
        drop(a, "second.xml", second)
        wait_until(lambda: states(a).count(State.DELIVERED) == 1, 30, "the second receipt")
        assert inbox(b) == [second]
        assert daemons[1].alive()
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes == [0, 0]
