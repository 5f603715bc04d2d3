"""The audit trail inside the spool's transactions (every store): transitions and their
events commit or roll back together, and the checkpoint wiring shown in docs/audit.md
works as written."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.audit import AuditLog, KeySigner
from gateway.store.audit_chain import fingerprint
from gateway.store.spool import NewMessage, Spool
from gateway.store.states import Direction, State
from tests.support.audit_keys import make_signer

NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def crash_mid_transition(spool: Spool, row: int) -> None:
    with spool.transaction(NOW + timedelta(seconds=2)) as txn:
        txn.transition(row, State.SENDING, expect=State.SEALED)
        raise RuntimeError("crash before commit")


def test_spool_transitions_write_a_verifiable_chain(spool: Spool) -> None:
    signer: KeySigner = make_signer("ec")
    with spool.transaction(NOW) as txn:
        msg = txn.insert(NewMessage(Direction.OUT, message_id="m-1", to_party="fips:4800000",
                                    partner="fips:4800000"), State.RECEIVED,
                         payloads={"document": b"<doc/>"})
    with spool.transaction(NOW + timedelta(seconds=1)) as txn:
        txn.transition(msg.id, State.SEALED, expect=State.RECEIVED,
                       changes={"envelope_digest": hashlib.sha256(b"env").hexdigest()})
    with pytest.raises(RuntimeError):
        crash_mid_transition(spool, msg.id)

    # the wiring from docs/audit.md: on a schedule, then at shutdown
    now = NOW + timedelta(hours=1)
    with spool.transaction(now) as txn:
        assert AuditLog(txn.conn).checkpoint_if_due(signer, now, timedelta(hours=1)) \
            is not None
    with spool.transaction(now) as txn:
        log = AuditLog(txn.conn)
        last = log.last_checkpoint()
        assert last is not None
        assert log.tail()[0] == last.seq  # nothing new: shutdown would not sign again

    with spool.transaction(now) as txn:
        log = AuditLog(txn.conn)
        events = [(e.event.code, e.event.message_id) for e in log.query()]
        report = log.verify(pinned={fingerprint(signer.certificate)})
    assert events == [("intake", "m-1"), ("sealed", "m-1"), ("checkpoint", None)]
    assert report.ok, report.problems
    assert report.unsigned_tail == 0
