"""Payload retention (every store): only finished messages lose payloads, documents and
envelopes before receipts, a dry run changes nothing, each purge is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.store.retention import purge_payloads
from gateway.store.spool import NewMessage, Spool
from gateway.store.states import Direction, State

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PAYLOADS = {"document": b"<doc>personal</doc>", "envelope": b"<env/>"}


def out(spool: Spool, mid: str, path: list[State], at: datetime, **extra: bytes) -> int:
    with spool.transaction(at) as txn:
        row = txn.insert(NewMessage(Direction.OUT, message_id=mid, partner="fips:4800000"),
                         State.RECEIVED, payloads=PAYLOADS).id
        for state in path:
            txn.transition(row, state)
        for kind, data in extra.items():
            txn.put_payload(row, kind, data)
    return row


def kinds(spool: Spool, row: int) -> set[str]:
    return {k for k in ("document", "envelope", "receipt", "error", "failure_report")
            if spool.payload(row, k) is not None}


def test_purge_removes_only_what_finished_messages_no_longer_need(spool: Any) -> None:
    done = [State.SEALED, State.SENDING, State.DELIVERED]
    old = out(spool, "m-old", done, T0, receipt=b"<Receipt/>")
    recent = out(spool, "m-new", done, T0 + timedelta(days=40), receipt=b"<Receipt/>")
    pending = out(spool, "m-pending", [State.SEALED], T0)
    unreported = out(spool, "m-unrep", [State.SEALED, State.SENDING, State.FAILED], T0)
    reported = out(spool, "m-rep", [State.SEALED, State.SENDING, State.FAILED], T0,
                   error=b"{}", failure_report=b"m-rep.xml")
    with spool.transaction(T0) as txn:
        inbound = txn.insert(NewMessage(Direction.IN, message_id="m-in"), State.RECEIVED,
                             payloads={"envelope": b"<env/>", "receipt": b"<R/>"}).id
        txn.transition(inbound, State.DELIVERING)
        txn.transition(inbound, State.DELIVERED)

    now = T0 + timedelta(days=45)
    cutoffs = {"payloads_before": now - timedelta(days=30),
               "receipts_before": now - timedelta(days=365)}
    dry = purge_payloads(spool, now, dry_run=True, **cutoffs)
    assert (dry.messages, dry.payloads) == (3, 5)
    assert kinds(spool, old) == {"document", "envelope", "receipt"}  # nothing removed

    result = purge_payloads(spool, now, **cutoffs)
    assert (result.messages, result.payloads, result.bytes) == (3, 5, dry.bytes)
    assert kinds(spool, old) == {"receipt"}
    assert kinds(spool, reported) == {"error", "failure_report"}
    assert kinds(spool, inbound) == {"receipt"}
    assert kinds(spool, recent) == {"document", "envelope", "receipt"}
    assert kinds(spool, pending) == {"document", "envelope"}
    assert kinds(spool, unreported) == {"document", "envelope"}
    assert spool.get(old).state is State.DELIVERED  # the row and its digests stay

    # receipts go after their own, longer time
    later = T0 + timedelta(days=400)
    second = purge_payloads(spool, later, payloads_before=later - timedelta(days=30),
                            receipts_before=later - timedelta(days=365))
    assert (second.messages, second.payloads) == (4, 5)
    assert kinds(spool, old) == set()
    assert kinds(spool, reported) == {"failure_report"}  # the marker stays: never re-reported
    assert kinds(spool, recent) == {"receipt"}  # finished 360 days before: receipt kept

    with spool.audit_log() as log:
        purges = [e.event for e in log.query(code="payloads_purged")]
        assert [(p.detail["messages"], p.detail["payloads"]) for p in purges] == \
            [(3, 5), (4, 5)]
        assert log.verify().ok
