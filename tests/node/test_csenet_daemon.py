"""CSENet files through the daemon: an outbox with ``format = "csenet"`` splits a file into
one message per transaction (routed by Other-FIPS), refuses the invalid ones individually
with a JSON report and a CSENet error file, sends a business duplicate once, and an inbox
with ``format = "csenet"`` delivers the transaction as received from the server (121-byte
header, blocks unchanged). In one process over the in-memory transport, with the real
validation, sealing, receipts and spool."""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.csenet_samples import transaction
from gateway.demo.samples import interstate_transaction
from gateway.documents.csenet import Framing, Transaction, decode, encode_file
from gateway.documents.csenet.errorfile import parse_error_record
from gateway.errors import ConfigError
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import Daemon, NodeSpec, PartnerSpec, wait_until, write_config
from transports.memory import MemoryNetwork, http_responder

A, B = "fips:0600000", "fips:4800000"



class Pair:
    def __init__(self, tmp_path: Path, cache: Path,
                 outbox: dict[str, object] | None = None) -> None:
        self.network = MemoryNetwork()
        self.a = NodeSpec("a", A, tmp_path / "a",
                          outbox_options=outbox or {"format": "csenet", "newline": "crlf"})
        self.b = NodeSpec("b", B, tmp_path / "b", inbox_options={"format": "csenet"})
        self.a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
        self.b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
        self.gw: dict[str, Gateway] = {}
        for spec in (self.a, self.b):
            config = load_config(write_config(spec, cache, [self.a, self.b]))
            gw = Gateway(config, transport_options={"memory": {"network": self.network}})
            self.network.serve(f"{spec.name}-https", http_responder(gw.handle_https))
            self.gw[spec.name] = gw

    def drop(self, name: str, data: bytes) -> None:
        self.a.outbox.mkdir(parents=True, exist_ok=True)
        (self.a.outbox / name).write_bytes(data)
        (self.a.outbox / f"{name}.ready").write_bytes(b"")

    def run(self) -> None:
        self.gw["a"].scan()
        for _ in range(10):
            self.gw["a"].send_all(timeout=20)
            if not self.gw["a"].spool.due(self.gw["a"].clock(), limit=1):
                break

    def close(self) -> None:
        for gw in self.gw.values():
            gw.stop()


@pytest.fixture
def pair(tmp_path: Path, key_cache: Path) -> Iterator[Pair]:
    p = Pair(tmp_path, key_cache)
    yield p
    p.close()


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _bad_ssn(txn: Transaction) -> bytes:
    data = bytearray(txn.to_bytes())
    at = len(txn.header.text) + (len(txn.case.text) if txn.case else 0) + 56
    data[at:at + 9] = b"98765432Z"
    return bytes(data)


