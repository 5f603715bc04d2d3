"""The pure computation of receiving a business message: what :class:`Examiner` works out
for one parsed envelope needs no store, no file and no clock but the ``now`` it is given,
so the daemon can run it in its own process or in a receive worker
(:mod:`gateway.node.receive_pool`) with the same result.

Open (decrypt, verify the signature, the chain, the registration, compare the headers),
validate (XSD, Schematron, CSENet edits), read the case id and the clock events, convert
an interstate transaction to the CSENet line when the inbox wants that, build and sign the
receipt. :class:`Examined` carries what :class:`gateway.node.inbound.Inbound` then records
and delivers, or the error it rejects with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from lxml import etree

from gateway.documents.csenet.records import HeaderToServer, Transaction
from gateway.documents.csenet.xmlform import from_xml
from gateway.documents.describe import describe, describe_csenet
from gateway.documents.schemas import SchemaRegistry
from gateway.documents.validate import Derived, validate_parsed
from gateway.errors import GatewayError, SchemaInvalid, TooLarge
from gateway.node.clocks import ClockKeeper, clock_events
from gateway.node.config import Config
from gateway.node.nodekeys import NodeKeys
from gateway.node.prepare import safe_token
from gateway.protocol.envelope import Header, ParsedEnvelope
from gateway.protocol.identity import NodeIdentity
from gateway.protocol.receipts import build_receipt
from gateway.protocol.seal import OpenPolicy, open_parsed

__all__ = ["ExaminePool", "Examined", "Examiner", "as_received_csenet", "receipt_for"]

ClockEvents = tuple[tuple[str, dict[str, str]], ...]


@dataclass(frozen=True)
class Examined:
    """The outcome of one envelope: the signed receipt (``Delivered`` or ``Rejected``)
    and either what to deliver (``document``: the XML, or the CSENet line) or the error
    (its code, its message for the record, whether it was over the size limit)."""

    receipt: bytes
    receipt_id: str
    document: bytes = b""
    case_id: str | None = None
    clock: ClockEvents = ()
    error_code: str | None = None
    error_text: str = ""
    too_large: bool = False


class ExaminePool(Protocol):
    """Where :class:`~gateway.node.inbound.Inbound` can have envelopes examined instead
    of in its own process; None means: do it in-process."""

    def examine(self, parsed: ParsedEnvelope, now: datetime) -> Examined | None: ...

    def examine_many(self, items: list[tuple[ParsedEnvelope, datetime]]
                     ) -> list[Examined | None] | None:
        """Each of ``items`` examined, in order (one batch): None for one the pool did not
        examine, or instead of the list for all of them: those are examined in-process."""


def as_received_csenet(tree: etree._ElementTree, now: datetime, terminator: bytes, *,
                       transaction: Transaction | None = None) -> bytes:
    """A validated ``InterstateTransaction`` as the CSENet line a state receives from the
    federal server: the 121-byte header (FIPS codes and case IDs swapped to the receiver's
    point of reference, Date-Received and Time-Received from ``now``) and the data blocks
    unchanged. ``transaction``: what its validation mapped it onto (else it is mapped
    here)."""
    txn = from_xml(tree) if transaction is None else transaction
    header = txn.header
    if isinstance(header, HeaderToServer):
        header = header.delivered(now.date(), now.time().replace(microsecond=0, tzinfo=None))
    return (header.text + txn.to_text()[len(txn.header.text):]).encode("ascii") + terminator


def receipt_for(header: Header, digest: str, error: GatewayError | None, now: datetime, *,
                node: NodeIdentity, receipt_id: str | None = None) -> bytes:
    """The signed receipt this node answers ``header`` with."""
    errors = [] if error is None else [(error.code, _safe_text(error))]
    return build_receipt(for_header=header, envelope_digest=digest,
                         status="Delivered" if error is None else "Rejected",
                         errors=errors, received=now, node=node, now=now,
                         receipt_id=receipt_id)


class Examiner:
    """What a node needs to examine envelopes, less its keys (given with each call, so a
    reload takes effect at once): the open policy, the schemas, the clock rules, the
    inbox format."""

    def __init__(self, config: Config, *, registry: SchemaRegistry | None = None) -> None:
        self.config = config
        self.registry = registry
        self.clocks = ClockKeeper(config.clocks) if config.clocks.enabled else None
        self.policy = OpenPolicy(max_age=timedelta(seconds=config.security.replay_window),
                                 max_bytes=config.limits.max_message_bytes * 2)

    def csenet(self, header: Header) -> bool:
        """Whether this message is delivered as a CSENet line (``inbox.format``)."""
        return self.config.inbox_format == "csenet" and \
            header.action == "InterstateTransaction"

    def examine(self, parsed: ParsedEnvelope, keys: NodeKeys, now: datetime) -> Examined:
        """Open, verify, validate, convert and answer ``parsed`` at ``now``."""
        header = parsed.header
        error: GatewayError | None = None
        document = b""
        try:
            opened = open_parsed(parsed, node=keys.identity, trust=keys.trust,
                                 directory=keys.directory, now=now, policy=self.policy)
            document = opened.document
        except GatewayError as exc:
            error = exc
        case_id = None
        clock: ClockEvents = ()
        if error is None:
            derived = Derived()
            report, tree = validate_parsed(document, source=header.message_id,
                                           registry=self.registry,
                                           max_bytes=self.config.limits.max_message_bytes,
                                           derived=derived)
            if not report.valid or tree is None:
                error = _schema_error(report.issues[0].code if report.issues else
                                      "SchemaInvalid", len(report.issues))
            else:
                txn = derived.csenet  # mapped once, by validation
                case_id = _case_id(tree, txn)
                clock = clock_events(self.clocks, tree, outbound=False,
                                     conversation_id=header.conversation_id,
                                     ref_to=header.ref_to_message_id, transaction=txn)
                if self.csenet(header):
                    try:
                        document = as_received_csenet(
                            tree, now, b"\r\n" if self.config.inbox_newline == "crlf"
                            else b"\n", transaction=txn)
                    except GatewayError as exc:
                        error = exc
            del tree, derived
        receipt_id = str(uuid.uuid4())
        receipt = receipt_for(header, parsed.digest, error, now, node=keys.identity,
                              receipt_id=receipt_id)
        if error is not None:
            return Examined(receipt, receipt_id, error_code=error.code,
                            error_text=error.message[:500],
                            too_large=isinstance(error, TooLarge))
        return Examined(receipt, receipt_id, document=document, case_id=case_id,
                        clock=clock)


def _safe_text(error: GatewayError) -> str:
    """Receipt error text: the class's stable wording, never the message details."""
    return {
        "SchemaInvalid": "the document does not match its schema",
        "SignatureInvalid": "the signature does not verify",
        "DecryptionFailed": "the envelope cannot be decrypted by this node",
        "UnknownRecipient": "this node does not serve the addressed party",
        "SignerNotRegistered": "the signer is not registered for the sending party",
        "ReplayWindow": "the message is too old or too far in the future",
        "HeaderMismatch": "the signed header differs from the envelope header",
        "CertificateExpired": "a certificate is expired",
        "CertificateUntrusted": "the signer certificate is not trusted",
        "TooLarge": "the message is too large",
    }.get(error.code, "the message was refused")


def _schema_error(code: str, count: int) -> GatewayError:
    err = SchemaInvalid(f"{count} validation error(s)")
    if code != "SchemaInvalid":
        err.details["first"] = code
    return err


def _case_id(tree: etree._ElementTree, transaction: Transaction | None = None) -> str | None:
    if transaction is not None:
        return safe_token(describe_csenet(transaction).case_id)
    try:
        return safe_token(describe(tree).case_id)
    except GatewayError:
        return None
