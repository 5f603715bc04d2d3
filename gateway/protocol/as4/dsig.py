"""WS-Security 1.1.1 XML signatures for AS4: exclusive C14N, the SwA Attachment-Content-
Signature-Transform, RSA PKCS#1 v1.5 with SHA-256 (SHA-384/512 accepted), and the signing
token as a BinarySecurityToken (IssuerSerial and Subject Key Identifier resolved too)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from gateway.documents.xmlsafe import parse_xml
from gateway.errors import (
    As4FailedAuthentication,
    As4PolicyNoncompliance,
    As4ValueInconsistent,
    XmlError,
)
from gateway.protocol import certs

from . import ns
from .mime import Part
from .soap import Envelope

__all__ = [
    "Reference",
    "VerifiedSignature",
    "attachment_octets",
    "c14n",
    "digest",
    "sign",
    "verify",
]

_XML_MEDIA = ("text/xml", "application/xml")


@dataclass(frozen=True)
class Reference:
    """One ds:Reference of a SignedInfo: what was signed and its digest."""

    uri: str
    digest_method: str
    digest_value: bytes
    transforms: tuple[str, ...]


@dataclass(frozen=True)
class VerifiedSignature:
    """What a verified signature covers. ``references`` are in SignedInfo order;
    ``reference_xml`` are the ds:Reference elements, canonical, for a receipt's NRI."""

    signature_method: str
    certificate: x509.Certificate
    references: tuple[Reference, ...]
    reference_xml: tuple[bytes, ...]
    covered_ids: frozenset[str]
    covered_cids: frozenset[str]
    trusted: bool


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def c14n(element: etree._Element, prefixes: Sequence[str] | None = None) -> bytes:
    """Exclusive XML canonicalisation without comments (``#default`` is the default ns)."""
    inclusive = [("" if p == "#default" else p) for p in prefixes] if prefixes else None
    return etree.tostring(
        element, method="c14n", exclusive=True, with_comments=False,
        inclusive_ns_prefixes=inclusive,
    )


def digest(algorithm: str, data: bytes) -> bytes:
    h = hashes.Hash(ns.DIGESTS[algorithm]())
    h.update(data)
    return h.finalize()


def attachment_octets(part: Part) -> bytes:
    """The output of the Attachment-Content-Signature-Transform: the content octets, or,
    for an XML MIME type, its exclusive canonical form."""
    media = part.media_type
    if media in _XML_MEDIA or media.endswith("+xml"):
        try:
            tree = parse_xml(part.content, source=f"cid:{part.content_id}")
        except XmlError:
            raise As4FailedAuthentication(
                "an XML attachment cannot be canonicalised", where=f"cid:{part.content_id}"
            ) from None
        return c14n(tree.getroot())
    return part.content


def _prefix_list(transform: etree._Element) -> list[str] | None:
    inclusive = transform.find(_q(ns.EC, "InclusiveNamespaces"))
    if inclusive is None:
        return None
    return (inclusive.get("PrefixList") or "").split()


# --- signing ----------------------------------------------------------------------------


def _as_parsed(element: etree._Element) -> etree._Element:
    """``element`` in a serialised-and-parsed copy of its document. lxml's C14N of an
    element built in memory omits inclusive-namespace prefixes declared on ancestors; on a
    parsed tree it is right, and a parsed tree is what the receiver canonicalises."""
    steps: list[int] = []
    current = element
    parent = current.getparent()
    while parent is not None:
        steps.append(parent.index(current))
        current, parent = parent, parent.getparent()
    found = parse_xml(etree.tostring(current), source="signing").getroot()
    for index in reversed(steps):
        found = found[index]
    return found


def _reference(parent: etree._Element, uri: str, transform: str, digest_method: str,
               value: bytes, *, prefixes: Sequence[str] | None = None) -> None:
    ref = etree.SubElement(parent, _q(ns.DS, "Reference"), URI=uri)
    transforms = etree.SubElement(ref, _q(ns.DS, "Transforms"))
    t = etree.SubElement(transforms, _q(ns.DS, "Transform"), Algorithm=transform)
    if prefixes:
        etree.SubElement(t, _q(ns.EC, "InclusiveNamespaces"), PrefixList=" ".join(prefixes))
    etree.SubElement(ref, _q(ns.DS, "DigestMethod"), Algorithm=digest_method)
    etree.SubElement(ref, _q(ns.DS, "DigestValue")).text = base64.b64encode(value).decode()


