"""Signed receipts (non-repudiation of receipt).

A receipt answers every envelope received: ``Receipt`` XML (namespace
``urn:cse-gateway:receipt:1``) signed as CMS ``SignedData`` (not encrypted: it holds no
personal data) and carried in an envelope with ``Service`` = ``receipt``. Its
``EnvelopeDigest`` is the SHA-256 of the exact envelope bytes received, so the sender can
prove which bytes the partner acknowledged.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from lxml import etree

from gateway.documents.schemas import default_registry
from gateway.documents.xmlsafe import parse_xml, tostring
from gateway.errors import (
    EnvelopeInvalid,
    GatewayError,
    ReceiptInvalid,
    SchemaInvalid,
    UsageError,
    XmlError,
)
from gateway.protocol import canonical, certs, cms
from gateway.protocol.envelope import (
    DEFAULT_MAX_ENVELOPE_BYTES,
    Header,
    ParsedEnvelope,
    format_time,
    parse_envelope,
    parse_time,
    write_envelope,
)
from gateway.protocol.identity import NodeIdentity, PartyDirectory
from gateway.protocol.party import Party, PartyInvalid

__all__ = ["NS", "SignerChecks", "VerifiedReceipt", "build_receipt", "verify_receipt"]

NS = "urn:cse-gateway:receipt:1"
Status = Literal["Delivered", "Rejected"]
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose signature, signer and digest were checked."""

    receipt_id: str
    ref_to_message_id: str | None
    from_party: Party
    to_party: Party | None
    status: str
    errors: tuple[tuple[str, str], ...]
    received: datetime
    envelope_digest: str
    signer_fingerprint: str
    raw: bytes


#: Text written into a receipt as it stands: what lxml would write unchanged (no markup
#: characters, no carriage returns, nothing outside ASCII).
_PLAIN = re.compile(r"[A-Za-z0-9 .,:;_/()'+-]*")


def _receipt_xml(
    *, receipt_id: str, ref: str | None, from_party: Party, to_party: Party | None,
    received: datetime, status: str, errors: Sequence[tuple[str, str]], digest: str,
) -> bytes:
    """The ``Receipt`` document. When every value is plain text (always, for the values
    this gateway writes) it is written directly, the same bytes lxml serialises (a test
    compares them); anything else is built through lxml, which escapes it."""
    texts = [receipt_id, ref or "", str(from_party), str(to_party or ""), status, digest,
             *(part for error in errors for part in error)]
    if all(_PLAIN.fullmatch(t) for t in texts):
        parts = ["<?xml version='1.0' encoding='UTF-8'?>\n",
                 f'<Receipt xmlns="{NS}" version="1"><ReceiptId>{receipt_id}</ReceiptId>']
        if ref is not None:
            parts.append(f"<RefToMessageId>{ref}</RefToMessageId>")
        parts.append(f"<From>{from_party}</From>")
        if to_party is not None:
            parts.append(f"<To>{to_party}</To>")
        parts.append(f"<Received>{format_time(received)}</Received><Status>{status}</Status>")
        for code, text in errors:
            parts.append(f"<Error><Code>{code}</Code>"
                         + (f"<Text>{text[:1000]}</Text>" if text else "") + "</Error>")
        parts.append(f'<EnvelopeDigest algorithm="sha-256">{digest}</EnvelopeDigest>'
                     "</Receipt>")
        return "".join(parts).encode("ascii")
    return _receipt_xml_built(receipt_id=receipt_id, ref=ref, from_party=from_party,
                              to_party=to_party, received=received, status=status,
                              errors=errors, digest=digest)


def _receipt_xml_built(
    *, receipt_id: str, ref: str | None, from_party: Party, to_party: Party | None,
    received: datetime, status: str, errors: Sequence[tuple[str, str]], digest: str,
) -> bytes:
    def sub(parent: etree._Element, name: str, text: str) -> etree._Element:
        child = etree.SubElement(parent, f"{{{NS}}}{name}")
        child.text = text
        return child

    root = etree.Element(f"{{{NS}}}Receipt", nsmap={None: NS},  # type: ignore[dict-item]
                         version="1")
    sub(root, "ReceiptId", receipt_id)
    if ref is not None:
        sub(root, "RefToMessageId", ref)
    sub(root, "From", str(from_party))
    if to_party is not None:
        sub(root, "To", str(to_party))
    sub(root, "Received", format_time(received))
    sub(root, "Status", status)
    for code, text in errors:
        error = etree.SubElement(root, f"{{{NS}}}Error")
        sub(error, "Code", code)
        if text:
            sub(error, "Text", text[:1000])
    sub(root, "EnvelopeDigest", digest).set("algorithm", "sha-256")
    return tostring(root)


