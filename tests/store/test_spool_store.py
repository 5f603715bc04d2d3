"""The spool contract (every store: SQLite and PostgreSQL): state machine enforcement,
atomic audit, duplicates, exactly-once claims."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import Duplicate, MessageNotFound
from gateway.store.spool import NewMessage, Spool
from gateway.store.states import (
    PENDING,
    TERMINAL,
    TRANSITIONS,
    Direction,
    IllegalTransition,
    State,
    audit_code,
)
from tests.store.conftest import Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def events(spool: Spool) -> list[tuple[str, str | None]]:
    with spool.audit_log() as log:
        return [(e.event.code, e.event.message_id) for e in log.query()]


def out_message(spool: Spool, mid: str = "m-1", key: str | None = None) -> int:
    with spool.transaction(NOW) as txn:
        msg = txn.insert(NewMessage(Direction.OUT, message_id=mid, intake_key=key,
                                    to_party="fips:4800000", partner="fips:4800000"),
                         State.RECEIVED, payloads={"document": b"<doc/>"})
    return msg.id


def test_machine_tables_are_consistent() -> None:
    for direction, table in TRANSITIONS.items():
        assert None in table, direction
        for src, targets in table.items():
            for dst in targets:
                assert audit_code(direction, src, dst) == targets[dst]
        for state in TERMINAL[direction]:
            # a terminal state leads nowhere except an operator resend
            assert set(table.get(state, {}).values()) <= {"resent_by_operator"}
    assert State.DELIVERED not in PENDING
    with pytest.raises(IllegalTransition):
        audit_code(Direction.IN, State.DELIVERED, State.RECEIVED)


def test_insert_transition_payloads_and_audit(spool: Spool) -> None:
    row = out_message(spool)
    later = NOW + timedelta(seconds=5)
    with spool.transaction(later) as txn:
        msg = txn.transition(row, State.SEALED, expect=State.RECEIVED,
                             changes={"envelope_digest": "ab" * 32},
                             payloads={"envelope": b"<env/>"})
    assert msg.state is State.SEALED
    assert msg.updated_at == later.timestamp()
    assert spool.payload(row, "document") == b"<doc/>"
    assert spool.payload(row, "envelope") == b"<env/>"
    assert spool.payload(row, "receipt") is None
    assert events(spool) == [("intake", "m-1"), ("sealed", "m-1")]


def test_returned_messages_are_the_rows_as_stored(spool: Spool) -> None:
    """insert/transition build their result from what they wrote (no read-back): it must
    be exactly what a fresh read returns, every column."""
    with spool.transaction(NOW) as txn:
        inserted = txn.insert(NewMessage(Direction.OUT, message_id="m-9", source="a.xml",
                                         intake_key="k9", partner="fips:4800000",
                                         from_party="fips:0600000", to_party="fips:4800000",
                                         service="interstate", action="X", case_id="C1",
                                         document_digest="cd" * 32, expires_at=1e9 + 0.5),
                              State.RECEIVED)
    assert inserted == spool.get(inserted.id)
    steps = [(State.SEALED, {"envelope_digest": "ab" * 32}, None),
             (State.SENDING, {"attempts": 1}, None),
             (State.RETRYING, {"next_attempt_at": NOW.timestamp() + 7.25,
                               "error_text": "timed out"}, "Timeout"),
             (State.SENDING, {"attempts": 2, "transport": "https://x"}, None),
             (State.FAILED, {"next_attempt_at": None}, "Rejected")]
    for i, (state, changes, code) in enumerate(steps, start=1):
        with spool.transaction(NOW + timedelta(seconds=i)) as txn:
            moved = txn.transition(inserted.id, state, changes=changes, error_code=code)
        assert moved == spool.get(inserted.id), state
    assert (moved.state, moved.error_code, moved.attempts) == (State.FAILED, "Rejected", 2)


def test_illegal_transition_rolls_back_everything(spool: Spool) -> None:
    row = out_message(spool)

    def two_steps() -> None:
        with spool.transaction(NOW) as txn:
            txn.transition(row, State.SEALED, payloads={"envelope": b"x"})
            txn.transition(row, State.DELIVERED)  # sealed -> delivered is not allowed

    with pytest.raises(IllegalTransition):
        two_steps()
    assert spool.get(row).state is State.RECEIVED
    assert spool.payload(row, "envelope") is None
    assert events(spool) == [("intake", "m-1")]


def test_expect_guards_lost_races(spool: Spool) -> None:
    row = out_message(spool)
    with pytest.raises(IllegalTransition), spool.transaction(NOW) as txn:
        txn.transition(row, State.REJECTED, expect=State.SEALED)
    with pytest.raises(Exception, match="immutable"), spool.transaction(NOW) as txn:
        txn.transition(row, State.SEALED, changes={"direction": "in"})


def test_duplicates(spool: Spool) -> None:
    out_message(spool, "m-1", key="k1")
    with pytest.raises(Duplicate):
        out_message(spool, "m-1")
    with pytest.raises(Duplicate):
        out_message(spool, "m-2", key="k1")
    assert spool.find_intake("k1") is not None
    # inbound: a rejected record does not block a later copy with the same MessageId
    with spool.transaction(NOW) as txn:
        first = txn.insert(NewMessage(Direction.IN, message_id="x"), State.RECEIVED)
        txn.transition(first.id, State.REJECTED, error_code="SignatureInvalid")
    with spool.transaction(NOW) as txn:
        second = txn.insert(NewMessage(Direction.IN, message_id="x"), State.RECEIVED)
    found = spool.find(Direction.IN, "x")
    assert found is not None
    assert found.id == second.id
    with pytest.raises(Duplicate), spool.transaction(NOW) as txn:
        txn.insert(NewMessage(Direction.IN, message_id="x"), State.RECEIVED)
    with pytest.raises(MessageNotFound):
        spool.get(9999)


def _sealed_rows(spool: Spool, prefix: str, count: int = 40) -> list[int]:
    """``count`` outbound messages, each sealed in a transaction of its own."""
    rows = []
    for i in range(count):
        row = out_message(spool, f"{prefix}-{i}")
        with spool.transaction(NOW) as txn:
            txn.transition(row, State.SEALED)
        rows.append(row)
    return rows


def _on_all_connections(store: Store, spool: Spool, worker: Callable[[Spool], None]) -> None:
    """Run ``worker`` in two threads on each of ``spool`` and three more connections
    (separate connections, like processes) at once, and wait for them all."""
    others = [store.open() for _ in range(3)]
    threads = [threading.Thread(target=worker, args=(s,)) for s in [spool, *others] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_claim_is_exactly_once_across_threads(store: Store) -> None:
    spool = store.open()
    rows = _sealed_rows(spool, "m")
    won: list[int] = []
    lock = threading.Lock()

    def worker(s: Spool) -> None:
        for msg in s.due(NOW, limit=100):
            claimed = s.claim(msg.id, State.SEALED, NOW)
            if claimed is not None:
                with lock:
                    won.append(claimed.id)

    _on_all_connections(store, spool, worker)
    assert sorted(won) == sorted(rows)
    assert all(spool.get(r).state is State.SENDING for r in rows)
    assert all(spool.get(r).attempts == 1 for r in rows)
    assert spool.due(NOW) == []


def test_batch_claims_are_exactly_once_across_threads(store: Store) -> None:
    """claim_many (a batch sent in one request) from several connections at once: every
    message is claimed by exactly one, once, and a batch keeps the order it was given."""
    spool = store.open()
    rows = _sealed_rows(spool, "mb")
    batches: list[list[int]] = []
    lock = threading.Lock()

    def worker(s: Spool) -> None:
        due = [(m.id, State.SEALED) for m in s.due(NOW, limit=100)]
        for start in range(0, len(due), 8):
            claimed = s.claim_many(due[start:start + 8], NOW)
            with lock:
                batches.append([m.id for m in claimed])

    _on_all_connections(store, spool, worker)
    # checked here: an assertion failing in a worker thread would not fail the test
    assert all(ids == sorted(ids) for ids in batches)
    won = [row for ids in batches for row in ids]
    assert sorted(won) == sorted(rows)
    assert all(spool.get(r).attempts == 1 for r in rows)
    assert spool.due(NOW) == []
    assert spool.claim_many([(rows[0], State.SEALED)], NOW) == []


def test_due_honours_next_attempt(spool: Spool) -> None:
    row = out_message(spool)
    with spool.transaction(NOW) as txn:
        txn.transition(row, State.SEALED)
    spool.claim(row, State.SEALED, NOW)
    with spool.transaction(NOW) as txn:
        txn.transition(row, State.RETRYING,
                       changes={"next_attempt_at": (NOW + timedelta(seconds=30)).timestamp()})
    assert spool.due(NOW + timedelta(seconds=29)) == []
    assert [m.id for m in spool.due(NOW + timedelta(seconds=30))] == [row]
    counts = spool.counts()
    assert ("out", "retrying", "fips:4800000", 1) in counts
    assert spool.oldest([State.RETRYING]) == NOW.timestamp()


def test_state_machine_doc_lists_every_transition(repo_root: Path) -> None:
    text = (repo_root / "docs" / "state-machine.md").read_text(encoding="utf-8")
    rows = set()
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] in {d.value for d in Direction}:
            rows.add((cells[0], cells[1], cells[2], cells[3]))
    expected = {
        (d.value, "(new)" if src is None else src.value, dst.value, code)
        for d, table in TRANSITIONS.items() for src, targets in table.items()
        for dst, code in targets.items()
    }
    assert rows == expected


def test_recover_sending_after_a_restart(store: Store) -> None:
    spool = store.open()
    row = out_message(spool)
    with spool.transaction(NOW) as txn:
        txn.transition(row, State.SEALED)
    assert spool.claim(row, State.SEALED, NOW) is not None
    spool.close()
    again = store.open(**({"holder": "node-0"} if store.kind == "postgresql" else {}))
    assert again.recover_sending(NOW) == 1
    assert again.get(row).state is State.RETRYING
    assert [m.id for m in again.due(NOW)] == [row]
    assert again.claim_intake("any-key", NOW)
    assert again.leader("audit-checkpoint", NOW)
