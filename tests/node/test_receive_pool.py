"""Receiving in worker processes (gateway/node/receive_pool.py): every envelope gets the
same outcome from the workers as in the daemon's own process (delivered, or rejected with
the same code, the same receipt, the same record and audit events), an envelope whose
worker is killed is opened in the daemon and still delivered, and `gateway run` recycles
its receive workers on SIGHUP, has them do the work, and leaves none behind when it is
killed."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.examine import Examined
from gateway.node.inbound import Answer
from gateway.node.receive_pool import ReceivePool
from gateway.protocol.envelope import ParsedEnvelope, parse_envelope
from gateway.store.states import Direction, State
from tests.support.arrivals import Sealer, pooled, receipt_fields, specs
from tests.support.gwnodes import Daemon, wait_until, write_config
from tests.support.procs import alive, recycled_by_sighup

pytestmark = pytest.mark.integration  # every test here starts worker processes

A, B = "fips:0600000", "fips:4800000"



@pytest.fixture
def clock() -> Callable[[], datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return lambda: now


@pytest.fixture
def gateways(tmp_path: Path, key_cache: Path, clock: Callable[[], datetime]
             ) -> Iterator[tuple[Sealer, Gateway, Gateway]]:
    """Two B nodes with CSENet inboxes (the conversion runs in the workers too): the
    first opens in its receive workers, the second in its own process."""
    a, (b_pool, b_here) = specs(tmp_path, key_cache, "bpool", "bhere",
                                inbox={"format": "csenet"})
    started = [Gateway(load_config(spec.config_path), clock=clock)
               for spec in (b_pool, b_here)]
    try:
        yield Sealer(a, tmp_path, clock()), started[0], started[1]
    finally:
        for gateway in started:
            gateway.stop()


def outcome(gateway: Gateway, answer: Answer, envelope: bytes, sealer: Sealer
            ) -> tuple[object, ...]:
    """Everything the node did with one envelope that does not depend on where it was
    opened: the answer, the receipt's fields, the record, its audit trail, the inbox."""
    message_id = parse_envelope(envelope).header.message_id
    record = gateway.spool.find(Direction.IN, message_id)
    assert record is not None
    stored = gateway.spool.payload(record.id, "receipt") or b""
    assert stored == answer.body
    with gateway.spool.audit_log() as audit:
        trail = [(e.event.code, e.event.error_code, e.event.detail)
                 for e in audit.query(message_id=message_id)]
    inbox = sorted((p.name, p.read_bytes()) for p in gateway.config.inbox.iterdir()
                   if message_id in p.name)
    return (answer.status, receipt_fields(answer.body, sealer, envelope), record.state,
            record.error_code, record.error_text, record.case_id, record.source, trail,
            inbox)


def test_the_workers_give_every_envelope_the_same_outcome(
        gateways: tuple[Sealer, Gateway, Gateway]) -> None:
    sealer, gw_pool, gw_here = gateways
    pool = pooled(gw_pool)
    assert gw_pool.inbound.pool is pool
    assert gw_here.inbound.pool is None
    cases = sealer.cases()
    # the examination itself: the workers' Examined is the daemon's, but for the
    # receipt's random id (and so its bytes)
    now = gw_pool.clock()
    for name, envelope in cases.items():
        parsed = parse_envelope(envelope)
        theirs = pool.examine(parsed, now)
        ours = gw_here.inbound.examiner.examine(parsed, gw_here.keys, now)
        assert isinstance(theirs, Examined), name
        assert theirs.receipt_id != ours.receipt_id
        assert (theirs.document, theirs.case_id, theirs.clock, theirs.error_code,
                theirs.error_text, theirs.too_large) == \
            (ours.document, ours.case_id, ours.clock, ours.error_code, ours.error_text,
             ours.too_large), name
    # and everything durable, through the daemon's entry point
    codes = {}
    for name, envelope in cases.items():
        a = gw_pool.inbound.accept(envelope, channel="https")
        b = gw_here.inbound.accept(envelope, channel="https")
        theirs, ours = outcome(gw_pool, a, envelope, sealer), outcome(gw_here, b, envelope,
                                                                      sealer)
        assert theirs == ours, name
        codes[name] = (a.status, theirs[3])
    assert codes == {
        "delivered-0": (200, None), "delivered-1": (200, None), "delivered-2": (200, None),
        "SchemaInvalid": (400, "SchemaInvalid"), "ReplayWindow": (400, "ReplayWindow"),
        "HeaderMismatch": (400, "HeaderMismatch"),
        "untrusted": (400, codes["untrusted"][1]),
        "DecryptionFailed": (400, "DecryptionFailed")}
    assert codes["untrusted"][1] in {"CertificateUntrusted", "SignerNotRegistered"}
    # delivered as CSENet lines, by both
    assert sorted(p.suffix for p in gw_pool.config.inbox.iterdir()) == [".txt"] * 3
    # a copy that comes again is still caught by the spool, not opened again
    again = gw_pool.inbound.accept(cases["delivered-0"], channel="https")
    assert again.status == 200
    assert again.body == gw_pool.spool.payload(
        gw_pool.spool.find(Direction.IN, parse_envelope(cases["delivered-0"])
                           .header.message_id).id, "receipt")  # type: ignore[union-attr]


