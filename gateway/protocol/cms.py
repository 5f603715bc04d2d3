"""CMS (RFC 5652 / 5083 / 5084 / 4055) for the protocol's layers 2 and 3, without I/O.

- :func:`sign` builds a ``ContentInfo``/``SignedData`` with attached ``id-data`` content,
  the signer certificate, and signed attributes content-type, message-digest and
  signing-time (RSA-PSS or RSASSA-PKCS1-v1_5 with SHA-256, or ECDSA P-256 with SHA-256).
- :func:`encrypt` wraps content in a ``ContentInfo``/``AuthEnvelopedData``: AES-256-GCM
  (12-byte nonce, ICV length 16 in ``GCMParameters``, tag in ``mac``, no ``authAttrs``),
  content key transported with RSAES-OAEP SHA-256 / MGF1-SHA-256 (parameters explicit).
- :func:`decrypt` and :func:`verify` are the inverses, and also accept what stock OpenSSL
  writes (``rsaEncryption`` as signature algorithm, extra signed attributes, a subject key
  identifier as recipient id). :func:`decrypt` takes the node's main key and any extra
  (rollover) key pairs, and uses the one whose certificate a recipient info names.

``asn1crypto`` supplies the small ASN.1 structures (names, algorithm parameters,
attributes); ``cryptography`` does every primitive. The outer layers are written and read
here with the minimal DER codec in :mod:`gateway.protocol.der`, so a 100 MB content is
never copied per nesting level (asn1crypto copies the contents of every level it parses or dumps).
Content is passed as :class:`Content`: a length and a re-iterable stream of chunks.

Errors: structure problems before decryption raise :class:`EnvelopeInvalid`; decryption
problems :class:`DecryptionFailed`; anything wrong with the signed layer
:class:`SignatureInvalid`; refused algorithms :class:`AlgorithmNotAllowed`. Certificate
chain and registration checks are the caller's (:mod:`gateway.protocol.certs`,
:mod:`gateway.protocol.seal`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Protocol

from asn1crypto import algos, core
from asn1crypto import cms as acms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.errors import (
    AlgorithmNotAllowed,
    DecryptionFailed,
    EnvelopeInvalid,
    GatewayError,
    SignatureInvalid,
)
from gateway.protocol.certs import parse_der
from gateway.protocol.der import (
    CTX0,
    CTX0_PRIM,
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
    tlv,
    top,
)

__all__ = [
    "BytesContent",
    "Content",
    "KeyPair",
    "SignedContent",
    "SigningKey",
    "VerifiedSignature",
    "decrypt",
    "encrypt",
    "sign",
    "verify",
]

log = logging.getLogger("gateway.protocol.cms")

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
#: A decryption key and the certificate that names it in recipient infos.
KeyPair = tuple[rsa.RSAPrivateKey, x509.Certificate]

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
OID_AES256_GCM = "2.16.840.1.101.3.4.1.46"
OID_AES128_CBC = "2.16.840.1.101.3.4.1.2"
OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
OID_ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5"
_ATTR_CONTENT_TYPE = "content_type"
_ATTR_MESSAGE_DIGEST = "message_digest"
_ATTR_SIGNING_TIME = "signing_time"

# What asn1crypto raises on malformed input (lazily, when a field is first read).
_PARSE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)
_PSS_SALT = 32


# --- content as a stream of chunks --------------------------------------------------------


class Content(Protocol):
    """Bytes of a known length produced in chunks; ``chunks()`` may be called repeatedly."""

    @property
    def length(self) -> int: ...

    def chunks(self) -> Iterator[bytes | memoryview]: ...


@dataclass(frozen=True)
class BytesContent:
    """:class:`Content` over bytes already in memory."""

    data: bytes | memoryview

    @property
    def length(self) -> int:
        return len(self.data)

    def chunks(self) -> Iterator[bytes | memoryview]:
        yield self.data


class GCMParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 ``GCMParameters`` (asn1crypto has the OID but not this structure)."""

    # asn1crypto rewrites this list in place while setting the class up.
    _fields = [  # noqa: RUF012
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


def _content_info(buf: memoryview) -> tuple[str, Tlv]:
    """(content type OID, the SEQUENCE inside ``[0] EXPLICIT``)."""
    outer = top(buf)
    parts = children(buf, outer)
    if len(parts) != 2 or parts[1].tag != CTX0:
        raise Malformed("not a ContentInfo")
    inner = children(buf, parts[1])
    if len(inner) != 1 or inner[0].tag != SEQ:
        raise Malformed("ContentInfo content is not a SEQUENCE")
    return oid_at(buf, parts[0]), inner[0]


# --- signing ------------------------------------------------------------------------------


def _time(value: datetime) -> core.Asn1Value:
    value = value.astimezone(UTC).replace(microsecond=0)
    if 1950 <= value.year < 2050:
        return core.UTCTime(value)
    return core.GeneralizedTime(value)


@cache
def _algorithm_der(name: str) -> bytes:
    """DER AlgorithmIdentifiers we write (built once)."""
    if name == "rsassa_pss":
        params = algos.RSASSAPSSParams({
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
            "salt_length": _PSS_SALT,
        })
        value = algos.SignedDigestAlgorithm({"algorithm": name, "parameters": params})
    elif name == "sha256_rsa":
        value = algos.SignedDigestAlgorithm({"algorithm": name, "parameters": core.Null()})
    elif name == "sha256_ecdsa":
        value = algos.SignedDigestAlgorithm({"algorithm": name})
    elif name == "sha256":
        value = algos.DigestAlgorithm({"algorithm": name})
    elif name == "rsaes_oaep":
        oaep = algos.RSAESOAEPParams({
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        })
        return tlv(SEQ, oid("1.2.840.113549.1.1.7"), bytes(oaep.dump()))
    else:  # pragma: no cover - programming error
        raise ValueError(name)
    return bytes(value.dump())


def _signature_algorithm(key: SigningKey, rsa_pss: bool) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return _algorithm_der("rsassa_pss" if rsa_pss else "sha256_rsa")
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return _algorithm_der("sha256_ecdsa")
    raise AlgorithmNotAllowed("signing keys must be RSA or ECDSA P-256")


def _sign_bytes(key: SigningKey, data: bytes, rsa_pss: bool) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        pad: apad.AsymmetricPadding = (
            apad.PSS(mgf=apad.MGF1(hashes.SHA256()), salt_length=_PSS_SALT)
            if rsa_pss else apad.PKCS1v15()
        )
        return key.sign(data, pad, hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


@lru_cache(maxsize=256)
def _issuer_and_serial(cert: x509.Certificate) -> bytes:
    """DER ``IssuerAndSerialNumber`` naming ``cert`` (issuer exactly as encoded in it)."""
    return tlv(SEQ, cert.issuer.public_bytes(), integer(cert.serial_number))


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
        tlv(SEQ, oid(OID_ATTR_SIGNING_TIME), tlv(SET, bytes(_time(signing_time).dump()))),
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
        tlv(CTX0, *(c.public_bytes(serialization.Encoding.DER) for c in certs))
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


# --- encryption ---------------------------------------------------------------------------


class _Encrypted:
    """``ContentInfo``/``AuthEnvelopedData`` as a single-use :class:`Content`."""

    def __init__(self, content: Content, recipient_cert: x509.Certificate) -> None:
        public = recipient_cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise AlgorithmNotAllowed("the recipient's encryption certificate must hold an "
                                      "RSA key (RSA-OAEP key transport)")
        self._content = content
        self._key = os.urandom(32)
        self._nonce = os.urandom(12)
        wrapped = public.encrypt(self._key, apad.OAEP(mgf=apad.MGF1(hashes.SHA256()),
                                                     algorithm=hashes.SHA256(), label=None))
        ktri = tlv(SEQ, integer(0), _issuer_and_serial(recipient_cert),
                    _algorithm_der("rsaes_oaep"), tlv(OCTETS, wrapped))
        gcm_params = GCMParameters({"aes_nonce": self._nonce, "aes_icvlen": 16})
        content_alg = tlv(SEQ, oid(OID_AES256_GCM), bytes(gcm_params.dump()))
        n = content.length
        ec_head = head(CTX0_PRIM, n)
        eci_body = len(oid(OID_DATA)) + len(content_alg) + len(ec_head) + n
        eci_head = head(SEQ, eci_body)
        mac_len = 2 + 16
        aed_fields = integer(0) + tlv(SET, ktri)
        aed_body = len(aed_fields) + len(eci_head) + eci_body + mac_len
        aed_head = head(SEQ, aed_body)
        explicit = head(CTX0, len(aed_head) + aed_body)
        oid_aed = oid(OID_AUTH_ENVELOPED_DATA)
        ci_body = len(oid_aed) + len(explicit) + len(aed_head) + aed_body
        self._prefix = (head(SEQ, ci_body) + oid_aed + explicit + aed_head + aed_fields
                        + eci_head + oid(OID_DATA) + content_alg + ec_head)
        self.length = len(self._prefix) + n + mac_len
        self._used = False

    def chunks(self) -> Iterator[bytes | memoryview]:
        if self._used:
            raise RuntimeError("encrypted content can be written only once (one nonce)")
        self._used = True
        encryptor = Cipher(algorithms.AES(self._key), modes.GCM(self._nonce)).encryptor()
        yield self._prefix
        for chunk in self._content.chunks():
            yield encryptor.update(chunk)
        encryptor.finalize()
        yield tlv(OCTETS, encryptor.tag)


def encrypt(content: Content, *, recipient_cert: x509.Certificate) -> Content:
    """AES-256-GCM ``AuthEnvelopedData`` for ``recipient_cert`` (RSA-OAEP key transport).
    The result can be iterated once: each iteration would reuse the nonce."""
    return _Encrypted(content, recipient_cert)


# --- decryption ---------------------------------------------------------------------------


def _id_matches(identifier: bytes, cert: x509.Certificate) -> bool:
    """``identifier``: the DER of a RecipientIdentifier or SignerIdentifier (the same two
    choices). The usual case, the issuer name and serial copied byte for byte, is a
    comparison; anything else is decoded and goes by :func:`_rid_matches`."""
    if identifier == _issuer_and_serial(cert):
        return True
    return _rid_matches(acms.RecipientIdentifier.load(identifier), cert)


def _rid_matches(rid: acms.RecipientIdentifier, cert: x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        if rid.chosen.dump() == _issuer_and_serial(cert):
            return True  # the usual case: the issuer name copied byte for byte
        if rid.chosen["serial_number"].native != cert.serial_number:
            return False
        # same serial, differently encoded name: compare names by RFC 5280 rules
        return bool(rid.chosen["issuer"] == ax509.Name.load(cert.issuer.public_bytes()))
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return bool(rid.chosen.native == ski)


def _require_sha256_mgf1(params: core.Sequence, what: str) -> None:
    """OAEP and PSS parameters: SHA-256 and MGF1 with SHA-256, nothing else."""
    mgf = params["mask_gen_algorithm"]
    if (params["hash_algorithm"]["algorithm"].native != "sha256"
            or mgf["algorithm"].native != "mgf1"
            or mgf["parameters"]["algorithm"].native != "sha256"):
        raise AlgorithmNotAllowed(f"{what} must use SHA-256 and MGF1-SHA-256")


@lru_cache(maxsize=64)
def _key_transport(data: bytes) -> tuple[str, bytes | None]:
    """(name, OAEP label) of a key-encryption AlgorithmIdentifier, memoised by its bytes.
    Raises :class:`AlgorithmNotAllowed` for OAEP with other hashes."""
    alg = acms.KeyEncryptionAlgorithm.load(data)
    name = str(alg["algorithm"].native)
    if name != "rsaes_oaep":
        return name, None
    params = alg["parameters"]
    _require_sha256_mgf1(params, "RSA-OAEP key transport")
    return name, params["p_source_algorithm"]["parameters"].native or None


def _unwrap_key(alg_der: bytes, encrypted: bytes, key: rsa.RSAPrivateKey,
                allow_legacy: bool) -> bytes:
    name, label = _key_transport(alg_der)
    if name == "rsaes_oaep":
        pad: apad.AsymmetricPadding = apad.OAEP(
            mgf=apad.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label
        )
    elif name == "rsaes_pkcs1v15" and allow_legacy:
        log.warning("legacy PKCS#1 v1.5 key transport accepted by policy")
        pad = apad.PKCS1v15()
    else:
        raise AlgorithmNotAllowed(f"key transport {name} is not allowed "
                                  "(RSAES-OAEP with SHA-256 is required)")
    try:
        return key.decrypt(encrypted, pad)
    except ValueError:
        raise DecryptionFailed("the content key cannot be unwrapped with this node's "
                               "encryption key") from None


def _content_key(buf: memoryview, infos: Tlv, keys: Sequence[KeyPair],
                 allow_legacy: bool) -> bytes:
    """Unwrap the content key with the first of ``keys`` (in order) whose certificate a
    KeyTransRecipientInfo names; a key is never tried on an info that does not name it.
    Other RecipientInfo kinds (tagged [1]..[4]) are skipped."""
    if infos.tag != SET:
        raise Malformed("recipientInfos is not a SET")
    ktris: list[tuple[bytes, bytes, bytes]] = []  # (rid, algorithm, encrypted key)
    for item in children(buf, infos):
        if item.tag != SEQ:
            continue  # not a KeyTransRecipientInfo (the only untagged choice)
        parts = children(buf, item)
        if len(parts) != 4 or parts[0].tag != INT or parts[2].tag != SEQ \
                or parts[3].tag != OCTETS:
            raise Malformed("KeyTransRecipientInfo fields")
        ktris.append((buf[parts[1].start:parts[1].end].tobytes(),
                      buf[parts[2].start:parts[2].end].tobytes(),
                      buf[parts[3].body:parts[3].end].tobytes()))
    for key, cert in keys:
        for rid, alg, encrypted in ktris:
            if _id_matches(rid, cert):
                return _unwrap_key(alg, encrypted, key, allow_legacy)
    raise DecryptionFailed("the message is not encrypted for this node: no recipient info "
                           "matches any of this node's decryption keys")


def _gcm_params(buf: memoryview, alg: Tlv) -> tuple[bytes, int]:
    """(nonce, ICV length) of an AES-256-GCM AlgorithmIdentifier (RFC 5084)."""
    parts = children(buf, alg) if alg.tag == SEQ else []
    if not parts or buf[parts[0].start:parts[0].end] != oid(OID_AES256_GCM):
        dotted = oid_at(buf, parts[0]) if parts else "?"
        raise AlgorithmNotAllowed(f"content encryption {dotted} is not allowed "
                                  "(AES-256-GCM is required)")
    params = children(buf, parts[1]) if len(parts) == 2 and parts[1].tag == SEQ else []
    if not params or params[0].tag != OCTETS or len(params) > 2 \
            or (len(params) == 2 and params[1].tag != INT):
        raise Malformed("GCMParameters")
    icv_len = 12  # the DEFAULT
    if len(params) == 2:
        icv_len = int.from_bytes(buf[params[1].body:params[1].end], "big", signed=True)
    return bytes(buf[params[0].body:params[0].end]), icv_len


def decrypt(
    payload: bytes | memoryview,
    *,
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    extra_keys: Sequence[KeyPair] = (),
    allow_legacy: bool = False,
) -> bytes:
    """Decrypt a ``ContentInfo``/``AuthEnvelopedData`` addressed to ``cert`` or to one of
    the ``extra_keys`` certificates (the key used is the one whose certificate a recipient
    info names, ``key`` first); return the plaintext only after the GCM tag verified.
    ``allow_legacy`` also accepts AES-CBC ``EnvelopedData`` and PKCS#1 v1.5 key transport
    (logged as a warning)."""
    keys: list[KeyPair] = [(key, cert), *extra_keys]
    buf = memoryview(payload)
    try:
        kind, body = _content_info(buf)
        if kind == OID_ENVELOPED_DATA:
            if not allow_legacy:
                raise AlgorithmNotAllowed("EnvelopedData (AES-CBC) is a legacy suite; "
                                          "AuthEnvelopedData with AES-256-GCM is required")
            return _decrypt_legacy(buf, body, keys)
        if kind != OID_AUTH_ENVELOPED_DATA:
            raise EnvelopeInvalid("the payload is not AuthEnvelopedData", where="Payload")
        fields = children(buf, body)
        if len(fields) < 4 or fields[0].tag != INT:
            raise Malformed("AuthEnvelopedData fields")
        index = 1
        if fields[index].tag == CTX0:  # originatorInfo: certificates we do not need
            index += 1
        infos, eci = fields[index], fields[index + 1]
        rest = fields[index + 2:]
        if rest and rest[0].tag == CTX1:
            raise AlgorithmNotAllowed("authAttrs are not used by this protocol")
        if not rest or rest[0].tag != OCTETS:
            raise Malformed("mac is missing")
        mac = bytes(buf[rest[0].body:rest[0].end])
        eci_parts = children(buf, eci)
        if len(eci_parts) != 3 or oid_at(buf, eci_parts[0]) != OID_DATA:
            raise Malformed("authEncryptedContentInfo must hold id-data content")
        nonce, icv_len = _gcm_params(buf, eci_parts[1])
        if len(nonce) != 12 or icv_len != 16 or len(mac) != 16:
            raise AlgorithmNotAllowed("AES-GCM needs a 12-byte nonce and a 16-byte tag")
        ciphertext = octets(buf, eci_parts[2], CTX0_PRIM)
        content_key = _content_key(buf, infos, keys, allow_legacy)
    except Malformed as exc:
        raise EnvelopeInvalid(f"the payload is not a DER CMS AuthEnvelopedData ({exc})",
                              where="Payload") from None
    except GatewayError:
        raise
    except _PARSE_ERRORS as exc:
        raise EnvelopeInvalid("the payload's CMS structure cannot be read "
                              f"({type(exc).__name__})", where="Payload") from None
    if len(content_key) != 32:
        raise DecryptionFailed("the content key is not an AES-256 key")
    decryptor = Cipher(algorithms.AES(content_key), modes.GCM(nonce, mac)).decryptor()
    plaintext = decryptor.update(ciphertext)
    try:
        decryptor.finalize()
    except InvalidTag:
        del plaintext
        raise DecryptionFailed("the authentication tag does not match: the ciphertext or "
                               "its parameters were altered") from None
    return plaintext


def _decrypt_legacy(buf: memoryview, body: Tlv, keys: Sequence[KeyPair]) -> bytes:
    fields = children(buf, body)
    index = 2 if fields[1].tag == CTX0 else 1
    infos, eci = fields[index], fields[index + 1]
    eci_parts = children(buf, eci)
    alg = algos.EncryptionAlgorithm.load(buf[eci_parts[1].start:eci_parts[1].end].tobytes())
    if alg["algorithm"].dotted not in (OID_AES128_CBC, OID_AES256_CBC):
        raise AlgorithmNotAllowed(f"content encryption {alg['algorithm'].dotted} is not "
                                  "allowed")
    log.warning("legacy AES-CBC EnvelopedData accepted by policy")
    iv = bytes(alg["parameters"].native)
    ciphertext = octets(buf, eci_parts[2], CTX0_PRIM)
    content_key = _content_key(buf, infos, keys, True)
    try:
        decryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionFailed("legacy AES-CBC content cannot be decrypted") from None


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSignature:
    """What :func:`verify` proved: ``content`` was signed by ``signer`` at
    ``signing_time``. ``certificates`` are the others included (chain candidates)."""

    content: bytes
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signing_time: datetime


# The signed-layer hot path (every message and every receipt) reads SignerInfo with the
# DER codec, not asn1crypto: asn1crypto builds an object per field and cost ~0.3 ms per
# verification. asn1crypto still decodes what is rare or varies little, each memoised by
# its exact bytes: algorithm identifiers, unusual time encodings, and a signer identifier
# whose issuer name is not a byte-for-byte copy of the certificate's.


@lru_cache(maxsize=256)
def _certificate(data: bytes) -> x509.Certificate:
    """A certificate carried in a SignedData, parsed once per distinct DER (a partner
    signs every message with the same one). ``ValueError`` if malformed (not cached)."""
    return parse_der(data)


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


def _signing_time(buf: memoryview, item: Tlv) -> datetime:
    """UTCTime or GeneralizedTime: the DER forms (seconds, ``Z``) directly, anything else
    a DER encoder may write through asn1crypto."""
    raw = buf[item.start:item.end].tobytes()
    fmt = _TIME_FORMATS.get(item.tag)
    if fmt is None:
        raise SignatureInvalid("signing-time is not a time")
    text = raw[item.body - item.start:]
    if len(text) == fmt[0] and text.isascii():
        try:
            return datetime.strptime(text.decode(), fmt[1]).replace(tzinfo=UTC)
        except ValueError:
            pass
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
        signer_infos = fields[-1]
        for extra in fields[3:-1]:
            if extra.tag == CTX0:
                for item in children(buf, extra):
                    if item.tag == SEQ:
                        certs.append(_certificate(buf[item.start:item.end].tobytes()))
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
        signer = next((c for c in [*certs, *extra_certificates] if _id_matches(sid, c)),
                      None)
        if signer is None:
            raise SignatureInvalid("the signer's certificate is not included")
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
        certificates=tuple(c for c in certs if c != signer),
        signing_time=signing_time.astimezone(UTC),
    )
