"""The audit trail for an operator: list, a message's timeline with its receipts checked,
verify, export. ``gateway audit ...`` and the console's audit pages call these."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, MessageNotFound
from gateway.protocol.certs import load_certificates_file
from gateway.store.audit import AuditLog, StoredEvent, StoredReceipt
from gateway.store.audit_bundle import ExportSummary, export_bundle
from gateway.store.audit_chain import (
    Checkpoint,
    VerifyReport,
    event_hash,
    event_record,
    fingerprint,
)
from gateway.store.audit_events import AuditEvent

__all__ = [
    "EventFilter",
    "EventPage",
    "Timeline",
    "export_events",
    "intact",
    "last_verification",
    "list_events",
    "node_pin",
    "receipt_status",
    "record_verification",
    "signature_status",
    "timeline",
    "verification_detail",
    "verify_trail",
]

#: The audit code of a verification of the trail, whoever ran it (detail: ok, events,
#: problems, via, and first_bad_seq when it failed).
VERIFIED = "audit_verified"

#: Certificates checkpoints must be signed by: fingerprint -> where it came from.
Pins = dict[str, str]


@dataclass(frozen=True)
class EventFilter:
    message_id: str | None = None
    case_id: str | None = None
    partner: str | None = None
    codes: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first unless asked otherwise; ``more`` says whether
    events past this page match too (the list is cut)."""

    events: Iterable[StoredEvent]  # a list when a limit was given, else read as it goes
    offset: int
    limit: int | None
    more: bool


def list_events(log: AuditLog, f: EventFilter, *, limit: int | None = None,
                offset: int = 0, descending: bool = False) -> EventPage:
    """Events matching every filter of ``f``; with ``limit``, one page of them (one more
    is read to tell whether the list goes on)."""
    want = None if limit is None else offset + limit + 1
    found = log.query(message_id=f.message_id, case_id=f.case_id, partner=f.partner,
                      code=list(f.codes) or None, since=f.since, until=f.until,
                      limit=want, descending=descending)
    if limit is None:
        return EventPage(itertools.islice(found, offset, None), offset, None, False)
    rows = list(found)
    return EventPage(rows[offset:offset + limit], offset, limit, len(rows) > offset + limit)


def intact(e: StoredEvent) -> bool:
    """The event's own hash matches its content (the chain around it is `audit verify`'s)."""
    columns = e.event.columns()
    return event_hash(event_record(e.seq, e.prev_hash, columns)) == e.hash


@dataclass(frozen=True)
class Timeline:
    message_id: str
    events: list[StoredEvent]
    receipts: list[dict[str, Any]]


def timeline(log: AuditLog, message_id: str, keys_dir: Path | None, *,
             config_path: Path | None = None) -> Timeline:
    """Every event of ``message_id`` and each stored receipt with its integrity and
    signature checked (against ``keys_dir``; unavailable without it)."""
    with log.snapshot():
        events = list(log.query(message_id=message_id))
        receipts = log.receipts(message_id)
    if not events:
        raise MessageNotFound("no audit events for this message ID", where=message_id)
    return Timeline(message_id, events, [receipt_status(keys_dir, r, events,
                                                        config_path=config_path)
                                         for r in receipts])


def receipt_status(keys_dir: Path | None, r: StoredReceipt,
                   events: list[StoredEvent], *,
                   config_path: Path | None = None) -> dict[str, Any]:
    sha = hashlib.sha256(r.data).hexdigest()
    anchor = next((e for e in events if e.seq == r.event_seq), None)
    if sha != r.sha256:
        integrity = "DO NOT match their recorded digest"
    elif anchor is None or anchor.event.code != "receipt_stored" or anchor.event.digest != sha:
        integrity = "NOT the receipt the chain recorded"
    else:
        integrity = f"match the digest recorded in the chain (event {r.event_seq})"
    return {"event_seq": r.event_seq, "direction": r.direction,
            "at": r.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "bytes": len(r.data),
            "sha256": sha, "integrity": integrity,
            "signature": signature_status(keys_dir, r, events, config_path=config_path)}


def signature_status(keys_dir: Path | None, r: StoredReceipt,
                     events: list[StoredEvent], *,
                     config_path: Path | None = None) -> dict[str, str]:
    """Verify the receipt's signature with :func:`gateway.protocol.receipts.verify_receipt`
    against the node's key directory (trust store and registered partner certificates), as
    of the time the receipt was stored; say why when that is not possible (never pretend)."""
    from gateway.node.keystore import Keystore  # noqa: PLC0415 - only when a receipt is shown
    from gateway.protocol.party import Party  # noqa: PLC0415
    from gateway.protocol.receipts import verify_receipt  # noqa: PLC0415

    if keys_dir is None:
        return {"status": "unavailable", "reason": "no configuration: the node's key "
                "directory is needed (give --config)"}
    # The receipt is signed by the original message's recipient, and acknowledges one of
    # the envelope digests the chain recorded for that message (most recent first).
    signer = next((e.event.to_party for e in reversed(events) if e.event.to_party), None)
    digests = list(dict.fromkeys(
        e.event.digest for e in reversed(events)
        if e.event.digest and e.event.code not in ("receipt_stored", "checkpoint")))
    if signer is not None and _EB_NS in r.data:
        return as4_signature_status(config_path, r, signer)
    if signer is None or not digests:
        return {"status": "unavailable", "reason": "the chain does not record the recipient "
                "and envelope digest this receipt acknowledges"}
    try:
        store = Keystore(keys_dir)
        party = Party.parse(signer)
        trust = store.trust()
    except GatewayError as exc:
        return {"status": "unavailable", "reason": f"{exc.code}: {exc.message}"}
    failure: GatewayError | None = None
    for digest in digests:
        try:
            verified = verify_receipt(r.data, expected_signer=party, sent_envelope_digest=digest,
                                      trust=trust, directory=store, now=r.at)
        except GatewayError as exc:
            if failure is None or "EnvelopeDigest" not in exc.message:
                failure = exc
            continue
        return {"status": "verified",
                "reason": f"{verified.status}, receipt {verified.receipt_id}, signed by "
                          f"{signer} (certificate {verified.signer_fingerprint[:16]}), "
                          f"for envelope {digest[:16]}"}
    assert failure is not None  # noqa: S101 - digests is not empty
    cause = failure.details.get("cause", failure.code)
    return {"status": "INVALID", "reason": f"{cause}: {failure.message}"}


