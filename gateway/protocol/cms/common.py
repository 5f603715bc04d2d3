"""What the signed and enveloped layers share: content streams, OIDs, algorithm encodings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Protocol

from asn1crypto import algos, core
from asn1crypto import cms as acms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as apad

from gateway.errors import (
    AlgorithmNotAllowed,
)
from gateway.protocol.der import (
    CTX0,
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

log = logging.getLogger("gateway.protocol.cms")

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
#: An encryption (decryption) key: RSA for RSA-OAEP key transport, or EC P-256 for
#: ephemeral-static ECDH key agreement.
DecryptionKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
#: A decryption key and the certificate that names it in recipient infos.
KeyPair = tuple[DecryptionKey, x509.Certificate]

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


def _time_der(value: datetime) -> bytes:
    """The DER of :func:`_time` (what every signature's signing-time holds): a UTCTime is
    written directly (``YYMMDDHHMMSSZ``, 13 bytes), a time outside 1950-2049 through
    asn1crypto's GeneralizedTime."""
    utc = value.astimezone(UTC)
    if 1950 <= utc.year < 2050:
        return (f"\x17\x0d{utc.year % 100:02d}{utc.month:02d}{utc.day:02d}{utc.hour:02d}"
                f"{utc.minute:02d}{utc.second:02d}Z").encode("ascii")
    return bytes(_time(value).dump())


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


def _id_matches(identifier: bytes, cert: x509.Certificate) -> bool:
    """``identifier``: the DER of a RecipientIdentifier or SignerIdentifier (the same two
    choices). The usual case, the issuer name and serial copied byte for byte, is a
    comparison; anything else is decoded and goes by :func:`_rid_matches`."""
    if identifier == _issuer_and_serial(cert):
        return True
    return _rid_matches(acms.RecipientIdentifier.load(identifier), cert)

def _require_sha256_mgf1(params: core.Sequence, what: str) -> None:
    """OAEP and PSS parameters: SHA-256 and MGF1 with SHA-256, nothing else."""
    mgf = params["mask_gen_algorithm"]
    if (params["hash_algorithm"]["algorithm"].native != "sha256"
            or mgf["algorithm"].native != "mgf1"
            or mgf["parameters"]["algorithm"].native != "sha256"):
        raise AlgorithmNotAllowed(f"{what} must use SHA-256 and MGF1-SHA-256")
