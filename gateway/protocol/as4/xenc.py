"""XML Encryption of AS4 attachments: AES-GCM content encryption (AES-128-GCM by
default), the key transported with RSA-OAEP (``xmlenc11#rsa-oaep`` with SHA-256 and
MGF1-SHA-256 when we send; ``rsa-oaep-mgf1p`` accepted), never eb:Messaging."""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from gateway.errors import (
    As4FailedDecryption,
    As4FeatureNotSupported,
    As4PolicyNoncompliance,
    As4ValueInconsistent,
)

from . import ns
from .mime import Part
from .soap import Envelope

__all__ = ["EncryptionInfo", "decrypt_attachments", "describe_encryption", "encrypt_attachments"]

_GCM_NONCE = 12
_GCM_TAG = 16


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


@dataclass(frozen=True)
class EncryptionInfo:
    """The algorithms a message's encryption uses and the attachments it covers."""

    key_transport: str
    oaep_digest: str
    mgf: str
    content_ciphers: tuple[str, ...]
    cids: tuple[str, ...]


def encrypt_attachments(
    security: etree._Element,
    parts: Sequence[Part],
    recipient: x509.Certificate,
    *,
    content_cipher: str = ns.AES128_GCM,
) -> list[Part]:
    """Encrypt every part for ``recipient``: the EncryptedKey and one EncryptedData per
    part go first in the Security header; returns the parts to send (ciphertext)."""
    public = recipient.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise As4PolicyNoncompliance("the partner's encryption key is not RSA",
                                     where="encryption certificate")
    key = os.urandom(ns.GCM_KEY_BYTES[content_cipher])
    wrapped = public.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                               algorithm=hashes.SHA256(), label=None))
    ek_id = f"EK-{uuid.uuid4()}"
    ek = etree.Element(_q(ns.XENC, "EncryptedKey"), Id=ek_id)
    method = etree.SubElement(ek, _q(ns.XENC, "EncryptionMethod"), Algorithm=ns.RSA_OAEP)
    etree.SubElement(method, _q(ns.DS, "DigestMethod"), Algorithm=ns.SHA256)
    etree.SubElement(method, _q(ns.XENC11, "MGF"), Algorithm=ns.MGF1_SHA256)
    key_info = etree.SubElement(ek, _q(ns.DS, "KeyInfo"))
    str_el = etree.SubElement(key_info, _q(ns.WSSE, "SecurityTokenReference"))
    issuer_serial = etree.SubElement(etree.SubElement(str_el, _q(ns.DS, "X509Data")),
                                     _q(ns.DS, "X509IssuerSerial"))
    etree.SubElement(issuer_serial, _q(ns.DS, "X509IssuerName")).text = (
        recipient.issuer.rfc4514_string()
    )
    etree.SubElement(issuer_serial, _q(ns.DS, "X509SerialNumber")).text = str(
        recipient.serial_number
    )
    cipher_data = etree.SubElement(ek, _q(ns.XENC, "CipherData"))
    etree.SubElement(cipher_data, _q(ns.XENC, "CipherValue")).text = (
        base64.b64encode(wrapped).decode()
    )
    reference_list = etree.SubElement(ek, _q(ns.XENC, "ReferenceList"))
    out: list[Part] = []
    data_elements: list[etree._Element] = []
    for part in parts:
        ed_id = f"ED-{uuid.uuid4()}"
        etree.SubElement(reference_list, _q(ns.XENC, "DataReference"), URI=f"#{ed_id}")
        ed = etree.Element(_q(ns.XENC, "EncryptedData"), Id=ed_id, MimeType=part.media_type,
                           Type=ns.ATTACHMENT_CONTENT_ONLY)
        etree.SubElement(ed, _q(ns.XENC, "EncryptionMethod"), Algorithm=content_cipher)
        ki = etree.SubElement(ed, _q(ns.DS, "KeyInfo"))
        ref_str = etree.SubElement(ki, _q(ns.WSSE, "SecurityTokenReference"),
                                   {_q(ns.WSSE11, "TokenType"): ns.ENCRYPTED_KEY_TOKEN})
        etree.SubElement(ref_str, _q(ns.WSSE, "Reference"), URI=f"#{ek_id}")
        cd = etree.SubElement(ed, _q(ns.XENC, "CipherData"))
        cref = etree.SubElement(cd, _q(ns.XENC, "CipherReference"), URI=f"cid:{part.content_id}")
        transforms = etree.SubElement(cref, _q(ns.XENC, "Transforms"))
        etree.SubElement(transforms, _q(ns.DS, "Transform"), Algorithm=ns.ATTACHMENT_CIPHERTEXT)
        data_elements.append(ed)
        nonce = os.urandom(_GCM_NONCE)
        sealed = nonce + AESGCM(key).encrypt(nonce, part.content, None)
        headers = {k: v for k, v in part.headers.items() if k != "content-type"}
        headers["content-type"] = "application/octet-stream"
        out.append(Part(headers, sealed))
    for index, element in enumerate([ek, *data_elements]):
        security.insert(index, element)
    return out