def sign(
    envelope: Envelope,
    *,
    key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    targets: Sequence[etree._Element],
    attachments: Sequence[Part],
    signature_method: str = ns.RSA_SHA256,
    digest_method: str = ns.SHA256,
) -> etree._Element:
    """Sign ``targets`` (elements with a wsu:Id) and ``attachments`` (their content octets)
    into a ds:Signature appended to the envelope's Security header; the certificate goes
    in as a BinarySecurityToken referenced from KeyInfo. Returns the ds:Signature."""
    security = envelope.security
    if security is None:  # pragma: no cover - the builder always makes one
        raise As4ValueInconsistent("no Security header to sign into", where="Header")
    token_id = f"X509-{uuid.uuid4()}"
    bst = etree.SubElement(
        security, _q(ns.WSSE, "BinarySecurityToken"),
        {"EncodingType": ns.BASE64_BINARY, "ValueType": ns.X509V3, ns.WSU_ID: token_id},
    )
    bst.text = base64.b64encode(certs.der(certificate)).decode()
    signature = etree.SubElement(security, _q(ns.DS, "Signature"), Id=f"SIG-{uuid.uuid4()}")
    signed_info = etree.SubElement(signature, _q(ns.DS, "SignedInfo"))
    method = etree.SubElement(signed_info, _q(ns.DS, "CanonicalizationMethod"),
                              Algorithm=ns.EXC_C14N)
    etree.SubElement(method, _q(ns.EC, "InclusiveNamespaces"), PrefixList="env")
    etree.SubElement(signed_info, _q(ns.DS, "SignatureMethod"), Algorithm=signature_method)
    for target in targets:
        target_id = target.get(ns.WSU_ID)
        if not target_id:  # pragma: no cover - the builder sets every ID
            raise As4ValueInconsistent("a signed element has no wsu:Id", where="Header")
        _reference(signed_info, f"#{target_id}", ns.EXC_C14N, digest_method,
                   value=digest(digest_method, c14n(_as_parsed(target))))
    for part in attachments:
        _reference(signed_info, f"cid:{part.content_id}", ns.ATTACHMENT_CONTENT_SIGNATURE,
                   digest_method, value=digest(digest_method, attachment_octets(part)))
    value = key.sign(c14n(_as_parsed(signed_info), ["env"]), padding.PKCS1v15(),
                     ns.SIGNATURES[signature_method]())
    etree.SubElement(signature, _q(ns.DS, "SignatureValue")).text = (
        base64.b64encode(value).decode()
    )
    key_info = etree.SubElement(signature, _q(ns.DS, "KeyInfo"))
    str_el = etree.SubElement(key_info, _q(ns.WSSE, "SecurityTokenReference"))
    etree.SubElement(str_el, _q(ns.WSSE, "Reference"), URI=f"#{token_id}", ValueType=ns.X509V3)
    return signature


# --- verification -----------------------------------------------------------------------


