"""A whole AS4 UserMessage: compress, sign, then encrypt to send; parse, decrypt, verify,
check and decompress to receive. Pure: keys, certificates, bytes and the time come in."""

from __future__ import annotations

import gzip
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from gateway.errors import (
    As4DecompressionFailure,
    As4FailedAuthentication,
    As4FailedDecryption,
    As4PayloadError,
)

from . import dsig, ebms, ns, xenc
from .mime import Message, Part, build_multipart, parse_message
from .soap import Envelope, parse_envelope

__all__ = [
    "OpenedMessage",
    "OutgoingMessage",
    "Payload",
    "build_user_message",
    "compress",
    "decompress",
    "new_message_id",
    "open_user_message",
    "timestamp",
]

MAX_PAYLOAD_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Payload:
    """One payload: its content (decompressed), MIME type and Content-ID."""

    content: bytes
    mime_type: str
    cid: str
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutgoingMessage:
    """What to POST (``content_type``, ``body``) and what was signed, to check the
    receipt's NonRepudiationInformation against."""

    message_id: str
    content_type: str
    body: bytes
    signed_references: tuple[dsig.Reference, ...]


@dataclass(frozen=True)
class OpenedMessage:
    """A message that verified, decrypted and decompressed: act only on this."""

    user_message: ebms.UserMessage
    payloads: tuple[Payload, ...]
    signature: dsig.VerifiedSignature
    encryption: xenc.EncryptionInfo | None


def new_message_id(domain: str = "cse-gateway") -> str:
    return f"{uuid.uuid4()}@{domain}"


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def compress(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def decompress(data: bytes, *, where: str, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """gunzip with a size limit (a gzip bomb is refused, not expanded)."""
    if data[:2] != b"\x1f\x8b":
        raise As4DecompressionFailure("the part is not gzip data", where=where)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise As4DecompressionFailure("the part does not decompress", where=where) from None
    if len(out) > limit:
        raise As4DecompressionFailure("the part decompresses to more than the limit",
                                      where=where, details={"limit": limit})
    if not inflater.eof or inflater.unused_data:
        raise As4DecompressionFailure("the gzip data is truncated or has trailing bytes",
                                      where=where)
    return out


def envelope_skeleton(soap_ns: str = ns.SOAP12) -> tuple[etree._Element, etree._Element,
                                                          etree._Element, etree._Element]:
    root = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"env": soap_ns})
    header = etree.SubElement(root, f"{{{soap_ns}}}Header")
    security = etree.SubElement(
        header, f"{{{ns.WSSE}}}Security", {f"{{{soap_ns}}}mustUnderstand": "true"},
        nsmap={"wsse": ns.WSSE, "wsu": ns.WSU, "ds": ns.DS, "xenc": ns.XENC,
               "xenc11": ns.XENC11, "wsse11": ns.WSSE11, "ec": ns.EC},
    )
    body = etree.SubElement(root, f"{{{soap_ns}}}Body", {ns.WSU_ID: f"_body-{uuid.uuid4()}"},
                            nsmap={"wsu": ns.WSU})
    return root, header, security, body


def as_envelope(root: etree._Element, header: etree._Element, security: etree._Element,
                 body: etree._Element, messaging: etree._Element) -> Envelope:
    return Envelope(root=root, soap_ns=ns.SOAP12, header=header, body=body,
                    messaging=messaging, security=security, ids={})


def build_user_message(
    message: ebms.UserMessage,
    payloads: Sequence[tuple[bytes, str]],
    *,
    sign_key: rsa.RSAPrivateKey,
    sign_cert: x509.Certificate,
    recipient_cert: x509.Certificate | None,
    compress_payloads: bool = True,
) -> OutgoingMessage:
    """Build a signed (and, with ``recipient_cert``, encrypted) SOAP 1.2 UserMessage with
    one MIME part per payload ``(content, mime_type)``. ``message.parts`` is filled in."""
    parts: list[Part] = []
    part_infos: list[ebms.PartInfo] = []
    for index, (content, mime_type) in enumerate(payloads):
        cid = f"part{index + 1}-{message.message_id}"
        props: tuple[tuple[str, str], ...]
        if compress_payloads:
            parts.append(Part({"content-type": ns.GZIP, "content-id": f"<{cid}>"},
                              compress(content)))
            props = (("MimeType", mime_type), ("CompressionType", ns.GZIP))
        else:
            parts.append(Part({"content-type": mime_type, "content-id": f"<{cid}>"}, content))
            props = (("MimeType", mime_type),)
        part_infos.append(ebms.PartInfo(f"cid:{cid}", props))
    message = ebms.UserMessage(**{**message.__dict__, "parts": tuple(part_infos)})
    root, header, security, body = envelope_skeleton()
    messaging = ebms.build_messaging(ns.SOAP12, f"_messaging-{uuid.uuid4()}")
    ebms.build_user_message(messaging, message)
    header.append(messaging)
    envelope = as_envelope(root, header, security, body, messaging)
    signature = dsig.sign(envelope, key=sign_key, certificate=sign_cert,
                          targets=[messaging, body], attachments=parts)
    references = _references(signature)
    if recipient_cert is not None:
        parts = xenc.encrypt_attachments(security, parts, recipient_cert)
    soap = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    content_type, data = build_multipart(soap, parts,
                                         soap_content_id=f"soap-{message.message_id}")
    return OutgoingMessage(message.message_id, content_type, data, references)