def _b64(text: str | None, where: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise As4FailedDecryption("a base64 value is malformed", where=where) from None


def _oaep(method: etree._Element, policy: ns.AlgorithmPolicy) -> tuple[padding.OAEP, str, str]:
    algorithm = method.get("Algorithm") or ""
    if not policy.key_transport_allowed(algorithm):
        raise As4PolicyNoncompliance("key transport algorithm not allowed",
                                     where="EncryptedKey/EncryptionMethod",
                                     details={"algorithm": algorithm})
    digest_el = method.find(_q(ns.DS, "DigestMethod"))
    digest_uri = digest_el.get("Algorithm") or ns.SHA1 if digest_el is not None else ns.SHA1
    if not policy.oaep_digest_allowed(digest_uri):
        raise As4PolicyNoncompliance("OAEP digest not allowed", where="EncryptedKey",
                                     details={"algorithm": digest_uri})
    mgf_uri = ns.MGF1_SHA1
    if algorithm == ns.RSA_OAEP:
        mgf_el = method.find(_q(ns.XENC11, "MGF"))
        if mgf_el is not None:
            mgf_uri = mgf_el.get("Algorithm") or ns.MGF1_SHA1
    if mgf_uri not in ns.MGFS:
        raise As4PolicyNoncompliance("OAEP mask generation function not allowed",
                                     where="EncryptedKey", details={"algorithm": mgf_uri})
    label_el = method.find(_q(ns.XENC, "OAEPparams"))
    label = _b64(label_el.text, "OAEPparams") if label_el is not None else None
    oaep = padding.OAEP(mgf=padding.MGF1(ns.MGFS[mgf_uri]()),
                        algorithm=ns.DIGESTS[digest_uri](), label=label or None)
    return oaep, digest_uri, mgf_uri


def _encrypted_keys(envelope: Envelope) -> list[etree._Element]:
    if envelope.security is None:
        return []
    return envelope.security.findall(_q(ns.XENC, "EncryptedKey"))


def _data_for_key(envelope: Envelope, ek: etree._Element) -> list[etree._Element]:
    out: list[etree._Element] = []
    for ref in ek.iterfind(f"{_q(ns.XENC, 'ReferenceList')}/{_q(ns.XENC, 'DataReference')}"):
        uri = ref.get("URI") or ""
        if not uri.startswith("#"):
            raise As4FailedDecryption("a DataReference is not local", where="ReferenceList")
        element = envelope.ids.get(uri[1:])
        if element is None or element.tag != _q(ns.XENC, "EncryptedData"):
            raise As4FailedDecryption("a DataReference names no EncryptedData",
                                      where="ReferenceList")
        out.append(element)
    ek_id = ek.get("Id")
    if envelope.security is not None and ek_id:
        for ed in envelope.security.iter(_q(ns.XENC, "EncryptedData")):
            for ref in ed.iterfind(f".//{_q(ns.WSSE, 'Reference')}"):
                if ref.get("URI") == f"#{ek_id}" and ed not in out:
                    out.append(ed)
    return out


def _cipher_cid(ed: etree._Element) -> str:
    if ed.get("Type") != ns.ATTACHMENT_CONTENT_ONLY:
        raise As4FeatureNotSupported("only Attachment-Content-Only encryption is supported",
                                     where="EncryptedData", details={"type": ed.get("Type")})
    cref = ed.find(f"{_q(ns.XENC, 'CipherData')}/{_q(ns.XENC, 'CipherReference')}")
    uri = cref.get("URI") if cref is not None else None
    if not uri or not uri.startswith("cid:"):
        raise As4FeatureNotSupported("only encrypted attachments are supported (no XML)",
                                     where="EncryptedData")
    return uri[4:]


def describe_encryption(envelope: Envelope) -> EncryptionInfo | None:
    """The algorithms and attachments of a message's encryption, without decrypting."""
    keys = _encrypted_keys(envelope)
    if not keys:
        return None
    ek = keys[0]
    method = ek.find(_q(ns.XENC, "EncryptionMethod"))
    algorithm = method.get("Algorithm", "") if method is not None else ""
    digest_el = method.find(_q(ns.DS, "DigestMethod")) if method is not None else None
    mgf_el = method.find(_q(ns.XENC11, "MGF")) if method is not None else None
    data = [ed for k in keys for ed in _data_for_key(envelope, k)]
    ciphers = []
    for ed in data:
        m = ed.find(_q(ns.XENC, "EncryptionMethod"))
        ciphers.append(m.get("Algorithm", "") if m is not None else "")
    cids = []
    for ed in data:
        cref = ed.find(f"{_q(ns.XENC, 'CipherData')}/{_q(ns.XENC, 'CipherReference')}")
        cids.append((cref.get("URI") or "")[4:] if cref is not None else "")
    return EncryptionInfo(
        key_transport=algorithm,
        oaep_digest=digest_el.get("Algorithm", ns.SHA1) if digest_el is not None else ns.SHA1,
        mgf=mgf_el.get("Algorithm", ns.MGF1_SHA1) if mgf_el is not None else ns.MGF1_SHA1,
        content_ciphers=tuple(ciphers),
        cids=tuple(cids),
    )


def unwrap_key(ek: etree._Element, key: rsa.RSAPrivateKey,
               policy: ns.AlgorithmPolicy = ns.DEFAULT_POLICY) -> bytes:
    """The content key an EncryptedKey carries, unwrapped with our private key."""
    method = ek.find(_q(ns.XENC, "EncryptionMethod"))
    if method is None:
        raise As4FailedDecryption("EncryptedKey has no EncryptionMethod", where="EncryptedKey")
    oaep, _, _ = _oaep(method, policy)
    wrapped = _b64(ek.findtext(f"{_q(ns.XENC, 'CipherData')}/{_q(ns.XENC, 'CipherValue')}"),
                   "EncryptedKey/CipherValue")
    try:
        return key.decrypt(wrapped, oaep)
    except ValueError:
        raise As4FailedDecryption("the content key does not decrypt with our key",
                                  where="EncryptedKey") from None


def _decrypt_content(algorithm: str, key: bytes, data: bytes, where: str,
                     policy: ns.AlgorithmPolicy) -> bytes:
    if not policy.content_cipher_allowed(algorithm):
        raise As4PolicyNoncompliance("content encryption algorithm not allowed", where=where,
                                     details={"algorithm": algorithm})
    if algorithm in ns.GCM_KEY_BYTES:
        if len(key) != ns.GCM_KEY_BYTES[algorithm] or len(data) < _GCM_NONCE + _GCM_TAG:
            raise As4FailedDecryption("ciphertext or key has the wrong length", where=where)
        try:
            return AESGCM(key).decrypt(data[:_GCM_NONCE], data[_GCM_NONCE:], None)
        except InvalidTag:
            raise As4FailedDecryption("an attachment fails its GCM authentication",
                                      where=where) from None
    if len(key) != ns.CBC_KEY_BYTES[algorithm] or len(data) < 32 or len(data) % 16:
        raise As4FailedDecryption("ciphertext or key has the wrong length", where=where)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    padded = decryptor.update(data[16:]) + decryptor.finalize()
    try:
        unpadder = sym_padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # XML Encryption's padding: the last byte is the pad length, the rest arbitrary
        pad = padded[-1]
        if not 1 <= pad <= 16:
            raise As4FailedDecryption("bad CBC padding", where=where) from None
        return padded[:-pad]


def decrypt_attachments(
    envelope: Envelope,
    attachments: Sequence[Part],
    key: rsa.RSAPrivateKey,
    *,
    policy: ns.AlgorithmPolicy = ns.DEFAULT_POLICY,
) -> tuple[list[Part], EncryptionInfo | None]:
    """The attachments with every encrypted one replaced by its plaintext (Content-Type
    from EncryptedData/@MimeType). Every EncryptedData must decrypt, or nothing does."""
    info = describe_encryption(envelope)
    by_cid = {p.content_id: p for p in attachments}
    plain: dict[str, Part] = {}
    for ek in _encrypted_keys(envelope):
        content_key = unwrap_key(ek, key, policy)
        for ed in _data_for_key(envelope, ek):
            cid = _cipher_cid(ed)
            part = by_cid.get(cid)
            if part is None:
                raise As4ValueInconsistent("an encrypted attachment is missing",
                                           where=f"cid:{cid}")
            method = ed.find(_q(ns.XENC, "EncryptionMethod"))
            algorithm = method.get("Algorithm", "") if method is not None else ""
            content = _decrypt_content(algorithm, content_key, part.content, f"cid:{cid}",
                                       policy)
            headers = {k: v for k, v in part.headers.items() if k != "content-type"}
            headers["content-type"] = ed.get("MimeType") or "application/octet-stream"
            plain[cid] = Part(headers, content)
    if envelope.security is not None:
        for ed in envelope.security.iter(_q(ns.XENC, "EncryptedData")):
            cref = ed.find(f"{_q(ns.XENC, 'CipherData')}/{_q(ns.XENC, 'CipherReference')}")
            uri = (cref.get("URI") or "") if cref is not None else ""
            if uri[4:] not in plain:
                raise As4FailedDecryption("an EncryptedData has no key we can use",
                                          where="EncryptedData")
    return [plain.get(p.content_id or "", p) for p in attachments], info
