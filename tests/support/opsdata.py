"""Fixed operator data for the service layer, CLI and console tests: a node whose spool
holds messages in known states with their audit events, written through the spool's
own transactions (so every event is what the daemon would write).

    node = ops_node(tmp_path, key_cache)
    ids = populate(SqliteSpool(db), NOW)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.store.spool import NewMessage
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import NodeSpec, PartnerSpec, write_config

A, B, HUB = "fips:0600000", "fips:4800000", "fips:1100000"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DIGEST = "ab" * 32


def ops_node(root: Path, key_cache: Path) -> NodeSpec:
    """Node A with partners B (two transports) and a hub (the default route)."""
    a = NodeSpec("a", A, root / "a", routes=[("fips:48", B), ("default", HUB)])
    a.partners = [PartnerSpec(B, [("memory://ops-b", {}), ("file:///nonexistent", {})]),
                  PartnerSpec(HUB, [("memory://ops-hub", {})])]
    b = NodeSpec("b", B, root / "b")
    hub = NodeSpec("hub", HUB, root / "hub")
    write_config(a, key_cache, [a, b, hub])
    return a


@dataclass(frozen=True)
class Fixed:
    """Spool ids of the interesting messages :func:`populate` writes."""

    delivered_after_breaker: int
    failed: int
    retrying: int
    sealed: int
    inbound: int


def _out(spool: SqliteSpool, at: datetime, n: int, partner: str = B) -> int:
    to = "fips:1200000" if partner == HUB else partner  # through the hub by the default route
    with spool.transaction(at) as txn:
        m = txn.insert(NewMessage(Direction.OUT, message_id=f"msg-{n:05d}", source=f"f{n}.xml",
                                  partner=partner, from_party=A, to_party=to,
                                  service="interstate", action="InterstateTransaction",
                                  case_id=f"CASE-{n % 7:04d}", document_digest=DIGEST,
                                  expires_at=(at + timedelta(days=1)).timestamp()),
                       State.RECEIVED)
        txn.transition(m.id, State.SEALED, changes={"envelope_digest": DIGEST},
                       payloads={"document": b"<doc/>", "envelope": b"<env/>"})
    return m.id


def _attempt(spool: SqliteSpool, row: int, at: datetime, *, fail: str | None,
             end: State, url: str = "memory://ops-b") -> None:
    claimed = spool.claim(row, spool.get(row).state, at)
    assert claimed is not None
    with spool.transaction(at) as txn:
        if fail:
            txn.audit("send_failed", claimed, error_code=fail, transport=url,
                      detail={"attempt": claimed.attempts})
            txn.transition(row, end, error_code=fail,
                           changes={"error_text": f"{fail} (test)",
                                    "next_attempt_at": (at + timedelta(minutes=5)).timestamp()
                                    if end is State.RETRYING else None})
        else:
            txn.transition(row, end, changes={"transport": url})


def populate(spool: SqliteSpool, now: datetime = NOW, bulk: int = 0) -> Fixed:
    """``bulk`` plain messages (received and sealed, one second apart, in one
    transaction), then the fixed ones, newer."""
    start = now - timedelta(hours=2)
    n = 0
    with spool.transaction(start) as txn:
        for n in range(1, bulk + 1):
            txn.insert(NewMessage(Direction.OUT, message_id=f"msg-{n:05d}", partner=B,
                                  from_party=A, to_party=B, action="InterstateTransaction",
                                  case_id=f"CASE-{n % 7:04d}"), State.RECEIVED)
        txn.conn.execute("UPDATE messages SET created_at = created_at + id")
    at = now - timedelta(minutes=30)
    delivered = _out(spool, at, n + 1)
    _attempt(spool, delivered, at, fail="BreakerOpen", end=State.RETRYING)
    _attempt(spool, delivered, at + timedelta(minutes=5), fail=None, end=State.DELIVERED)
    failed = _out(spool, at, n + 2)
    _attempt(spool, failed, at, fail="TlsHandshakeFailed", end=State.FAILED)
    with spool.transaction(at) as txn:  # what report_failures keeps for it
        txn.put_payload(failed, "failure_report", b"f-failed.xml")
    retrying = _out(spool, at, n + 3, partner=HUB)
    _attempt(spool, retrying, at, fail="ConnectionRefused", end=State.RETRYING,
             url="memory://ops-hub")
    sealed = _out(spool, now - timedelta(minutes=1), n + 4)
    with spool.transaction(now) as txn:
        inbound = txn.insert(NewMessage(Direction.IN, message_id="in-00001", partner=B,
                                        from_party=B, to_party=A, action="Acknowledgement",
                                        case_id="CASE-IN-1", envelope_digest=DIGEST),
                             State.RECEIVED).id
    return Fixed(delivered, failed, retrying, sealed, inbound)