def build_receipt(
    *,
    for_header: Header | None,
    envelope_digest: str,
    status: Status,
    errors: Sequence[tuple[str, str]],
    received: datetime,
    node: NodeIdentity,
    now: datetime,
    to_party: Party | None = None,
    receipt_id: str | None = None,
) -> bytes:
    """The receipt envelope for an envelope received at ``received`` whose bytes hash to
    ``envelope_digest``. ``for_header`` is None when that envelope's header could not be
    read: then ``to_party`` (who sent it, e.g. known from the transport) addresses the
    receipt envelope and ``RefToMessageId`` is left out. ``errors`` are (stable code,
    text without case data)."""
    if status not in ("Delivered", "Rejected"):
        raise UsageError("receipt status must be Delivered or Rejected")
    if status == "Delivered" and errors:
        raise UsageError("a Delivered receipt carries no errors")
    if status == "Rejected" and not errors:
        raise UsageError("a Rejected receipt needs at least one error code")
    for code, _text in errors:
        if not _CODE.fullmatch(code):
            raise UsageError("receipt error codes are stable code names, e.g. "
                             "SignatureInvalid")
    if not _DIGEST.fullmatch(envelope_digest):
        raise UsageError("envelope_digest must be lower-case SHA-256 hex")
    recipient = for_header.from_party if for_header is not None else to_party
    if recipient is None:
        raise UsageError("a receipt for an unreadable envelope needs to_party")
    rid = str(uuid.UUID(receipt_id)) if receipt_id else str(uuid.uuid4())
    ref = for_header.message_id if for_header is not None else None
    document = _receipt_xml(
        receipt_id=rid, ref=ref, from_party=node.party, to_party=recipient,
        received=received, status=status, errors=errors, digest=envelope_digest)
    header = Header(
        message_id=rid, from_party=node.party, to_party=recipient, service="receipt",
        action="Receipt", created=now,
        conversation_id=for_header.conversation_id if for_header else None,
        ref_to_message_id=ref,
    )
    signed = cms.sign(cms.BytesContent(document), key=node.signing_key,
                      cert=node.signing_cert, signing_time=now, chain=node.chain)
    out = io.BytesIO()
    write_envelope(header, signed.chunks(), out)
    return out.getvalue()


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(text: str) -> str:
    """``str(uuid.UUID(text))``: ``text`` itself when it is already that form."""
    return text if _CANONICAL_UUID.fullmatch(text) else str(uuid.UUID(text))


def _fields(document: bytes) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """The receipt's values by element name and its errors. A receipt in the exact form
    :func:`_receipt_xml` writes is read without a tree (:mod:`gateway.protocol.canonical`);
    any other goes through the parse and the schema check (:func:`_fields_full`)."""
    fast = canonical.receipt_values(document) if type(document) is bytes else None
    return fast if fast is not None else _fields_full(document)


def _fields_full(document: bytes) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    try:
        tree = parse_xml(document, source="Receipt")
        default_registry().check(tree, source="Receipt")
    except (XmlError, SchemaInvalid) as exc:
        raise ReceiptInvalid(f"the signed content is not a valid Receipt ({exc.code})") \
            from None
    root = tree.getroot()
    if root.tag != f"{{{NS}}}Receipt":
        raise ReceiptInvalid("the signed content is not a Receipt")
    out: dict[str, str] = {}
    errors: list[tuple[str, str]] = []
    for child in root:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        if name == "Error":
            code = child.findtext(f"{{{NS}}}Code") or ""
            errors.append((code.strip(), (child.findtext(f"{{{NS}}}Text") or "").strip()))
        else:
            out[name] = (child.text or "").strip()
    return out, tuple(errors)


class SignerChecks:
    """What :func:`verify_receipt` checks about a receipt's signer that does not depend
    on the time, remembered per signer for one trust store and one party directory: its
    path to one of ``trust`` (each link's signature, the issuers' CA constraints, critical
    extensions, the signer's key usage and key) and its registration for the party
    expected. A partner signs every receipt with the same certificate, and these checks
    cost more than the signature itself.

    Keyed by the party expected and the DER that determines the signer and the
    certificates sent with it (:attr:`gateway.protocol.cms.VerifiedSignature.carried`):
    another certificate, a re-issued one, another chain is another key. A hit still
    checks both instants (the signing time and now) against the validity of every
    certificate on the path, so expiry is never remembered; anything else (a miss, an
    instant outside, another trust store or directory object than this one's) takes the
    full checks, which raise what they raise. Only successes are remembered. Use it only
    with a directory whose answers do not change (a snapshot, not a key directory read
    from disk on every call): the daemon keeps one per snapshot of its key directory
    (:class:`gateway.node.nodekeys.NodeKeys`), so reloading the keys (a registration
    removed, a trust anchor replaced) starts afresh."""

    KEPT = 256

    def __init__(self, trust: Sequence[x509.Certificate], directory: PartyDirectory | None
                 ) -> None:
        self.trust = trust
        self.directory = directory
        self._passed: dict[tuple[Party, bytes, bytes], tuple[str, datetime, datetime]] = {}

    def key(self, expected_signer: Party, verified: cms.VerifiedSignature,
             trust: Sequence[x509.Certificate], directory: PartyDirectory | None
             ) -> tuple[Party, bytes, bytes] | None:
        if verified.carried is None or trust is not self.trust \
                or directory is not self.directory:
            return None
        return (expected_signer, *verified.carried)

    def known(self, key: tuple[Party, bytes, bytes] | None,
              at: Sequence[datetime]) -> str | None:
        """The signer's fingerprint when it passed before and every certificate on its
        path is valid at each of ``at``; else None."""
        passed = self._passed.get(key) if key is not None else None
        if passed is None:
            return None
        fingerprint, start, end = passed
        return fingerprint if all(start <= t <= end for t in at) else None

    def remember(self, key: tuple[Party, bytes, bytes] | None, fingerprint: str,
                 path: Sequence[x509.Certificate]) -> None:
        if key is None:
            return
        if len(self._passed) >= self.KEPT:
            self._passed.clear()
        self._passed[key] = (fingerprint, max(c.not_valid_before_utc for c in path),
                             min(c.not_valid_after_utc for c in path))


