"""The spool's read-only monitoring queries (what the metrics and the alerts read), on
every store (the ``spool`` fixture of tests/store/conftest.py): oldest pending per
partner, error counts, audit events after a sequence number (paged, filtered by code),
the chain's head and last checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.store.audit import AuditLog
from gateway.store.spool import NewMessage, Spool
from gateway.store.states import PENDING, Direction, State
from tests.support.audit_keys import make_signer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TX, NL = "fips:4800000", "iso3166:NL"


def add(spool: Spool, at: datetime, partner: str | None, state: State = State.RECEIVED,
        error: str | None = None) -> None:
    with spool.transaction(at) as txn:
        m = txn.insert(NewMessage(Direction.OUT, partner=partner), State.RECEIVED)
        if state is not State.RECEIVED:
            txn.transition(m.id, state, error_code=error)


def test_oldest_by_partner(spool: Spool) -> None:
    assert spool.oldest_by_partner(sorted(PENDING)) == []
    add(spool, T0 + timedelta(seconds=10), TX)
    add(spool, T0, TX, State.REJECTED, "SchemaInvalid")  # not pending
    add(spool, T0 + timedelta(seconds=20), TX)
    add(spool, T0 + timedelta(seconds=5), NL)
    add(spool, T0 + timedelta(seconds=1), None)
    assert spool.oldest_by_partner(sorted(PENDING)) == [
        ("", T0.timestamp() + 1), (TX, T0.timestamp() + 10), (NL, T0.timestamp() + 5)]


def test_error_counts(spool: Spool) -> None:
    for code in ("SchemaInvalid", "SchemaInvalid", "TooLarge"):
        add(spool, T0, None, State.REJECTED, code)
    add(spool, T0, TX)
    assert spool.error_counts(Direction.OUT, State.REJECTED) == [("SchemaInvalid", 2),
                                                                 ("TooLarge", 1)]
    assert spool.error_counts(Direction.IN, State.REJECTED) == []


def test_audit_after_pages_and_filters(spool: Spool) -> None:
    for i in range(7):
        with spool.transaction(T0) as txn:
            txn.audit("sent" if i % 2 else "send_failed", None, partner=TX,
                      detail={"duration_ms": i})
    events = spool.audit_after(0, ["sent"])
    assert [e.event.detail["duration_ms"] for e in events] == [1, 3, 5]
    first = spool.audit_after(0, ["sent", "send_failed"], limit=4)
    rest = spool.audit_after(first[-1].seq, ["sent", "send_failed"], limit=4)
    assert [e.event.detail["duration_ms"] for e in first + rest] == list(range(7))
    assert spool.audit_after(rest[-1].seq, ["sent"]) == []


def test_audit_head(spool: Spool) -> None:
    assert spool.audit_head() == (0, None)
    add(spool, T0, TX)
    seq, checkpoint = spool.audit_head()
    assert seq >= 1
    assert checkpoint is None
    with spool.transaction(T0 + timedelta(minutes=1)) as txn:
        AuditLog(txn.conn).checkpoint(make_signer(), T0 + timedelta(minutes=1))
    seq2, checkpoint = spool.audit_head()
    assert seq2 == seq + 1
    assert checkpoint == (T0 + timedelta(minutes=1)).timestamp()
