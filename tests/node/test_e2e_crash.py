"""Crash safety: `kill -9` either daemon at many points of a run of a few hundred messages,
restart it, and check every input ended in exactly one of delivered / rejected / failed,
with byte-identical copies on the receiving side and no duplicates."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import time
from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import (
    CHAOS_SETTINGS,
    Daemon,
    NodeSpec,
    PartnerSpec,
    free_port,
    https_node,
    https_to,
    source_stamp,
    sources_changed,
    wait_until,
    write_config,
)
from tests.support.pki import TestPki
from tests.support.sshd import SshServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = "fips:0600000", "fips:4800000"
TOTAL = int(os.environ.get("GATEWAY_CRASH_MESSAGES", "300"))
BATCH = 30
SETTINGS = CHAOS_SETTINGS




def outbound(spec: NodeSpec) -> list[tuple[str, State]]:
    spool = SqliteSpool(load_config(spec.config_path).spool.database)
    try:
        return [(m.source or "", m.state)
                for m in spool.select(direction=Direction.OUT, limit=100_000)]
    finally:
        spool.close()


@pytest.mark.parametrize("transport", ["https", "sftp"])
def test_kill_9_at_many_points_loses_and_duplicates_nothing(
        transport: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.mktemp("crash-keys")
    with contextlib.ExitStack() as stack:
        a, b = _network(transport, tmp_path, cache, stack)
        _run(a, b, TOTAL if transport == "https" else TOTAL // 2)


def _network(transport: str, tmp_path: Path, cache: Path,
             stack: contextlib.ExitStack) -> tuple[NodeSpec, NodeSpec]:
    if transport == "https":
        pki = TestPki(tmp_path / "pki")
        a_port, b_port = free_port(), free_port()
        a = https_node("a", A, tmp_path, pki, a_port, extra=SETTINGS)
        b = https_node("b", B, tmp_path, pki, b_port, extra=SETTINGS)
        a.partners = [PartnerSpec(B, [https_to(pki, "a", b_port)])]
        b.partners = [PartnerSpec(A, [https_to(pki, "b", a_port)])]
    else:  # uploads into the other node's inbound folder; receipts come back the same way
        root = tmp_path / "sftp-root"
        a_in, b_in = root / "a-in", root / "b-in"
        for d in (a_in, b_in):
            d.mkdir(parents=True)
        server = stack.enter_context(SshServer(root, tmp_path / "sshd"))
        opts = {"key_file": str(server.client_key), "known_hosts": str(server.known_hosts)}
        a = NodeSpec("a", A, tmp_path / "a", extra=SETTINGS + 'sftp_pull = "100ms"\n',
                     inbound_folders=[a_in])
        b = NodeSpec("b", B, tmp_path / "b", extra=SETTINGS + 'sftp_pull = "100ms"\n',
                     inbound_folders=[b_in])
        a.partners = [PartnerSpec(B, [(server.url(b_in), opts)])]
        b.partners = [PartnerSpec(A, [(server.url(a_in), opts)])]
    for spec in (a, b):
        write_config(spec, cache, [a, b])
    return a, b


def _diagnosis(a: NodeSpec, b: NodeSpec, daemons: dict[str, Daemon],
               sources: dict[str, int]) -> str:
    """What a failure message needs: the messages not final on A and their state on B,
    each daemon's errors and last lines, and whether the code changed during the run."""
    lines = []
    changed = sources_changed(sources)
    if changed:
        lines.append("NOTE: these modules changed during the run, so a daemon restarted "
                     f"meanwhile ran other code: {', '.join(changed[:10])}")
    spool_a = SqliteSpool(load_config(a.config_path).spool.database)
    spool_b = SqliteSpool(load_config(b.config_path).spool.database)
    try:
        pending = [m for m in spool_a.select(direction=Direction.OUT, limit=100_000)
                   if m.state not in (State.DELIVERED, State.REJECTED, State.FAILED)]
        lines.append(f"{len(pending)} message(s) not final on a:")
        for m in pending[:10]:
            on_b = [x.state.value for x in spool_b.select(direction=Direction.IN, limit=100_000)
                    if x.message_id == m.message_id]
            lines.append(f"  {m.source} {m.message_id}: {m.state.value} on a (attempts "
                         f"{m.attempts}, error {m.error_code}); on b: {on_b or 'none'}")
    finally:
        spool_a.close()
        spool_b.close()
    for name, daemon in daemons.items():
        lines.append(f"--- {name}: started {daemon.starts}x, errors:")
        lines += daemon.errors() or ["  none"]
        last = [x for x in daemon.tail(400).splitlines() if "apscheduler" not in x]
        lines.append(f"--- {name}: last lines (scheduler lines left out):")
        lines += last[-12:]
    return "\n".join(lines)