def _references(signature: etree._Element) -> tuple[dsig.Reference, ...]:
    return dsig.signed_references(signature)


def _payloads(envelope: Envelope, message: ebms.UserMessage, parts: Sequence[Part],
              signature: dsig.VerifiedSignature) -> tuple[Payload, ...]:
    by_cid = {p.content_id: p for p in parts}
    referenced = {p.cid for p in message.parts if p.cid}
    extra = set(by_cid) - referenced
    if extra:
        raise As4PayloadError("an attachment is not referenced by any PartInfo",
                              where="PayloadInfo", details={"count": len(extra)})
    out: list[Payload] = []
    for index, info in enumerate(message.parts):
        where = f"PartInfo {index + 1}"
        if info.cid is None:
            # the payload is the SOAP Body's content, covered by the Body's signature
            children = [c for c in envelope.body if isinstance(c.tag, str)]
            if len(children) != 1:
                raise As4PayloadError("the Body payload is missing", where=where)
            content = etree.tostring(children[0], encoding="UTF-8")
            out.append(Payload(content, "application/xml", "", info.properties))
            continue
        part = by_cid.get(info.cid)
        if part is None:
            raise As4PayloadError("a payload's MIME part is missing", where=where)
        if info.cid not in signature.covered_cids:
            raise As4FailedAuthentication("a payload is not covered by the signature",
                                          where=where)
        content = part.content
        if info.prop("CompressionType") == ns.GZIP:
            content = decompress(content, where=where)
        mime_type = info.prop("MimeType") or part.media_type
        out.append(Payload(content, mime_type, info.cid, info.properties))
    return tuple(out)


def _check_coverage(envelope: Envelope, signature: dsig.VerifiedSignature) -> None:
    """The elements processed are the ones signed: eb:Messaging and the Body, by identity."""
    for element, what in ((envelope.messaging, "eb:Messaging"), (envelope.body, "Body")):
        element_id = element.get(ns.WSU_ID) or element.get("Id") or element.get("id")
        if not element_id or element_id not in signature.covered_ids:
            raise As4FailedAuthentication(f"{what} is not covered by the signature",
                                          where=what)
        if envelope.ids.get(element_id) is not element:  # pragma: no cover - ids unique
            raise As4FailedAuthentication(f"the signed {what} is not the one processed",
                                          where=what)


def open_user_message(
    data: bytes,
    *,
    content_type: str | None = None,
    decrypt_key: rsa.RSAPrivateKey | None,
    trusted: Sequence[x509.Certificate] | None,
    candidates: Sequence[x509.Certificate] = (),
    now: datetime | None,
    policy: ns.AlgorithmPolicy = ns.DEFAULT_POLICY,
    require_encryption: bool = False,
) -> OpenedMessage:
    """Parse, check the profile, decrypt, verify, decompress. Raises an As4 error (with the
    ebMS code to answer) for anything wrong; never returns a partly checked message."""
    mime = parse_message(data, content_type)
    return open_parsed(mime, decrypt_key=decrypt_key, trusted=trusted, candidates=candidates,
                       now=now, policy=policy, require_encryption=require_encryption)


def open_parsed(
    mime: Message,
    *,
    decrypt_key: rsa.RSAPrivateKey | None,
    trusted: Sequence[x509.Certificate] | None,
    candidates: Sequence[x509.Certificate] = (),
    now: datetime | None,
    policy: ns.AlgorithmPolicy = ns.DEFAULT_POLICY,
    require_encryption: bool = False,
) -> OpenedMessage:
    envelope = parse_envelope(mime.soap)
    message = ebms.parse_user_message(envelope.messaging)
    if envelope.security is None:
        raise As4FailedAuthentication("the message is not signed", where="Header")
    encryption = xenc.describe_encryption(envelope)
    parts: Sequence[Part] = mime.attachments
    if encryption is not None:
        if decrypt_key is None:
            raise As4FailedDecryption("the message is encrypted and no key was given",
                                      where="EncryptedKey")
        parts, encryption = xenc.decrypt_attachments(envelope, parts, decrypt_key,
                                                     policy=policy)
    elif require_encryption and parts:
        raise As4FailedDecryption("the payloads are not encrypted", where="Security")
    signature = dsig.verify(envelope, attachments={p.content_id or "": p for p in parts},
                            candidates=[*candidates, *(trusted or ())], trusted=trusted,
                            now=now, policy=policy)
    _check_coverage(envelope, signature)
    payloads = _payloads(envelope, message, parts, signature)
    return OpenedMessage(message, payloads, signature, encryption)