def verify_receipt(
    data: bytes,
    *,
    expected_signer: Party,
    sent_envelope_digest: str,
    trust: Sequence[x509.Certificate],
    directory: PartyDirectory | None,
    now: datetime,
    max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
    parsed: ParsedEnvelope | None = None,
    signers: SignerChecks | None = None,
) -> VerifiedReceipt:
    """Check a receipt envelope: schema, signature, the signer's chain (at the signing time
    and now) and registration for ``expected_signer`` (the party the message was sent to),
    that every header field agrees with the signed receipt, and that ``EnvelopeDigest`` is
    the digest of what we sent. Every failure is :class:`ReceiptInvalid` (the underlying
    code is in ``details["cause"]``). ``parsed``: what :func:`parse_envelope` already
    made of ``data`` (the daemon parses an arriving envelope to route it), so it is not
    parsed and schema-checked a second time. ``signers``: the signer checks that passed
    before for this ``trust`` and ``directory`` (:class:`SignerChecks`; same verdicts)."""
    try:
        if parsed is None:
            parsed = parse_envelope(data, max_bytes=max_bytes, source="receipt")
        return _verify(parsed, data, expected_signer=expected_signer,
                       sent_envelope_digest=sent_envelope_digest, trust=trust,
                       directory=directory, now=now, signers=signers)
    except ReceiptInvalid:
        raise
    except GatewayError as exc:
        raise ReceiptInvalid(f"{exc.code}: {exc.message}", where=exc.where,
                             details={"cause": exc.code, **exc.details}) from None


def _verify(
    parsed: ParsedEnvelope, data: bytes, *, expected_signer: Party,
    sent_envelope_digest: str, trust: Sequence[x509.Certificate],
    directory: PartyDirectory | None, now: datetime, signers: SignerChecks | None = None,
) -> VerifiedReceipt:
    header = parsed.header
    if header.service != "receipt":
        raise ReceiptInvalid("the envelope is not a receipt (Service is not receipt)")
    if header.from_party != expected_signer:
        raise ReceiptInvalid(f"the receipt comes from {header.from_party}, expected "
                             f"{expected_signer}")
    registered = list(directory.certificates_for(expected_signer)) if directory else []
    verified = cms.verify(parsed.payload_der, extra_certificates=registered)
    at = (verified.signing_time, now)
    key = signers.key(expected_signer, verified, trust, directory) if signers else None
    fingerprint = signers.known(key, at) if signers is not None else None
    if fingerprint is None:
        path = certs.validate_chain(verified.signer, trust=trust,
                                    intermediates=verified.certificates, at=at, usage="sign")
        fingerprint = certs.fingerprint(verified.signer)
        if directory is not None and \
                fingerprint not in {certs.fingerprint(c) for c in registered}:
            raise ReceiptInvalid(f"the receipt signer {fingerprint[:16]} is not registered "
                                 f"for {expected_signer}",
                                 details={"cause": "SignerNotRegistered"})
        if signers is not None:
            signers.remember(key, fingerprint, path)
    values, errors = _fields(verified.content)
    try:
        from_party = Party.parse(values["From"])
        to_party = Party.parse(values["To"]) if "To" in values else None
        received = parse_time((values["Received"]), where="Receipt/Received")
    except (PartyInvalid, EnvelopeInvalid) as exc:
        raise ReceiptInvalid(f"bad receipt field: {exc.message}") from None
    receipt_id = _uuid(values["ReceiptId"])
    ref = _uuid(values["RefToMessageId"]) if "RefToMessageId" in values else None
    mismatched = [name for name, ok in (
        ("ReceiptId", receipt_id == header.message_id),
        ("RefToMessageId", ref == header.ref_to_message_id),
        ("From", from_party == header.from_party),
        ("To", to_party is None or to_party == header.to_party),
    ) if not ok]
    if mismatched:
        raise ReceiptInvalid("the receipt envelope header differs from the signed receipt "
                             "in: " + ", ".join(mismatched))
    digest = (values["EnvelopeDigest"])
    if digest != sent_envelope_digest.lower():
        raise ReceiptInvalid("the receipt acknowledges different envelope bytes "
                             "(EnvelopeDigest does not match what was sent)",
                             details={"digest": digest})
    return VerifiedReceipt(
        receipt_id=receipt_id, ref_to_message_id=ref, from_party=from_party,
        to_party=to_party, status=(values["Status"]), errors=errors, received=received,
        envelope_digest=digest, signer_fingerprint=fingerprint, raw=data)
