"""Outbox intake: pick up complete files exactly once, record them durably, then remove them.

A file is taken only when it is complete: hidden, ``*.tmp`` and ``*.part`` names are
ignored, and either its size, mtime and inode are unchanged across two polls
(``ready = "stable"``) or a ``NAME.ready`` marker exists beside it (``ready = "marker"``).
:func:`ready_files` is that decision, pure.

For each ready file the scanner reads it and asks the *preparer* (validate, route, seal:
see :mod:`gateway.node.outbound`) what to do; the outcomes of a chunk of files (25 in the
daemon) are recorded together in one spool transaction, each keyed by an *intake key*
(outbox, name, inode, size, mtime): the key is unique, so when several scanners race for
the same file exactly one records it (a chunk that meets such a race is rolled back and
recorded file by file), and a rescan after a crash recognises a file that was already
recorded. Only after that commit are the chunk's files removed from the outbox. A refused
file is copied durably to ``rejected/NAME`` with ``NAME.error.json`` (codes, lines, paths;
no document content) before the original goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.documents.csenet import Framing
from gateway.errors import Duplicate, FileUnreadable, GatewayError, SpoolError
from gateway.node.config import IntakeConfig, OutboxConfig
from gateway.node.csenet_intake import CsenetFile, is_xml
from gateway.store.fsutil import (
    durable_move,
    durable_write,
    fsync_dir,
    is_temporary_name,
    read_file,
)
from gateway.store.spool import Message, NewMessage, Spool, Txn
from gateway.store.states import Direction, State

__all__ = [
    "BatchPreparer",
    "FileSeen",
    "OutboxScanner",
    "PrepareJob",
    "Prepared",
    "Preparer",
    "Refused",
    "ScanResult",
    "error_report",
    "failure_report",
    "ready_files",
    "redact",
    "remove_rejected_copy",
    "write_rejected_copy",
]

log = logging.getLogger("gateway.node.intake")

MARKER = ".ready"
ERROR_SUFFIX = ".error.json"


@dataclass(frozen=True)
class FileSeen:
    name: str
    size: int
    mtime_ns: int
    inode: int


def ready_files(previous: Mapping[str, FileSeen], current: Sequence[FileSeen], *, mode: str,
                now_ns: int, min_age_ns: int = 0) -> list[FileSeen]:
    """Which of ``current`` (one directory listing) may be taken now.

    ``previous`` is the listing of the poll before. Markers and temporary names are never
    ready themselves. Pure: the caller supplies both listings and the time."""
    names = {f.name for f in current}
    out = []
    for seen in current:
        if is_temporary_name(seen.name) or seen.name.endswith((MARKER, ERROR_SUFFIX)):
            continue
        if min_age_ns and now_ns - seen.mtime_ns < min_age_ns:
            continue
        if mode == "marker":
            if seen.name + MARKER in names:
                out.append(seen)
        elif previous.get(seen.name) == seen:
            out.append(seen)
    return sorted(out, key=lambda f: (f.mtime_ns, f.name))


@dataclass(frozen=True)
class Prepared:
    """A valid, routed, sealed document, ready to be recorded as ``sealed``."""

    message: NewMessage
    document: bytes
    envelope: bytes
    events: tuple[tuple[str, Mapping[str, str | int]], ...] = ()


@dataclass(frozen=True)
class Refused:
    """A document the gateway will not send; ``issues`` are JSON-ready dicts."""

    code: str
    message: str
    issues: tuple[Mapping[str, Any], ...] = ()
    case_id: str | None = None
    message_id: str | None = None


class Preparer(Protocol):
    def __call__(self, data: bytes, *, source: str, service: str | None, now: datetime,
                 message_id: str | None = None) -> Prepared | Refused: ...


@dataclass(frozen=True)
class PrepareJob:
    """One document to prepare: the arguments of a :class:`Preparer` call."""

    data: bytes
    source: str
    service: str | None
    now: datetime
    message_id: str | None = None


class BatchPreparer(Protocol):
    """Prepares many documents elsewhere (worker processes: :mod:`.intake_pool`).
    ``submit`` hands them over at once; the function it returns waits and gives one
    outcome per job, in order, None for a job to prepare in this process instead."""

    def submit(self, jobs: Sequence[PrepareJob]
               ) -> Callable[[], Sequence[Prepared | Refused | None]]: ...


class _Pending:
    """A file read (and, once prepared, its outcome), waiting to be recorded with the
    rest of its chunk."""

    __slots__ = ("data", "key", "outcome", "seen")

    def __init__(self, seen: FileSeen, key: str, outcome: Prepared | Refused | None,
                 data: bytes) -> None:
        self.seen, self.key, self.outcome, self.data = seen, key, outcome, data


@dataclass
class _Chunk:
    """A chunk whose files are read and handed to the preparer, not yet recorded."""

    pending: list[_Pending]
    removed: bool  # something was removed from the outbox already (fsync the folder)
    collect: Callable[[], Sequence[Prepared | Refused | None]] | None = None


@dataclass
class ScanResult:
    accepted: list[Message] = field(default_factory=list)
    rejected: list[Message] = field(default_factory=list)
    finished: int = 0  # files recorded earlier (crash, other scanner) and now removed


_QUOTED = re.compile(r"((?:Element|attribute) )?'([^']*)'")


def redact(text: str) -> str:
    """Drop quoted values from a validator message, keeping element/attribute names: the
    message says where and what rule, never the value."""
    return _QUOTED.sub(lambda m: m.group(0) if m.group(1) else "'…'", text)


def error_report(name: str, refused: Refused, received: datetime, spool_id: int) -> bytes:
    """The ``NAME.error.json`` content: codes, lines, paths, value-free messages."""
    errors = []
    for issue in refused.issues:
        item = {k: issue.get(k) for k in ("code", "line", "column", "path")}
        item["message"] = redact(str(issue.get("message", "")))
        errors.append(item)
    report = {"file": name, "spool_id": spool_id, "received": received.isoformat(),
              "code": refused.code,
              "message": redact(refused.message), "message_id": refused.message_id,
              "errors": errors}
    return (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class OutboxScanner:
    """Scans one outbox folder; keep one instance per folder (it remembers the last poll)."""

    def __init__(self, outbox: OutboxConfig, intake: IntakeConfig, *, spool: Spool,
                 rejected_dir: Path, prepare: Preparer, max_bytes: int,
                 prepare_batch: BatchPreparer | None = None) -> None:
        self.outbox = outbox
        self.intake = intake
        self.spool = spool
        self.rejected_dir = rejected_dir
        self.prepare = prepare
        #: XML files go here when set (worker processes); ``prepare`` does the rest
        self.prepare_batch = prepare_batch
        self.max_bytes = max_bytes
        self._previous: dict[str, FileSeen] = {}
        self.csenet = CsenetFile(
            spool=spool, prepare=prepare, service=outbox.service,
            framing=Framing(outbox.newline), rejected_dir=rejected_dir,
            record_prepared=lambda outcome, document, source, key, now: self._record_all(
                [_Pending(FileSeen(source, 0, 0, 0), key, outcome, document)], now)[0])

    def _listing(self) -> list[FileSeen]:
        out = []
        try:
            entries = list(os.scandir(self.outbox.path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError(f"cannot list outbox ({exc.strerror})",
                             where=str(self.outbox.path)) from None
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished meanwhile
            out.append(FileSeen(entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
        return out

    def _drop_orphan_markers(self, current: list[FileSeen]) -> None:
        """A ``NAME.ready`` whose file is gone (seen so on two polls: a crash between
        removing the file and its marker) is removed."""
        names = {f.name for f in current}
        for seen in current:
            if not seen.name.endswith(MARKER):
                continue
            target = seen.name[: -len(MARKER)]
            if target not in names and seen.name in self._previous \
                    and target not in self._previous:
                with contextlib.suppress(FileNotFoundError):
                    (self.outbox.path / seen.name).unlink()

    def intake_key(self, seen: FileSeen) -> str:
        raw = f"{self.outbox.path}\0{seen.name}\0{seen.inode}\0{seen.size}\0{seen.mtime_ns}"
        return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()

    def scan(self, now: datetime, *, limit: int | None = None, chunk: int = 25,
             progress: Callable[[], object] | None = None,
             stopping: Callable[[], bool] | None = None) -> ScanResult:
        """One poll: take every ready file (up to ``limit``), ``chunk`` files at a time:
        each file of a chunk is read and prepared (validated, sealed), then the whole
        chunk is recorded in one spool transaction (one commit instead of one per file;
        all or nothing), and only then are its files removed from the outbox and the
        directory fsynced. After each chunk ``progress`` is called (the daemon starts
        sending while a big batch comes in) and the scan ends early if ``stopping()``
        says so (the rest waits for the next start).

        With a batch preparer (worker processes) the files of a chunk are prepared
        there, and the next chunk is read and handed over before this one is recorded,
        so the workers seal while the spool commits; nothing is recorded or removed in
        another order."""
        current = self._listing()
        ready = ready_files(self._previous, current, mode=self.intake.ready,
                            now_ns=int(now.timestamp() * 1e9),
                            min_age_ns=int(self.intake.min_age * 1e9))
        self._drop_orphan_markers(current)
        self._previous = {f.name: f for f in current}
        result = ScanResult()
        files = ready[:limit]
        step = max(chunk, 1)
        chunks = [files[first:first + step] for first in range(0, len(files), step)]
        ahead: _Chunk | None = None
        for index, part in enumerate(chunks):
            started = ahead if ahead is not None else self._start_chunk(part, now, result)
            ahead = None
            if self.prepare_batch is not None and index + 1 < len(chunks) \
                    and not (stopping is not None and stopping()):
                ahead = self._start_chunk(chunks[index + 1], now, result)
            if self._finish_chunk(started, now, result):
                fsync_dir(self.outbox.path)
            if progress is not None:
                progress()
            if stopping is not None and stopping():
                break
        if ahead is not None and self._finish_chunk(ahead, now, result):
            fsync_dir(self.outbox.path)  # stopping: the chunk already prepared is kept
        return result

    def _start_chunk(self, chunk: Sequence[FileSeen], now: datetime, result: ScanResult
                     ) -> _Chunk:
        """Read the files of one chunk (CSENet files and files recorded before are taken
        at once) and hand the XML documents to the batch preparer, if there is one."""
        removed = False
        pending: list[_Pending] = []
        for seen in chunk:
            try:
                item = self._read_one(seen, now, result)
                if isinstance(item, bool):
                    removed |= item
                elif item is not None:
                    pending.append(item)
            except GatewayError as exc:
                log.error("intake of %s failed: %s (%s); will retry next scan", seen.name,
                          exc.code, exc.message)
        todo = [item for item in pending if item.outcome is None]
        collect = None
        if todo and self.prepare_batch is not None:
            collect = self.prepare_batch.submit([
                PrepareJob(item.data, item.seen.name, self.outbox.service, now)
                for item in todo])
        return _Chunk(pending, removed, collect)

    def _finish_chunk(self, chunk: _Chunk, now: datetime, result: ScanResult) -> bool:
        """Prepare (or collect) and record the files of one chunk; True when something
        was removed from the outbox (the caller fsyncs the directory)."""
        removed = chunk.removed
        todo = [item for item in chunk.pending if item.outcome is None]
        outcomes = (list(chunk.collect()) if chunk.collect is not None
                    else [None] * len(todo))
        for item, outcome in zip(todo, outcomes, strict=True):
            try:
                item.outcome = outcome if outcome is not None else self.prepare(
                    item.data, source=item.seen.name, service=self.outbox.service, now=now)
            except GatewayError as exc:
                log.error("intake of %s failed: %s (%s); will retry next scan",
                          item.seen.name, exc.code, exc.message)
        pending = [item for item in chunk.pending if item.outcome is not None]
        if not pending:
            return removed
        try:
            recorded = self._record_all(pending, now)
        except Duplicate:
            # another scanner recorded one of them first: the chunk was rolled back as a
            # whole; record the files one by one (each Duplicate handled on its own)
            recorded = None
        except GatewayError as exc:
            log.error("intake of %d files failed: %s (%s); will retry next scan",
                      len(pending), exc.code, exc.message)
            return removed
        for index, item in enumerate(pending):
            try:
                if recorded is None:
                    removed |= self._record_alone(item, now, result)
                else:
                    message = recorded[index]
                    (result.accepted if message.state is State.SEALED
                     else result.rejected).append(message)
                    removed |= self._finish(message, item.seen)
            except GatewayError as exc:
                log.error("intake of %s failed: %s (%s); will retry next scan",
                          item.seen.name, exc.code, exc.message)
        return removed

    def _read_one(self, seen: FileSeen, now: datetime, result: ScanResult
                  ) -> _Pending | bool | None:
        """Read one file: a :class:`_Pending` to prepare and record, or (nothing to
        record) whether a file was removed, or None."""
        path = self.outbox.path / seen.name
        key = self.intake_key(seen)
        if not self.spool.claim_intake(key, now):
            return False  # another node sharing this outbox is taking it
        if self._is_csenet(path):
            return self._take_csenet(seen, path, key, now, result)
        existing = self.spool.find_intake(key)
        if existing is not None:
            result.finished += 1
            return self._finish(existing, seen)
        try:
            data = read_file(path, max_bytes=self.max_bytes)
        except GatewayError as exc:
            if not path.exists():
                return None  # another scanner took it
            return _Pending(seen, key, Refused(exc.code, exc.message), b"")
        if len(data) != seen.size:
            return None  # changed since listed: not complete; the next poll decides
        return _Pending(seen, key, None, data)

    def _record_alone(self, item: _Pending, now: datetime, result: ScanResult) -> bool:
        try:
            message = self._record_all([item], now)[0]
        except Duplicate:
            existing = self.spool.find_intake(item.key)
            if existing is None:
                return False
            result.finished += 1  # another scanner recorded it first
            return self._finish(existing, item.seen)
        (result.accepted if message.state is State.SEALED else result.rejected).append(message)
        return self._finish(message, item.seen)

    def _is_csenet(self, path: Path) -> bool:
        if self.outbox.format != "auto":
            return self.outbox.format == "csenet"
        try:
            with path.open("rb") as handle:
                return not is_xml(handle.read(64))
        except OSError:
            return False  # gone or unreadable: the XML path reports it

    def _take_csenet(self, seen: FileSeen, path: Path, key: str, now: datetime,
                     result: ScanResult) -> bool:
        """A CSENet file: every transaction recorded (see :mod:`.csenet_intake`), then the
        file and its marker removed (the caller holds the file's claim)."""
        try:
            accepted, rejected = self.csenet.take(path, seen.name, key, now)
        except FileUnreadable:
            if not path.exists():
                return False  # another scanner took it
            raise
        result.accepted.extend(accepted)
        result.rejected.extend(rejected)
        removed = False
        for victim in (path, path.with_name(seen.name + MARKER)):
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()
                removed = True
        return removed

    def _record_all(self, items: Sequence[_Pending], now: datetime) -> list[Message]:
        """Record ``items`` in one transaction: every one or none."""
        with self.spool.transaction(now) as txn:
            return [self._record(txn, item, now) for item in items]

    @staticmethod
    def _record(txn: Txn, item: _Pending, now: datetime) -> Message:
        outcome, data, seen, key = item.outcome, item.data, item.seen, item.key
        if outcome is None:  # never: only prepared items are recorded
            raise SpoolError("a file was recorded before it was prepared", where=seen.name)
        digest = hashlib.sha256(data).hexdigest()
        if isinstance(outcome, Prepared):
            new = replace(outcome.message, source=seen.name, intake_key=key,
                          document_digest=digest)
            msg = txn.insert(new, State.RECEIVED, payloads={"document": data},
                             detail={"bytes": len(data)})
            for code, detail in outcome.events:
                txn.audit(code, msg, detail=dict(detail))
            return txn.transition(msg.id, State.SEALED, expect=State.RECEIVED,
                                  payloads={"envelope": outcome.envelope})
        new = NewMessage(Direction.OUT, message_id=outcome.message_id, source=seen.name,
                         intake_key=key, case_id=outcome.case_id, document_digest=digest)
        msg = txn.insert(new, State.RECEIVED, payloads={"document": data},
                         detail={"bytes": len(data)})
        report = error_report(seen.name, outcome, now, msg.id)
        return txn.transition(msg.id, State.REJECTED, expect=State.RECEIVED,
                              error_code=outcome.code,
                              changes={"error_text": outcome.message[:500]},
                              payloads={"error": report},
                              detail={"issues": len(outcome.issues)})

    def _finish(self, message: Message, seen: FileSeen) -> bool:
        """After the durable record: copy a rejected file out, then remove the original
        and its marker. Safe to repeat (crash recovery, lost races). Returns whether
        anything was removed; the caller fsyncs the directory (a removal lost in a crash
        only means the file is seen again and recognised by its intake key)."""
        path = self.outbox.path / seen.name
        if message.state is State.REJECTED:
            self._write_rejected(message, seen.name, path)
        removed = False
        for victim in (path, path.with_name(seen.name + MARKER)):
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()
                removed = True
        return removed

    def _write_rejected(self, message: Message, name: str, original: Path) -> None:
        target = write_rejected_copy(self.spool, self.rejected_dir, message, name,
                                     original=original)
        log.warning("rejected %s (%s): moved to %s", name, message.error_code, target,
                    extra={"event": "intake_rejected", "error_code": message.error_code,
                           "state": "rejected"})


def _rejected_target(rejected_dir: Path, message: Message, name: str) -> Path:
    """``rejected/NAME``, unless that name belongs to another message (its error report
    names a different spool id): then ``rejected/ID-NAME``."""
    target = rejected_dir / name
    report = target.with_name(name + ERROR_SUFFIX)
    if not report.exists() and not target.exists():
        return target
    with contextlib.suppress(OSError, ValueError):
        if json.loads(report.read_bytes()).get("spool_id") == message.id:
            return target
    return rejected_dir / f"{message.id}-{name}"


def write_rejected_copy(spool: Spool, rejected_dir: Path, message: Message, name: str, *,
                        original: Path | None = None) -> Path:
    """Put the document of ``message`` into ``rejected_dir`` under ``name`` with
    ``NAME.error.json`` beside it: the ``error`` payload, written first (it marks the name
    as this message's), then the ``document`` payload; both durably. Safe to repeat. A
    document too large or unreadable to keep in the spool is moved from ``original``.
    Returns the document's path; :class:`SpoolError` if the folder cannot be written."""
    try:
        rejected_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpoolError(f"cannot create the rejected folder ({exc.strerror})",
                         where=str(rejected_dir)) from None
    document = spool.payload(message.id, "document") or b""
    report = spool.payload(message.id, "error") or b"{}"
    target = _rejected_target(rejected_dir, message, name)
    durable_write(target.with_name(target.name + ERROR_SUFFIX), report)
    if not document:
        if original is not None and original.exists() and not target.exists():
            durable_move(original, target)
    elif not target.exists() or target.read_bytes() != document:
        durable_write(target, document)
    return target


def remove_rejected_copy(rejected_dir: Path, message: Message, name: str) -> bool:
    """Remove the copy :func:`write_rejected_copy` made for ``message`` (only if its error
    report names this message's spool id); returns whether anything was removed."""
    target = _rejected_target(rejected_dir, message, name)
    report = target.with_name(target.name + ERROR_SUFFIX)
    try:
        if json.loads(report.read_bytes()).get("spool_id") != message.id:
            return False
    except (OSError, ValueError):
        return False
    target.unlink(missing_ok=True)
    report.unlink()
    fsync_dir(rejected_dir)
    return True


def failure_report(message: Message, failed_at: datetime) -> bytes:
    """``NAME.error.json`` for an outbound message that failed for good (dead letter):
    the same shape as an intake refusal, ``stage`` "delivery", the spool's value-free
    error code and text."""
    report: dict[str, Any] = {
        "file": message.source, "spool_id": message.id, "stage": "delivery",
        "failed": failed_at.isoformat(), "code": message.error_code or "Failed",
        "message": redact(message.error_text or "the message could not be delivered"),
        "message_id": message.message_id, "partner": message.partner, "errors": [],
        "hint": "the message stays in the spool: gateway messages show / resend"}
    return (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
