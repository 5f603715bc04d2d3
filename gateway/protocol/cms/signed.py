"""SignedData: sign a content, verify a signature (RSA-PSS, PKCS#1 v1.5, ECDSA)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from asn1crypto import algos, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as apad

from gateway.errors import (
    AlgorithmNotAllowed,
    GatewayError,
    SignatureInvalid,
)
from gateway.protocol.certs import parse_der
from gateway.protocol.cms.common import (
    _ATTR_CONTENT_TYPE,
    _ATTR_MESSAGE_DIGEST,
    _ATTR_SIGNING_TIME,
    _PARSE_ERRORS,
    OID_ATTR_CONTENT_TYPE,
    OID_ATTR_MESSAGE_DIGEST,
    OID_ATTR_SIGNING_TIME,
    OID_DATA,
    OID_SIGNED_DATA,
    Content,
    SigningKey,
    _algorithm_der,
    _content_info,
    _id_matches,
    _issuer_and_serial,
    _require_sha256_mgf1,
    _sign_bytes,
    _signature_algorithm,
    _time_der,
)
from gateway.protocol.der import (
    CTX0,
    CTX1,
    INT,
    OCTETS,
    OID,
    SEQ,
    SET,
    Malformed,
    Tlv,
    children,
    head,
    integer,
    octets,
    oid,
    oid_at,
    read,
    tlv,
)


@dataclass(frozen=True)
class SignedContent:
    """A ``ContentInfo``/``SignedData`` as a :class:`Content`: small DER ``prefix``, the
    content's own chunks, small DER ``suffix`` (certificates and signer info)."""

    prefix: bytes
    content: Content
    suffix: bytes

    @property
    def length(self) -> int:
        return len(self.prefix) + self.content.length + len(self.suffix)

    def chunks(self) -> Iterator[bytes | memoryview]:
        yield self.prefix
        yield from self.content.chunks()
        yield self.suffix

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())


def sign(
    content: Content,
    *,
    key: SigningKey,
    cert: x509.Certificate,
    signing_time: datetime,
    chain: Sequence[x509.Certificate] = (),
    rsa_pss: bool = True,
) -> SignedContent:
    """Sign ``content`` (attached, type ``id-data``). Reads the content once to digest it;
    the result streams it again when written."""
    digest = hashlib.sha256()
    for chunk in content.chunks():
        digest.update(chunk)
    attrs = [
        tlv(SEQ, oid(OID_ATTR_CONTENT_TYPE), tlv(SET, oid(OID_DATA))),
        tlv(SEQ, oid(OID_ATTR_SIGNING_TIME), tlv(SET, _time_der(signing_time))),
        tlv(SEQ, oid(OID_ATTR_MESSAGE_DIGEST), tlv(SET, tlv(OCTETS, digest.digest()))),
    ]
    # DER SET OF: elements sorted by their encodings. The signature covers the SET (0x31).
    attr_body = b"".join(sorted(attrs))
    signature = _sign_bytes(key, tlv(SET, attr_body), rsa_pss)
    digest_alg = _algorithm_der("sha256")
    signer_info = tlv(
        SEQ,
        integer(1),
        _issuer_and_serial(cert),
        digest_alg,
        tlv(CTX0, attr_body),
        _signature_algorithm(key, rsa_pss),
        tlv(OCTETS, signature),
    )
    certs = [cert, *[c for c in chain if c != cert]]
    suffix = (
        tlv(CTX0, *(_certificate_der(c) for c in certs))
        + tlv(SET, signer_info)
    )
    octets_head = head(OCTETS, content.length)
    explicit_len = len(octets_head) + content.length
    explicit_head = head(CTX0, explicit_len)
    oid_data = oid(OID_DATA)
    eci_len = len(oid_data) + len(explicit_head) + explicit_len
    head_fields = integer(1) + tlv(SET, digest_alg)
    eci_head = head(SEQ, eci_len)
    sd_len = len(head_fields) + len(eci_head) + eci_len + len(suffix)
    sd_head = head(SEQ, sd_len)
    ci_explicit = head(CTX0, len(sd_head) + sd_len)
    oid_sd = oid(OID_SIGNED_DATA)
    ci_len = len(oid_sd) + len(ci_explicit) + len(sd_head) + sd_len
    prefix = (head(SEQ, ci_len) + oid_sd + ci_explicit + sd_head + head_fields + eci_head
              + oid_data + explicit_head + octets_head)
    return SignedContent(prefix=prefix, content=content, suffix=suffix)


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSignature:
    """What :func:`verify` proved: ``content`` was signed by ``signer`` at
    ``signing_time``. ``certificates`` are the others included (chain candidates)."""

    content: bytes
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signing_time: datetime
    #: When the signer is one of the certificates the SignedData carries (the usual
    #: case): the DER of its SignerIdentifier and of the ``certificates`` field, which
    #: together determine ``signer`` and ``certificates`` (a key for what a caller checks
    #: about them once, e.g. :mod:`gateway.protocol.receipts`); None otherwise.
    carried: tuple[bytes, bytes] | None = field(default=None, compare=False, repr=False)


