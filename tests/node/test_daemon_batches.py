"""Batches end to end: real ``gateway run`` daemons over real HTTPS (mutual TLS) on
loopback, the sender's partner transport set to ``batch = 8``: many envelopes per
``POST /v1/messages/batch``, every message delivered exactly once with its own signed
receipt; a receiver that takes smaller batches refuses them as a whole and the sender
falls back to one envelope per request."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import (
    Daemon,
    NodeSpec,
    PartnerSpec,
    drop,
    free_port,
    https_node,
    https_to,
    inbox,
    wait_until,
    write_config,
)
from tests.support.pki import TestPki

pytestmark = [pytest.mark.integration]

A, B = "fips:0600000", "fips:4800000"
FAST = """
[retry]
base = "300ms"
factor = 2
max_delay = "1s"
jitter = 0
expiry = "5m"
[breaker]
failure_threshold = 1000
reset_after = "1s"
[schedule]
outbox_scan = "200ms"
retry_scan = "200ms"
"""


def spool(spec: NodeSpec) -> SqliteSpool:
    return SqliteSpool(load_config(spec.config_path).spool.database)


def states(spec: NodeSpec, direction: Direction) -> list[State]:
    s = spool(spec)
    try:
        return [m.state for m in s.select(direction=direction, limit=100_000)]
    finally:
        s.close()


def sent_batches(spec: NodeSpec) -> list[int]:
    """The ``batch`` detail of every ``sent`` event (0: sent alone)."""
    s = spool(spec)
    try:
        with s.audit_log() as audit:
            return [int(e.event.detail.get("batch", 0)) for e in audit.query(code="sent")]
    finally:
        s.close()


def pair(tmp_path: Path, key_cache: Path, *, batch: int,
         max_batch: int | None = None) -> tuple[NodeSpec, NodeSpec]:
    pki = TestPki(tmp_path / "pki")
    a_port, b_port = free_port(), free_port()
    a = https_node("a", A, tmp_path, pki, a_port, extra=FAST)
    b = https_node("b", B, tmp_path, pki, b_port, extra=FAST)
    url, options = https_to(pki, "a", b_port)
    a.partners = [PartnerSpec(B, [(url, {**options, "batch": batch})])]  # type: ignore[dict-item]
    b.partners = [PartnerSpec(A, [https_to(pki, "b", a_port)])]
    if max_batch is not None:
        assert b.https is not None
        b.https["max_batch"] = max_batch
    for spec in (a, b):
        write_config(spec, key_cache, [a, b])
    return a, b


def run_pair(a: NodeSpec, b: NodeSpec, count: int) -> tuple[dict[str, bytes], Daemon]:
    """A takes ``count`` documents in while B is down (so they are due together), then B
    starts; returns the documents once every receipt is back, and A's daemon."""
    daemon_a, daemon_b = Daemon(a), Daemon(b)
    docs = {f"tx{i:02}.xml": interstate_transaction("0600000", "4800000", seed=i)
            for i in range(count)}
    try:
        daemon_a.start()
        for name, data in docs.items():
            drop(a, name, data)
        wait_until(lambda: states(a, Direction.OUT).count(State.RETRYING) == count, 60,
                   "A to hold every message for retry while B is down")
        daemon_b.start()
        wait_until(lambda: states(a, Direction.OUT).count(State.DELIVERED) == count, 90,
                   "every receipt back at A")
    finally:
        codes = (daemon_a.terminate(), daemon_b.terminate())
    assert codes == (0, 0), daemon_a.tail() + daemon_b.tail()
    return docs, daemon_a


def test_messages_go_in_batches_and_each_is_delivered_once(tmp_path: Path,
                                                          key_cache: Path) -> None:
    a, b = pair(tmp_path, key_cache, batch=8)
    docs, _ = run_pair(a, b, 30)
    assert inbox(b) == sorted(docs.values())
    assert states(b, Direction.IN) == [State.DELIVERED] * 30
    sizes = sent_batches(a)
    assert len(sizes) == 30
    assert max(sizes) > 1  # receipts of several messages came back in one answer
    assert all(size <= 8 for size in sizes)


def test_a_receiver_taking_smaller_batches_gets_one_per_request(tmp_path: Path,
                                                                key_cache: Path) -> None:
    a, b = pair(tmp_path, key_cache, batch=8, max_batch=2)
    docs, daemon_a = run_pair(a, b, 12)
    assert inbox(b) == sorted(docs.values())
    assert states(b, Direction.IN) == [State.DELIVERED] * 12
    assert sent_batches(a) == [0] * 12  # after the 413, every message went alone
    assert "refused a batch (TooLarge)" in daemon_a.log.read_text(errors="replace")

