"""AS4 receipts and errors: a signed eb:Receipt whose NonRepudiationInformation echoes the
received signature's references, an ebMS Error signal, and the sender's check of a
receipt (its signature, and that its NRI digests equal what the sender signed)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from gateway.documents.xmlsafe import parse_xml
from gateway.errors import As4Error, As4FailedAuthentication, As4InvalidReceipt

from . import dsig, ebms, ns
from .message import as_envelope, envelope_skeleton, new_message_id, timestamp
from .mime import parse_message
from .soap import Envelope, parse_envelope

__all__ = [
    "VerifiedReceipt",
    "build_error_signal",
    "build_receipt",
    "check_nri",
    "nri_references",
    "verify_receipt",
]

RECEIPT_CONTENT_TYPE = "application/soap+xml; charset=UTF-8"


@dataclass(frozen=True)
class VerifiedReceipt:
    message_id: str
    ref_to_message_id: str | None
    timestamp: str
    signature: dsig.VerifiedSignature
    nri: tuple[dsig.Reference, ...]
    nri_matched: bool


def build_receipt(
    ref_to_message_id: str,
    request_references: Sequence[etree._Element] | Sequence[bytes],
    *,
    key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    now: datetime,
    message_id: str | None = None,
) -> bytes:
    """A signed SOAP 1.2 receipt for ``ref_to_message_id``; ``request_references`` are the
    request's ds:Reference elements (or their canonical bytes, as in VerifiedSignature)."""
    root, header, security, body = envelope_skeleton()
    messaging = ebms.build_messaging(ns.SOAP12, f"_messaging-{uuid.uuid4()}")
    signal = ebms.build_signal(messaging, message_id=message_id or new_message_id(),
                               timestamp=timestamp(now), ref_to_message_id=ref_to_message_id)
    receipt = etree.SubElement(signal, f"{{{ns.EB}}}Receipt")
    nri = etree.SubElement(receipt, f"{{{ns.EBBP}}}NonRepudiationInformation",
                           nsmap={"ebbp": ns.EBBP})
    for ref in request_references:
        element = (
            parse_xml(ref, source="reference").getroot()
            if isinstance(ref, bytes) else copy.deepcopy(ref)
        )
        etree.SubElement(nri, f"{{{ns.EBBP}}}MessagePartNRInformation").append(element)
    header.append(messaging)
    envelope = as_envelope(root, header, security, body, messaging)
    dsig.sign(envelope, key=key, certificate=certificate, targets=[messaging, body],
              attachments=[])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def build_error_signal(error: As4Error, *, ref_to_message_id: str | None,
                       now: datetime) -> bytes:
    """An unsigned ebMS Error signal answering a message we refuse."""
    root, header, security, _body = envelope_skeleton()
    header.remove(security)
    messaging = ebms.build_messaging(ns.SOAP12, f"_messaging-{uuid.uuid4()}")
    signal = ebms.build_signal(messaging, message_id=new_message_id(),
                               timestamp=timestamp(now), ref_to_message_id=ref_to_message_id)
    ebms.build_error(signal, code=error.ebms_code, short=error.ebms_short,
                     description=error.message, ref_to_message_id=ref_to_message_id)
    header.append(messaging)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def nri_references(envelope: Envelope) -> tuple[dsig.Reference, ...]:
    refs = envelope.messaging.iterfind(
        f".//{{{ns.EB}}}Receipt/{{{ns.EBBP}}}NonRepudiationInformation/"
        f"{{{ns.EBBP}}}MessagePartNRInformation/{{{ns.DS}}}Reference"
    )
    return tuple(dsig.reference_of(r) for r in refs)


def check_nri(nri: Sequence[dsig.Reference], signed: Sequence[dsig.Reference]) -> None:
    """Every reference the sender signed is echoed with the same digest, and no other."""
    have = {(r.uri, r.digest_method, r.digest_value) for r in nri}
    want = {(r.uri, r.digest_method, r.digest_value) for r in signed}
    if not want:
        raise As4InvalidReceipt("the request has no signed references to match",
                                where="request")
    if have != want:
        raise As4InvalidReceipt(
            "the receipt's NonRepudiationInformation does not match what was signed",
            where="NonRepudiationInformation",
            details={"missing": len(want - have), "unexpected": len(have - want)},
        )


def verify_receipt(
    data: bytes,
    *,
    content_type: str | None = None,
    trusted: Sequence[x509.Certificate] | None,
    candidates: Sequence[x509.Certificate] = (),
    now: datetime | None,
    signed_references: Sequence[dsig.Reference] | None = None,
    ref_to_message_id: str | None = None,
    policy: ns.AlgorithmPolicy = ns.DEFAULT_POLICY,
) -> VerifiedReceipt:
    """Verify a receipt's signature (against ``trusted``, or the certificate it carries
    when None) and, given the request's ``signed_references``, its NRI. An ebMS Error
    signal raises As4InvalidReceipt naming the partner's error code."""
    mime = parse_message(data, content_type)
    envelope = parse_envelope(mime.soap, source="receipt")
    signal = ebms.parse_signal(envelope.messaging)
    if signal.errors:
        first = signal.errors[0]
        raise As4InvalidReceipt(
            "the partner answered with an ebMS error", where="eb:Error",
            details={"ebms_code": first.code, "short": first.short or ""},
        )
    if not signal.is_receipt:
        raise As4InvalidReceipt("the signal is not a receipt", where="eb:SignalMessage")
    if ref_to_message_id is not None and signal.ref_to_message_id != ref_to_message_id:
        raise As4InvalidReceipt("the receipt answers another message",
                                where="RefToMessageId")
    try:
        signature = dsig.verify(envelope, attachments={}, candidates=candidates,
                                trusted=trusted, now=now, policy=policy)
    except As4FailedAuthentication as exc:
        raise As4InvalidReceipt(f"the receipt's signature does not verify ({exc.message})",
                                where=exc.where or "receipt") from None
    messaging_id = envelope.messaging.get(ns.WSU_ID) or envelope.messaging.get("Id")
    if not messaging_id or messaging_id not in signature.covered_ids:
        raise As4InvalidReceipt("the receipt's eb:Messaging is not signed", where="receipt")
    nri = nri_references(envelope)
    matched = False
    if signed_references is not None:
        check_nri(nri, signed_references)
        matched = True
    return VerifiedReceipt(signal.message_id, signal.ref_to_message_id, signal.timestamp,
                           signature, nri, matched)
