"""Audit trail core: appending, the hash chain, the personal-data guard, tamper detection.
Part of the store contract: ``conn`` and ``store`` run every test on SQLite and on
PostgreSQL; the tests about SQLite's own locking and connection modes use SQLite alone."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.errors import AuditError
from gateway.store.audit import AuditEvent, AuditLog, check_event
from gateway.store.audit_chain import GENESIS_HASH, event_hash, event_record
from tests.store.conftest import Store
from tests.support.audit_keys import make_signer

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
MID = "6f1c2b1e-8d1e-4c7a-9a53-0d2f1e6b7a01"


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def event(i: int, code: str = "sent", **kw: object) -> AuditEvent:
    values: dict[str, object] = {
        "message_id": f"msg-{i % 7}", "case_id": f"CASE{i % 5:011d}", "from_party": "fips:0600000",
        "to_party": "fips:4800000", "partner": "fips:4800000", "transport": "sftp",
        "digest": hashlib.sha256(str(i).encode()).hexdigest(), "detail": {"attempt": i % 3},
    }
    values.update(kw)
    return AuditEvent(code, T0 + timedelta(minutes=i), **values)  # type: ignore[arg-type]


def build(conn: Any, n: int, *, checkpoint_at: int | None = None) -> AuditLog:
    """n events; with ``checkpoint_at`` the checkpoint event itself has that seq."""
    log = AuditLog(conn)
    signer = make_signer("ec")
    for i in range(1, n + 1):
        if i == checkpoint_at:
            log.checkpoint(signer, T0 + timedelta(minutes=i))
        else:
            log.append(event(i))
    return log


def row(conn: Any, seq: int) -> tuple[object, ...]:
    return tuple(conn.execute("SELECT * FROM audit_events WHERE seq = ?", (seq,)).fetchone())


# --- appending and the chain -----------------------------------------------------------


def test_append_builds_a_dense_chain_from_genesis(conn: Any) -> None:
    log = AuditLog(conn)
    seqs = [log.append(event(i)) for i in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    rows = conn.execute("SELECT seq, prev_hash, hash FROM audit_events ORDER BY seq").fetchall()
    assert rows[0][1] == GENESIS_HASH
    for before, after in itertools.pairwise(rows):
        assert after[1] == before[2]
    assert log.verify().ok


def test_hash_is_sha256_of_the_documented_canonical_json(conn: Any) -> None:
    """Known answer: the exact text docs/audit.md describes, written out by hand."""
    log = AuditLog(conn)
    log.append(AuditEvent("intake", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                          message_id="m-1", case_id="CASE00000000001",
                          detail={"bytes": 512, "source": "outbox-a"}))
    text = ('{"actor":"daemon","at":"2026-01-02T03:04:05.000006Z","case_id":"CASE00000000001",'
            '"code":"intake","detail":{"bytes":512,"source":"outbox-a"},"digest":null,'
            '"error_code":null,"from_party":null,"message_id":"m-1","partner":null,'
            '"prev_hash":"' + "0" * 64 + '","seq":1,"to_party":null,"transport":null}')
    stored = conn.execute("SELECT hash, detail FROM audit_events").fetchone()
    assert stored[0] == hashlib.sha256(text.encode("ascii")).hexdigest()
    assert stored[1] == '{"bytes":512,"source":"outbox-a"}'


def test_append_inside_caller_transaction_does_not_commit(conn: Any) -> None:
    log = AuditLog(conn)
    log.append(event(1))
    conn.execute("BEGIN IMMEDIATE")
    log.append(event(2))
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 1
    assert log.append(event(3)) == 2


def test_append_in_autocommit_commits_its_own_transaction(store: Store) -> None:
    a = store.connect()
    AuditLog(a).append(event(1))
    assert not a.in_transaction
    b = store.connect()
    assert b.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 1


def test_database_errors_become_audit_errors_and_write_nothing(tmp_path: Path) -> None:
    a = connect(tmp_path / "db")
    log = AuditLog(a)
    log.append(event(1))
    holder = connect(tmp_path / "db")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
    a.execute("PRAGMA busy_timeout=0")
    with pytest.raises(AuditError, match="cannot append to the audit trail"):
        log.append(event(2))
    with pytest.raises(AuditError, match="cannot store the receipt"):
        log.store_receipt("m-2", "sent", b"<Receipt/>", T0)
    assert not a.in_transaction
    holder.execute("ROLLBACK")
    assert log.tail()[0] == 1
    assert log.append(event(3)) == 2


def test_default_isolation_level_connection(tmp_path: Path) -> None:
    """Python's legacy implicit-transaction mode: append still commits its own work."""
    conn = sqlite3.connect(tmp_path / "legacy.db")
    log = AuditLog(conn)
    assert log.append(event(1)) == 1
    assert not conn.in_transaction
    other = sqlite3.connect(tmp_path / "legacy.db")
    assert other.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 1
    conn.execute("CREATE TABLE spool_x (n INTEGER)")
    conn.execute("INSERT INTO spool_x VALUES (1)")  # opens an implicit transaction
    assert conn.in_transaction
    log.append(event(2))
    conn.rollback()
    assert other.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 1