# The signed-layer hot path (every message and every receipt) reads SignerInfo with the
# DER codec, not asn1crypto: asn1crypto builds an object per field and cost ~0.3 ms per
# verification. asn1crypto still decodes what is rare or varies little, each memoised by
# its exact bytes: algorithm identifiers, unusual time encodings, and a signer identifier
# whose issuer name is not a byte-for-byte copy of the certificate's.


@lru_cache(maxsize=64)
def _certificate_der(cert: x509.Certificate) -> bytes:
    """The DER a signature carries for ``cert`` (the signer's own, the same every time)."""
    return cert.public_bytes(serialization.Encoding.DER)


@lru_cache(maxsize=256)
def _certificate(data: bytes) -> x509.Certificate:
    """A certificate carried in a SignedData, parsed once per distinct DER (a partner
    signs every message with the same one). ``ValueError`` if malformed (not cached)."""
    return parse_der(data)


@lru_cache(maxsize=64)
def _carried(block: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates in a SignedData's ``certificates`` field (its DER, ``[0]`` and
    all; other choices than a plain certificate are skipped), read once per distinct
    field: a partner sends the same one with every signature. Errors are not memoised."""
    view = memoryview(block)
    return tuple(_certificate(view[item.start:item.end].tobytes())
                 for item in children(view, read(view, 0, len(view))) if item.tag == SEQ)


@lru_cache(maxsize=64)
def _carried_signer(sid: bytes, block: bytes
                    ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]] | None:
    """The first of :func:`_carried` ``(block)`` that the SignerIdentifier ``sid`` names
    and the others (those not equal to it), or None when none is named: a pure function
    of the two DER values, worked out once per signer."""
    carried = _carried(block)
    signer = next((c for c in carried if _id_matches(sid, c)), None)
    if signer is None:
        return None
    return signer, tuple(c for c in carried if c != signer)


@lru_cache(maxsize=64)
def _digest_name(data: bytes) -> str:
    return str(algos.DigestAlgorithm.load(data)["algorithm"].native)


@lru_cache(maxsize=64)
def _signature_spec(data: bytes) -> tuple[str, int | None]:
    """(algorithm name, PSS salt length or None) of a signature AlgorithmIdentifier.
    Raises :class:`AlgorithmNotAllowed` for PSS with other hashes."""
    alg = algos.SignedDigestAlgorithm.load(data)
    name = str(alg["algorithm"].native)
    if name != "rsassa_pss":
        return name, None
    params = alg["parameters"]
    _require_sha256_mgf1(params, "RSA-PSS")
    return name, int(params["salt_length"].native)


_TIME_FORMATS = {0x17: (13, "%y%m%d%H%M%SZ"), 0x18: (15, "%Y%m%d%H%M%SZ")}


def _rfc_century(value: datetime) -> datetime:
    """A UTCTime ``strptime`` read: its ``%y`` puts 50-68 in 2050-2068, RFC 5652 (as RFC
    5280 and asn1crypto) in 1950-1968. The leap years of the two spans coincide."""
    return value.replace(year=value.year - 100) if value.year >= 2050 else value


def _signing_time(buf: memoryview, item: Tlv) -> datetime:
    """UTCTime or GeneralizedTime: the DER forms (seconds, ``Z``) directly, anything else
    a DER encoder may write through asn1crypto."""
    raw = buf[item.start:item.end].tobytes()
    fmt = _TIME_FORMATS.get(item.tag)
    if fmt is None:
        raise SignatureInvalid("signing-time is not a time")
    text = raw[item.body - item.start:]
    if len(text) == fmt[0] and text[-1:] == b"Z" and text[:-1].isdigit():
        # the DER forms, read by position; what strptime gives for them (a test compares),
        # with RFC 5652's two-digit years (11.3): 00-49 -> 20xx, 50-99 -> 19xx
        digits = 2 if item.tag == 0x17 else 4
        year = int(text[:digits])
        if digits == 2:
            year += 2000 if year < 50 else 1900
        rest = text[digits:]
        try:
            return datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]),
                            int(rest[6:8]), int(rest[8:10]), tzinfo=UTC)
        except ValueError:
            pass  # the long way below says what it makes of it
    if len(text) == fmt[0] and text.isascii():
        try:
            value = datetime.strptime(text.decode(), fmt[1]).replace(tzinfo=UTC)
        except ValueError:
            pass
        else:
            return _rfc_century(value) if item.tag == 0x17 else value
    value = (core.UTCTime if item.tag == 0x17 else core.GeneralizedTime).load(raw).native
    if not isinstance(value, datetime):
        raise SignatureInvalid("signing-time is not a time")
    return value


def _attributes(buf: memoryview, attrs: Tlv) -> dict[bytes, Tlv]:
    """Signed attributes by the DER of their type OID -> their SET of values."""
    out: dict[bytes, Tlv] = {}
    for attr in children(buf, attrs):
        parts = children(buf, attr) if attr.tag == SEQ else []
        if len(parts) != 2 or parts[0].tag != OID or parts[1].tag != SET:
            raise Malformed("signed attribute")
        kind = buf[parts[0].start:parts[0].end].tobytes()
        if kind in out:
            raise SignatureInvalid(f"signed attribute {oid_at(buf, parts[0])} appears twice")
        out[kind] = parts[1]
    return out


def _one_value(buf: memoryview, attrs: dict[bytes, Tlv], dotted: str, name: str) -> Tlv:
    values = attrs.get(oid(dotted))
    if values is None:
        raise SignatureInvalid(f"the signed attribute {name} is missing")
    items = children(buf, values)
    if len(items) != 1:
        raise SignatureInvalid(f"the signed attribute {name} must have one value")
    return items[0]


def _check_signature(signer: x509.Certificate, spec: tuple[str, int | None],
                     signature: bytes, data: bytes) -> None:
    public = signer.public_key()
    name, salt = spec
    try:
        if isinstance(public, rsa.RSAPublicKey):
            if public.key_size < 2048:
                raise AlgorithmNotAllowed("RSA keys under 2048 bits are not accepted")
            if name in ("rsassa_pkcs1v15", "sha256_rsa"):
                public.verify(signature, data, apad.PKCS1v15(), hashes.SHA256())
            elif name == "rsassa_pss" and salt is not None:
                public.verify(signature, data,
                              apad.PSS(mgf=apad.MGF1(hashes.SHA256()), salt_length=salt),
                              hashes.SHA256())
            else:
                raise AlgorithmNotAllowed(f"signature algorithm {name} is not allowed")
        elif isinstance(public, ec.EllipticCurvePublicKey):
            if not isinstance(public.curve, ec.SECP256R1):
                raise AlgorithmNotAllowed("ECDSA signatures must use P-256")
            if name not in ("sha256_ecdsa",):
                raise AlgorithmNotAllowed(f"signature algorithm {name} is not allowed")
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise AlgorithmNotAllowed("the signer's key type is not allowed")
    except InvalidSignature:
        raise SignatureInvalid("the signature does not verify with the signer's "
                               "certificate") from None
    except UnsupportedAlgorithm:
        raise AlgorithmNotAllowed(f"signature algorithm {name} is not supported") from None


def verify(
    signed: bytes | memoryview, *, extra_certificates: Sequence[x509.Certificate] = ()
) -> VerifiedSignature:
    """Verify a ``ContentInfo``/``SignedData`` with one signer and attached ``id-data``
    content: message digest, signature, required signed attributes. The signer
    certificate comes from the structure (or ``extra_certificates``). Does not decide
    whether the signer is trusted: see :func:`gateway.protocol.certs.validate_chain`."""
    buf = memoryview(signed)
    try:
        kind, body = _content_info(buf)
        if kind != OID_SIGNED_DATA:
            raise SignatureInvalid("the content is not SignedData")
        fields = children(buf, body)
        if len(fields) < 4 or fields[0].tag != INT or fields[1].tag != SET:
            raise Malformed("SignedData fields")
        eci = children(buf, fields[2])
        if len(eci) != 2 or eci[1].tag != CTX0 or oid_at(buf, eci[0]) != OID_DATA:
            raise SignatureInvalid("SignedData must carry attached id-data content")
        inner = children(buf, eci[1])
        if len(inner) != 1:
            raise Malformed("eContent")
        content = octets(buf, inner[0], OCTETS)
        certs: list[x509.Certificate] = []
        blocks: list[bytes] = []
        signer_infos = fields[-1]
        for extra in fields[3:-1]:
            if extra.tag == CTX0:
                blocks.append(buf[extra.start:extra.end].tobytes())
                certs += _carried(blocks[-1])
        if signer_infos.tag != SET:
            raise Malformed("signerInfos")
        infos = children(buf, signer_infos)
        if len(infos) != 1:
            raise SignatureInvalid(f"expected exactly one signer, found {len(infos)}")
        # SignerInfo: version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm,
        # signature, [1] unsignedAttrs OPTIONAL
        info = children(buf, infos[0]) if infos[0].tag == SEQ else []
        if len(info) < 6 or info[0].tag != INT or info[2].tag != SEQ:
            if len(info) >= 4 and info[3].tag != CTX0:
                raise SignatureInvalid("signed attributes are required")
            raise Malformed("SignerInfo fields")
        if info[3].tag != CTX0:
            raise SignatureInvalid("signed attributes are required")
        if info[4].tag != SEQ or info[5].tag != OCTETS or len(info) > 7 \
                or (len(info) == 7 and info[6].tag != CTX1):
            raise Malformed("SignerInfo fields")
        sid = buf[info[1].start:info[1].end].tobytes()
        if _digest_name(buf[info[2].start:info[2].end].tobytes()) != "sha256":
            raise AlgorithmNotAllowed("the digest algorithm must be SHA-256")
        attrs_raw = buf[info[3].start:info[3].end].tobytes()
        attrs = _attributes(buf, info[3])
        content_type = _one_value(buf, attrs, OID_ATTR_CONTENT_TYPE, _ATTR_CONTENT_TYPE)
        if buf[content_type.start:content_type.end] != oid(OID_DATA):
            raise SignatureInvalid("the signed content-type is not id-data")
        digest_value = _one_value(buf, attrs, OID_ATTR_MESSAGE_DIGEST, _ATTR_MESSAGE_DIGEST)
        expected = bytes(octets(buf, digest_value, OCTETS))
        signing_time = _signing_time(
            buf, _one_value(buf, attrs, OID_ATTR_SIGNING_TIME, _ATTR_SIGNING_TIME))
        # one certificates field (always, in practice) naming the signer: looked up by
        # the two DER values; otherwise the certificates in order, then the extra ones
        found = _carried_signer(sid, blocks[0]) if len(blocks) == 1 else None
        if found is not None:
            signer, others = found
            carried: tuple[bytes, bytes] | None = (sid, blocks[0])
        else:
            named = next((c for c in [*certs, *extra_certificates] if _id_matches(sid, c)),
                         None)
            if named is None:
                raise SignatureInvalid("the signer's certificate is not included")
            signer, others = named, tuple(c for c in certs if c != named)
            carried = None
        spec = _signature_spec(buf[info[4].start:info[4].end].tobytes())
        signature = bytes(buf[info[5].body:info[5].end])
    except Malformed as exc:
        raise SignatureInvalid(f"the signed content is not a DER CMS SignedData ({exc})") \
            from None
    except GatewayError:
        raise
    except _PARSE_ERRORS as exc:
        raise SignatureInvalid("the SignedData structure cannot be read "
                               f"({type(exc).__name__})") from None
    if hashlib.sha256(content).digest() != expected:
        raise SignatureInvalid("the message digest does not match the content")
    _check_signature(signer, spec, signature, b"\x31" + attrs_raw[1:])
    return VerifiedSignature(
        content=bytes(content),
        signer=signer,
        certificates=others,
        signing_time=signing_time.astimezone(UTC),
        carried=carried,
    )