def _b64(text: str | None, where: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise As4FailedAuthentication("a base64 value is malformed", where=where) from None


def _ski(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _issuer_matches(cert: x509.Certificate, issuer_name: str, serial: int) -> bool:
    if cert.serial_number != serial:
        return False
    wanted = "".join(issuer_name.replace(", ", ",").split()).lower()
    have = "".join(cert.issuer.rfc4514_string().replace(", ", ",").split()).lower()
    return wanted == have or set(wanted.split(",")) == set(have.split(","))


def resolve_token(
    envelope: Envelope, key_info: etree._Element | None,
    candidates: Sequence[x509.Certificate],
) -> x509.Certificate:
    """The certificate a KeyInfo names: a BinarySecurityToken by reference, an embedded
    X509Certificate, an IssuerSerial or a Subject Key Identifier among ``candidates``."""
    if key_info is None:
        raise As4FailedAuthentication("the signature has no KeyInfo", where="Signature")
    for ref in key_info.iter(_q(ns.WSSE, "Reference")):
        uri = ref.get("URI") or ""
        if not uri.startswith("#"):
            raise As4FailedAuthentication("a token reference is not local", where="KeyInfo")
        token = envelope.by_id(uri[1:], what="the signature's token reference")
        if token.tag != _q(ns.WSSE, "BinarySecurityToken") or (
            token.get("ValueType") not in (None, ns.X509V3)
        ):
            raise As4FailedAuthentication("the referenced token is not an X.509 token",
                                          where=uri)
        return _cert(_b64(token.text, uri), uri)
    for element in key_info.iter(_q(ns.DS, "X509Certificate")):
        return _cert(_b64(element.text, "X509Certificate"), "X509Certificate")
    for element in key_info.iter(_q(ns.DS, "X509IssuerSerial")):
        issuer = element.findtext(_q(ns.DS, "X509IssuerName")) or ""
        try:
            serial = int((element.findtext(_q(ns.DS, "X509SerialNumber")) or "").strip())
        except ValueError:
            raise As4FailedAuthentication("X509SerialNumber is not a number",
                                          where="X509IssuerSerial") from None
        for cert in candidates:
            if _issuer_matches(cert, issuer, serial):
                return cert
        raise As4FailedAuthentication(
            "no known certificate matches the signature's IssuerSerial",
            where="X509IssuerSerial", details={"serial": str(serial)},
        )
    for element in key_info.iter(_q(ns.WSSE, "KeyIdentifier")):
        value = _b64(element.text, "KeyIdentifier")
        kind = element.get("ValueType")
        for cert in candidates:
            if (kind == ns.SKI_VALUE_TYPE and _ski(cert) == value) or (
                kind == ns.THUMBPRINT_VALUE_TYPE
                and digest(ns.SHA1, certs.der(cert)) == value
            ):
                return cert
        raise As4FailedAuthentication("no known certificate matches the KeyIdentifier",
                                      where="KeyIdentifier")
    raise As4FailedAuthentication("the signature's KeyInfo names no token", where="KeyInfo")


def _cert(der: bytes, where: str) -> x509.Certificate:
    try:
        return certs.parse_der(der)
    except ValueError:
        raise As4FailedAuthentication("the signing token is not a readable certificate",
                                      where=where) from None


def _check_trust(cert: x509.Certificate, trusted: Sequence[x509.Certificate] | None,
                 now: datetime | None) -> bool:
    if now is not None and not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise As4FailedAuthentication(
            f"the signing certificate {certs.describe(cert)} is not valid at the time checked",
            where="BinarySecurityToken", details={"fingerprint": certs.fingerprint(cert)},
        )
    if trusted is None:
        return False
    for anchor in trusted:
        if certs.der(anchor) == certs.der(cert) or certs.issued_by(cert, anchor):
            return True
    raise As4FailedAuthentication(
        f"the signing certificate {certs.describe(cert)} is not one we trust",
        where="BinarySecurityToken", details={"fingerprint": certs.fingerprint(cert)},
    )


def _one(parent: etree._Element, namespace: str, local: str, where: str) -> etree._Element:
    found = parent.findall(_q(namespace, local))
    if len(found) != 1:
        raise As4FailedAuthentication(f"expected one {local}", where=where)
    return found[0]


def verify(
    envelope: Envelope,
    *,
    attachments: Mapping[str, Part | None],
    candidates: Sequence[x509.Certificate] = (),
    trusted: Sequence[x509.Certificate] | None,
    now: datetime | None,
    policy: ns.AlgorithmPolicy = ns.DEFAULT_POLICY,
) -> VerifiedSignature:
    """Verify the one ds:Signature in the Security header.

    ``attachments`` maps each ``cid`` to its (decrypted) part, or to None when its content
    cannot be had (encrypted for someone else): such references are then left unchecked and
    are absent from ``covered_cids``. ``trusted`` None accepts the certificate the message
    carries (reported as ``trusted=False``). Raises As4FailedAuthentication (EBMS:0101)
    for every failure, As4PolicyNoncompliance for algorithms the policy refuses.
    """
    security = envelope.security
    if security is None:
        raise As4FailedAuthentication("the message is not signed (no Security header)",
                                      where="Header")
    signatures = security.findall(_q(ns.DS, "Signature"))
    if not signatures:
        raise As4FailedAuthentication("the message is not signed (no ds:Signature)",
                                      where="Security")
    if len(signatures) != 1:
        raise As4FailedAuthentication(
            "the Security header must hold exactly one ds:Signature", where="Security",
            details={"count": len(signatures)},
        )
    signature = signatures[0]
    signed_info = _one(signature, ns.DS, "SignedInfo", "Signature")
    c14n_el = _one(signed_info, ns.DS, "CanonicalizationMethod", "SignedInfo")
    if c14n_el.get("Algorithm") != ns.EXC_C14N:
        raise As4FailedAuthentication("SignedInfo is not canonicalised with exclusive C14N",
                                      where="CanonicalizationMethod")
    method = _one(signed_info, ns.DS, "SignatureMethod", "SignedInfo").get("Algorithm") or ""
    if not policy.signature_allowed(method):
        raise As4FailedAuthentication(
            "signature algorithm not allowed", where="SignatureMethod",
            details={"algorithm": method},
        )
    references: list[Reference] = []
    covered_ids: set[str] = set()
    covered_cids: set[str] = set()
    for ref in signed_info.findall(_q(ns.DS, "Reference")):
        references.append(_verify_reference(envelope, ref, attachments, policy=policy,
                                            covered_ids=covered_ids,
                                            covered_cids=covered_cids))
    if not references:
        raise As4FailedAuthentication("the signature has no references", where="SignedInfo")
    cert = resolve_token(envelope, signature.find(_q(ns.DS, "KeyInfo")), candidates)
    value = _b64(signature.findtext(_q(ns.DS, "SignatureValue")), "SignatureValue")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise As4PolicyNoncompliance("the signing key is not RSA", where="BinarySecurityToken")
    try:
        public.verify(value, c14n(signed_info, _prefix_list(c14n_el)), padding.PKCS1v15(),
                      ns.SIGNATURES[method]())
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        raise As4FailedAuthentication("the signature value does not verify",
                                      where="SignatureValue") from None
    trusted_ok = _check_trust(cert, trusted, now)
    return VerifiedSignature(
        signature_method=method,
        certificate=cert,
        references=tuple(references),
        reference_xml=tuple(c14n(r) for r in signed_info.findall(_q(ns.DS, "Reference"))),
        covered_ids=frozenset(covered_ids),
        covered_cids=frozenset(covered_cids),
        trusted=trusted_ok,
    )


def _verify_reference(
    envelope: Envelope, ref: etree._Element, attachments: Mapping[str, Part | None], *,
    policy: ns.AlgorithmPolicy, covered_ids: set[str], covered_cids: set[str],
) -> Reference:
    uri = ref.get("URI") or ""
    where = f"Reference {uri}" if len(uri) < 200 else "Reference"
    method = (_one(ref, ns.DS, "DigestMethod", where).get("Algorithm")) or ""
    if not policy.digest_allowed(method):
        raise As4FailedAuthentication("digest algorithm not allowed", where=where,
                                      details={"algorithm": method})
    expected = _b64(ref.findtext(_q(ns.DS, "DigestValue")), where)
    transforms = list(ref.iterfind(f"{_q(ns.DS, 'Transforms')}/{_q(ns.DS, 'Transform')}"))
    algorithms = tuple(t.get("Algorithm") or "" for t in transforms)
    if uri.startswith("#"):
        if algorithms != (ns.EXC_C14N,):
            raise As4FailedAuthentication("an XML reference must use exactly exclusive C14N",
                                          where=where)
        target = envelope.by_id(uri[1:], what="a signature reference")
        data = c14n(target, _prefix_list(transforms[0]))
        covered_ids.add(uri[1:])
    elif uri.startswith("cid:"):
        if algorithms != (ns.ATTACHMENT_CONTENT_SIGNATURE,):
            raise As4FailedAuthentication(
                "an attachment reference must use the Attachment-Content-Signature-Transform",
                where=where,
            )
        cid = uri[4:]
        if cid not in attachments:
            raise As4FailedAuthentication("a signed attachment is missing", where=where)
        part = attachments[cid]
        if part is None:
            return Reference(uri, method, expected, algorithms)
        data = attachment_octets(part)
        covered_cids.add(cid)
    else:
        raise As4FailedAuthentication("a reference is neither local nor to an attachment",
                                      where="Reference")
    if digest(method, data) != expected:
        raise As4FailedAuthentication("a digest does not match what was signed", where=where)
    return Reference(uri, method, expected, algorithms)


def signed_references(signature: etree._Element) -> tuple[Reference, ...]:
    """The references of a ds:Signature's SignedInfo as written (nothing verified): what a
    receipt's NonRepudiationInformation must echo."""
    out = []
    for ref in signature.iterfind(f"{_q(ns.DS, 'SignedInfo')}/{_q(ns.DS, 'Reference')}"):
        out.append(reference_of(ref))
    return tuple(out)


def reference_of(ref: etree._Element) -> Reference:
    method = ref.find(_q(ns.DS, "DigestMethod"))
    transforms = ref.iterfind(f"{_q(ns.DS, 'Transforms')}/{_q(ns.DS, 'Transform')}")
    return Reference(
        uri=ref.get("URI") or "",
        digest_method=(method.get("Algorithm") or "") if method is not None else "",
        digest_value=_b64(ref.findtext(_q(ns.DS, "DigestValue")), "DigestValue"),
        transforms=tuple(t.get("Algorithm") or "" for t in transforms),
    )
