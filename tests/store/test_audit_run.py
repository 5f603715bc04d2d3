"""A spool transaction's audit events appended as one run (``Txn.flush`` ->
``AuditLog.append_run``) are the rows ``AuditLog.append`` and ``store_receipt`` write one by
one: every column, seq, prev_hash and hash, on every store. Bad events are refused when
recorded, with the error the one-by-one path gives; a failure in the middle of a run
leaves none of it."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from gateway.errors import AuditError, GatewayError
from gateway.store.audit import AuditEvent, AuditLog, check_event
from gateway.store.audit_rows import _prepare_seen, prepare_checked, prepare_event
from gateway.store.spool import NewMessage
from gateway.store.states import Direction, State
from tests.store.conftest import STORES, Store

NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
HEX = hashlib.sha256(b"envelope").hexdigest()


class Tagged(str):
    """A text value of a subclass of str (goes the general way)."""

    __slots__ = ()


def steps(tag: str) -> list[tuple[Any, ...]]:
    """What one transaction records: ("event", code, fields) or ("receipt", message_id,
    direction, data). ``tag`` makes some values new to this run (the general way), the rest
    recur (values seen before: the quick way)."""
    mid = f"{tag}-0000-4000-8000-000000000000"
    party = {"from_party": "fips:0600000", "to_party": "fips:4800000",
             "partner": "fips:4800000"}
    out: list[tuple[Any, ...]] = []
    for round_ in range(2):  # the second time every value has been seen
        out += [
            ("event", "intake", {"message_id": mid, "case_id": f"CASE{tag}", **party,
                                 "digest": HEX, "detail": {"folder": "outbox"}}),
            ("event", "sealed", {"message_id": mid, **party, "transport": "https",
                                 "digest": hashlib.sha256(tag.encode()).hexdigest(),
                                 "detail": {"bytes": 10_240 + round_, "took_ms": 123_456_789,
                                            "attempt": -3, "zeta": "z", "alpha": "a"}}),
            ("receipt", mid, "sent", b"<receipt>" + tag.encode() + b"</receipt>"),
            ("event", f"x_{tag[:6]}_code", {"actor": f"op-{tag}", "error_code": "E_1",
                                            "detail": {}}),
            ("event", "sent", {"message_id": mid, "transport": 'https://h/"q"\\x?a=1',
                               "detail": {"status": 'say"hi"\\', "n": 2**63 - 1,
                                          "m": -(2**63), "big_bytes": 999_999_999}}),
            ("event", "config_loaded", {"detail": MappingProxyType({"partners": 3})}),
            ("event", "opened", {"message_id": Tagged(mid), "partner": Tagged("fips:4800000"),
                                 "detail": {f"k{i:02d}": i for i in range(16)}}),
            ("receipt", mid, "received", b"r" * 200),
            ("event", "delivered", {"message_id": mid, "case_id": f"CASE{tag}",
                                    "actor": "console", "digest": HEX}),
        ]
    return out


def record(txn: Any, plan: list[tuple[Any, ...]]) -> None:
    for step in plan:
        if step[0] == "event":
            txn.audit(step[1], None, **step[2])
        else:
            txn.store_receipt(*step[1:])


def one_by_one(log: AuditLog, plan: list[tuple[Any, ...]], now: datetime) -> None:
    """The same events the way ``AuditLog`` appends them one at a time."""
    log.conn.execute("BEGIN IMMEDIATE")
    for step in plan:
        if step[0] == "event":
            log.append(AuditEvent(step[1], now, **step[2]))
        else:
            log.store_receipt(step[1], step[2], step[3], now)
    log.conn.commit()


def audit_rows(conn: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    events = [tuple(r) for r in conn.execute("SELECT * FROM audit_events ORDER BY seq")]
    receipts = [(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in conn.execute(
        "SELECT event_seq, message_id, direction, at, sha256, data FROM audit_receipts "
        "ORDER BY event_seq")]
    return events, receipts


def spec_hash(row: tuple[Any, ...]) -> str:
    """An event's hash as docs/audit.md defines it, written out independently."""
    names = ("seq", "at", "code", "message_id", "case_id", "from_party", "to_party",
             "partner", "transport", "digest", "error_code", "actor", "detail",
             "prev_hash")
    record = dict(zip(names, row[:14], strict=True))
    record["detail"] = json.loads(record["detail"])
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def in_transaction(spool: Any, *bodies: Callable[[Any], None], refused: bool = True) -> None:
    """Run ``bodies`` in one spool transaction; with ``refused`` the last must raise (the
    event is refused when recorded, not at commit)."""
    with spool.transaction(NOW) as txn:
        for body in bodies:
            body(txn)
        if refused:
            pytest.fail("not refused when recorded")


