"""Outbox intake in worker processes (gateway/node/intake_pool.py): the workers prepare
what the daemon would (the envelope opens to the same document, a refusal is the same
error file), a reload recycles them onto the new keys, a worker that dies loses nothing,
a key directory changed behind the daemon's back is never sealed with, and `gateway run`
leaves no worker behind when it is killed."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.intake import Prepared, PrepareJob, Refused
from gateway.node.intake_pool import IntakePool
from gateway.node.keystore import generate_node
from gateway.node.nodekeys import load_node_keys
from gateway.node.prepare import make_preparer
from gateway.protocol.party import Party
from gateway.protocol.seal import open_envelope
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import (
    Daemon,
    NodeSpec,
    PartnerSpec,
    register,
    wait_until,
    write_config,
)
from tests.support.procs import alive, recycled_by_sighup

pytestmark = pytest.mark.integration  # every test here starts worker processes

A, B = "fips:0600000", "fips:4800000"



def two_specs(root: Path, cache: Path, extra: str = "") -> tuple[NodeSpec, NodeSpec]:
    a = NodeSpec("a", A, root / "a", extra=extra)
    b = NodeSpec("b", B, root / "b")
    a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
    b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
    for spec in (a, b):
        write_config(spec, cache, [a, b])
    return a, b


@pytest.fixture
def gateway_a(tmp_path: Path, key_cache: Path) -> Iterator[tuple[Gateway, NodeSpec, NodeSpec]]:
    a, b = two_specs(tmp_path, key_cache, "[limits]\nintake_workers = 2\nreceive_workers = 0\n")
    gw = Gateway(load_config(a.config_path))
    try:
        yield gw, a, b
    finally:
        gw.stop()


def documents() -> list[bytes]:
    good = [interstate_transaction("0600000", "4800000", seed=i) for i in range(6)]
    invalid = good[0].replace(b"<CaseID>", b"<Unexpected/><CaseID>", 1)
    assert invalid != good[0]
    nowhere = interstate_transaction("0600000", "3600000", seed=7)  # no route to New York
    not_xml = b"<open"
    return [*good, invalid, nowhere, not_xml]


def opened(envelope: bytes, spec: NodeSpec) -> tuple[bytes, str, str, str, str, datetime]:
    keys = load_node_keys(load_config(spec.config_path))
    message = open_envelope(envelope, node=keys.identity, trust=keys.trust,
                            directory=keys.directory, now=datetime.now(UTC))
    h = message.header
    return (message.document, str(h.from_party), str(h.to_party), h.service, h.action,
            h.created)


def sealed_to(envelope: bytes, spec: NodeSpec) -> bool:
    try:
        opened(envelope, spec)
    except Exception:  # any refusal means: not for these keys
        return False
    return True


def test_workers_prepare_what_the_daemon_would(gateway_a: tuple[Gateway, NodeSpec, NodeSpec]
                                               ) -> None:
    gw, _, b = gateway_a
    pool = gw.start_intake_pool()
    assert pool is not None
    assert len(pool.pids()) == 2
    docs = documents()
    now = datetime.now(UTC)
    jobs = [PrepareJob(d, f"doc{i}.xml", "interstate", now) for i, d in enumerate(docs)]
    pooled = pool.submit(jobs)()
    here = make_preparer(gw.config, gw.keys, registry=gw.registry)
    assert all(o is not None for o in pooled)
    kinds = []
    for job, theirs in zip(jobs, pooled, strict=True):
        ours = here(job.data, source=job.source, service=job.service, now=job.now)
        assert type(theirs) is type(ours)
        kinds.append(type(ours).__name__)
        if isinstance(ours, Refused):
            assert theirs == ours  # same code, message, issues (lines, paths)
            continue
        assert isinstance(theirs, Prepared)
        assert theirs.document == job.data
        assert theirs.events == ours.events
        randomless = {"message_id": None, "envelope_digest": None}
        assert replace(theirs.message, **randomless) == replace(ours.message, **randomless)
        assert theirs.message.message_id != ours.message.message_id
        assert opened(theirs.envelope, b)[0] == job.data
        assert opened(theirs.envelope, b)[1:] == opened(ours.envelope, b)[1:]
    assert kinds == ["Prepared"] * 6 + ["Refused"] * 3


def test_a_refused_file_gets_the_same_error_file(gateway_a: tuple[Gateway, NodeSpec, NodeSpec]
                                                 ) -> None:
    gw, a, _ = gateway_a
    gw.start_intake_pool()
    [scanner] = gw.scanners
    docs = documents()
    a.outbox.mkdir(parents=True, exist_ok=True)

    def take(prefix: str) -> None:
        for i, data in enumerate(docs):
            (a.outbox / f"{prefix}{i}.xml").write_bytes(data)
            (a.outbox / f"{prefix}{i}.xml.ready").write_bytes(b"")
        assert gw.scan() == len(docs)
        assert not any(p.name.startswith(prefix) for p in a.outbox.iterdir())

    take("pool")
    pool, scanner.prepare_batch = scanner.prepare_batch, None  # the same node, in-process
    take("here")
    scanner.prepare_batch = pool
    for i in (6, 7, 8):
        reports = []
        for prefix in ("pool", "here"):
            assert (a.rejected / f"{prefix}{i}.xml").read_bytes() == docs[i]
            report = json.loads((a.rejected / f"{prefix}{i}.xml.error.json").read_bytes())
            reports.append({k: v for k, v in report.items()
                            if k not in ("file", "spool_id", "received")})
        assert reports[0] == reports[1]
    states = {m.source: m.state for m in gw.spool.select(direction=Direction.OUT, limit=100)}
    for prefix in ("pool", "here"):  # sealed, then handed to the sender by scan()
        assert [states[f"{prefix}{i}.xml"] is State.REJECTED for i in range(len(docs))] == \
            [False] * 6 + [True] * 3


class KillDuringBatch:
    """The real pool, with one of its workers killed right after a batch is handed over
    (the fault this test injects; nothing of the pool is replaced)."""

    def __init__(self, pool: IntakePool) -> None:
        self.pool = pool
        self.kills = 0

    def submit(self, jobs: Sequence[PrepareJob]
               ) -> Callable[[], Sequence[Prepared | Refused | None]]:
        collect = self.pool.submit(jobs)
        if self.kills == 0:
            os.kill(self.pool.pids()[0], signal.SIGKILL)
            self.kills += 1
        return collect


def test_a_killed_worker_loses_nothing(gateway_a: tuple[Gateway, NodeSpec, NodeSpec],
                                       caplog: pytest.LogCaptureFixture) -> None:
    gw, a, b = gateway_a
    pool = gw.start_intake_pool()
    assert pool is not None
    [scanner] = gw.scanners
    killer = KillDuringBatch(pool)
    scanner.prepare_batch = killer
    a.outbox.mkdir(parents=True, exist_ok=True)
    docs = [interstate_transaction("0600000", "4800000", seed=i) for i in range(60)]
    for i, data in enumerate(docs):
        (a.outbox / f"k{i:02}.xml").write_bytes(data)
        (a.outbox / f"k{i:02}.xml.ready").write_bytes(b"")
    first = pool.pids()
    with caplog.at_level(logging.WARNING, logger="gateway.node.intake"):
        assert gw.scan() == 60
    assert killer.kills == 1
    assert list(a.outbox.iterdir()) == []
    messages = gw.spool.select(direction=Direction.OUT, limit=100)
    assert sorted(m.source or "" for m in messages) == [f"k{i:02}.xml" for i in range(60)]
    assert State.REJECTED not in {m.state for m in messages}
    broke = [r for r in caplog.records if "ended unexpectedly" in r.getMessage()]
    assert len(broke) == 1  # logged once, naming no file
    assert "k0" not in broke[0].getMessage()
    for m in messages[:3]:
        envelope = gw.spool.payload(m.id, "envelope") or b""
        assert opened(envelope, b)[0] == docs[int((m.source or "")[1:3])]
    # new workers took over
    job = PrepareJob(docs[0], "again.xml", "interstate", datetime.now(UTC))
    assert isinstance(pool.submit([job])()[0], Prepared)
    second = pool.pids()
    assert len(second) == 2
    assert not set(second) & set(first)


def test_reload_recycles_the_workers_onto_the_new_keys(
        gateway_a: tuple[Gateway, NodeSpec, NodeSpec], key_cache: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """B's new encryption certificate is registered at A: until A reloads, nothing is
    sealed to it (not even by workers started after the change: they see keys that are
    not the daemon's and prepare nothing); after the reload, only new workers seal, to it."""
    gw, a, b = gateway_a
    pool = gw.start_intake_pool()
    assert pool is not None
    doc = interstate_transaction("0600000", "4800000", seed=1)
    job = PrepareJob(doc, "r.xml", "interstate", datetime.now(UTC))
    before = pool.submit([job])()[0]
    assert isinstance(before, Prepared)
    assert sealed_to(before.envelope, b)
    old = pool.pids()
    # B rolls over to a P-256 encryption key; A's key directory changes on disk
    # (valid longer than B's first certificate, so it is the one to seal to)
    b2_spec = NodeSpec("b2", B, a.root.parent / "b2")
    generate_node(b2_spec.keys, Party.parse(B), now=datetime.now(UTC), curve="p256",
                  days=1000)
    write_config(b2_spec, key_cache, [b2_spec])
    register(b2_spec.keys, a.keys, A)
    register(a.keys, b2_spec.keys, B)
    # workers started now (as after a worker died) for the daemon's snapshot read the
    # changed directory: they must not seal with it
    with caplog.at_level(logging.WARNING, logger="gateway.node.intake"):
        pool.recycle(gw.keys)
        assert pool.submit([job])() == [None]  # prepared in-process instead
        wait_until(lambda: any("do not read the daemon's keys" in r.getMessage()
                               for r in caplog.records), 10, "the warning")
    assert pool.submit([job])() == [None]  # until the reload
    assert gw.reload_keys() is True
    after = pool.submit([job])()[0]
    assert isinstance(after, Prepared)
    assert not set(pool.pids()) & set(old)
    assert sealed_to(after.envelope, b2_spec)
    assert not sealed_to(after.envelope, b)
    assert opened(after.envelope, b2_spec)[0] == doc


def test_gateway_run_recycles_on_sighup_and_leaves_no_worker_when_killed(
        tmp_path: Path, key_cache: Path) -> None:
    a, _ = two_specs(tmp_path, key_cache, "[limits]\nintake_workers = 2\nreceive_workers = 0\n"
                     '[schedule]\noutbox_scan = "100ms"\n')
    daemon = Daemon(a).start()
    try:
        second = recycled_by_sighup(daemon, "intake")
        a.outbox.mkdir(parents=True, exist_ok=True)
        for i in range(5):
            (a.outbox / f"s{i}.xml").write_bytes(
                interstate_transaction("0600000", "4800000", seed=i))
            (a.outbox / f"s{i}.xml.ready").write_bytes(b"")
        wait_until(lambda: not list(a.outbox.iterdir()), 30, "the outbox to be taken")
        daemon.kill()  # kill -9: no cleanup of any kind
        wait_until(lambda: not any(alive(p) for p in second), 10,
                   "the intake workers to end with the daemon")
    finally:
        daemon.terminate()
    spool = SqliteSpool(load_config(a.config_path).spool.database)
    try:
        states = {m.source: m.state for m in spool.select(direction=Direction.OUT)}
    finally:
        spool.close()
    assert sorted(states) == [f"s{i}.xml" for i in range(5)]
    assert State.REJECTED not in states.values()
