"""Two and three nodes in one process over the in-memory transport, with the real
validation, sealing, receipts and spool: delivery with receipts (sync and async), rejected
files, duplicates, a relay hop, crash recovery of half-done inbound messages."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.samples import interstate_transaction, maintenance_application
from gateway.errors import SenderMismatch, SpoolError
from gateway.node import dead_letters
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.prepare import check_sender
from gateway.protocol import receipts as receipts_module
from gateway.protocol.envelope import parse_envelope
from gateway.protocol.party import Party
from gateway.store.audit import AuditLog
from gateway.store.spool import NewMessage
from gateway.store.states import Direction, State
from tests.support.gwnodes import (
    NodeSpec,
    PartnerSpec,
    drop,
    generate_keys,
    register,
    write_config,
)
from transports.errors import TlsRejected, TransportError
from transports.memory import MemoryNetwork, http_responder

A, B, HUB, C = "fips:0600000", "fips:4800000", "fips:1100000", "fips:3600000"



class Net:
    """Nodes on one memory network; an 'https' mailbox per node is served by its handler."""

    def __init__(self) -> None:
        self.network = MemoryNetwork()
        self.nodes: dict[str, Gateway] = {}

    def add(self, spec: NodeSpec, cache: Path, specs: list[NodeSpec]) -> Gateway:
        config = load_config(write_config(spec, cache, specs))
        gw = Gateway(config, transport_options={"memory": {"network": self.network}})
        self.network.serve(f"{spec.name}-https", http_responder(gw.handle_https))
        self.nodes[spec.name] = gw
        return gw

    def settle(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            for gw in self.nodes.values():
                gw.pull()
                gw.send_all(timeout=20)
            if all(not gw.spool.due(gw.clock(), limit=1) and gw.sender.idle()
                   for gw in self.nodes.values()):
                return

    def close(self) -> None:
        for gw in self.nodes.values():
            gw.stop()


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    yield n
    n.close()


def two_nodes(tmp_path: Path, cache: Path, net: Net, *, pull: bool = False
              ) -> tuple[NodeSpec, NodeSpec]:
    a = NodeSpec("a", A, tmp_path / "a")
    b = NodeSpec("b", B, tmp_path / "b")
    if pull:  # A drops into a mailbox that B pulls from (SFTP-style); receipts come back
        a.partners = [PartnerSpec(B, [("memory://b-drop", {})])]
        b.partners = [PartnerSpec(A, [("memory://a-https", {})],
                                  pull=[("memory://b-drop", {})])]
    else:
        a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
        b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
    for spec in (a, b):
        net.add(spec, cache, [a, b])
    return a, b


def test_interstate_delivered_byte_identical_with_receipt(tmp_path: Path, key_cache: Path,
                                                          net: Net) -> None:
    a, b = two_nodes(tmp_path, key_cache, net)
    doc = interstate_transaction("0600000", "4800000", seed=3)
    drop(a, "tx1.xml", doc)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    assert gw_a.scan() == 1
    net.settle()
    [out] = gw_a.spool.select(direction=Direction.OUT)
    assert out.state is State.DELIVERED
    assert out.to_party == B
    # the receipt came back in the HTTPS answer: the row still names the transport used
    assert out.transport == "memory://b-https"
    [delivered] = list(b.inbox.iterdir())
    assert delivered.read_bytes() == doc
    assert delivered.name == f"InterstateTransaction-{out.message_id}.xml"
    [inb] = gw_b.spool.select(direction=Direction.IN)
    assert inb.state is State.DELIVERED
    assert gw_a.spool.payload(out.id, "receipt") == gw_b.spool.payload(inb.id, "receipt")
    assert list(a.outbox.iterdir()) == []


def test_pull_delivery_and_async_receipt(tmp_path: Path, key_cache: Path, net: Net,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Receipts arriving on their own are parsed once, on arrival, not again to verify.
    reparsed: list[bytes] = []
    original = receipts_module.parse_envelope

    def counting(data: bytes, **kw: Any) -> Any:
        reparsed.append(data)
        return original(data, **kw)

    monkeypatch.setattr(receipts_module, "parse_envelope", counting)
    a, b = two_nodes(tmp_path, key_cache, net, pull=True)
    gw_a = net.nodes["a"]
    docs = {f"t{i}.xml": interstate_transaction("0600000", "4800000", seed=i) for i in range(5)}
    for name, data in docs.items():
        drop(a, name, data)
    gw_a.scan()
    gw_a.send_all()
    assert {m.state for m in gw_a.spool.select(direction=Direction.OUT)} == {State.SENT}
    net.settle()
    assert {m.state for m in gw_a.spool.select(direction=Direction.OUT)} == {State.DELIVERED}
    assert sorted(p.read_bytes() for p in b.inbox.iterdir()) == sorted(docs.values())
    receipts = net.nodes["b"].spool.select(direction=Direction.RECEIPT)
    assert [r.state for r in receipts] == [State.SENT] * 5
    assert net.network.blobs("b-drop") == {}  # acknowledged after being stored
    assert reparsed == []


def test_rejected_file_and_rejected_receipt(tmp_path: Path, key_cache: Path,
                                            net: Net) -> None:
    a, b = two_nodes(tmp_path, key_cache, net)
    gw_a = net.nodes["a"]
    bad = interstate_transaction("0600000", "4800000", seed=1).replace(
        b"<CaseID>", b"<Nonsense>x</Nonsense><CaseID>", 1)
    drop(a, "bad.xml", bad)
    drop(a, "noroute.xml", interstate_transaction("0600000", "5500000", seed=2))
    gw_a.scan()
    report = json.loads((a.rejected / "bad.xml.error.json").read_text())
    assert report["code"] == "SchemaUnexpectedElement"
    assert report["errors"][0]["line"] == 15
    assert report["errors"][0]["path"] == "/InterstateTransaction/Header/Nonsense"
    assert (a.rejected / "bad.xml").read_bytes() == bad
    noroute = json.loads((a.rejected / "noroute.xml.error.json").read_text())
    assert noroute["code"] == "NoRoute"
    states = sorted(m.state for m in gw_a.spool.select(direction=Direction.OUT))
    assert states == [State.REJECTED, State.REJECTED]
    assert list(a.outbox.iterdir()) == []
    assert not b.inbox.exists() or list(b.inbox.iterdir()) == []


def test_node_sends_only_documents_it_speaks_for(tmp_path: Path, key_cache: Path,
                                                net: Net) -> None:
    a, b = two_nodes(tmp_path, key_cache, net)
    gw_a = net.nodes["a"]
    county = interstate_transaction("0603700", "4800000", seed=7)  # a county of state 06
    drop(a, "county.xml", county)
    drop(a, "german.xml", maintenance_application("DE", "4800000", outbound=False, seed=1))
    drop(a, "newyork.xml", interstate_transaction("3600000", "4800000", seed=8))
    gw_a.scan()
    net.settle()
    for name, sender in (("german.xml", "iso3166:DE"), ("newyork.xml", "fips:3600000")):
        report = json.loads((a.rejected / f"{name}.error.json").read_text())
        assert report["code"] == "SenderMismatch", name
        assert sender in report["message"]
    messages = {m.source: m for m in gw_a.spool.select(direction=Direction.OUT)}
    assert messages["county.xml"].state is State.DELIVERED
    assert messages["county.xml"].from_party == A
    for name in ("german.xml", "newyork.xml"):
        assert messages[name].state is State.REJECTED
        assert messages[name].error_code == "SenderMismatch"
        assert gw_a.spool.payload(messages[name].id, "envelope") is None  # never sealed
    assert [p.read_bytes() for p in b.inbox.iterdir()] == [county]


@pytest.mark.parametrize(("node", "sender", "ok"), [
    ("fips:0600000", "fips:0600000", True),
    ("fips:0600000", "fips:0603700", True),   # a state node speaks for its counties
    ("fips:0600000", "fips:0603701", True),   # and their local offices
    ("fips:0600000", "fips:3600000", False),  # not for another state
    ("fips:0600000", "iso3166:DE", False),
    ("fips:0603700", "fips:0600000", False),  # a county node only for itself
    ("fips:0603700", "fips:0603701", False),
    ("fips:0603700", "fips:0603700", True),
    ("iso3166:NL", "iso3166:NL", True),
    ("iso3166:NL", "iso3166:DE", False),
    ("fips:0600000", None, False),
    ("fips:0600000", "fips:06", False),       # not a party at all
])
def test_check_sender(node: str, sender: str | None, ok: bool) -> None:
    if ok:
        check_sender(Party.parse(node), sender)
    else:
        with pytest.raises(SenderMismatch):
            check_sender(Party.parse(node), sender)


def test_duplicate_message_id_is_not_delivered_twice(tmp_path: Path, key_cache: Path,
                                                     net: Net) -> None:
    a, b = two_nodes(tmp_path, key_cache, net)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    drop(a, "tx.xml", interstate_transaction("0600000", "4800000", seed=5))
    gw_a.scan()
    net.settle()
    [out] = gw_a.spool.select(direction=Direction.OUT)
    envelope = gw_a.spool.payload(out.id, "envelope") or b""
    first_receipt = gw_a.spool.payload(out.id, "receipt")
    status, body = gw_b.handle_https(envelope, None)
    assert status == 200
    assert body == first_receipt  # the stored receipt, not a new one
    assert len(list(b.inbox.iterdir())) == 1
    assert len(gw_b.spool.select(direction=Direction.IN)) == 1


def test_tampered_envelope_gets_rejected_receipt(tmp_path: Path, key_cache: Path,
                                                 net: Net) -> None:
    a, b = two_nodes(tmp_path, key_cache, net)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    net.network.fail_next("b-https", 1000)  # keep A's own send out of the way
    drop(a, "tx.xml", interstate_transaction("0600000", "4800000", seed=6))
    gw_a.scan()
    gw_a.send_all()
    [out] = gw_a.spool.select(direction=Direction.OUT)
    envelope = bytearray(gw_a.spool.payload(out.id, "envelope") or b"")
    start, end = envelope.index(b"<Payload>"), envelope.index(b"</Payload>")
    middle = (start + end) // 2  # inside the ciphertext
    envelope[middle] = ord("A") if envelope[middle] != ord("A") else ord("B")
    status, body = gw_b.handle_https(bytes(envelope), None)
    assert status == 400
    sent_as = replace(out, envelope_digest=hashlib.sha256(bytes(envelope)).hexdigest())
    outcome = gw_a.keys.check_receipt(body, message=sent_as, now=gw_a.clock())
    assert not outcome.delivered
    assert outcome.errors[0][0] in {"DecryptionFailed", "SignatureInvalid"}
    assert not b.inbox.exists() or list(b.inbox.iterdir()) == []
    # the genuine envelope with the same MessageId is still delivered, once
    genuine = gw_a.spool.payload(out.id, "envelope") or b""
    assert gw_b.handle_https(genuine, None)[0] == 200
    assert gw_b.handle_https(genuine, None)[0] == 200  # duplicate: stored receipt
    assert len(list(b.inbox.iterdir())) == 1
    in_states = sorted(m.state for m in gw_b.spool.select(direction=Direction.IN))
    assert in_states == [State.DELIVERED, State.REJECTED]


def hub_nodes(tmp_path: Path, cache: Path, net: Net) -> tuple[NodeSpec, NodeSpec, NodeSpec]:
    """A and C (New York) reach each other only through the hub, which relays."""
    a = NodeSpec("a", A, tmp_path / "a", routes=[("default", HUB)])
    hub = NodeSpec("hub", HUB, tmp_path / "hub")
    c = NodeSpec("c", C, tmp_path / "c", routes=[("default", HUB)])
    a.partners = [PartnerSpec(HUB, [("memory://hub-https", {})])]
    c.partners = [PartnerSpec(HUB, [("memory://hub-https", {})])]
    hub.partners = [PartnerSpec(A, [("memory://a-https", {})]),
                    PartnerSpec(C, [("memory://c-https", {})])]
    specs = [a, hub, c]
    for spec in specs:
        net.add(spec, cache, specs)
    return a, hub, c


def test_relay_hop_through_a_hub(tmp_path: Path, key_cache: Path, net: Net) -> None:
    a, hub, c = hub_nodes(tmp_path, key_cache, net)
    doc = interstate_transaction("0600000", "3600000", seed=8)
    drop(a, "to-ny.xml", doc)
    net.nodes["a"].scan()
    net.settle()
    [out] = net.nodes["a"].spool.select(direction=Direction.OUT)
    assert out.state is State.DELIVERED  # C's receipt came back through the hub
    assert out.partner == HUB
    assert [p.read_bytes() for p in c.inbox.iterdir()] == [doc]
    relays = net.nodes["hub"].spool.select(direction=Direction.RELAY)
    assert sorted(r.state for r in relays) == [State.RELAYED, State.RELAYED]
    assert not (hub.inbox.exists() and list(hub.inbox.iterdir()))  # the hub read nothing


def test_international_document(tmp_path: Path, key_cache: Path, net: Net) -> None:
    a = NodeSpec("a", A, tmp_path / "a")
    nl = NodeSpec("nl", "iso3166:NL", tmp_path / "nl")
    a.partners = [PartnerSpec("iso3166:NL", [("memory://nl-https", {})])]
    nl.partners = [PartnerSpec(A, [("memory://a-https", {})])]
    for spec in (a, nl):
        net.add(spec, key_cache, [a, nl])
    doc = maintenance_application("NL", "0600000", seed=2)
    drop(a, "hague.xml", doc)
    net.nodes["a"].scan()
    net.settle()
    [out] = net.nodes["a"].spool.select(direction=Direction.OUT)
    assert out.state is State.DELIVERED
    assert out.service == "international"
    assert [p.read_bytes() for p in nl.inbox.iterdir()] == [doc]


def test_inbound_crash_before_the_record_loses_nothing(tmp_path: Path, key_cache: Path,
                                                       net: Net,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A pulled envelope is recorded together with its outcome; a crash while it is being
    opened leaves no record and no acknowledgement, so the next pull takes it again."""
    a, b = two_nodes(tmp_path, key_cache, net, pull=True)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    drop(a, "tx.xml", interstate_transaction("0600000", "4800000", seed=9))
    gw_a.scan()
    gw_a.send_all()

    def crash(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt("simulated crash while opening")

    monkeypatch.setattr("gateway.node.examine.open_parsed", crash)
    with pytest.raises(KeyboardInterrupt):
        gw_b.pull()
    monkeypatch.undo()
    assert gw_b.spool.select(direction=Direction.IN) == []
    assert gw_b.recover()["inbound"] == 0
    net.settle()
    [inb] = gw_b.spool.select(direction=Direction.IN)
    assert inb.state is State.DELIVERED
    assert len(list(b.inbox.iterdir())) == 1
    [out] = gw_a.spool.select(direction=Direction.OUT)
    assert out.state is State.DELIVERED


def test_copy_written_before_its_record_is_removed_at_restart(
        tmp_path: Path, key_cache: Path, net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed after writing the inbox's temporary copy and before recording it
    leaves a complete plaintext copy no record names: the next start removes it, audits the
    removal, and the envelope (never acknowledged) is delivered once."""
    import os
    import subprocess
    import sys

    import gateway.node.inbound

    a, b = two_nodes(tmp_path, key_cache, net, pull=True)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    drop(a, "tx.xml", interstate_transaction("0600000", "4800000", seed=11))
    gw_a.scan()
    gw_a.send_all()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    real = gateway.node.inbound.write_temp

    def killed_after_the_write(target: Path, data: bytes) -> Path:
        tmp = real(target, data)  # named as the killed process would have named it
        os.rename(tmp, tmp.with_name(tmp.name.replace(f"-{os.getpid()}-", f"-{dead}-")))
        raise KeyboardInterrupt("simulated kill before the delivery is recorded")

    monkeypatch.setattr(gateway.node.inbound, "write_temp", killed_after_the_write)
    with pytest.raises(KeyboardInterrupt):
        gw_b.pull()
    monkeypatch.undo()
    left = [p.name for p in b.inbox.iterdir()]
    assert len(left) == 1
    assert left[0].endswith(".tmp")
    assert gw_b.recover()["temporary_files"] == 1
    assert list(b.inbox.iterdir()) == []
    [event] = [e.event for e in AuditLog(sqlite3.connect(b.root / "spool/gateway.db"))
               .query(code="temp_removed")]
    assert event.detail == {"folder": b.inbox.name, "files": 1}
    net.settle()
    assert [m.state for m in gw_b.spool.select(direction=Direction.IN)] == [State.DELIVERED]
    assert len([p for p in b.inbox.iterdir() if not p.name.startswith(".")]) == 1
    assert [p for p in b.inbox.iterdir() if p.name.startswith(".")] == []


def test_inbound_left_received_is_recovered(tmp_path: Path, key_cache: Path,
                                            net: Net) -> None:
    """Older versions recorded an arrival before opening it; a message a crash left
    ``received`` that way is opened and delivered by recovery."""
    a, b = two_nodes(tmp_path, key_cache, net, pull=True)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    drop(a, "tx.xml", interstate_transaction("0600000", "4800000", seed=9))
    gw_a.scan()
    gw_a.send_all()
    [out] = gw_a.spool.select(direction=Direction.OUT)
    envelope = gw_a.spool.payload(out.id, "envelope") or b""
    parsed = parse_envelope(envelope)
    with gw_b.spool.transaction(datetime.now(UTC)) as txn:
        gw_b.inbound._arrived(txn, parsed, envelope, "pull")
    assert gw_b.recover()["inbound"] == 1
    [inb] = gw_b.spool.select(direction=Direction.IN)
    assert inb.state is State.DELIVERED
    assert len(list(b.inbox.iterdir())) == 1


def test_certificate_expiry_check_logs_and_audits(tmp_path: Path, key_cache: Path,
                                                  net: Net) -> None:
    a = NodeSpec("a", A, tmp_path / "a", extra="[security]\ncert_warn_days = 100000\n")
    b = NodeSpec("b", B, tmp_path / "b")
    a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
    b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
    gw = net.add(a, key_cache, [a, b])
    found = gw.check_certificates()
    assert {what for what, _ in found} == {"sign", "encrypt", f"partner:{B}"}
    assert all(days > 300 for _, days in found)
    rows = gw.spool._conn().execute(
        "SELECT detail FROM audit_events WHERE code = 'key_expiring'").fetchall()
    assert len(rows) == 3


def test_two_phase_delivery_never_writes_a_taken_document_again(
        tmp_path: Path, key_cache: Path, net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two_nodes(tmp_path, key_cache, net, pull=True)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    for i in range(2):
        drop(a, f"tx{i}.xml", interstate_transaction("0600000", "4800000", seed=20 + i))
    gw_a.scan()
    gw_a.send_all()

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash before the rename")

    import gateway.node.inbound

    # one envelope at a time, so the first pull's crash leaves the second untouched
    # (parallel pulls crashing mid-way are covered by test_e2e_crash over SFTP)
    monkeypatch.setattr(gateway.node.inbound.Inbound, "PULL_BATCH", 1)
    monkeypatch.setattr(gateway.node.inbound.Inbound, "PULL_IN_FLIGHT", 1)
    monkeypatch.setattr(gateway.node.inbound, "commit_temp", crash)
    with pytest.raises(KeyboardInterrupt):
        gw_b.pull()
    with pytest.raises(KeyboardInterrupt):
        gw_b.pull()
    monkeypatch.undo()
    first, second = gw_b.spool.select(direction=Direction.IN)
    assert first.state is second.state is State.DELIVERING
    visible = [p for p in b.inbox.iterdir() if not p.name.startswith(".")]
    assert visible == []  # nothing handed to the state system yet
    # the crash of the second came after its rename, and the state system took the file
    gateway.node.inbound.commit_temp(b.inbox / (second.source or ""), b.inbox / "taken.xml")
    (b.inbox / "taken.xml").unlink()
    assert gw_b.recover()["inbound"] == 2
    assert gw_b.spool.get(first.id).state is State.DELIVERED
    assert gw_b.spool.get(second.id).state is State.DELIVERED
    delivered_name = gw_b.spool.get(first.id).source
    assert [p.name for p in b.inbox.iterdir()] == [delivered_name]  # not the taken one
    net.settle()
    assert {m.state for m in gw_a.spool.select(direction=Direction.OUT)} == {State.DELIVERED}


def send_new(a: NodeSpec, gw_a: Gateway, first: int, count: int, *, seed: int) -> None:
    """Drop ``count`` new transactions into A's outbox and send them (to B's mailbox)."""
    for i in range(first, first + count):
        drop(a, f"t{i}.xml", interstate_transaction("0600000", "4800000", seed=seed + i))
    assert gw_a.scan() == count
    gw_a.send_all()


def batch_sizes(gw: Gateway, monkeypatch: pytest.MonkeyPatch,
                after: Callable[[list[bytes]], None] = lambda datas: None) -> list[int]:
    """The sizes of the batches ``gw``'s pulls hand to accept_many, in order (filled as
    they come); ``after(datas)`` runs once each batch's accept returned."""
    sizes: list[int] = []
    real = gw.inbound.accept_many

    def counted(datas: list[bytes], *, channel: str) -> list[Any]:
        sizes.append(len(datas))
        answers = real(datas, channel=channel)
        after(datas)
        return answers

    monkeypatch.setattr(gw.inbound, "accept_many", counted)
    return sizes


