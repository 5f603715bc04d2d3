"""Evidence bundles: export a period or a message, verify offline, detect tampering."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import AuditError, AuditTampered, UsageError
from gateway.store.audit import AuditEvent, AuditLog, KeySigner
from gateway.store.audit_bundle import bundle_checkpoints, export_bundle, verify_bundle
from gateway.store.audit_chain import fingerprint
from tests.support.audit_keys import make_signer

T0 = datetime(2026, 5, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    return make_signer("ec")


@pytest.fixture
def log(conn: Any, signer: KeySigner) -> AuditLog:
    """60 events over 60 hours, a checkpoint after every 20th, receipts for m-7 and m-30
    (on every store: ``conn`` is SQLite or PostgreSQL)."""
    log = AuditLog(conn)
    for i in range(1, 61):
        at = T0 + timedelta(hours=i)
        log.append(AuditEvent("sent", at, message_id=f"m-{i % 10}", partner="fips:4800000",
                              detail={"attempt": 1}))
        if i in (7, 30):
            log.store_receipt(f"m-{i % 10}", "received", f"<Receipt n='{i}'/>".encode(), at)
        if i % 20 == 0:
            log.checkpoint(signer, at)
    return log


def pin(signer: KeySigner) -> set[str]:
    return {fingerprint(signer.certificate)}


def rewrite(src: Path, dst: Path, change: Callable[[dict[str, bytes]], None], *,
            fix_manifest: bool = True) -> Path:
    with zipfile.ZipFile(src) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    change(files)
    if fix_manifest:
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()
                             if n != "manifest.json"}
        files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return dst


def edit_events(edit: Callable[[list[dict[str, object]]], None]) -> Callable[[dict[str, bytes]],
                                                                              None]:
    def change(files: dict[str, bytes]) -> None:
        events = [json.loads(x) for x in files["events.jsonl"].decode().splitlines()]
        edit(events)
        files["events.jsonl"] = "".join(json.dumps(e) + "\n" for e in events).encode()
    return change


def test_period_bundle_verifies_offline(log: AuditLog, tmp_path: Path,
                                        signer: KeySigner) -> None:
    out = tmp_path / "period.zip"
    summary = export_bundle(log, out, since=T0 + timedelta(hours=25),
                            until=T0 + timedelta(hours=35), now=NOW)
    # starts mid-chain at the first event of the period, runs on to the next checkpoint
    first = next(log.query(since=T0 + timedelta(hours=25))).seq
    assert summary.first_seq == first
    assert summary.last_seq == summary.signed_through
    assert summary.checkpoints == 1
    assert summary.receipts == 1
    log.conn.close()  # nothing of the database is needed any more
    report = verify_bundle(out, pinned=pin(signer))
    assert report.ok, report.problems
    assert report.first_seq == first
    assert report.unsigned_tail == 0
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
    assert {"manifest.json", "events.jsonl", "checkpoints.jsonl", "receipts.jsonl",
            f"certs/{fingerprint(signer.certificate)}.pem"} <= names


def test_message_bundle_holds_the_message_and_its_receipt(log: AuditLog, tmp_path: Path,
                                                         signer: KeySigner) -> None:
    out = tmp_path / "m7.zip"
    summary = export_bundle(log, out, message_id="m-7", now=NOW)
    assert summary.receipts == 1
    with zipfile.ZipFile(out) as zf:
        events = [json.loads(x) for x in zf.read("events.jsonl").decode().splitlines()]
        receipt_files = [n for n in zf.namelist() if n.startswith("receipts/")]
        assert zf.read(receipt_files[0]) == b"<Receipt n='7'/>"
    mine = [e["seq"] for e in events if e["message_id"] == "m-7"]
    assert events[0]["seq"] == mine[0]
    assert [e["seq"] for e in events] == list(range(events[0]["seq"], events[-1]["seq"] + 1))
    assert verify_bundle(out, pinned=pin(signer)).ok


def test_bundle_past_the_last_checkpoint_reports_its_unsigned_tail(
        log: AuditLog, tmp_path: Path) -> None:
    log.append(AuditEvent("delivered", T0 + timedelta(days=5), message_id="m-late"))
    out = tmp_path / "late.zip"
    summary = export_bundle(log, out, message_id="m-late", now=NOW)
    assert summary.signed_through is None
    report = verify_bundle(out)
    assert report.ok
    assert report.unsigned_tail == 1
    assert report.last_checkpoint_seq is None


def test_export_refuses_overwrite_and_empty_selection(log: AuditLog, tmp_path: Path) -> None:
    existing = tmp_path / "x.zip"
    existing.write_bytes(b"")
    with pytest.raises(UsageError, match="overwrite"):
        export_bundle(log, existing, message_id="m-1", now=NOW)
    with pytest.raises(AuditError, match="no audit events"):
        export_bundle(log, tmp_path / "y.zip", message_id="nope", now=NOW)


def field_change(events: list[dict[str, object]]) -> None:
    events[3]["partner"] = "fips:1100000"


def line_removed(events: list[dict[str, object]]) -> None:
    del events[3]


def line_inserted(events: list[dict[str, object]]) -> None:
    forged = dict(events[3])
    forged["code"] = "delivered"
    events.insert(3, forged)


@pytest.mark.parametrize(("edit", "kind"), [
    (field_change, "altered"),
    (line_removed, "removed"),
])
def test_tampered_events_are_named(log: AuditLog, tmp_path: Path, signer: KeySigner,
                                   edit: Callable[[list[dict[str, object]]], None],
                                   kind: str) -> None:
    out = export_bundle(log, tmp_path / "b.zip", since=T0, until=T0 + timedelta(hours=15),
                        now=NOW).path
    first = verify_bundle(out).first_seq
    assert first is not None
    bad = rewrite(out, tmp_path / "bad.zip", edit_events(edit))
    report = verify_bundle(bad, pinned=pin(signer))
    assert not report.ok
    assert (report.first_problem.kind, report.first_problem.seq) == (kind, first + 3)


def test_inserted_line_is_detected(log: AuditLog, tmp_path: Path) -> None:
    out = export_bundle(log, tmp_path / "b.zip", since=T0, until=T0 + timedelta(hours=15),
                        now=NOW).path
    bad = rewrite(out, tmp_path / "bad.zip", edit_events(line_inserted))
    report = verify_bundle(bad)
    assert not report.ok
    assert report.first_problem.seq == 4


def test_file_changed_without_fixing_the_manifest(log: AuditLog, tmp_path: Path) -> None:
    out = export_bundle(log, tmp_path / "b.zip", message_id="m-7", now=NOW).path
    bad = rewrite(out, tmp_path / "bad.zip", edit_events(field_change), fix_manifest=False)
    with pytest.raises(AuditTampered, match=r"events\.jsonl"):
        verify_bundle(bad)


def test_extra_file_is_refused(log: AuditLog, tmp_path: Path) -> None:
    out = export_bundle(log, tmp_path / "b.zip", message_id="m-7", now=NOW).path

    def add(files: dict[str, bytes]) -> None:
        files["../evil"] = b"x"

    bad = rewrite(out, tmp_path / "bad.zip", add, fix_manifest=False)
    with pytest.raises(AuditTampered, match="differ from its manifest"):
        verify_bundle(bad)


def test_checkpoint_signature_and_pinning(log: AuditLog, tmp_path: Path) -> None:
    out = export_bundle(log, tmp_path / "b.zip", message_id="m-7", now=NOW).path
    other = make_signer("ec")
    report = verify_bundle(out, pinned={fingerprint(other.certificate)})
    assert report.first_problem.kind == "checkpoint"

    def flip(files: dict[str, bytes]) -> None:
        cp = json.loads(files["checkpoints.jsonl"].decode().splitlines()[0])
        cp["signature"] = cp["signature"][:-2] + ("00" if cp["signature"][-2:] != "00" else "01")
        files["checkpoints.jsonl"] = (json.dumps(cp) + "\n").encode()

    bad = rewrite(out, tmp_path / "bad.zip", flip)
    assert verify_bundle(bad).first_problem.kind == "checkpoint"


def test_receipt_swapped(log: AuditLog, tmp_path: Path) -> None:
    out = export_bundle(log, tmp_path / "b.zip", message_id="m-7", now=NOW).path

    def swap(files: dict[str, bytes]) -> None:
        name = next(n for n in files if n.startswith("receipts/"))
        files[name] = b"<Receipt forged='1'/>"
        meta = json.loads(files["receipts.jsonl"])
        meta["sha256"] = hashlib.sha256(files[name]).hexdigest()
        files["receipts.jsonl"] = (json.dumps(meta) + "\n").encode()

    report = verify_bundle(rewrite(out, tmp_path / "bad.zip", swap))
    assert report.first_problem.kind == "receipt"


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_not_a_bundle(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(content)
    with pytest.raises(AuditTampered):
        verify_bundle(path)


def test_zip_without_manifest(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("events.jsonl", "")
    with pytest.raises(AuditTampered, match="manifest"):
        verify_bundle(path)


@pytest.mark.parametrize("line", [b"not json\n", b'{"event_seq": 1}\n',
                                  b'{"event_seq": 1, "message_id": "m", "sha256": "x", '
                                  b'"file": "receipts/../../etc/passwd"}\n'])
def test_unreadable_receipt_lines_are_refused(log: AuditLog, tmp_path: Path,
                                              line: bytes) -> None:
    out = export_bundle(log, tmp_path / "b.zip", message_id="m-7", now=NOW).path

    def spoil(files: dict[str, bytes]) -> None:
        files["receipts.jsonl"] = line

    with pytest.raises(AuditTampered, match=r"receipts\.jsonl"):
        verify_bundle(rewrite(out, tmp_path / "bad.zip", spoil))


def test_a_rollback_is_caught_against_an_earlier_export(log: AuditLog, tmp_path: Path,
                                                        signer: KeySigner) -> None:
    """Deleting the tail and the checkpoints after it leaves a consistent, shorter chain;
    a checkpoint exported earlier still exposes it."""
    earlier = export_bundle(log, tmp_path / "earlier.zip", since=T0 + timedelta(hours=30),
                            until=T0 + timedelta(hours=45), now=NOW).path
    known = bundle_checkpoints(earlier)
    assert [cp.seq for cp in known] == [44, 65]
    assert log.verify(known=known, pinned=pin(signer)).ok
    log.conn.execute("DELETE FROM audit_events WHERE seq > 30")
    log.conn.execute("DELETE FROM audit_checkpoints WHERE seq > 30")
    log.conn.execute("DELETE FROM audit_receipts WHERE event_seq > 30")
    assert log.verify().ok  # on its own the rolled-back chain is consistent
    report = log.verify(known=known)
    assert (report.first_problem.kind, report.first_problem.seq) == ("truncated", 31)


def test_known_checkpoints_before_a_prune_are_accepted(log: AuditLog, tmp_path: Path,
                                                      signer: KeySigner) -> None:
    earlier = export_bundle(log, tmp_path / "early.zip", message_id="m-3", now=NOW).path
    log.prune(T0 + timedelta(hours=50), signer, NOW)
    assert log.verify(known=bundle_checkpoints(earlier)).ok


def test_a_rewritten_checkpoint_differs_from_the_kept_copy(log: AuditLog, tmp_path: Path,
                                                           signer: KeySigner) -> None:
    earlier = export_bundle(log, tmp_path / "e.zip", message_id="m-7", now=NOW).path
    known = bundle_checkpoints(earlier)
    seq = known[0].seq
    log.conn.execute("UPDATE audit_checkpoints SET count = count + 1 WHERE seq = ?", (seq,))
    report = log.verify(known=known)
    assert report.first_problem.seq == seq


def test_failed_export_leaves_no_partial_file(log: AuditLog, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    log.conn.execute("UPDATE audit_events SET at = 'garbage' WHERE seq = 30")
    with pytest.raises(AuditTampered):
        export_bundle(log, out_dir / "b.zip", since=T0, now=NOW)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("selection", [{"message_id": "m-7"}, {}])
def test_receipt_removed_from_a_bundle(log: AuditLog, tmp_path: Path, selection: dict[str, str]
                                       ) -> None:
    """A receipt the chain says was stored cannot be dropped from a bundle unnoticed,
    whether the bundle is for one message or a period."""
    out = export_bundle(log, tmp_path / "b.zip", now=NOW, **selection).path

    def drop(files: dict[str, bytes]) -> None:
        lines = files["receipts.jsonl"].decode().splitlines()
        gone = json.loads(lines[0])
        del files[gone["file"]]
        files["receipts.jsonl"] = "".join(x + "\n" for x in lines[1:]).encode()

    report = verify_bundle(rewrite(out, tmp_path / "bad.zip", drop))
    assert not report.ok
    assert report.first_problem.kind == "receipt"
    assert "missing" in report.first_problem.message


def test_deleted_receipt_row_is_found_by_verify(log: AuditLog, signer: KeySigner) -> None:
    assert log.verify(pinned=pin(signer)).ok
    log.conn.execute("DELETE FROM audit_receipts WHERE message_id = 'm-7'")
    report = log.verify(pinned=pin(signer))
    assert not report.ok
    assert report.first_problem.kind == "receipt"
    assert "missing" in report.first_problem.message