def test_mixed_file_delivered_in_csenet_form_with_error_file(
        pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    today = _today()
    good1 = transaction("ENF", "R", "ERARR", today=today, serial=101)
    good2 = transaction("LO1", "R", today=today, serial=102)
    bad = decode(_bad_ssn(transaction("ENF", "R", "ERARR", today=today, serial=103)))
    unrouted = transaction("LO1", "R", today=today, serial=104, other_fips="5500000")
    lines = [good1.to_bytes(), bad.to_bytes(), good2.to_bytes(), unrouted.to_bytes(),
             good1.to_bytes()]                           # the last: a business duplicate
    pair.drop("outgoing.txt", b"".join(line + b"\r\n" for line in lines))
    pair.run()

    a = pair.gw["a"]
    out = a.spool.select(direction=Direction.OUT, limit=100)
    by_source = {m.source: m for m in out}
    assert sorted(by_source) == [f"outgoing.txt:{n}" for n in range(1, 6)]
    assert by_source["outgoing.txt:1"].state is State.DELIVERED
    assert by_source["outgoing.txt:3"].state is State.DELIVERED
    assert [by_source[f"outgoing.txt:{n}"].error_code for n in (2, 4, 5)] == [
        "CsenetInvalid", "NoRoute", "Duplicate"]
    assert not (pair.a.outbox / "outgoing.txt").exists()

    # B: two deliveries, each the header as received from the server and the blocks as sent
    delivered = sorted(p for p in pair.b.inbox.iterdir() if p.suffix == ".txt")
    assert len(delivered) == 2
    sent = {good1.header.serial: good1, good2.header.serial: good2}
    for path in delivered:
        data = path.read_bytes()
        assert data.endswith(b"\n")
        assert not data.endswith(b"\r\n")
        got = decode(data[:-1], kind="from-server")
        original = sent[got.header.serial]
        head, sent_head = got.header, original.header
        assert (head.local_fips, head.other_fips) == (sent_head.other_fips,
                                                      sent_head.local_fips)
        assert (head.case_id, head.other_case_id) == (sent_head.other_case_id,
                                                      sent_head.case_id)
        assert head.text[14:45] + head.text[75:96] == \
            sent_head.text[14:45] + sent_head.text[75:96]
        assert got.header.value("Date-Received") in (today, today + dt.timedelta(days=1))
        assert got.header.value("Time-Received") is not None
        assert data[121:-1] == original.to_bytes()[127:]          # blocks byte-identical

    # A: the refused transactions, the JSON report and the 145-byte error records
    rejected = pair.a.rejected
    assert (rejected / "outgoing.txt").read_bytes() == b"".join(
        lines[n] + b"\r\n" for n in (1, 3, 4))
    report = json.loads((rejected / "outgoing.txt.error.json").read_text())
    assert (report["transactions"], report["accepted"], report["refused"]) == (5, 2, 3)
    assert [r["position"] for r in report["rejected"]] == [2, 4, 5]
    errors = (rejected / "outgoing.txt.errors").read_bytes().split(b"\r\n")
    assert errors[-1] == b""
    records = [parse_error_record(e) for e in errors[:-1]]
    assert [r.raw("Txn-Counter") for r in records] == ["000002", "000004", "000005"]
    assert [r.raw("Error-Code") for r in records] == ["GT01", "GR01", "GD01"]
    assert [r.text[90:102] for r in records] == ["000000000103", "000000000104",
                                                 "000000000101"]
    assert all(r.raw("Local-FIPS-Code") == "0600000" for r in records)

    # nothing personal in the error file, the report, the logs or the audit trail
    personal = [b"98765432", b"SAMPLE-NCP", b"SAMPLE-PARTY", b"PO BOX"]
    with a.spool.audit_log() as log:
        audit = "\n".join(repr(event) for event in log.query())
    for blob in ((rejected / "outgoing.txt.errors").read_bytes(),
                 (rejected / "outgoing.txt.error.json").read_bytes(),
                 caplog.text.encode(), audit.encode()):
        for value in personal:
            assert value not in blob


def test_business_duplicate_is_sent_once(pair: Pair) -> None:
    txn = transaction("CSI", "R", "FRINF", today=_today(), serial=7)
    pair.drop("first.txt", encode_file([txn], framing=Framing("crlf")))
    pair.run()
    pair.drop("again.txt", encode_file([txn], framing=Framing("crlf")))
    pair.run()
    out = {m.source: m for m in pair.gw["a"].spool.select(direction=Direction.OUT, limit=10)}
    assert out["first.txt:1"].state is State.DELIVERED
    assert out["again.txt:1"].state is State.REJECTED
    assert out["again.txt:1"].error_code == "Duplicate"
    assert len([p for p in pair.b.inbox.iterdir() if p.suffix == ".txt"]) == 1
    report = json.loads((pair.a.rejected / "again.txt.error.json").read_text())
    assert out["first.txt:1"].message_id in report["rejected"][0]["message"]


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_during_intake_neither_loses_nor_doubles(tmp_path: Path,
                                                        key_cache: Path) -> None:
    """A real ``gateway run`` killed (SIGKILL) again and again while it takes a large
    CSENet file: in the end every transaction is recorded exactly once."""
    a = NodeSpec("a", A, tmp_path / "a", outbox_options={"format": "csenet"})
    a.partners = [PartnerSpec(B, [(f"file://{tmp_path / 'drop'}", {})])]
    b = NodeSpec("b", B, tmp_path / "b")
    write_config(a, key_cache, [a, b])
    today = _today()
    count = 200
    lines = []
    for n in range(1, count + 1):
        txn = transaction("LO1", "R", today=today, serial=n)
        lines.append(_bad_ssn(txn) if n % 10 == 0 else txn.to_bytes())
    a.outbox.mkdir(parents=True, exist_ok=True)
    (a.outbox / "big.txt").write_bytes(b"".join(line + b"\n" for line in lines))
    (a.outbox / "big.txt.ready").write_bytes(b"")
    daemon = Daemon(a)
    rng = random.Random(13)
    kills = 0
    try:
        while (a.outbox / "big.txt").exists() and kills < 10:
            daemon.start()
            time.sleep(rng.uniform(0.1, 0.9))
            if (a.outbox / "big.txt").exists():
                daemon.kill()
                kills += 1
        if not daemon.alive():
            daemon.start()
        wait_until(lambda: not (a.outbox / "big.txt").exists(), 180, "the file to be taken")
    finally:
        daemon.kill()
    assert kills >= 1, "the daemon finished before the first kill: make the file larger"
    spool = SqliteSpool(load_config(a.config_path).spool.database)
    try:
        out = [m for m in spool.select(direction=Direction.OUT, limit=10_000)
               if (m.source or "").startswith("big.txt:")]
    finally:
        spool.close()
    positions = collections.Counter(int((m.source or "")[len("big.txt:"):]) for m in out)
    assert sorted(positions) == list(range(1, count + 1))        # nothing lost
    assert max(positions.values()) == 1                           # nothing doubled
    for m in out:
        n = int((m.source or "")[len("big.txt:"):])
        assert (m.state is State.REJECTED) == (n % 10 == 0), (n, m.state)
    ids = [m.message_id for m in out if m.state is not State.REJECTED]
    assert len(ids) == len(set(ids)) == count - count // 10
    errors = (a.rejected / "big.txt.errors").read_bytes().splitlines()
    assert len(errors) == count // 10
    assert all(len(e) == 145 for e in errors)


def test_auto_format_takes_xml_and_csenet(tmp_path: Path, key_cache: Path) -> None:
    p = Pair(tmp_path, key_cache, outbox={"format": "auto"})
    try:
        p.drop("doc.xml", interstate_transaction("0600000", "4800000", seed=3))
        p.drop("batch.txt", encode_file([transaction("LO1", "R", today=_today(), serial=9)]))
        p.run()
        states = {m.source: m.state for m in p.gw["a"].spool.select(direction=Direction.OUT)}
        assert states == {"doc.xml": State.DELIVERED, "batch.txt:1": State.DELIVERED}
    finally:
        p.close()


def test_config_keys_are_checked(tmp_path: Path, key_cache: Path) -> None:
    a = NodeSpec("a", A, tmp_path / "a", outbox_options={"format": "csv", "newline": "cr"},
                 inbox_options={"format": "edi"})
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(a, key_cache, [a]))
    text = str(caught.value)
    for key in ("outbox[0].format", "outbox[0].newline", "inbox.format"):
        assert key in text
    a.outbox_options = {"format": "csenet", "newline": "crlf"}
    a.inbox_options = {"format": "csenet", "newline": "crlf"}
    config = load_config(write_config(a, key_cache, [a]))
    assert (config.outboxes[0].format, config.outboxes[0].newline) == ("csenet", "crlf")
    assert (config.inbox_format, config.inbox_newline) == ("csenet", "crlf")
