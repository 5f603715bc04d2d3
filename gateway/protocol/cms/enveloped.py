"""AuthEnvelopedData (AES-256-GCM; RSA-OAEP key transport or ECDH P-256 key agreement) and
the legacy EnvelopedData."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from functools import lru_cache

from asn1crypto import algos
from asn1crypto import cms as acms
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.errors import (
    AlgorithmNotAllowed,
    DecryptionFailed,
    EnvelopeInvalid,
    GatewayError,
)
from gateway.protocol.cms.common import (
    _PARSE_ERRORS,
    OID_AES128_CBC,
    OID_AES256_CBC,
    OID_AES256_GCM,
    OID_AUTH_ENVELOPED_DATA,
    OID_DATA,
    OID_ENVELOPED_DATA,
    Content,
    DecryptionKey,
    KeyPair,
    _algorithm_der,
    _content_info,
    _id_matches,
    _issuer_and_serial,
    _require_sha256_mgf1,
)
from gateway.protocol.cms.kari import KARI, agreed_keys, key_agree_info, unwrap_agreed
from gateway.protocol.der import (
    CTX0,
    CTX0_PRIM,
    CTX1,
    INT,
    OCTETS,
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
)

# --- encryption ---------------------------------------------------------------------------

log = logging.getLogger("gateway.protocol.cms")


class _Encrypted:
    """``ContentInfo``/``AuthEnvelopedData`` as a single-use :class:`Content`."""

    def __init__(self, content: Content, recipient_cert: x509.Certificate) -> None:
        self._content = content
        self._key = os.urandom(32)
        self._nonce = os.urandom(12)
        info = _recipient_info(self._key, recipient_cert)
        content_alg = tlv(SEQ, oid(OID_AES256_GCM), _gcm_parameters(self._nonce))
        n = content.length
        ec_head = head(CTX0_PRIM, n)
        eci_body = len(oid(OID_DATA)) + len(content_alg) + len(ec_head) + n
        eci_head = head(SEQ, eci_body)
        mac_len = 2 + 16
        aed_fields = integer(0) + tlv(SET, info)
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


def _gcm_parameters(nonce: bytes) -> bytes:
    """DER ``GCMParameters`` with ``nonce`` and a 16-byte tag: what asn1crypto's
    :class:`GCMParameters` dumps (a test compares them), written directly."""
    return tlv(SEQ, tlv(OCTETS, nonce), integer(16))


def _recipient_info(content_key: bytes, recipient_cert: x509.Certificate) -> bytes:
    """A ``KeyTransRecipientInfo`` (RSA-OAEP) or a ``KeyAgreeRecipientInfo`` (ECDH
    P-256), by the key ``recipient_cert`` holds."""
    public = recipient_cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return key_agree_info(content_key, recipient_cert)
    if not isinstance(public, rsa.RSAPublicKey):
        raise AlgorithmNotAllowed("the recipient's encryption certificate must hold an "
                                  "RSA key (RSA-OAEP) or a P-256 key (ECDH)")
    wrapped = public.encrypt(content_key, apad.OAEP(mgf=apad.MGF1(hashes.SHA256()),
                                                    algorithm=hashes.SHA256(), label=None))
    return tlv(SEQ, integer(0), _issuer_and_serial(recipient_cert),
               _algorithm_der("rsaes_oaep"), tlv(OCTETS, wrapped))


def encrypt(content: Content, *, recipient_cert: x509.Certificate) -> Content:
    """AES-256-GCM ``AuthEnvelopedData`` for ``recipient_cert``: RSA-OAEP key transport
    to an RSA certificate, ephemeral-static ECDH (:mod:`.kari`) to a P-256 one.
    The result can be iterated once: each iteration would reuse the nonce."""
    return _Encrypted(content, recipient_cert)


# --- decryption ---------------------------------------------------------------------------


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


def _unwrap_key(alg_der: bytes, encrypted: bytes, key: DecryptionKey,
                allow_legacy: bool) -> bytes:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DecryptionFailed("the recipient info naming this node's certificate is key "
                               "transport (RSA) but its key is not RSA")
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
    KeyTransRecipientInfo (RSA) or a KeyAgreeRecipientInfo entry (EC) names; a key is
    never tried on an info that does not name it. Other RecipientInfo kinds ([2]..[4])
    are skipped."""
    if infos.tag != SET:
        raise Malformed("recipientInfos is not a SET")
    ktris: list[tuple[bytes, bytes, bytes]] = []  # (rid, algorithm, encrypted key)
    agreed = []
    for item in children(buf, infos):
        if item.tag == KARI:
            agreed += agreed_keys(buf, item)
            continue
        if item.tag != SEQ:
            continue  # neither KeyTransRecipientInfo (untagged) nor KeyAgree ([1])
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
        for entry in agreed:
            if _id_matches(entry.rid, cert):
                if not isinstance(key, ec.EllipticCurvePrivateKey):
                    raise DecryptionFailed("the recipient info naming this node's "
                                           "certificate is key agreement (ECDH) but its "
                                           "key is not EC")
                return unwrap_agreed(entry, key)
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
    key: DecryptionKey,
    cert: x509.Certificate,
    extra_keys: Sequence[KeyPair] = (),
    allow_legacy: bool = False,
) -> bytes:
    """Decrypt a ``ContentInfo``/``AuthEnvelopedData`` addressed to ``cert`` or to one of
    the ``extra_keys`` certificates (the key used is the one whose certificate a recipient
    info names, ``key`` first: RSA keys through a KeyTransRecipientInfo, P-256 keys
    through a KeyAgreeRecipientInfo); return the plaintext only after the GCM tag verified.
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


