"""CSENet files in an outbox (``format = "csenet"``, or ``"auto"`` for a file that is not
XML): one file, many transactions, each its own message.

The file is read one line at a time (:func:`gateway.documents.csenet.check_file`: framing,
layout and every federal edit). Each transaction is recorded in the spool in its own
transaction, keyed by the file's intake key plus its position, before anything else
happens to the file:

- a valid transaction is rendered as its XML form (``urn:cse-gateway:interstate:2``, the
  same bytes back in CSENet at the receiver), validated, routed by its Other-FIPS and sealed
  by the outbox preparer, and recorded ``sealed``;
- an invalid one is recorded ``rejected`` with its issues (no values);
- a transaction whose business key (Transaction-Serial-Number + Local-FIPS) is already in
  the spool as a live message is recorded ``rejected`` with code ``Duplicate``: it is sent
  once. The message ID of a CSENet transaction is derived from that key, and the spool's
  unique message IDs close the race between two scanners.

A crash anywhere loses and doubles nothing: on the next scan the file is still in the
outbox with the same intake key, the positions already recorded are found by their keys
and skipped, the others are taken. Only when every position is recorded are the rejection
outputs written (durably) and the file removed: ``rejected/NAME`` (the refused
transactions' lines), ``rejected/NAME.error.json`` (the JSON report) and
``rejected/NAME.errors`` (one 145-byte CSENet error record per refused transaction). They
are rebuilt from the spool, so writing them again after a crash gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.documents.csenet import Framing, check_file
from gateway.documents.csenet.codec import Checked
from gateway.documents.csenet.errorfile import error_record
from gateway.documents.csenet.issues import CsenetIssue
from gateway.documents.csenet.xmlform import to_xml
from gateway.errors import Duplicate, FileUnreadable
from gateway.store.fsutil import durable_write
from gateway.store.spool import Message, NewMessage, Spool
from gateway.store.states import Direction, State

__all__ = ["CsenetFile", "business_message_id", "is_xml"]

log = logging.getLogger("gateway.node.intake")

# uuid5 namespace for the message IDs of CSENet transactions (fixed: a changed namespace
# would let a transaction already sent through once more)
_NAMESPACE = uuid.UUID("5c1e0a4e-3f1d-5b5e-9b7a-c5e2e7000001")
ERRORS_SUFFIX = ".errors"


def business_message_id(local_fips: str, serial: str) -> str:
    """The message ID of the transaction with this business key (Local-FIPS, serial)."""
    return str(uuid.uuid5(_NAMESPACE, f"csenet:{local_fips}:{serial}"))


def is_xml(head: bytes) -> bool:
    """Whether a file's first bytes look like XML (``format = "auto"``)."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


@dataclass(frozen=True)
class _Outcome:
    message: Message
    position: int
    data: bytes