def test_log_created_inside_an_open_transaction(tmp_path: Path) -> None:
    """The spool opens AuditLog inside its BEGIN IMMEDIATE, with sqlite3.Row rows."""
    conn = connect(tmp_path / "db")
    conn.row_factory = sqlite3.Row
    conn.execute("BEGIN IMMEDIATE")
    log = AuditLog(conn)
    log.append(event(1))
    conn.execute("COMMIT")
    assert log.verify().ok
    assert next(log.query()).seq == 1


def test_two_writers_never_fork_the_chain(store: Store) -> None:
    AuditLog(store.connect())
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            log = AuditLog(store.connect())
            for i in range(150):
                log.append(event(offset + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = AuditLog(store.connect()).verify()
    assert report.ok, report.problems
    assert report.events == 450


def test_stored_event_round_trips(conn: Any) -> None:
    log = AuditLog(conn)
    original = event(3, error_code="TransportFailed", actor="opuser")
    log.append(original)
    stored = next(log.query())
    assert stored.event == original
    assert stored.to_dict()["detail"] == {"attempt": 0}


# --- no personal data -------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("detail", {"ref": "987654321"}),
    ("detail", {"ref": "987-65-4321"}),
    ("detail", {"ref": "x:987654325"}),
    ("detail", {"number": 987654325}),
    ("case_id", "987654321"),
    ("message_id", "id-987-65-4320"),
    ("actor", "987654329"),
])
def test_ssn_shaped_values_are_refused(conn: Any, field: str,
                                       value: object) -> None:
    log = AuditLog(conn)
    with pytest.raises(AuditError, match="SSN") as info:
        log.append(event(1, **{field: value}))
    assert "9876" not in str(info.value)
    assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 0


@pytest.mark.parametrize(("field", "value", "match"), [
    ("detail", {"note": "TESTPERSON JOHN"}, "without spaces"),
    ("detail", {"street": "12 Main St"}, "without spaces"),
    ("detail", {"name": "Zoë"}, "printable ASCII"),
    ("detail", {"flag": True}, "string or an integer"),
    ("detail", {"Bad Key": "x"}, "keys of lowercase"),
    ("detail", {"text": "x" * 129}, "at most 128"),
    ("detail", {f"k{i}": i for i in range(17)}, "at most 16"),
    ("case_id", "CASE 1", "without spaces"),
    ("digest", "ABC", "SHA-256"),
    ("code", "Sent", "lowercase"),
    ("actor", "", "printable"),
])
def test_free_text_and_malformed_values_are_refused(field: str, value: object,
                                                   match: str) -> None:
    with pytest.raises(AuditError, match=match):
        check_event(event(1, **{field: value}))


def test_naive_time_is_refused() -> None:
    with pytest.raises(AuditError, match="timezone"):
        check_event(AuditEvent("intake", datetime(2026, 1, 1)))


def test_ordinary_facts_are_accepted() -> None:
    check_event(event(1, detail={"size_bytes": 123456789, "attempt": 3, "file": "tx-0001.xml",
                                 "fingerprint": "ab" * 32, "status": "Delivered"},
                      case_id="CASE00000000123", message_id=MID))


# --- tamper detection -------------------------------------------------------------------


def test_changed_field_is_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    conn.execute("UPDATE audit_events SET case_id = 'CASE99999999999' WHERE seq = 12")
    report = log.verify()
    assert not report.ok
    assert (report.first_problem.kind, report.first_problem.seq) == ("altered", 12)
    # the checkpoint still matches: it covers hashes, and the stored hash was not changed
    assert [p.seq for p in report.problems] == [12]


def test_changed_field_with_recomputed_hashes_breaks_the_signed_checkpoint(
        conn: Any) -> None:
    """An attacker who knows the algorithm re-hashes the rest of the chain: the signed
    checkpoint no longer matches."""
    log = build(conn, 30, checkpoint_at=20)
    conn.execute("UPDATE audit_events SET error_code = 'Forged' WHERE seq = 12")
    rehash_from(conn, 12)
    report = log.verify()
    assert not report.ok
    assert report.first_problem.seq == 20
    assert report.first_problem.kind == "checkpoint"


def rehash_from(conn: Any, start: int) -> None:
    prev = conn.execute("SELECT hash FROM audit_events WHERE seq = ?",
                        (start - 1,)).fetchone()[0]
    cursor = conn.execute("SELECT * FROM audit_events WHERE seq >= ? ORDER BY seq", (start,))
    cols = [d[0] for d in cursor.description]
    for r in cursor.fetchall():
        values = dict(zip(cols, r, strict=True))
        h = event_hash(event_record(values["seq"], prev, values))
        conn.execute("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?",
                     (prev, h, values["seq"]))
        prev = h