_EB_NS = b"http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/"


def as4_signature_status(config_path: Path | None, r: StoredReceipt,
                         signer: str) -> dict[str, str]:
    """An AS4 receipt (eb:Receipt): its signature against the certificate that speaks for
    the signer, the partner's PMode ``signing_cert`` (or our own ``sign.crt`` for the
    receipts we sent), as of the time it was stored."""
    from gateway.node.config import load_config  # noqa: PLC0415
    from gateway.protocol import certs  # noqa: PLC0415
    from gateway.protocol.as4.receipt import verify_receipt as verify_as4  # noqa: PLC0415

    if config_path is None:
        return {"status": "unavailable", "reason": "an AS4 receipt: the configuration (the "
                "partner's PMode) is needed to verify it"}
    try:
        config = load_config(config_path)
        if signer == config.node.party:
            cert_path = config.node.keys_dir / "sign.crt"
        else:
            partner = next((p for p in config.partners
                            if p.party == signer and p.as4 is not None), None)
            if partner is None or partner.as4 is None:
                return {"status": "unavailable", "reason": f"an AS4 receipt, and {signer} is "
                        "not an AS4 partner in the configuration"}
            cert_path = partner.as4.signing_cert
        trusted = certs.load_certificates_file(cert_path)
    except GatewayError as exc:
        return {"status": "unavailable", "reason": f"{exc.code}: {exc.message}"}
    try:
        verified = verify_as4(r.data, trusted=trusted, now=r.at,
                              ref_to_message_id=r.message_id)
    except GatewayError as exc:
        return {"status": "INVALID", "reason": f"{exc.code}: {exc.message}"}
    cert = verified.signature.certificate
    return {"status": "verified",
            "reason": f"AS4 receipt {verified.message_id}, signed by {signer} (certificate "
                      f"{certs.fingerprint(cert)[:16]}), {len(verified.nri)} "
                      "non-repudiation references"}


def node_pin(keys_dir: Path | None) -> tuple[Pins, str | None]:
    """The node's own signing certificate from its key directory (only the certificate: no
    private key or passphrase is needed), and why not when the directory has none.
    ({}, None) without a key directory.

    The keystore keeps one signing certificate (``KEYS/sign.crt``) and no earlier ones;
    certificates of keys the node signed with before a rotation are given separately."""
    if keys_dir is None:
        return {}, None
    file = keys_dir / "sign.crt"
    if not file.is_file():
        return {}, f"the node's key directory has no signing certificate ({file})"
    cert = load_certificates_file(file)[0]
    return {fingerprint(cert): f"node signing certificate {file}"}, None


def verify_trail(log: AuditLog, pinned: Pins | None, *,
                 known: list[Checkpoint] | None = None) -> VerifyReport:
    """Check the hash chain, the checkpoint signatures (against ``pinned``, or whichever
    certificate each checkpoint carries when None) and every receipt the chain names."""
    return log.verify(pinned=pinned, known=known or [])


def verification_detail(report: VerifyReport, via: str) -> dict[str, str | int]:
    """What an ``audit_verified`` event records of a verification: the outcome and the
    counts (never an event's content), and ``via``: ``console``, ``cli`` or ``daemon``."""
    detail: dict[str, str | int] = {"ok": int(report.ok), "events": report.events,
                                    "problems": len(report.problems), "via": via}
    if report.problems:
        detail["first_bad_seq"] = report.problems[0].seq
    return detail


def record_verification(log: AuditLog, report: VerifyReport, *, actor: str, via: str,
                        now: datetime) -> int:
    """Append the ``audit_verified`` event of ``report`` to ``log`` (a writable view of the
    trail that was verified); returns its sequence number."""
    return log.append(AuditEvent(code=VERIFIED, at=now, actor=actor,
                                 detail=verification_detail(report, via)))


def last_verification(log: AuditLog) -> StoredEvent | None:
    """The latest recorded verification of the trail (from the console, ``gateway audit
    verify`` or the daemon's scheduled check), or None when there was none."""
    return next(iter(log.query(code=VERIFIED, limit=1, descending=True)), None)


def export_events(log: AuditLog, out: Path, *, now: datetime, since: datetime | None = None,
                  until: datetime | None = None,
                  message_id: str | None = None) -> ExportSummary:
    """Write a self-contained evidence bundle (zip) of the selected events."""
    return export_bundle(log, out, since=since, until=until, message_id=message_id, now=now)