def test_a_pull_accepts_what_waits_in_batches(tmp_path: Path, key_cache: Path, net: Net,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull accepts the blobs waiting for it PULL_BATCH at a time (accept_many: as each
    would be accepted alone), and takes each only after its batch was recorded: 21 blobs
    (20 messages and one unreadable, one of which cannot be fetched: it stays for the
    next pull) in batches of 16 and 4, every message delivered
    once, the junk refused and kept, nothing else left behind."""
    from transports.memory import MemoryTransport

    a, _ = two_nodes(tmp_path, key_cache, net, pull=True)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    send_new(a, gw_a, 0, 20, seed=60)
    MemoryTransport(net.network, "b-drop").send("junk.xml", b"<not-an-envelope/>")
    waiting = net.network.blobs("b-drop")
    assert len(waiting) == 21

    def none_taken_yet(datas: list[bytes]) -> None:
        """Nothing of a batch is taken before its accept returned."""
        left = net.network.blobs("b-drop")
        assert all(name in left for name, blob in waiting.items() if blob in datas)

    batches = batch_sizes(gw_b, monkeypatch, none_taken_yet)
    real_fetch = MemoryTransport.fetch
    failed: list[str] = []

    def flaky(self: MemoryTransport, name: str) -> bytes:
        if not failed and name != "junk.xml":
            failed.append(name)
            raise TransportError("simulated fetch failure", code="Unreachable")
        return real_fetch(self, name)

    monkeypatch.setattr(MemoryTransport, "fetch", flaky)
    assert gw_b.pull() == 20
    assert batches == [16, 4]  # the 20 fetched
    assert list(net.network.blobs("b-drop")) == failed  # left for the next pull
    monkeypatch.undo()
    assert gw_b.pull() == 1
    assert net.network.blobs("b-drop") == {}
    records = gw_b.spool.select(direction=Direction.IN, limit=100)
    assert sorted(r.state.value for r in records) == ["delivered"] * 20 + ["rejected"]
    net.settle()
    assert {m.state for m in gw_a.spool.select(direction=Direction.OUT)} == {State.DELIVERED}


def test_a_pulled_batch_is_cut_by_bytes(tmp_path: Path, key_cache: Path, net: Net,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A pulled batch also ends at PULL_BATCH_BYTES (so large messages do not pile up in
    memory 16 at a time): with room for two envelopes, six come in three batches of two;
    with room for none, each is accepted alone."""
    import gateway.node.inbound

    a, _ = two_nodes(tmp_path, key_cache, net, pull=True)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    batches = batch_sizes(gw_b, monkeypatch)
    for first, room, expected in ((0, 2, [2, 2, 2]), (6, 0, [])):
        send_new(a, gw_a, first, 6, seed=90)
        largest = max(len(blob) for blob in net.network.blobs("b-drop").values())
        monkeypatch.setattr(gateway.node.inbound.Inbound, "PULL_BATCH_BYTES",
                            room * largest + 1)
        batches.clear()
        assert gw_b.pull() == 6
        assert batches == expected
        assert net.network.blobs("b-drop") == {}
    assert len(gw_b.spool.select(direction=Direction.IN, states=[State.DELIVERED],
                                 limit=100)) == 12


def test_pulled_receipts_are_recorded_in_one_transaction(
        tmp_path: Path, key_cache: Path, net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """Receipts that wait in a pull mailbox (both ways SFTP-style) are checked one by one
    and recorded together, in one commit, before any is taken; a second copy of one in
    the same batch is settled with the first; when one was settled meanwhile, the batch's
    transaction is undone whole and each is recorded alone, that one not again."""
    from transports.memory import MemoryTransport

    a = NodeSpec("a", A, tmp_path / "a")
    b = NodeSpec("b", B, tmp_path / "b")
    a.partners = [PartnerSpec(B, [("memory://b-drop", {})], pull=[("memory://a-drop", {})])]
    b.partners = [PartnerSpec(A, [("memory://a-drop", {})], pull=[("memory://b-drop", {})])]
    for spec in (a, b):
        net.add(spec, key_cache, [a, b])
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]

    def round_trip(first: int) -> list[bytes]:
        send_new(a, gw_a, first, 6, seed=80)
        assert gw_b.pull() == 6
        gw_b.send_all()  # the six receipts, into A's mailbox
        waiting = net.network.blobs("a-drop")
        assert len(waiting) == 6
        return list(waiting.values())

    round_trip(0)
    commits = gw_a.spool._groups.commits
    assert gw_a.pull() == 6
    assert gw_a.spool._groups.commits - commits == 1
    out = gw_a.spool.select(direction=Direction.OUT, limit=100)
    assert {m.state for m in out} == {State.DELIVERED}
    assert all(gw_a.spool.payload(m.id, "receipt") for m in out)

    # a second copy of a receipt in the same batch: recorded once, with the batch
    copy = round_trip(6)[0]
    MemoryTransport(net.network, "a-drop").send("copy-of-first.xml", copy)
    commits = gw_a.spool._groups.commits
    assert gw_a.pull() == 7  # the copy is answered as settled and taken too
    assert gw_a.spool._groups.commits - commits == 1
    assert net.network.blobs("a-drop") == {}

    # one settled meanwhile (as by a synchronous answer): the batch is undone whole and
    # each is recorded alone, the settled one not again
    round_trip(12)
    real = gw_a.inbound._apply_receipts

    def settled_first(receipts: list[Any], now: datetime) -> None:
        real(receipts[:1], now)
        real(receipts, now)

    monkeypatch.setattr(gw_a.inbound, "_apply_receipts", settled_first)
    commits = gw_a.spool._groups.commits
    assert gw_a.pull() == 6
    assert gw_a.spool._groups.commits - commits == 1 + 1 + 6
    out = gw_a.spool.select(direction=Direction.OUT, limit=100)
    assert [m.state for m in out] == [State.DELIVERED] * 18
    [(count,)] = gw_a.spool._conn().execute(
        "SELECT count(*) FROM audit_events WHERE code = 'receipt_received'").fetchall()
    assert count == 18


def test_unreadable_pulled_file_is_kept_in_the_spool(tmp_path: Path, key_cache: Path,
                                                     net: Net) -> None:
    from transports.memory import MemoryTransport

    two_nodes(tmp_path, key_cache, net, pull=True)
    gw_b = net.nodes["b"]
    MemoryTransport(net.network, "b-drop").send("junk.xml", b"<not-an-envelope/>")
    assert gw_b.pull() == 1
    assert net.network.blobs("b-drop") == {}
    [record] = gw_b.spool.select(direction=Direction.IN)
    assert record.state is State.REJECTED
    assert record.error_code == "EnvelopeInvalid"
    assert gw_b.spool.payload(record.id, "envelope") == b"<not-an-envelope/>"


def refusing_pair(tmp_path: Path, cache: Path, net: Net
                  ) -> tuple[NodeSpec, NodeSpec, Gateway, Gateway]:
    """A and B over HTTPS where B has not registered A: B refuses A's signature with a
    signed Rejected receipt, so A's messages fail for good."""
    a = NodeSpec("a", A, tmp_path / "a")
    b = NodeSpec("b", B, tmp_path / "b")
    a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
    b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
    return a, b, net.add(a, cache, [a, b]), net.add(b, cache, [b])


def refused_messages(a: NodeSpec, gw_a: Gateway, net: Net, count: int) -> list[Any]:
    """``count`` documents dropped in A's outbox (``case-0.xml`` ...), sent and refused
    for good: A's failed messages."""
    for i in range(count):
        drop(a, f"case-{i}.xml", interstate_transaction("0600000", "4800000", seed=30 + i))
    gw_a.scan()
    net.settle()
    failed = gw_a.spool.select(direction=Direction.OUT)
    assert sorted(m.state for m in failed) == [State.FAILED] * count
    return failed


def reported_once(a: NodeSpec, gw_a: Gateway, failed: list[Any]) -> None:
    """Each of ``failed`` is back in A's rejected folder with its reason, and audited
    ``failure_reported`` once."""
    audit = AuditLog(sqlite3.connect(a.root / "spool/gateway.db"))
    for message in failed:
        assert (a.rejected / message.source).read_bytes() == \
            gw_a.spool.payload(message.id, "document")
        report = json.loads((a.rejected / f"{message.source}.error.json").read_text())
        assert report["spool_id"] == message.id
        codes = [e.event.code for e in audit.query(message_id=message.message_id)]
        assert codes.count("failure_reported") == 1


def test_the_failed_messages_of_a_run_are_reported_together(
        tmp_path: Path, key_cache: Path, net: Net) -> None:
    """The dead letters one run finds cost two commits for all of them (their reasons,
    then, once their files are durable, the marks), not two each."""
    a, _, gw_a, _ = refusing_pair(tmp_path, key_cache, net)
    failed = refused_messages(a, gw_a, net, 4)
    commits = gw_a.spool._groups.commits
    assert gw_a.report_failures() == 4
    assert gw_a.spool._groups.commits - commits == 2
    reported_once(a, gw_a, failed)
    assert gw_a.report_failures() == 0


def test_a_failed_message_that_cannot_be_reported_holds_up_no_other(
        tmp_path: Path, key_cache: Path, net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """When one dead letter's files cannot be written, the run reports the others (each
    alone) and leaves that one, unmarked, for a later run."""
    a, _, gw_a, _ = refusing_pair(tmp_path, key_cache, net)
    failed = refused_messages(a, gw_a, net, 4)
    [blocked] = [m for m in failed if m.source == "case-2.xml"]
    real = dead_letters.write_rejected_copy

    def refuse_one(spool, rejected, message, name, **kwargs):  # type: ignore[no-untyped-def]
        if message.id == blocked.id:
            raise SpoolError("cannot write the rejected copy", where=name)
        return real(spool, rejected, message, name, **kwargs)

    monkeypatch.setattr(dead_letters, "write_rejected_copy", refuse_one)
    assert gw_a.report_failures() == 3
    assert gw_a.spool.payload(blocked.id, "failure_report") is None
    assert not (a.rejected / "case-2.xml").exists()
    reported_once(a, gw_a, [m for m in failed if m is not blocked])
    monkeypatch.undo()
    assert gw_a.report_failures() == 1
    reported_once(a, gw_a, failed)


def test_failed_message_is_put_back_in_rejected_with_its_reason(
        tmp_path: Path, key_cache: Path, net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    """A message the partner refuses with a signed Rejected receipt is failed for good;
    its document goes back to the rejected folder, under its outbox name, with the reason
    beside it, once; resending it removes that copy."""
    a, _, gw_a, _ = refusing_pair(tmp_path, key_cache, net)
    doc = interstate_transaction("0600000", "4800000", seed=11)
    drop(a, "case-77.xml", doc)
    gw_a.scan()
    net.settle()
    [out] = gw_a.spool.select(direction=Direction.OUT)
    assert out.state is State.FAILED
    assert out.error_code == "CertificateUntrusted"
    assert not (a.rejected / "case-77.xml").exists()  # not before the report runs
    assert gw_a.report_failures() == 1
    assert (a.rejected / "case-77.xml").read_bytes() == doc
    report = json.loads((a.rejected / "case-77.xml.error.json").read_text())
    assert report["stage"] == "delivery"
    assert report["code"] == "CertificateUntrusted"
    assert report["message_id"] == out.message_id
    assert report["spool_id"] == out.id
    assert gw_a.report_failures() == 0  # once
    codes = [e.event.code for e in AuditLog(sqlite3.connect(a.root / "spool/gateway.db"))
             .query(message_id=out.message_id)]
    assert codes.count("failure_reported") == 1
    # the operator resends it: the copy goes, the message is queued again
    from gateway.cli import main

    assert main(["--config", str(a.config_path), "messages", "resend", str(out.id),
                 "--reason", "partner-recovered"]) == 0
    assert "removed its failure copy" in capsys.readouterr().out
    assert not (a.rejected / "case-77.xml").exists()
    assert not (a.rejected / "case-77.xml.error.json").exists()
    assert gw_a.spool.get(out.id).state is State.SEALED
    assert gw_a.spool.payload(out.id, "failure_report") is None


def test_reload_keys_takes_a_new_registration_without_a_restart(
        tmp_path: Path, key_cache: Path, net: Net) -> None:
    """B has not registered A and refuses its messages; after A's certificates are
    imported into B's key directory, reload_keys (SIGHUP) makes B accept the next one."""
    a, b, gw_a, gw_b = refusing_pair(tmp_path, key_cache, net)
    drop(a, "first.xml", interstate_transaction("0600000", "4800000", seed=12))
    gw_a.scan()
    net.settle()
    [first] = gw_a.spool.select(direction=Direction.OUT)
    assert first.state is State.FAILED
    register(b.keys, generate_keys(key_cache, A), A)
    old_keys = gw_b.keys
    assert gw_b.reload_keys() is True
    assert gw_b.keys is not old_keys
    assert gw_b.inbound.keys is gw_b.keys
    drop(a, "second.xml", interstate_transaction("0600000", "4800000", seed=13))
    gw_a.scan()
    net.settle()
    second = next(m for m in gw_a.spool.select(direction=Direction.OUT) if m.id != first.id)
    assert second.state is State.DELIVERED
    codes = [e.event.code for e in AuditLog(sqlite3.connect(b.root / "spool/gateway.db"))
             .query(code="keys_reloaded")]
    assert codes == ["keys_reloaded"]


def test_reload_keys_keeps_the_old_keys_when_the_directory_is_broken(
        tmp_path: Path, key_cache: Path, net: Net) -> None:
    a, _ = two_nodes(tmp_path, key_cache, net)
    gw_a = net.nodes["a"]
    before = gw_a.keys
    (a.keys / "sign.key").write_bytes(b"not a key")
    assert gw_a.reload_keys() is False
    assert gw_a.keys is before


def test_failed_relay_is_queued_again_when_the_sender_repeats(tmp_path: Path,
                                                             key_cache: Path,
                                                             net: Net) -> None:
    """The hub's forwarding failed for good (C unreachable past the hub's expiry); when
    A sends the same envelope again, the hub queues its relay again instead of
    answering 202 and never forwarding it."""
    a, hub, c = hub_nodes(tmp_path, key_cache, net)
    gw_a, gw_hub = net.nodes["a"], net.nodes["hub"]
    doc = interstate_transaction("0600000", "3600000", seed=14)
    drop(a, "to-ny.xml", doc)
    # taken in, not sent: scan() would also start A's send in the background, racing the
    # copy handed to the hub below (the hub forwards at once); A sends in settle()
    for scanner in gw_a.scanners:
        scanner.scan(gw_a.clock())
    [out] = gw_a.spool.select(direction=Direction.OUT)
    envelope = gw_a.spool.payload(out.id, "envelope") or b""
    net.network.fail_next("c-https", 1, error=TlsRejected("injected: refused",
                                                          endpoint="c-https"))
    assert gw_hub.handle_https(envelope, None)[0] == 202
    gw_hub.send_all()
    [relay] = gw_hub.spool.select(direction=Direction.RELAY)
    assert relay.state is State.FAILED  # a permanent failure: no retries
    assert gw_hub.handle_https(envelope, None)[0] == 202  # A repeats it
    net.settle()
    assert gw_hub.spool.get(relay.id).state is State.RELAYED
    assert [p.read_bytes() for p in c.inbox.iterdir()] == [doc]
    assert gw_a.spool.get(out.id).state is State.DELIVERED
    codes = [e.event.code for e in AuditLog(sqlite3.connect(hub.root / "spool/gateway.db"))
             .query(message_id=out.message_id)]
    assert codes.count("relay_requeued") == 1
    # a relay an operator cancelled stays cancelled when the sender repeats
    with gw_hub.spool.transaction(gw_hub.clock()) as txn:
        other = txn.insert(NewMessage(Direction.RELAY, message_id="00000000-0000-4000-8000-"
                                      "000000000099", partner=C), State.RECEIVED)
        txn.transition(other.id, State.CANCELLED, expect=State.RECEIVED)
    gw_hub.inbound._requeue_failed_relay(other.message_id or "", gw_hub.clock())
    assert gw_hub.spool.get(other.id).state is State.CANCELLED


def test_two_gateways_on_one_spool_send_each_message_once(tmp_path: Path, key_cache: Path,
                                                           net: Net) -> None:
    """Two Gateway instances with the same configuration (one spool database, one
    outbox), as two daemons sharing a queue would be: they scan and send at the same
    time, and every file is recorded once, sent once and delivered once."""
    a, b = two_nodes(tmp_path, key_cache, net)
    first = net.nodes["a"]
    second = Gateway(load_config(a.config_path),
                     transport_options={"memory": {"network": net.network}})
    try:
        docs = {f"m{i:02}.xml": interstate_transaction("0600000", "4800000", seed=100 + i)
                for i in range(30)}
        for name, data in docs.items():
            drop(a, name, data)
        threads = [threading.Thread(target=gw.scan) for gw in (first, second, first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        senders = [threading.Thread(target=gw.send_all) for gw in (first, second)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        net.settle()
        out = first.spool.select(direction=Direction.OUT, limit=1000)
        assert sorted(m.source or "" for m in out) == sorted(docs)
        assert {m.state for m in out} == {State.DELIVERED}
        assert all(m.attempts == 1 for m in out)  # claimed and sent exactly once
        assert sorted(p.read_bytes() for p in b.inbox.iterdir()) == sorted(docs.values())
        assert net.network.delivered("b-https") == 30  # no second copy on the wire
        assert AuditLog(sqlite3.connect(a.root / "spool/gateway.db")).verify().ok
    finally:
        second.stop()


def test_failure_report_waits_while_the_rejected_folder_cannot_be_written(
        tmp_path: Path, key_cache: Path, net: Net) -> None:
    """The rejected folder is unusable (a plain file is in its place): the report is
    logged and left to do, nothing is marked done, and it is written once the folder
    can be made."""
    a, _, gw_a, _ = refusing_pair(tmp_path, key_cache, net)
    doc = interstate_transaction("0600000", "4800000", seed=15)
    drop(a, "blocked.xml", doc)
    gw_a.scan()
    net.settle()
    [out] = gw_a.spool.select(direction=Direction.OUT)
    assert out.state is State.FAILED
    a.rejected.parent.mkdir(parents=True, exist_ok=True)
    a.rejected.write_bytes(b"not a folder")
    assert gw_a.report_failures() == 0
    assert gw_a.spool.payload(out.id, "failure_report") is None
    a.rejected.unlink()
    assert gw_a.report_failures() == 1
    assert (a.rejected / "blocked.xml").read_bytes() == doc


def test_copy_that_loses_the_race_leaves_no_file_and_gets_the_receipt(
        tmp_path: Path, key_cache: Path, net: Net) -> None:
    """Two copies of one envelope opened at once: the one that commits second (it passed
    the duplicate check before the first was recorded) removes its temporary file and
    is answered with the first one's stored receipt; the inbox holds one document."""
    a, b = two_nodes(tmp_path, key_cache, net)
    gw_a, gw_b = net.nodes["a"], net.nodes["b"]
    drop(a, "tx.xml", interstate_transaction("0600000", "4800000", seed=16))
    gw_a.scan()
    net.settle()
    [out] = gw_a.spool.select(direction=Direction.OUT)
    envelope = gw_a.spool.payload(out.id, "envelope") or b""
    parsed = parse_envelope(envelope)
    answer = gw_b.inbound._process(None, parsed, "https", envelope)  # the late copy
    assert answer.status == 200
    assert answer.body == gw_a.spool.payload(out.id, "receipt")
    assert [p.name for p in b.inbox.iterdir()] == [f"InterstateTransaction-{out.message_id}.xml"]
    assert len(gw_b.spool.select(direction=Direction.IN)) == 1


UNREADABLE = {
    "empty": b"",
    "garbage": b"\x00\x01 not xml at all",
    "doctype": b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e "x">]>\n<Envelope>&e;</Envelope>',
    "not an envelope": b'<?xml version="1.0"?>\n<Note xmlns="urn:x">hello</Note>',
}


@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_input_gets_a_bare_400_and_is_recorded(
        tmp_path: Path, key_cache: Path, net: Net, body: bytes) -> None:
    """As docs/protocol.md says: no receipt for what is not a readable envelope (no
    MessageId to refer to, no verified sender to sign for), but a rejected record."""
    two_nodes(tmp_path, key_cache, net)
    gw_b = net.nodes["b"]
    answer = gw_b.inbound.accept(body, channel="https")
    assert (answer.status, answer.body) == (400, b"")
    [record] = gw_b.spool.select(direction=Direction.IN)
    assert record.state is State.REJECTED
    assert record.error_code in {"EnvelopeInvalid", "XmlForbidden", "XmlMalformed",
                                 "SchemaInvalid", "EncodingInvalid"}


def test_as4_delivery_left_delivering_is_finished_at_restart(tmp_path: Path, key_cache: Path,
                                                            net: Net) -> None:
    """An AS4 message a crash left ``delivering`` (recorded, its document in a temporary
    file, the rename not done) is finished by recovery: its stored envelope is an AS4
    message, not ours, so the generic inbound recovery must leave it to the AS4 side."""
    from gateway.node import as4_node
    from gateway.store.fsutil import write_temp

    _, b = two_nodes(tmp_path, key_cache, net)
    gw_b = net.nodes["b"]
    document = interstate_transaction("0600000", "4800000", seed=31)
    b.inbox.mkdir(parents=True, exist_ok=True)
    target = b.inbox / as4_node._inbox_name("as4-msg-1@example.org")
    tmp = write_temp(target, document)
    stored = as4_node.to_blob("multipart/related; boundary=x", b"--x--")
    with gw_b.spool.transaction(datetime.now(UTC)) as txn:
        record = txn.insert(NewMessage(Direction.IN, message_id="as4-msg-1@example.org",
                                       partner=A, transport="as4", service="as4",
                                       envelope_digest=hashlib.sha256(stored).hexdigest()),
                            State.RECEIVED, payloads={"envelope": stored})
        txn.transition(record.id, State.DELIVERING, expect=State.RECEIVED,
                       payloads={"receipt": b"<receipt/>"}, changes={"source": tmp.name})
    assert gw_b.recover()["inbound"] == 1
    done = gw_b.spool.get(record.id)
    assert done.state is State.DELIVERED
    assert done.source == target.name
    assert [p.name for p in b.inbox.iterdir()] == [target.name]
    assert target.read_bytes() == document