class KillDuringCall:
    """The real pool, with every worker killed right after the first envelope is handed
    over (the fault this test injects; nothing of the pool is replaced)."""

    def __init__(self, pool: ReceivePool) -> None:
        self.pool = pool
        self.kills = 0

    def examine(self, parsed: ParsedEnvelope, now: datetime) -> Examined | None:
        collect = self.pool.submit(parsed, now)
        if self.kills == 0:
            self.kills += 1
            for pid in self.pool.pids():
                os.kill(pid, signal.SIGKILL)
        return collect()


def test_a_killed_worker_loses_nothing(gateways: tuple[Sealer, Gateway, Gateway],
                                       caplog: pytest.LogCaptureFixture) -> None:
    sealer, gw, _ = gateways
    pool = pooled(gw)
    first = pool.pids()
    killer = KillDuringCall(pool)
    gw.inbound.pool = killer
    envelopes = [sealer.envelope(interstate_transaction("0600000", "4800000", seed=i))
                 for i in range(16)]
    with caplog.at_level(logging.WARNING, logger="gateway.node.inbound"), \
            ThreadPoolExecutor(max_workers=8) as threads:
        answers = list(threads.map(lambda e: gw.inbound.accept(e, channel="https"),
                                   envelopes))
    assert killer.kills == 1
    assert [a.status for a in answers] == [200] * 16
    for answer, envelope in zip(answers, envelopes, strict=True):
        fields = receipt_fields(answer.body, sealer, envelope)
        assert fields[3] == "Delivered"
    records = gw.spool.select(direction=Direction.IN, limit=100)
    assert len(records) == 16
    assert {r.state for r in records} == {State.DELIVERED}
    assert len(list(gw.config.inbox.iterdir())) == 16
    broke = [r for r in caplog.records if "ended unexpectedly" in r.getMessage()]
    assert len(broke) == 1  # logged once
    # new workers take over, started at once
    wait_until(pool.ready, 60, "new receive workers")
    assert not set(pool.pids()) & set(first)
    late = sealer.envelope(interstate_transaction("0600000", "4800000", seed=99))
    assert isinstance(pool.examine(parse_envelope(late), gw.clock()), Examined)


def test_waiting_envelopes_go_to_the_workers_together(
        gateways: tuple[Sealer, Gateway, Gateway]) -> None:
    sealer, gw_pool, gw_here = gateways
    pool = pooled(gw_pool)
    envelopes = [sealer.envelope(interstate_transaction("0600000", "4800000", seed=i))
                 for i in range(16)]
    parsed = [parse_envelope(e) for e in envelopes]
    now = gw_pool.clock()
    start = threading.Barrier(len(parsed))

    def one(p: ParsedEnvelope) -> Examined | None:
        start.wait()
        return pool.examine(p, now)

    with ThreadPoolExecutor(max_workers=len(parsed)) as threads:
        results = list(threads.map(one, parsed))
    # each thread got the outcome of its own envelope, as the daemon would have it
    for p, envelope, theirs in zip(parsed, envelopes, results, strict=True):
        assert isinstance(theirs, Examined)
        ours = gw_here.inbound.examiner.examine(p, gw_here.keys, now)
        assert (theirs.document, theirs.case_id, theirs.clock, theirs.error_code) == \
            (ours.document, ours.case_id, ours.clock, ours.error_code)
        assert receipt_fields(theirs.receipt, sealer, envelope)[0] == p.header.message_id
    assert len({r.receipt_id for r in results if r is not None}) == len(parsed)
    # and the envelopes that queued while the two workers were busy went several a call
    assert pool.envelopes == len(parsed)
    assert pool.calls < len(parsed)


class Unpicklable:
    """An envelope that cannot cross the pipe (the fault this test injects)."""

    def __init__(self, parsed: ParsedEnvelope) -> None:
        self.header = parsed.header

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("not for a pipe")