def test_detail_rewritten_in_an_equal_but_different_text_is_altered(
        conn: Any) -> None:
    log = build(conn, 10)
    conn.execute("UPDATE audit_events SET detail = '{\"attempt\": 1}' WHERE seq = 4")
    assert (log.verify().first_problem.seq, log.verify().first_problem.kind) == (4, "altered")


def test_deleted_event_is_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    conn.execute("DELETE FROM audit_events WHERE seq = 7")
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("removed", 7)


def test_deleted_first_events_are_named(conn: Any) -> None:
    log = build(conn, 10)
    conn.execute("DELETE FROM audit_events WHERE seq <= 3")
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("removed", 1)


def test_deleted_event_with_renumbering_is_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    conn.execute("DELETE FROM audit_events WHERE seq = 7")
    # renumber 8.. down by one (in two steps: no two rows share a seq at any time)
    conn.execute("UPDATE audit_events SET seq = seq + 1000000 WHERE seq > 7")
    conn.execute("UPDATE audit_events SET seq = seq - 1000001 WHERE seq > 1000000")
    report = log.verify()
    assert report.first_problem.seq == 7
    assert "written as seq 8" in report.first_problem.message


def insert_at(conn: Any, k: int, *, valid_hash: bool) -> None:
    conn.execute("UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= ?", (k,))
    conn.execute("UPDATE audit_events SET seq = seq - 1000000 + 1 WHERE seq >= 1000000")
    prev = conn.execute("SELECT hash FROM audit_events WHERE seq = ?", (k - 1,)).fetchone()[0]
    forged = event(k, code="delivered").columns()
    h = event_hash(event_record(k, prev, forged)) if valid_hash else "f" * 64
    conn.execute("INSERT INTO audit_events (seq, at, code, message_id, case_id, from_party, "
                 "to_party, partner, transport, digest, error_code, actor, detail, prev_hash, "
                 "hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (k, *forged.values(), prev, h))


def test_inserted_event_with_a_valid_hash_is_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    insert_at(conn, 9, valid_hash=True)
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("inserted", 9)
    # the renumbered events after it are not each reported again
    assert [p.kind for p in report.problems if p.seq < 20] == ["inserted"]


def test_inserted_event_with_a_wrong_hash_is_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    insert_at(conn, 9, valid_hash=False)
    assert log.verify().first_problem.seq == 9


def test_reordered_events_are_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    conn.execute("UPDATE audit_events SET seq = -1 WHERE seq = 14")
    conn.execute("UPDATE audit_events SET seq = 14 WHERE seq = 15")
    conn.execute("UPDATE audit_events SET seq = 15 WHERE seq = -1")
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("reordered", 14)
    assert "written as seq 15" in report.first_problem.message


def test_truncated_tail_before_the_last_checkpoint_is_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    conn.execute("DELETE FROM audit_events WHERE seq > 16")
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("truncated", 17)
    assert "checkpoint at seq 20" in report.first_problem.message


def test_events_after_the_last_checkpoint_are_reported_as_unsigned(
        conn: Any) -> None:
    """The limit of any hash chain: events after the last checkpoint are protected by the
    chain only; the report says how many."""
    log = build(conn, 30, checkpoint_at=20)
    assert log.verify().unsigned_tail == 10
    conn.execute("DELETE FROM audit_events WHERE seq > 25")
    report = log.verify()
    assert report.ok
    assert report.unsigned_tail == 5


def test_deleted_checkpoint_record_is_named(conn: Any) -> None:
    log = build(conn, 30, checkpoint_at=20)
    conn.execute("DELETE FROM audit_checkpoints")
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("checkpoint", 20)


def test_changed_prev_hash_is_named(conn: Any) -> None:
    log = build(conn, 10)
    conn.execute("UPDATE audit_events SET prev_hash = ? WHERE seq = 5", ("e" * 64,))
    assert log.verify().first_problem.seq == 5


def test_every_tamper_makes_verify_fail_even_for_the_first_event(
        conn: Any) -> None:
    log = build(conn, 3)
    conn.execute("UPDATE audit_events SET at = '2026-01-01T00:00:00.000000Z' WHERE seq = 1")
    assert (log.verify().first_problem.kind, log.verify().first_problem.seq) == ("altered", 1)


def test_report_lists_a_bounded_number_of_problems(conn: Any) -> None:
    log = build(conn, 40)
    conn.execute("UPDATE audit_events SET transport = 'https'")
    report = log.verify(max_problems=5)
    assert len(report.problems) == 5
    assert report.truncated_report
    assert report.first_problem.seq == 1


# --- receipts ---------------------------------------------------------------------------


def test_receipts_keep_exact_bytes_and_are_anchored(conn: Any) -> None:
    log = AuditLog(conn)
    data = b"<Envelope>signed receipt bytes\r\n</Envelope>"
    seq = log.store_receipt(MID, "received", data, T0)
    stored = log.receipts(MID)
    assert [(r.event_seq, r.data, r.direction) for r in stored] == [(seq, data, "received")]
    ev = next(log.query(code="receipt_stored"))
    assert ev.event.digest == hashlib.sha256(data).hexdigest()
    assert log.verify().ok
    conn.execute("UPDATE audit_receipts SET data = ?", (data + b" ",))
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("receipt", seq)


def test_receipt_replaced_with_matching_digest_column_is_detected(
        conn: Any) -> None:
    log = AuditLog(conn)
    seq = log.store_receipt(MID, "sent", b"original", T0)
    forged = b"forged"
    conn.execute("UPDATE audit_receipts SET data = ?, sha256 = ?",
                 (forged, hashlib.sha256(forged).hexdigest()))
    assert log.verify().first_problem.seq == seq


def test_receipt_direction_is_checked(conn: Any) -> None:
    with pytest.raises(AuditError, match="direction"):
        AuditLog(conn).store_receipt(MID, "sideways", b"x", T0)  # type: ignore[arg-type]


# --- query ------------------------------------------------------------------------------


def test_query_filters(conn: Any) -> None:
    log = build(conn, 40)
    log.append(event(41, code="rejected", partner="iso3166:NL", to_party="iso3166:NL",
                     error_code="SchemaInvalid"))
    assert [e.seq for e in log.query(message_id="msg-3")] == [3, 10, 17, 24, 31, 38]
    assert {e.event.case_id for e in log.query(case_id="CASE00000000002")} == \
        {"CASE00000000002"}
    assert [e.seq for e in log.query(partner="iso3166:NL")] == [41]
    assert [e.seq for e in log.query(code="rejected")] == [41]
    window = list(log.query(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=13)))
    assert [e.seq for e in window] == [10, 11, 12]
    assert [e.seq for e in log.query(limit=2, descending=True)] == [41, 40]
    assert [e.seq for e in log.query(code=["rejected", "sent"], message_id="msg-6",
                                     since=T0 + timedelta(minutes=30))] == [34, 41]