@pytest.fixture(params=STORES)
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two empty stores of one kind."""
    made = []
    for name in ("a", "b"):
        if request.param == "sqlite":
            (tmp_path / name).mkdir()
            made.append(Store("sqlite", str(tmp_path / name / "gateway.db")))
        else:
            cluster = request.getfixturevalue("postgres_cluster")
            made.append(Store("postgresql", cluster.new_schema()))
    yield made[0], made[1]
    for s in made:
        s.close()


def test_a_run_writes_exactly_the_rows_of_one_by_one_appends(
        two: tuple[Store, Store]) -> None:
    a, b = two
    spool = a.open()
    log_b = AuditLog(b.connect())
    plans = [steps(uuid.uuid4().hex[:8]) for _ in range(3)]
    times = [NOW, NOW + timedelta(seconds=1), NOW + timedelta(microseconds=1500)]
    for plan, now in zip(plans, times, strict=True):  # each run starts on the last's tail
        with spool.transaction(now) as txn:
            record(txn, plan)
        one_by_one(log_b, plan, now)
    conn_a = a.connect()
    events_a, receipts_a = audit_rows(conn_a)
    events_b, receipts_b = audit_rows(log_b.conn)
    assert len(events_a) == sum(len(p) for p in plans)
    assert events_a == events_b  # every column: seq, values, detail text, prev_hash, hash
    assert receipts_a == receipts_b
    # and both are the chain as specified, in the order recorded
    prev = "0" * 64
    for seq, row in enumerate(events_a, start=1):
        assert row[0] == seq
        assert row[13] == prev
        assert row[14] == spec_hash(row)
        prev = row[14]
    flat = [s for p in plans for s in p]
    assert [r[2] for r in events_a] == [
        s[1] if s[0] == "event" else "receipt_stored" for s in flat]
    stored = {r[0]: r for r in receipts_a}
    for row, step in zip(events_a, flat, strict=True):
        if step[0] == "receipt":
            assert stored[row[0]][1:3] == (step[1], step[2])
            assert stored[row[0]][5] == step[3]
            assert row[9] == hashlib.sha256(step[3]).hexdigest()
    assert len(stored) == sum(s[0] == "receipt" for s in flat)
    assert AuditLog(conn_a).verify().ok


def test_events_of_messages_match_the_one_by_one_events(two: tuple[Store, Store]) -> None:
    """Events recorded by inserts and transitions (fields from the message) too."""
    a, b = two
    spool = a.open()
    mid = f"{uuid.uuid4().hex[:8]}-0000-4000-8000-000000000000"
    new = NewMessage(Direction.OUT, message_id=mid, case_id="CASE1", from_party="fips:0600000",
                     to_party="fips:4800000", partner="fips:4800000", transport="sftp",
                     document_digest=HEX)
    with spool.transaction(NOW) as txn:
        msg = txn.insert(new, State.RECEIVED, detail={"bytes": 10})
        sealed = txn.transition(msg.id, State.SEALED, changes={"envelope_digest": "e" * 64})
        txn.audit("sent", sealed, transport="https://x", detail={"took_ms": 5})
        txn.store_receipt(mid, "received", b"<r/>")
    fields = {"message_id": mid, "case_id": "CASE1", "from_party": "fips:0600000",
              "to_party": "fips:4800000", "partner": "fips:4800000", "transport": "sftp"}
    log_b = AuditLog(b.connect())
    one_by_one(log_b, [
        ("event", "intake", {**fields, "digest": HEX, "detail": {"bytes": 10}}),
        ("event", "sealed", {**fields, "digest": "e" * 64}),
        ("event", "sent", {**fields, "digest": "e" * 64, "transport": "https://x",
                           "detail": {"took_ms": 5}}),
        ("receipt", mid, "received", b"<r/>")], NOW)
    assert audit_rows(a.connect()) == audit_rows(log_b.conn)


BAD: list[tuple[str, dict[str, Any]]] = [
    ("Bad-Code", {}),
    ("sent", {"message_id": "has space"}),
    ("sent", {"case_id": "987-65-4321"}),
    ("sent", {"partner": "x" * 201}),
    ("sent", {"transport": ""}),
    ("sent", {"actor": None}),
    ("sent", {"from_party": 7}),
    ("sent", {"digest": "A" * 64}),
    ("sent", {"digest": HEX[:63]}),
    ("sent", {"detail": {"Key": 1}}),
    ("sent", {"detail": {"attempt": True}}),
    ("sent", {"detail": {"attempt": 123456789}}),
    ("sent", {"detail": {"attempt": 2**63}}),
    ("sent", {"detail": {"status": "two words"}}),
    ("sent", {"detail": {"status": "id-987654321"}}),
    ("sent", {"detail": {"status": "x" * 129}}),
    ("sent", {"detail": {"status": 1.5}}),
    ("sent", {"detail": {f"k{i}": i for i in range(17)}}),
]


@pytest.mark.parametrize(("code", "fields"), BAD)
def test_a_bad_event_is_refused_when_recorded_with_the_same_error(
        spool: Any, code: str, fields: dict[str, Any]) -> None:
    with pytest.raises(AuditError) as expected:
        check_event(AuditEvent(code, NOW, **fields))
    # values like the bad one's that pass (keys, codes, parties seen before) change nothing
    with spool.transaction(NOW) as txn:
        txn.audit("sent", None, message_id="m-1", partner="fips:4800000", actor="daemon",
                  digest=HEX, detail={"attempt": 1, "status": "ok", "k1": 1})
    for _ in range(2):  # refused again (a refused value is never remembered as good)
        with pytest.raises(AuditError) as got:
            in_transaction(spool, lambda txn: txn.audit("config_loaded", None),
                           lambda txn: txn.audit(code, None, **fields))
        assert (str(got.value), got.value.where) == (str(expected.value), expected.value.where)
    with spool.audit_log() as log:
        assert [e.event.code for e in log.query()] == ["sent"]


def test_unknown_fields_and_bad_receipts_are_refused_when_recorded(spool: Any) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"), \
            spool.transaction(NOW) as txn:
        txn.audit("sent", None, colour="red")
    with pytest.raises(TypeError, match="multiple values for keyword argument 'at'"), \
            spool.transaction(NOW) as txn:
        txn.audit("sent", None, at=NOW)
    with pytest.raises(AuditError, match="receipt direction") as got:
        in_transaction(spool, lambda txn: txn.store_receipt("m-1", "sideways", b"x"))
    assert got.value.where == "direction"
    with pytest.raises(AuditError) as got:
        in_transaction(spool, lambda txn: txn.store_receipt("m 1", "sent", b"x"))
    assert got.value.where == "message_id"
    with spool.audit_log() as log:
        assert log.tail()[0] == 0


_TRIGGER = {
    "sqlite": ["CREATE TRIGGER boom BEFORE INSERT ON audit_events "
               "WHEN NEW.message_id = 'm-boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"],
    "postgresql": [
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.message_id = 'm-boom' THEN RAISE EXCEPTION 'boom'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER boom BEFORE INSERT ON audit_events FOR EACH ROW "
        "EXECUTE FUNCTION boom()"],
}


def test_a_failure_in_the_middle_of_a_run_leaves_nothing(store: Store) -> None:
    spool = store.open()
    with spool.transaction(NOW) as txn:
        txn.audit("config_loaded", None, detail={"partners": 1})
    conn = store.connect()
    for statement in _TRIGGER[store.kind]:  # the database refuses one row of the run
        conn.execute(statement)
    before = audit_rows(conn)

    def body(txn: Any) -> None:
        msg = txn.insert(NewMessage(Direction.OUT, message_id="m-ok"), State.RECEIVED)
        txn.store_receipt("m-ok", "sent", b"<r/>")
        txn.audit("sent", msg)
        txn.audit("sent", None, message_id="m-boom")
        txn.audit("delivered", msg)
        txn.store_receipt("m-ok", "received", b"<r2/>")

    with pytest.raises(GatewayError, match="boom"):
        in_transaction(spool, body, refused=False)
    assert audit_rows(conn) == before
    assert spool.find(Direction.OUT, "m-ok") is None
    with spool.transaction(NOW) as txn:  # the chain goes on where it was
        txn.audit("sent", None, message_id="m-ok")
        txn.store_receipt("m-ok", "sent", b"<r/>")
    with spool.audit_log() as log:
        assert [e.seq for e in log.query()] == [1, 2, 3]
        assert log.verify().ok


def test_the_quick_way_prepares_what_the_general_way_prepares() -> None:
    """Once every value has been seen, an event is prepared from the caches; the result
    equals the general way's from the checked event."""
    tag = uuid.uuid4().hex[:8]
    for step in steps(tag):
        if step[0] != "event":
            continue
        _, code, fields = step
        event = AuditEvent(code, NOW, **fields)
        check_event(event)
        general = prepare_checked(event)
        assert prepare_event(code, NOW, dict(fields)) == general
        quick = _prepare_seen(code, NOW, dict(fields))
        plain = all(type(v) in (str, type(None), dict) for v in fields.values())
        if plain and type(fields.get("detail", {})) is dict:
            assert quick == general


@pytest.mark.parametrize("at", ["2026-11-03T10:00:00Z", NOW.replace(tzinfo=None)])
def test_a_bad_time_is_refused_as_check_event_refuses_it(at: Any) -> None:
    prepare_event("sent", NOW, {})  # the code has been seen
    with pytest.raises(AuditError) as expected:
        check_event(AuditEvent("sent", at))
    with pytest.raises(AuditError) as got:
        prepare_event("sent", at, {})
    assert (str(got.value), got.value.where) == (str(expected.value), expected.value.where)
