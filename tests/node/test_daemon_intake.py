"""Outbox intake: complete files only, exactly-once claims, durable record before removal,
rejected files with their error report."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import SpoolError
from gateway.node.config import IntakeConfig, OutboxConfig
from gateway.node.intake import FileSeen, OutboxScanner, Prepared, Refused, ready_files, redact
from gateway.store.spool import NewMessage
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def fake_prepare(data: bytes, *, source: str, service: str | None, now: datetime
                 ) -> Prepared | Refused:
    """A test preparer: documents starting with <ok> are 'sealed' by reversing them."""
    if data.startswith(b"<ok"):
        new = NewMessage(Direction.OUT, message_id=f"mid-{hashlib.sha256(data).hexdigest()[:8]}",
                         to_party="fips:4800000", partner="fips:4800000", service=service)
        return Prepared(new, data, data[::-1], (("validated", {}), ("routed", {"rule": "x"})))
    return Refused("SchemaInvalid", "document is not valid",
                   ({"code": "SchemaInvalid", "line": 3, "column": 5, "path": "/Doc/Ssn",
                     "message": "Element 'Ssn': The value '987654321' is not accepted"},))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, object]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    spool = SqliteSpool(tmp_path / "spool.db")
    return {"outbox": outbox, "spool": spool, "rejected": tmp_path / "rejected",
            "tmp": tmp_path}


def scanner(env: dict[str, object], mode: str = "stable") -> OutboxScanner:
    return OutboxScanner(OutboxConfig(env["outbox"], "interstate"),  # type: ignore[arg-type]
                         IntakeConfig(ready=mode), spool=env["spool"],  # type: ignore[arg-type]
                         rejected_dir=env["rejected"], prepare=fake_prepare,  # type: ignore[arg-type]
                         max_bytes=1000)


def test_ready_files_pure() -> None:
    a = FileSeen("a.xml", 10, 1, 1)
    grown = FileSeen("a.xml", 20, 2, 1)
    tmp = FileSeen("b.xml.tmp", 1, 1, 2)
    hidden = FileSeen(".c.xml", 1, 1, 3)
    part = FileSeen("d.part", 1, 1, 4)
    assert ready_files({}, [a], mode="stable", now_ns=10) == []
    assert ready_files({"a.xml": a}, [a, tmp, hidden, part], mode="stable", now_ns=10) == [a]
    assert ready_files({"a.xml": a}, [grown], mode="stable", now_ns=10) == []
    assert ready_files({"a.xml": a}, [a], mode="stable", now_ns=10, min_age_ns=20) == []
    marker = FileSeen("a.xml.ready", 0, 1, 9)
    assert ready_files({}, [a, marker], mode="marker", now_ns=10) == [a]
    assert ready_files({"a.xml": a}, [a], mode="marker", now_ns=10) == []


def test_stable_file_is_taken_on_second_poll(env: dict[str, object]) -> None:
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    spool: SqliteSpool = env["spool"]  # type: ignore[assignment]
    (outbox / "t1.xml").write_bytes(b"<ok>1</ok>")
    (outbox / "t2.xml.part").write_bytes(b"<ok>partial")
    s = scanner(env)
    assert s.scan(NOW).accepted == []
    result = s.scan(NOW + timedelta(seconds=2))
    assert len(result.accepted) == 1
    msg = result.accepted[0]
    assert msg.state is State.SEALED
    assert msg.source == "t1.xml"
    assert msg.service == "interstate"
    assert spool.payload(msg.id, "document") == b"<ok>1</ok>"
    assert spool.payload(msg.id, "envelope") == b"<ok>1</ok>"[::-1]
    assert sorted(p.name for p in outbox.iterdir()) == ["t2.xml.part"]


def test_rejected_file_and_error_report(env: dict[str, object]) -> None:
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    rejected: Path = env["rejected"]  # type: ignore[assignment]
    body = b"<bad><Ssn>987654321</Ssn></bad>"
    (outbox / "bad.xml").write_bytes(body)
    (outbox / "bad.xml.ready").write_bytes(b"")
    result = scanner(env, "marker").scan(NOW)
    assert [m.state for m in result.rejected] == [State.REJECTED]
    assert result.rejected[0].error_code == "SchemaInvalid"
    assert (rejected / "bad.xml").read_bytes() == body
    report_bytes = (rejected / "bad.xml.error.json").read_bytes()
    report = json.loads(report_bytes)
    assert report["code"] == "SchemaInvalid"
    assert report["errors"][0]["line"] == 3
    assert report["errors"][0]["path"] == "/Doc/Ssn"
    assert b"987654321" not in report_bytes  # no personal data in the report
    assert "Element 'Ssn'" in report["errors"][0]["message"]
    assert list(outbox.iterdir()) == []
    # the same name rejected again does not overwrite the first
    (outbox / "bad.xml").write_bytes(body + b" ")
    (outbox / "bad.xml.ready").write_bytes(b"")
    second = scanner(env, "marker").scan(NOW).rejected[0]
    assert (rejected / f"{second.id}-bad.xml").read_bytes() == body + b" "
    assert (rejected / "bad.xml").read_bytes() == body


def test_too_large_file_is_moved_to_rejected(env: dict[str, object]) -> None:
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    rejected: Path = env["rejected"]  # type: ignore[assignment]
    (outbox / "big.xml").write_bytes(b"<ok>" + b"x" * 2000 + b"</ok>")
    (outbox / "big.xml.ready").write_bytes(b"")
    result = scanner(env, "marker").scan(NOW)
    assert result.rejected[0].error_code == "TooLarge"
    assert (rejected / "big.xml").stat().st_size == 2009
    assert json.loads((rejected / "big.xml.error.json").read_bytes())["code"] == "TooLarge"
    assert list(outbox.iterdir()) == []


def test_crash_after_record_before_removal(env: dict[str, object],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    spool: SqliteSpool = env["spool"]  # type: ignore[assignment]
    (outbox / "a.xml").write_bytes(b"<ok>a</ok>")
    (outbox / "a.xml.ready").write_bytes(b"")
    first = scanner(env, "marker")

    def crash(*args: object) -> None:
        raise SpoolError("simulated crash before the file was removed")

    monkeypatch.setattr(first, "_finish", crash)
    first.scan(NOW)  # recorded, then "crashed": the file is still there
    assert (outbox / "a.xml").exists()
    result = scanner(env, "marker").scan(NOW)  # restart
    assert result.accepted == []
    assert result.finished == 1
    assert not (outbox / "a.xml").exists()
    assert len(spool.select(direction=Direction.OUT)) == 1


def test_concurrent_scanners_claim_each_file_once(env: dict[str, object]) -> None:
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    tmp: Path = env["tmp"]  # type: ignore[assignment]
    for i in range(60):
        (outbox / f"f{i:03}.xml").write_bytes(f"<ok>{i}</ok>".encode())
        (outbox / f"f{i:03}.xml.ready").write_bytes(b"")
    accepted: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        own = dict(env)
        own["spool"] = SqliteSpool(tmp / "spool.db")  # own connection, like another process
        result = scanner(own, "marker").scan(NOW)
        with lock:
            accepted.extend(m.source or "" for m in result.accepted)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == [f"f{i:03}.xml" for i in range(60)]
    spool: SqliteSpool = env["spool"]  # type: ignore[assignment]
    assert len(spool.select(direction=Direction.OUT, limit=1000)) == 60
    assert os.listdir(outbox) == []


def test_redact() -> None:
    text = "Element 'Amount': [facet 'pattern'] The value '12.345' is not accepted."
    assert redact(text) == "Element 'Amount': [facet '…'] The value '…' is not accepted."


def test_orphan_marker_is_removed(env: dict[str, object]) -> None:
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    (outbox / "gone.xml.ready").write_bytes(b"")  # its file was removed before a crash
    s = scanner(env, "marker")
    s.scan(NOW)
    assert (outbox / "gone.xml.ready").exists()  # not on the first sight
    s.scan(NOW)
    assert list(outbox.iterdir()) == []


def _drop_many(outbox: Path, count: int, *, bad: frozenset[int] = frozenset()) -> None:
    for i in range(count):
        body = f"<bad>{i}</bad>" if i in bad else f"<ok>{i}</ok>"
        (outbox / f"m{i:03}.xml").write_bytes(body.encode())
        (outbox / f"m{i:03}.xml.ready").write_bytes(b"")


def test_a_chunk_of_files_is_recorded_in_one_transaction(env: dict[str, object],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    spool: SqliteSpool = env["spool"]  # type: ignore[assignment]
    _drop_many(outbox, 30, bad=frozenset({7}))
    opened: list[datetime] = []
    original = spool.transaction

    def counting(now: datetime):  # type: ignore[no-untyped-def]
        opened.append(now)
        return original(now)

    monkeypatch.setattr(spool, "transaction", counting)
    result = scanner(env, "marker").scan(NOW, chunk=25)
    assert len(opened) == 2  # 25 files, then 5: one commit each, not one per file
    assert len(result.accepted) == 29
    assert [m.source for m in result.rejected] == ["m007.xml"]
    assert os.listdir(outbox) == []
    assert len(spool.select(direction=Direction.OUT, limit=100)) == 30


def test_a_chunk_is_recorded_all_or_nothing(env: dict[str, object],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while recording the 5th file of a chunk records none of the chunk and
    removes none of its files; the next scan takes them all."""
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    spool: SqliteSpool = env["spool"]  # type: ignore[assignment]
    _drop_many(outbox, 8)
    first = scanner(env, "marker")
    calls = {"n": 0}
    original = OutboxScanner._record

    def failing(txn, item, now):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:
            raise SpoolError("simulated failure inside the chunk's transaction")
        return original(txn, item, now)

    monkeypatch.setattr(OutboxScanner, "_record", staticmethod(failing))
    result = first.scan(NOW)
    assert result.accepted == []
    assert spool.select(direction=Direction.OUT, limit=100) == []
    assert len([n for n in os.listdir(outbox) if n.endswith(".xml")]) == 8
    monkeypatch.setattr(OutboxScanner, "_record", staticmethod(original))
    assert len(scanner(env, "marker").scan(NOW).accepted) == 8
    assert os.listdir(outbox) == []


def test_a_file_another_scanner_recorded_does_not_block_its_chunk(
        env: dict[str, object]) -> None:
    """When one file of a chunk was recorded meanwhile by another scanner, the chunk's
    transaction fails as a whole (Duplicate) and its files are recorded one by one."""
    outbox: Path = env["outbox"]  # type: ignore[assignment]
    spool: SqliteSpool = env["spool"]  # type: ignore[assignment]
    _drop_many(outbox, 5)
    mine = scanner(env, "marker")
    other = scanner(env, "marker")
    original = mine.prepare
    raced = {"done": False}

    def racing(data: bytes, **kw: object) -> Prepared | Refused:
        if not raced["done"]:
            raced["done"] = True
            other.scan(NOW, limit=1)  # records (and removes) m000.xml first
        return original(data, **kw)  # type: ignore[arg-type]

    mine.prepare = racing  # type: ignore[method-assign]
    result = mine.scan(NOW)
    assert sorted(m.source or "" for m in result.accepted) == [f"m{i:03}.xml" for i in range(1, 5)]
    assert result.finished == 1  # m000.xml: recorded by the other scanner
    assert len(spool.select(direction=Direction.OUT, limit=100)) == 5
    assert os.listdir(outbox) == []
