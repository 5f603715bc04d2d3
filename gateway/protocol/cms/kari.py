"""Ephemeral-static ECDH key agreement for P-256 recipients (RFC 5652 6.2.2, RFC 5753).

The content key is wrapped for a recipient whose encryption certificate holds a P-256 key
with a ``KeyAgreeRecipientInfo`` (``[1]`` in ``RecipientInfo``), exactly as
``openssl cms -encrypt -recip EC.crt -keyopt ecdh_kdf_md:sha256`` writes it:

- ``version`` 3; ``originator`` = ``[1] originatorKey``: a fresh P-256 key per message
  (``id-ecPublicKey``, parameters absent, uncompressed point); no ``ukm`` written;
- ``keyEncryptionAlgorithm`` = ``dhSinglePass-stdDH-sha256kdf-scheme`` (1.3.132.1.11.1)
  whose parameter is the key-wrap algorithm ``id-aes256-wrap`` (2.16.840.1.101.3.4.1.45,
  parameters absent);
- the key-encryption key is ANSI X9.63 KDF-SHA-256 over the ECDH shared secret with
  ``ECC-CMS-SharedInfo`` {keyInfo = the wrap algorithm, entityUInfo = ukm when present,
  suppPubInfo = 256 as a 32-bit big-endian integer};
- ``recipientEncryptedKeys``: one entry, ``rid`` = ``issuerAndSerialNumber`` of the
  recipient certificate (``rKeyId`` with a subject key identifier is also accepted), and
  the 40-byte AES key wrap (RFC 3394) of the 32-byte content key.

Reading refuses, with :class:`AlgorithmNotAllowed`, any other scheme (the SHA-1 KDF that
OpenSSL uses without ``ecdh_kdf_md``, cofactor DH, MQV, static originator keys) and any
other wrap; a point not on P-256 or a failed unwrap is :class:`DecryptionFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from gateway.errors import AlgorithmNotAllowed, DecryptionFailed
from gateway.protocol.cms.common import _issuer_and_serial
from gateway.protocol.der import (
    CTX0,
    CTX1,
    INT,
    OCTETS,
    OID,
    SEQ,
    Malformed,
    Tlv,
    children,
    integer,
    oid,
    oid_at,
    tlv,
    top,
)

__all__ = ["KARI", "AgreedKey", "agreed_keys", "key_agree_info", "unwrap_agreed"]

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_P256 = "1.2.840.10045.3.1.7"
OID_ECDH_SHA256KDF = "1.3.132.1.11.1"
OID_AES256_WRAP = "2.16.840.1.101.3.4.1.45"
KARI = CTX1  # [1] IMPLICIT KeyAgreeRecipientInfo inside RecipientInfo
BITSTRING, NULL = 0x03, 0x05
_CTX2 = 0xA2
_KEY_BITS = 256


def _wrap_algorithm() -> bytes:
    return tlv(SEQ, oid(OID_AES256_WRAP))


def _shared_info(ukm: bytes | None) -> bytes:
    """DER ``ECC-CMS-SharedInfo`` (RFC 5753 7.2) for an AES-256 wrap."""
    entity = tlv(CTX0, tlv(OCTETS, ukm)) if ukm is not None else b""
    return tlv(SEQ, _wrap_algorithm(), entity,
               tlv(_CTX2, tlv(OCTETS, _KEY_BITS.to_bytes(4, "big"))))


def _kek(private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey,
         ukm: bytes | None) -> bytes:
    secret = private.exchange(ec.ECDH(), public)
    return X963KDF(algorithm=hashes.SHA256(), length=_KEY_BITS // 8,
                   sharedinfo=_shared_info(ukm)).derive(secret)


def key_agree_info(content_key: bytes, recipient_cert: x509.Certificate, *,
                   ukm: bytes | None = None) -> bytes:
    """The DER ``[1] KeyAgreeRecipientInfo`` giving ``content_key`` to the holder of
    ``recipient_cert`` (a P-256 key), with a fresh ephemeral key (``ukm``: user keying
    material to include; the gateway writes none)."""
    public = recipient_cert.public_key()
    if not (isinstance(public, ec.EllipticCurvePublicKey)
            and isinstance(public.curve, ec.SECP256R1)):
        raise AlgorithmNotAllowed("ECDH key agreement needs a P-256 recipient certificate")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    wrapped = keywrap.aes_key_wrap(_kek(ephemeral, public, ukm), content_key)
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    originator = tlv(CTX0, tlv(CTX1, tlv(SEQ, oid(OID_EC_PUBLIC_KEY)),
                               tlv(BITSTRING, b"\x00" + point)))
    algorithm = tlv(SEQ, oid(OID_ECDH_SHA256KDF), _wrap_algorithm())
    keys = tlv(SEQ, tlv(SEQ, _issuer_and_serial(recipient_cert), tlv(OCTETS, wrapped)))
    extra = tlv(CTX1, tlv(OCTETS, ukm)) if ukm is not None else b""
    return tlv(KARI, integer(3), originator, extra, algorithm, keys)


@dataclass(frozen=True)
class AgreedKey:
    """One ``RecipientEncryptedKey`` of a ``KeyAgreeRecipientInfo``, with what unwrapping
    it needs. ``rid``: the DER of a ``RecipientIdentifier`` naming the recipient (an
    ``rKeyId`` is turned into the ``[0] subjectKeyIdentifier`` form)."""

    rid: bytes
    encrypted_key: bytes
    originator: bytes  # the uncompressed (or compressed) point
    ukm: bytes | None
    algorithm: bytes  # DER keyEncryptionAlgorithm, checked when unwrapping


def _rid(buf: memoryview, item: Tlv) -> bytes:
    if item.tag == SEQ:  # issuerAndSerialNumber
        return buf[item.start:item.end].tobytes()
    if item.tag == CTX0:  # rKeyId [0] IMPLICIT RecipientKeyIdentifier
        parts = children(buf, item)
        if not parts or parts[0].tag != OCTETS:
            raise Malformed("RecipientKeyIdentifier")
        return tlv(0x80, buf[parts[0].body:parts[0].end].tobytes())
    raise Malformed("KeyAgreeRecipientIdentifier")


def _originator(buf: memoryview, item: Tlv) -> bytes:
    inner = children(buf, item)
    if len(inner) != 1:
        raise Malformed("originator")
    if inner[0].tag != CTX1:
        raise AlgorithmNotAllowed("key agreement must be ephemeral-static "
                                  "(an originatorKey), not with a static originator key")
    parts = children(buf, inner[0])
    if len(parts) != 2 or parts[0].tag != SEQ or parts[1].tag != BITSTRING:
        raise Malformed("OriginatorPublicKey")
    alg = children(buf, parts[0])
    if not alg or oid_at(buf, alg[0]) != OID_EC_PUBLIC_KEY:
        raise AlgorithmNotAllowed("the originator key must be an EC public key")
    if len(alg) > 2 or (len(alg) == 2 and not (
            alg[1].tag == NULL or (alg[1].tag == OID and oid_at(buf, alg[1]) == OID_P256))):
        raise AlgorithmNotAllowed("the originator key must be on P-256")
    bits = buf[parts[1].body:parts[1].end]
    if len(bits) < 2 or bits[0] != 0:
        raise Malformed("originator public key BIT STRING")
    return bits[1:].tobytes()


def agreed_keys(buf: memoryview, item: Tlv) -> list[AgreedKey]:
    """The entries of the ``[1] KeyAgreeRecipientInfo`` at ``item`` (structure only;
    algorithms are checked by :func:`unwrap_agreed`, for the entry a key is used on)."""
    parts = children(buf, item)
    if len(parts) < 4 or parts[0].tag != INT or parts[1].tag != CTX0:
        raise Malformed("KeyAgreeRecipientInfo fields")
    if int.from_bytes(buf[parts[0].body:parts[0].end], "big", signed=True) != 3:
        raise Malformed("KeyAgreeRecipientInfo version is not 3")
    originator = _originator(buf, parts[1])
    index, ukm = 2, None
    if parts[index].tag == CTX1:  # ukm [1] EXPLICIT UserKeyingMaterial
        ukm_parts = children(buf, parts[index])
        if len(ukm_parts) != 1 or ukm_parts[0].tag != OCTETS:
            raise Malformed("ukm")
        ukm = buf[ukm_parts[0].body:ukm_parts[0].end].tobytes()
        index += 1
    if len(parts) != index + 2 or parts[index].tag != SEQ or parts[index + 1].tag != SEQ:
        raise Malformed("KeyAgreeRecipientInfo fields")
    algorithm = buf[parts[index].start:parts[index].end].tobytes()
    out = []
    for entry in children(buf, parts[index + 1]):
        fields = children(buf, entry) if entry.tag == SEQ else []
        if len(fields) != 2 or fields[1].tag != OCTETS:
            raise Malformed("RecipientEncryptedKey")
        out.append(AgreedKey(_rid(buf, fields[0]),
                             buf[fields[1].body:fields[1].end].tobytes(),
                             originator, ukm, algorithm))
    return out


def _check_algorithm(der: bytes) -> None:
    buf = memoryview(der)
    parts = children(buf, top(buf))
    name = oid_at(buf, parts[0]) if parts else "?"
    if name != OID_ECDH_SHA256KDF:
        raise AlgorithmNotAllowed(f"key agreement {name} is not allowed "
                                  "(dhSinglePass-stdDH-sha256kdf-scheme is required)")
    wrap = children(buf, parts[1]) if len(parts) == 2 and parts[1].tag == SEQ else []
    if not wrap or oid_at(buf, wrap[0]) != OID_AES256_WRAP or len(wrap) > 1:
        raise AlgorithmNotAllowed("the key-wrap algorithm must be id-aes256-wrap "
                                  "(parameters absent)")


def unwrap_agreed(entry: AgreedKey, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The content key of ``entry``, unwrapped with ``key`` (P-256)."""
    _check_algorithm(entry.algorithm)
    if not isinstance(key.curve, ec.SECP256R1):
        raise AlgorithmNotAllowed("ECDH key agreement is allowed on P-256 only")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                              entry.originator)
    except ValueError:
        raise DecryptionFailed("the originator's ephemeral key is not a P-256 point") \
            from None
    try:
        return keywrap.aes_key_unwrap(_kek(key, public, entry.ukm), entry.encrypted_key)
    except (keywrap.InvalidUnwrap, ValueError):
        raise DecryptionFailed("the content key cannot be unwrapped with this node's "
                               "encryption key") from None
