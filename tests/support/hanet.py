"""A small high-availability network for tests and benchmarks: sender nodes a1..aN of one
party (one key directory, one store, one shared outbox folder) and a receiver b, all real
``gateway run`` processes talking HTTPS with mutual TLS on 127.0.0.1."""

from __future__ import annotations

import collections
import contextlib
from pathlib import Path

import psycopg

from gateway.demo.samples import interstate_transaction
from gateway.store.postgres import PostgresSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import (
    CHAOS_SETTINGS,
    TEST_KEYS,
    Daemon,
    KeyProfile,
    NodeSpec,
    PartnerSpec,
    free_port,
    https_node,
    https_to,
    write_config,
)
from tests.support.pki import TestPki

__all__ = ["LEASE", "SETTINGS", "Network", "documents"]

A, B = "fips:0600000", "fips:4800000"
LEASE = 4.0
SETTINGS = CHAOS_SETTINGS


class Network:
    """Sender nodes a1..aN (party A, one key directory, one PostgreSQL store, one shared
    outbox) and a receiver b (party B, SQLite)."""

    def __init__(self, tmp_path: Path, cache: Path, url: str, senders: int, *,
                 settings: str = SETTINGS, keys: KeyProfile = TEST_KEYS) -> None:
        pki = TestPki(tmp_path / "pki")
        b_port = free_port()
        self.url = url
        self.outbox = tmp_path / "shared-outbox"
        self.outbox.mkdir()
        self.b = https_node("b", B, tmp_path, pki, b_port, extra=settings)
        self.b.partners = [PartnerSpec(A, [https_to(pki, "b", free_port())])]
        self.senders: list[NodeSpec] = []
        for i in range(1, senders + 1):
            name = f"a{i}"
            store = f'[store]\nurl = "{url}"\nnode = "{name}"\nlease = "{LEASE}s"\n'
            spec = NodeSpec(name, A, tmp_path / name, extra=settings + store)
            spec.partners = [PartnerSpec(B, [https_to(pki, name, b_port)])]
            self.senders.append(spec)
        everyone = [*self.senders, self.b]
        for spec in everyone:
            write_config(spec, cache, everyone, keys=keys)
        for spec in self.senders:  # one outbox folder for all of them
            text = spec.config_path.read_text()
            spec.config_path.write_text(text.replace(
                '[[outbox]]\npath = "outbox"', f'[[outbox]]\npath = "{self.outbox}"'))
        self.daemons = {s.name: Daemon(s) for s in everyone}

    def drop(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            (self.outbox / name).write_bytes(data)
            (self.outbox / f"{name}.ready").write_bytes(b"")

    def outbound(self) -> list[tuple[str, State, str | None]]:
        """(source, state, last lease holder) of every outbound record in the store."""
        with psycopg.connect(self.url) as conn:
            rows = conn.execute("SELECT source, state, lease_holder FROM messages WHERE "
                                "direction = %s", (str(Direction.OUT),)).fetchall()
        return [(str(r[0]), State(r[1]), r[2]) for r in rows]

    def settled(self, expected: int) -> bool:
        try:
            done = self.outbound()
        except psycopg.Error:
            return False
        return len(done) == expected and all(s is State.DELIVERED for _, s, _ in done)

    def delivered(self) -> list[bytes]:
        return [p.read_bytes() for p in self.b.inbox.iterdir() if not p.name.startswith(".")]

    def diagnosis(self) -> str:
        lines = []
        with contextlib.suppress(psycopg.Error):
            states = collections.Counter((s.value, h) for _, s, h in self.outbound())
            lines.append(f"outbound (state, holder): {dict(states)}")
        for name, daemon in self.daemons.items():
            lines.append(f"--- {name}: started {daemon.starts}x, errors:")
            lines += daemon.errors() or ["  none"]
            lines += [x for x in daemon.tail(200).splitlines() if "apscheduler" not in x][-8:]
        return "\n".join(lines)

    def audit(self) -> tuple[bool, int, int]:
        """(chain verifies, events, lease takeovers recorded)."""
        spool = PostgresSpool(self.url, holder="test-reader", create=False)
        try:
            with spool.audit_log() as log:
                report = log.verify()
                takeovers = sum(1 for e in log.query(code="retry_scheduled")
                                if e.event.detail.get("lease_expired") == 1)
            return report.ok, report.events, takeovers
        finally:
            spool.close()

    def stop(self) -> dict[str, int]:
        """SIGTERM every node and wait for each, all of them even when one fails to stop
        (whatever is left is then killed by tests/conftest.py's leftover check)."""
        codes, failure = {}, None
        for name, daemon in self.daemons.items():
            try:
                codes[name] = daemon.terminate()
            except Exception as exc:  # stop the others first, then report it
                failure = failure or exc
        if failure is not None:
            raise failure
        return codes


def documents(count: int, offset: int = 0) -> dict[str, bytes]:
    return {f"m{i:04}.xml": interstate_transaction("0600000", "4800000", seed=i)
            for i in range(offset, offset + count)}