def test_a_gathered_call_that_cannot_be_sent_answers_every_waiting_thread(
        gateways: tuple[Sealer, Gateway, Gateway]) -> None:
    sealer, gw, _ = gateways
    pool = pooled(gw)
    now = gw.clock()
    bad = [Unpicklable(parse_envelope(sealer.envelope(
        interstate_transaction("0600000", "4800000", seed=i)))) for i in range(12)]
    results: dict[int, Examined | None] = {}

    def one(i: int) -> None:
        results[i] = pool.examine(bad[i], now)  # type: ignore[arg-type]

    # every worker held while the envelopes queue, so that they go several to a call
    generation = pool._generation()
    assert generation is not None
    with generation.cond:
        held = [generation.free.pop() for _ in range(len(generation.free))]
    # daemon threads: a thread nobody answers must fail this test, not hang the suite
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(bad))]
    for t in threads:
        t.start()
    wait_until(lambda: len(pool._queue) == len(bad), 10, "every envelope queued")
    with generation.cond:
        generation.free.extend(held)
        generation.cond.notify_all()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert results == dict.fromkeys(range(len(bad)))  # each told: examine in-process
    assert pool.envelopes == len(bad)
    assert pool.calls < len(bad)
    # and the workers are as they were: the next envelope goes to one of them
    late = parse_envelope(sealer.envelope(interstate_transaction("0600000", "4800000",
                                                                 seed=99)))
    assert isinstance(pool.examine(late, now), Examined)


def test_workers_dead_before_a_gathered_call_lose_nothing(
        gateways: tuple[Sealer, Gateway, Gateway], caplog: pytest.LogCaptureFixture) -> None:
    sealer, gw, _ = gateways
    pool = pooled(gw)
    first = pool.pids()
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in first), 10, "the killed workers")
    envelopes = [sealer.envelope(interstate_transaction("0600000", "4800000", seed=i))
                 for i in range(16)]
    start = threading.Barrier(8)

    def accept(envelope: bytes) -> Answer:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(timeout=5)
        return gw.inbound.accept(envelope, channel="https")

    with caplog.at_level(logging.WARNING, logger="gateway.node.inbound"), \
            ThreadPoolExecutor(max_workers=8) as threads:
        answers = list(threads.map(accept, envelopes))
    assert [a.status for a in answers] == [200] * 16
    for answer, envelope in zip(answers, envelopes, strict=True):
        fields = receipt_fields(answer.body, sealer, envelope)
        assert (fields[0], fields[3]) == (parse_envelope(envelope).header.message_id,
                                          "Delivered")
    records = gw.spool.select(direction=Direction.IN, limit=100)
    assert len(records) == 16
    assert {r.state for r in records} == {State.DELIVERED}
    assert len(list(gw.config.inbox.iterdir())) == 16
    broke = [r for r in caplog.records if "ended unexpectedly" in r.getMessage()]
    assert len(broke) == 1  # logged once, however many calls found their worker dead
    wait_until(pool.ready, 60, "new receive workers")
    assert not set(pool.pids()) & set(first)


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(stat[11]) + int(stat[12])


def test_gateway_run_recycles_on_sighup_and_leaves_no_worker_when_killed(
        tmp_path: Path, key_cache: Path) -> None:
    """Envelopes dropped in B's inbound folder after a SIGHUP are opened by the new
    workers (their CPU time grows) and delivered; a kill -9 of B ends them."""
    drop = tmp_path / "drop"
    drop.mkdir()
    a, (b,) = specs(tmp_path, key_cache, "b")
    b.inbound_folders = [drop]
    write_config(b, key_cache, [a, b])
    sealer = Sealer(a, tmp_path, datetime.now(UTC))
    daemon = Daemon(b).start()
    try:
        second = recycled_by_sighup(daemon, "receive")
        before = {p: cpu_ticks(p) for p in second}
        for i in range(40):
            (drop / f".e{i:02}").write_bytes(
                sealer.envelope(interstate_transaction("0600000", "4800000", seed=i)))
            (drop / f".e{i:02}").rename(drop / f"e{i:02}.xml")
        # delivered: renamed into place (a hidden .tmp is a delivery still under way)
        wait_until(lambda: b.inbox.is_dir() and len(list(b.inbox.glob("*.xml"))) >= 40, 60,
                   "the deliveries")
        assert sum(cpu_ticks(p) - before[p] for p in second) > 0  # the workers opened
        daemon.kill()  # kill -9: no cleanup of any kind
        wait_until(lambda: not any(alive(p) for p in second), 10,
                   "the receive workers to end with the daemon")
    finally:
        daemon.terminate()
    assert sorted(p.suffix for p in b.inbox.iterdir()) == [".xml"] * 40