class CsenetFile:
    """Takes CSENet files for one outbox scanner (see the module docstring)."""

    def __init__(self, *, spool: Spool, prepare: Callable[..., Any], service: str | None,
                 framing: Framing, rejected_dir: Path,
                 record_prepared: Callable[..., Message]) -> None:
        self.spool = spool
        self.prepare = prepare
        self.service = service
        self.framing = framing
        self.rejected_dir = rejected_dir
        self.record_prepared = record_prepared

    def take(self, path: Path, name: str, file_key: str, now: datetime
             ) -> tuple[list[Message], list[Message]]:
        """Record every transaction of the file (those not recorded yet), then write the
        rejection outputs. Returns (accepted, rejected) messages recorded by this call; the
        caller removes the file afterwards. :class:`FileUnreadable` if it cannot be read."""
        accepted: list[Message] = []
        rejected: list[Message] = []
        refused: list[_Outcome] = []
        total = 0
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise FileUnreadable(f"cannot read the file ({exc.strerror})",
                                 where=name) from None
        with stream:
            for item in check_file(stream, today=now.date(), framing=self.framing):
                total += 1
                key = hashlib.sha256(f"{file_key}\0{item.position}".encode()).hexdigest()
                message = self.spool.find_intake(key)
                if message is None:
                    message = self._record(item, name, key, now)
                    (accepted if message.state is State.SEALED else rejected).append(message)
                if message.state is State.REJECTED:
                    refused.append(_Outcome(message, item.position, item.data))
        if refused:
            self._write_outputs(name, total, refused)
        log.info("csenet file %s: %d transaction(s), %d refused", name, total, len(refused))
        return accepted, rejected

    # --- one transaction ---------------------------------------------------------------

    def _record(self, item: Checked, name: str, key: str, now: datetime) -> Message:
        source = f"{name}:{item.position}"
        txn = item.transaction
        if txn is None or item.issues:
            return self._reject(item, source, key, now, "CsenetInvalid",
                                f"{len(item.issues)} CSENet error(s)",
                                [i.to_dict() for i in item.issues])
        header = txn.header
        message_id = business_message_id(header.local_fips, header.serial)
        live = self.spool.find(Direction.OUT, message_id)
        if live is not None and live.state is not State.REJECTED:
            return self._duplicate(item, source, key, now, live)
        document = to_xml(txn)
        outcome = self.prepare(document, source=source, service=self.service, now=now,
                               message_id=message_id)
        if not hasattr(outcome, "envelope"):  # Refused: routing, sender, keys, XML form
            return self._reject(item, source, key, now, outcome.code, outcome.message, [
                {"position": item.position, "block": "header", "field": "-",
                 "columns": None, "rule": "transaction.refused", "code": "GR01",
                 "message": f"{outcome.code}: {outcome.message}"}])
        try:
            return self.record_prepared(outcome, document, source, key, now)
        except Duplicate:
            found = self.spool.find_intake(key)
            if found is not None:
                return found  # another scanner recorded this position first
            live = self.spool.find(Direction.OUT, message_id)
            if live is None:
                raise
            return self._duplicate(item, source, key, now, live)

    def _duplicate(self, item: Checked, source: str, key: str, now: datetime,
                   live: Message) -> Message:
        return self._reject(item, source, key, now, "Duplicate",
                            "this Transaction-Serial-Number and Local-FIPS were taken "
                            f"before (message {live.message_id}): the transaction is sent "
                            "once", [{"position": item.position, "block": "header",
                                      "field": "Transaction-Serial-Number",
                                      "columns": [18, 29], "rule": "transaction.duplicate",
                                      "code": "GD01",
                                      "message": "already taken (business duplicate key)"}])

    def _reject(self, item: Checked, source: str, key: str, now: datetime,  # noqa: PLR0917
                code: str, text: str, issues: list[dict[str, Any]]) -> Message:
        header = item.transaction.header if item.transaction is not None else None
        report = json.dumps({"position": item.position, "code": code, "message": text,
                             "errors": issues}, sort_keys=True).encode()
        new = NewMessage(Direction.OUT, source=source, intake_key=key,
                         case_id=(header.case_id.strip() or None) if header else None,
                         document_digest=hashlib.sha256(item.data).hexdigest())
        with self.spool.transaction(now) as txn:
            msg = txn.insert(new, State.RECEIVED, payloads={"document": item.data},
                             detail={"bytes": len(item.data)})
            return txn.transition(msg.id, State.REJECTED, expect=State.RECEIVED,
                                  error_code=code, changes={"error_text": text[:500]},
                                  payloads={"error": report},
                                  detail={"issues": len(issues)})

    # --- the outputs beside a file with refusals ----------------------------------------

    def _write_outputs(self, name: str, total: int, refused: list[_Outcome]) -> None:
        terminator = self.framing.terminator
        lines: list[bytes] = []
        records: list[bytes] = []
        report: list[dict[str, Any]] = []
        for outcome in refused:
            stored = json.loads(self.spool.payload(outcome.message.id, "error") or b"{}")
            errors = stored.get("errors", [])
            issues = [_issue(e) for e in errors] or [CsenetIssue(
                outcome.position, "header", "-", None, "transaction.duplicate", "refused")]
            lines.append(outcome.data + terminator)
            records.append(error_record(outcome.position, outcome.data, issues).text.encode()
                           + terminator)
            report.append({"position": outcome.position, "spool_id": outcome.message.id,
                           "code": outcome.message.error_code,
                           "message": stored.get("message", ""), "errors": errors})
        summary = {"file": name, "format": "csenet", "transactions": total,
                   "accepted": total - len(refused), "refused": len(refused),
                   "error_file": name + ERRORS_SUFFIX, "rejected": report}
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        durable_write(self.rejected_dir / (name + ".error.json"),
                      (json.dumps(summary, indent=2) + "\n").encode())
        durable_write(self.rejected_dir / (name + ERRORS_SUFFIX), b"".join(records))
        durable_write(self.rejected_dir / name, b"".join(lines))


def _issue(found: dict[str, Any]) -> CsenetIssue:
    columns = found.get("columns")
    rule = str(found.get("rule") or "transaction.duplicate")
    return CsenetIssue(int(found.get("position") or 0), str(found.get("block") or "-"),
                       str(found.get("field") or "-"),
                       (int(columns[0]), int(columns[1])) if columns else None, rule,
                       str(found.get("message") or ""))
