"""Evidence bundles: a self-contained zip of one stretch of the audit chain that anyone can
verify on another machine (``gateway audit export`` / ``gateway audit verify --bundle``).

A bundle holds a *contiguous* run of events (a hash chain cannot prove a subset), extended
forward to the first signed checkpoint at or after the last selected event, the checkpoints
inside that run, the signer certificates, and the exact bytes of the receipts anchored in
it. docs/audit.md describes the layout; in short::

    manifest.json        format, version, selection, segment (first/last seq, prev_hash),
                         and the SHA-256 of every other file
    events.jsonl         one event per line: seq, prev_hash, every field, hash
    checkpoints.jsonl    one checkpoint per line (signature in hex)
    receipts.jsonl       one line per receipt: event_seq, message_id, direction, at, sha256
    receipts/<seq>.xml   the receipt's exact bytes (seq = its receipt_stored event)
    certs/<sha256>.pem   each checkpoint signer's certificate, named by its fingerprint

Verification never trusts the manifest for authenticity: the chain is recomputed, and the
signed checkpoints (checked against pinned certificates when given) are what make the run
evidence. Nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.errors import AuditError, AuditTampered, UsageError
from gateway.store.audit import AuditLog
from gateway.store.audit_chain import (
    FIELDS,
    ChainWalker,
    Checkpoint,
    VerifyReport,
    canonical_json,
    event_record,
    format_time,
    parse_time,
)
from gateway.store.fsutil import fsync_dir, temp_name
from gateway.store.pgconn import DB_ERRORS

__all__ = ["BUNDLE_FORMAT", "ExportSummary", "bundle_checkpoints", "export_bundle",
           "verify_bundle"]

BUNDLE_FORMAT = "cse-gateway-audit-bundle"
_VERSION = 1
_MAX_MANIFEST = 1 << 20


@dataclass(frozen=True)
class ExportSummary:
    """What a bundle holds: the run of events, and how far checkpoints sign it."""

    path: Path
    first_seq: int
    last_seq: int
    events: int
    checkpoints: int
    receipts: int
    signed_through: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "first_seq": self.first_seq, "last_seq": self.last_seq,
                "events": self.events, "checkpoints": self.checkpoints,
                "receipts": self.receipts, "signed_through": self.signed_through}


def _segment(log: AuditLog, *, since: datetime | None, until: datetime | None,
             message_id: str | None) -> tuple[int, int]:
    found = log.seq_range(message_id=message_id, since=since, until=until)
    if found is None:
        raise AuditError("no audit events match the selection")
    first, last = found
    row = log.conn.execute("SELECT min(seq) FROM audit_checkpoints WHERE seq >= ?",
                           (last,)).fetchone()
    if row is not None and row[0] is not None:
        last = row[0]
    return int(first), int(last)


def export_bundle(log: AuditLog, out: Path, *, since: datetime | None = None,
                  until: datetime | None = None, message_id: str | None = None,
                  now: datetime) -> ExportSummary:
    """Write the bundle for a period (``since`` inclusive, ``until`` exclusive) or for one
    message to ``out`` (a new .zip file, written to a temporary name and renamed)."""
    if out.exists():
        raise UsageError("will not overwrite an existing file", where=str(out))
    try:
        with log.snapshot():
            return _export(log, out, since=since, until=until, message_id=message_id,
                           now=now)
    except DB_ERRORS as exc:
        raise AuditError(f"cannot read the audit trail: {exc}") from None


def _export(log: AuditLog, out: Path, *, since: datetime | None, until: datetime | None,
            message_id: str | None, now: datetime) -> ExportSummary:
    tmp: Path | None = None
    try:
        first, last = _segment(log, since=since, until=until, message_id=message_id)
        checkpoints = log.checkpoints(from_seq=first, to_seq=last)
        receipts = [r for r in log.receipts(from_seq=first, to_seq=last)
                    if message_id is None or r.message_id == message_id]
        tmp = temp_name(out)
        files: dict[str, str] = {}
        count = 0
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            with zf.open("events.jsonl", "w") as fh:
                digest = hashlib.sha256()
                prev_hash = None
                for stored in log.query(from_seq=first, to_seq=last):
                    if prev_hash is None:
                        prev_hash = stored.prev_hash
                    line = (canonical_json(stored.to_dict()) + "\n").encode("ascii")
                    digest.update(line)
                    fh.write(line)
                    count += 1
                files["events.jsonl"] = digest.hexdigest()
            _put(zf, files, "checkpoints.jsonl", "".join(
                canonical_json(cp.to_dict()) + "\n" for cp in checkpoints).encode("ascii"))
            for fp, der in sorted({cp.signer: cp.certificate for cp in checkpoints}.items()):
                pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
                _put(zf, files, f"certs/{fp}.pem", pem)
            meta = []
            for r in receipts:
                name = f"receipts/{r.event_seq}.xml"
                _put(zf, files, name, r.data)
                meta.append(canonical_json({"event_seq": r.event_seq, "message_id": r.message_id,
                                            "direction": r.direction, "at": format_time(r.at),
                                            "sha256": r.sha256, "file": name}) + "\n")
            _put(zf, files, "receipts.jsonl", "".join(meta).encode("ascii"))
            manifest = {
                "format": BUNDLE_FORMAT, "version": _VERSION, "created": format_time(now),
                "selection": {"since": format_time(since) if since else None,
                              "until": format_time(until) if until else None,
                              "message_id": message_id},
                "segment": {"first_seq": first, "last_seq": last, "events": count,
                            "prev_hash": prev_hash},
                "files": files,
            }
            zf.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if out.exists():
            raise UsageError("will not overwrite an existing file", where=str(out))
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, DB_ERRORS):
            raise AuditError(f"cannot read the audit trail: {exc}") from None
        if isinstance(exc, OSError):
            raise AuditError(f"cannot write the bundle ({exc.strerror})",
                             where=str(out)) from None
        raise
    signed = max((cp.seq for cp in checkpoints), default=None)
    return ExportSummary(path=out, first_seq=first, last_seq=last, events=count,
                         checkpoints=len(checkpoints), receipts=len(receipts),
                         signed_through=signed)


def _put(zf: zipfile.ZipFile, files: dict[str, str], name: str, data: bytes) -> None:
    zf.writestr(name, data)
    files[name] = hashlib.sha256(data).hexdigest()


# --- verification -----------------------------------------------------------------------


def verify_bundle(path: Path, *, pinned: Collection[str] | None = None,
                  max_problems: int = 20) -> VerifyReport:
    """Check a bundle offline: file digests, the hash chain of its run of events, every
    checkpoint signature (against ``pinned`` fingerprints when given) and every receipt.
    Raises :class:`AuditTampered` when the bundle itself is malformed."""
    try:
        with zipfile.ZipFile(path) as zf:
            return _verify(zf, pinned, max_problems)
    except zipfile.BadZipFile:
        raise AuditTampered("not a readable zip file", where=str(path)) from None
    except OSError as exc:
        raise AuditError(f"cannot read the bundle ({exc.strerror})", where=str(path)) from None


def bundle_checkpoints(path: Path) -> list[Checkpoint]:
    """The checkpoints an earlier export holds (files checked against its manifest), to
    pass as ``known`` to :meth:`AuditLog.verify`."""
    try:
        with zipfile.ZipFile(path) as zf:
            files = _manifest(zf)["files"]
            for name in ("checkpoints.jsonl", *(n for n in files if n.startswith("certs/"))):
                if hashlib.sha256(zf.read(name)).hexdigest() != files.get(name):
                    raise AuditTampered("file does not match the digest in the manifest",
                                        where=name)
            return [_checkpoint(zf, line) for line in _lines(zf, "checkpoints.jsonl")]
    except KeyError:
        raise AuditTampered("bundle lacks checkpoints.jsonl", where=str(path)) from None
    except zipfile.BadZipFile:
        raise AuditTampered("not a readable zip file", where=str(path)) from None
    except OSError as exc:
        raise AuditError(f"cannot read the bundle ({exc.strerror})", where=str(path)) from None


def _verify(zf: zipfile.ZipFile, pinned: Collection[str] | None,
            max_problems: int) -> VerifyReport:
    manifest = _manifest(zf)
    files: dict[str, str] = manifest["files"]
    names = set(zf.namelist())
    if names != {*files, "manifest.json"}:
        extra = sorted(names - {*files, "manifest.json"})
        missing = sorted(set(files) - names)
        raise AuditTampered(f"bundle files differ from its manifest (extra: {extra[:5]}, "
                            f"missing: {missing[:5]})")
    for name, expected in files.items():
        h = hashlib.sha256()
        with zf.open(name) as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        if h.hexdigest() != expected:
            raise AuditTampered("file does not match the digest in the manifest", where=name)
    segment = manifest["segment"]
    checkpoints = [_checkpoint(zf, line) for line in _lines(zf, "checkpoints.jsonl")]
    receipts = [_receipt(zf, line) for line in _lines(zf, "receipts.jsonl")]
    wanted = {seq for seq, _, _, _ in receipts}
    seen: dict[int, tuple[str, str | None, str | None]] = {}
    selection = manifest.get("selection")
    selected = selection.get("message_id") if isinstance(selection, dict) else None
    required: list[int] = []  # receipt_stored events of the selected messages
    walker = ChainWalker(int(segment["first_seq"]), str(segment["prev_hash"]), checkpoints,
                         pinned=pinned, max_problems=max_problems)
    for line in _lines(zf, "events.jsonl"):
        row = _row(line)
        if row[0] in wanted:
            seen[row[0]] = (row[2], row[3], row[9])
        if row[2] == "receipt_stored" and (selected is None or row[3] == selected):
            required.append(row[0])
        walker.feed(row)
    walker.finish()
    if walker.last_seq != segment["last_seq"] or walker.count != segment["events"]:
        walker.problem("truncated", (walker.last_seq or 0) + 1,
                       "the bundle holds fewer events than its manifest says")
    for seq, message_id, claimed, data in receipts:
        sha = hashlib.sha256(data).hexdigest()
        if sha != claimed or seen.get(seq) != ("receipt_stored", message_id, sha):
            walker.problem("receipt", seq, "receipt is not the one its receipt_stored event "
                           "records")
    for seq in required:
        if seq not in wanted:
            walker.problem("receipt", seq, "the receipt its receipt_stored event records is "
                           "missing from the bundle")
    return walker.report(receipts=len(receipts), pinned=pinned is not None)


def _manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = zf.getinfo("manifest.json")
    except KeyError:
        raise AuditTampered("bundle has no manifest.json") from None
    if info.file_size > _MAX_MANIFEST:
        raise AuditTampered("manifest.json is too large")
    try:
        manifest = json.loads(zf.read(info))
    except ValueError:
        raise AuditTampered("manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise AuditTampered("not a CSE Gateway audit bundle")
    if manifest.get("version") != _VERSION:
        raise AuditTampered(f"unsupported bundle version (this gateway reads {_VERSION})")
    segment = manifest.get("segment")
    files = manifest.get("files")
    if not isinstance(segment, dict) or not isinstance(files, dict) or \
            not all(isinstance(segment.get(k), int) for k in ("first_seq", "last_seq", "events")):
        raise AuditTampered("manifest.json lacks the segment or the file list")
    return manifest


def _lines(zf: zipfile.ZipFile, name: str) -> Iterator[str]:
    with zf.open(name) as fh:
        for number, raw in enumerate(fh, 1):
            try:
                yield raw.decode("ascii").rstrip("\n")
            except UnicodeDecodeError:
                raise AuditTampered("line is not ASCII", where=f"{name}:{number}") from None


def _row(line: str) -> tuple[Any, ...]:
    try:
        obj = json.loads(line)
        seq = obj["seq"]
        detail = obj["detail"]
        if not isinstance(seq, int) or not isinstance(detail, dict):
            raise TypeError
        columns = {name: obj[name] for name in FIELDS}
        columns["detail"] = canonical_json(detail)
        record = event_record(seq, obj["prev_hash"], columns)
        if set(obj) != {*record, "hash"}:
            raise TypeError
        return (seq, *(columns[n] for n in FIELDS), obj["prev_hash"], obj["hash"])
    except (ValueError, KeyError, TypeError):
        raise AuditTampered("events.jsonl holds a line that is not an audit event") from None


def _receipt(zf: zipfile.ZipFile, line: str) -> tuple[int, str, str, bytes]:
    """(event_seq, message_id, sha256, bytes) of one receipts.jsonl line."""
    try:
        obj = json.loads(line)
        seq = obj["event_seq"]
        if not isinstance(seq, int):
            raise TypeError
        return seq, str(obj["message_id"]), str(obj["sha256"]), zf.read(str(obj["file"]))
    except (ValueError, KeyError, TypeError):
        raise AuditTampered("receipts.jsonl holds an unreadable line or names a file the "
                            "bundle does not hold") from None


def _checkpoint(zf: zipfile.ZipFile, line: str) -> Checkpoint:
    try:
        obj = json.loads(line)
        pem = zf.read(f"certs/{obj['signer']}.pem")
        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        return Checkpoint(seq=int(obj["seq"]), hash=str(obj["hash"]), count=int(obj["count"]),
                          at=parse_time(str(obj["at"])), algorithm=str(obj["algorithm"]),
                          signer=str(obj["signer"]), signature=bytes.fromhex(obj["signature"]),
                          certificate=der)
    except (ValueError, KeyError, TypeError):
        raise AuditTampered("checkpoints.jsonl holds an unreadable checkpoint or its "
                            "certificate is missing") from None