def _run(a: NodeSpec, b: NodeSpec, total: int) -> None:
    rng = random.Random(20260301)
    valid: dict[str, bytes] = {}
    invalid: dict[str, bytes] = {}
    for i in range(total):
        name = f"m{i:04}.xml"
        if i % 25 == 7:
            invalid[name] = interstate_transaction("0600000", "4800000", seed=i).replace(
                b"<CaseID>", b"<Bogus/><CaseID>", 1)
        else:
            valid[name] = interstate_transaction("0600000", "4800000", seed=i)
    everything = {**valid, **invalid}
    names = list(everything)
    sources = source_stamp()
    daemons = {"a": Daemon(a).start(), "b": Daemon(b).start()}
    a.outbox.mkdir(parents=True, exist_ok=True)
    kills: collections.Counter[str] = collections.Counter()
    try:
        for start in range(0, len(names), BATCH):
            for name in names[start:start + BATCH]:
                (a.outbox / name).write_bytes(everything[name])
                (a.outbox / f"{name}.ready").write_bytes(b"")
            time.sleep(rng.uniform(0.05, 0.8))
            victims = rng.choice((["a"], ["b"], ["a", "b"]))
            for victim in victims:
                daemons[victim].kill()
                kills[victim] += 1
            for victim in victims:
                daemons[victim].start()

        def settled() -> bool:
            done = outbound(a)
            return len(done) == len(everything) and all(
                s in (State.DELIVERED, State.REJECTED, State.FAILED) for _, s in done)

        try:
            wait_until(settled, 180, "every message to reach a final state", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_diagnosis(a, b, daemons, sources)}") from None
    finally:
        codes = {n: d.terminate() for n, d in daemons.items()}
    assert codes == {"a": 0, "b": 0}, _diagnosis(a, b, daemons, sources)
    assert kills["a"] + kills["b"] >= len(names) // BATCH

    records = outbound(a)
    by_source = collections.Counter(source for source, _ in records)
    assert by_source == collections.Counter(names)  # each input recorded exactly once
    final = dict(records)
    assert {n for n, s in final.items() if s is State.REJECTED} == set(invalid)
    assert {n for n, s in final.items() if s is State.DELIVERED} == set(valid)
    assert list(a.outbox.iterdir()) == []
    assert sorted(p.name for p in a.rejected.iterdir() if not p.name.startswith(".")) == \
        sorted([*invalid, *(f"{n}.error.json" for n in invalid)])
    delivered = [p.read_bytes() for p in b.inbox.iterdir() if not p.name.startswith(".")]
    assert len(delivered) == len(valid)  # no duplicates
    assert sorted(delivered) == sorted(valid.values())  # byte-identical
    # Nothing a killed daemon wrote outlives the run unless a record names it: no
    # temporary file anywhere (inboxes, rejected, outboxes, the SFTP staging folders).
    leftovers = [str(p.relative_to(a.root.parent)) for p in a.root.parent.rglob(".*")
                 if p.is_file() and p.name.endswith((".tmp", ".part"))]
    assert leftovers == []
