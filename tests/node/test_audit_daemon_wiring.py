"""The daemon signs audit checkpoints on its schedule and at shutdown, and the [audit]
config table is read and checked."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.demo.samples import interstate_transaction
from gateway.errors import ConfigError
from gateway.node.config import AuditConfig, load_config
from gateway.node.daemon import Gateway
from gateway.store.audit import AuditLog
from tests.support.gwnodes import NodeSpec, PartnerSpec, write_config
from transports.memory import MemoryNetwork, http_responder

A, B = "fips:0600000", "fips:4800000"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Gateway, Gateway, NodeSpec, Clock]]:
    cache = tmp_path / "keys"
    cache.mkdir()
    a = NodeSpec("a", A, tmp_path / "a")
    b = NodeSpec("b", B, tmp_path / "b")
    a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
    b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
    network = MemoryNetwork()
    clock = Clock()
    nodes = []
    for spec in (a, b):
        config = load_config(write_config(spec, cache, [a, b]))
        gw = Gateway(config, clock=clock, transport_options={"memory": {"network": network}})
        network.serve(f"{spec.name}-https", http_responder(gw.handle_https))
        nodes.append(gw)
    yield nodes[0], nodes[1], a, clock
    for gw in nodes:
        gw.stop()


def _audit(path: Path) -> tuple[int, int, bool]:
    """(tail seq, last checkpoint seq, chain verifies) read from a closed database."""
    conn = sqlite3.connect(path)
    try:
        log = AuditLog(conn, create=False)
        last = log.last_checkpoint()
        return log.tail()[0], (last.seq if last else 0), log.verify().ok
    finally:
        conn.close()


def test_checkpoint_when_due_and_at_shutdown(
    pair: tuple[Gateway, Gateway, NodeSpec, Clock],
) -> None:
    gw_a, gw_b, spec_a, clock = pair
    spec_a.outbox.mkdir(parents=True, exist_ok=True)
    (spec_a.outbox / "t.xml").write_bytes(interstate_transaction(seed=3))
    (spec_a.outbox / "t.xml.ready").write_bytes(b"")
    assert gw_a.scan() == 1
    gw_a.send_all(timeout=20)

    # The first checkpoint is due at once (events but none signed yet); then not again
    # until the interval has passed.
    assert gw_a.checkpoint() is True
    assert gw_a.checkpoint() is False
    with gw_a.spool.transaction(clock()) as txn:
        txn.audit("config_loaded", None, detail={"partners": 1})
    assert gw_a.checkpoint() is False
    clock.now += timedelta(seconds=gw_a.config.audit.checkpoint_interval + 1)
    assert gw_a.checkpoint() is True

    # Events written after the last checkpoint are covered by the one signed at shutdown.
    with gw_a.spool.transaction(clock()) as txn:
        txn.audit("config_loaded", None, detail={"partners": 1})
    gw_a.stop()
    gw_b.stop()
    for gw in (gw_a, gw_b):
        tail, signed, ok = _audit(gw.config.spool.database)
        assert ok
        # the shutdown checkpoint is itself the last event
        assert signed == tail, gw.config.node.party


def test_shutdown_without_new_events_adds_nothing(
    pair: tuple[Gateway, Gateway, NodeSpec, Clock],
) -> None:
    gw_a, _, _, clock = pair
    with gw_a.spool.transaction(clock()) as txn:
        txn.audit("config_loaded", None, detail={"partners": 1})
    assert gw_a.checkpoint(force=True) is True
    assert gw_a.checkpoint(force=True) is False
    before = _audit(gw_a.config.spool.database)
    gw_a.stop()
    assert _audit(gw_a.config.spool.database) == before


def test_retention_keeps_recent_events(pair: tuple[Gateway, Gateway, NodeSpec, Clock]) -> None:
    gw_a, _, _, clock = pair
    with gw_a.spool.transaction(clock()) as txn:
        txn.audit("config_loaded", None, detail={"partners": 1})
    assert gw_a.retention() == 0  # nothing is seven years old
    # With a keep period of zero, everything before now goes, and the chain still verifies.
    clock.now += timedelta(days=1)
    gw_a.config = replace(gw_a.config, audit=AuditConfig(keep_events=1.0))
    assert gw_a.retention() >= 1
    assert _audit(gw_a.config.spool.database)[2]


def _config_with(tmp_path: Path, extra: str) -> Path:
    cache = tmp_path / "keys"
    cache.mkdir(exist_ok=True)
    spec = NodeSpec("a", A, tmp_path / "a")
    path = write_config(spec, cache, [spec])
    path.write_text(path.read_text() + "\n" + extra)
    return path


def test_audit_config_defaults_and_values(tmp_path: Path) -> None:
    config = load_config(_config_with(tmp_path, '[audit]\ncheckpoint_interval = "10m"\n'
                                                'keep_events = "3650d"\n'))
    assert config.audit.checkpoint_interval == 600.0
    assert config.audit.keep_events == 3650 * 86400.0


def test_audit_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config_with(tmp_path, '[audit]\ncheckpoint_interval = "soon"\n'
                                           'keep = 3\n'))
    text = str(info.value) + repr(info.value.details)
    assert "audit.checkpoint_interval" in text
    assert "audit.keep" in text


def test_scheduled_verify_is_recorded_in_the_trail(
    pair: tuple[Gateway, Gateway, NodeSpec, Clock],
) -> None:
    gw_a, _, _, clock = pair
    with gw_a.spool.transaction(clock()) as txn:
        txn.audit("config_loaded", None, detail={"partners": 1})
    assert gw_a.verify_audit().ok
    conn = sqlite3.connect(gw_a.config.spool.database)
    try:
        (stored,) = AuditLog(conn, create=False).query(code="audit_verified")
    finally:
        conn.close()
    assert stored.event.actor == "daemon"
    assert dict(stored.event.detail) == {"ok": 1, "events": stored.seq - 1, "problems": 0,
                                         "via": "daemon"}