def test_query_on_a_database_without_audit_tables(tmp_path: Path) -> None:
    conn = connect(tmp_path / "other.db")
    with pytest.raises(AuditError, match="no audit trail"):
        AuditLog(conn, create=False)


def test_json_detail_is_stored_canonically(conn: Any) -> None:
    AuditLog(conn).append(event(1, detail={"b": 1, "a": "x"}))
    text = conn.execute("SELECT detail FROM audit_events").fetchone()[0]
    assert text == json.dumps({"a": "x", "b": 1}, separators=(",", ":"))


# --- property: any change to any stored column of any event is caught and named ------

_COLUMNS = ("at", "code", "message_id", "case_id", "from_party", "to_party", "partner",
            "transport", "digest", "error_code", "actor", "detail", "prev_hash", "hash")


@settings(max_examples=80)
@given(n=st.integers(min_value=2, max_value=25), data=st.data())
def test_any_single_column_change_is_named(n: int, data: st.DataObject) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    log = build(conn, n, checkpoint_at=data.draw(st.integers(min_value=1, max_value=n)))
    target = data.draw(st.integers(min_value=1, max_value=n), label="seq")
    column = data.draw(st.sampled_from(_COLUMNS), label="column")
    old = conn.execute(f"SELECT {column} FROM audit_events WHERE seq = ?",  # noqa: S608
                       (target,)).fetchone()[0]
    new = data.draw(st.one_of(st.none(), st.text(max_size=70),
                              st.integers(min_value=-(2**63), max_value=2**63 - 1)), label="new")
    assume(new != old)
    if column in ("at", "code", "actor", "detail", "prev_hash", "hash"):
        assume(new is not None)  # NOT NULL columns
    conn.execute(f"UPDATE audit_events SET {column} = ? WHERE seq = ?",  # noqa: S608
                 (new, target))
    report = log.verify()
    assert not report.ok
    assert report.first_problem is not None
    assert report.first_problem.seq == target


def test_snapshot_reads_one_state_while_another_connection_writes(store: Store) -> None:
    reader = AuditLog(store.connect())
    writer = AuditLog(store.connect())
    writer.append(event(1))
    with reader.snapshot():
        assert reader.tail()[0] == 1
        writer.checkpoint(make_signer("ec"), T0)  # a checkpoint event and its record
        assert reader.tail()[0] == 1
        assert reader.verify().ok
    assert reader.tail()[0] == 2
    assert reader.verify().checkpoints == 1
