"""Payloads at rest, sealed to the node's own encryption key.

Every payload a store keeps (documents, receipts, error reports; not the envelopes, which
are CMS-encrypted for their recipient already, nor the ``failure_report`` marker) is
encrypted with AES-256-GCM under a data key. The data key is random, made once per
encryption certificate, and kept in the store's ``store_keys`` table only wrapped for that
certificate: RSA-OAEP (SHA-256) for an RSA key; for an EC P-256 key, ECDH with an
ephemeral key, HKDF-SHA256 and AES key wrap (RFC 3394), stored as the ephemeral public
point (65 bytes) followed by the wrapped key. A copy of the database without the node's
private key reveals no case data.

Format of a sealed payload: ``GWSEAL1`` (7 bytes), the data key's id (16 bytes), a 12-byte
nonce, then the ciphertext with its 16-byte tag. The associated data is the message's
spool id and the payload kind, so a sealed payload moved to another message or kind does
not open. A payload without the prefix was written before sealing existed and is returned
as it is.

Key rollover: the node's new encryption certificate gets a new data key; payloads sealed
under earlier ones stay readable as long as the earlier private keys are kept (the key
directory's ``decrypt/`` folder), since each data key names the certificate it is
wrapped for.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import SpoolError

__all__ = ["CLEAR_KINDS", "MAGIC", "Sealer", "cert_fingerprint"]

MAGIC = b"GWSEAL1"
#: payload kinds kept as they are (already encrypted for their recipient, or a marker)
CLEAR_KINDS = frozenset({"envelope", "failure_report"})
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_INFO = b"cse-gateway store data key"
KeyRows = Callable[[], Sequence[tuple[str, str, bytes]]]
AddKey = Callable[[str, str, bytes], None]


def cert_fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class Sealer:
    """Seals and opens payloads for one node. ``current``: the node's encryption key and
    certificate (new payloads); ``older``: earlier ones still held (reading only).
    The store gives it access to its ``store_keys`` rows (``rows``: (id, certificate
    fingerprint, wrapped key) of every data key; ``add``: store a new one)."""

    def __init__(self, current: tuple[PrivateKey, x509.Certificate],
                 older: Sequence[tuple[PrivateKey, x509.Certificate]] = ()) -> None:
        self._keys = {cert_fingerprint(c): k for k, c in (current, *older)}
        self._cert = current[1]
        self._fp = cert_fingerprint(current[1])
        self._open: dict[bytes, AESGCM] = {}
        self._sealing: tuple[bytes, AESGCM] | None = None
        self._rows: KeyRows = lambda: ()
        self._lock = threading.Lock()

    def wants(self, kind: str) -> bool:
        return kind not in CLEAR_KINDS

    def bind(self, rows: KeyRows, add: AddKey) -> None:
        """Attach to a store: find (or make and store, committed at once) the data key for
        the current certificate. The store calls it when it is opened, outside any
        transaction, so no payload is ever sealed under a key that was rolled back."""
        with self._lock:
            self._rows = rows
            for hex_id, fp, wrapped in rows():
                if fp == self._fp:
                    found = (bytes.fromhex(hex_id), self._unwrap(fp, wrapped))
                    self._sealing = found
                    self._open[found[0]] = found[1]
                    return
            data_key = AESGCM.generate_key(bit_length=256)
            key_id = os.urandom(16)
            add(key_id.hex(), self._fp, _wrap(self._cert, data_key))
            aes = AESGCM(data_key)
            self._sealing = (key_id, aes)
            self._open[key_id] = aes

    def _unwrap(self, fp: str, wrapped: bytes) -> AESGCM:
        private = self._keys.get(fp)
        if private is None:
            raise SpoolError("a stored payload is sealed for an encryption certificate whose "
                             "private key is not in the key directory (keep earlier keys in "
                             "KEYS/decrypt/)", details={"certificate": fp[:16]})
        try:
            return AESGCM(_unwrap(private, bytes(wrapped)))
        except (ValueError, keywrap.InvalidUnwrap):
            raise SpoolError("a stored data key does not unwrap with the node's key",
                             details={"certificate": fp[:16]}) from None

    def seal(self, row_id: int, kind: str, data: bytes) -> bytes:
        if self._sealing is None:
            raise SpoolError("payload sealing is not attached to a store")
        key_id, aes = self._sealing
        nonce = os.urandom(12)
        return MAGIC + key_id + nonce + aes.encrypt(nonce, bytes(data), _aad(row_id, kind))

    def open(self, row_id: int, kind: str, blob: bytes) -> bytes:
        if not blob.startswith(MAGIC):
            return blob  # stored before payloads were sealed
        key_id, nonce, body = blob[7:23], blob[23:35], blob[35:]
        aes = self._open.get(key_id)
        if aes is None:
            found = [(fp, w) for k, fp, w in self._rows() if k == key_id.hex()]
            if not found:
                raise SpoolError("a stored payload names a data key the store does not have",
                                 details={"id": row_id, "kind": kind})
            aes = self._unwrap(*found[0])
            with self._lock:
                self._open[key_id] = aes
        try:
            return aes.decrypt(nonce, body, _aad(row_id, kind))
        except InvalidTag:
            raise SpoolError("a stored payload does not open (altered, or moved from "
                             "another message)", details={"id": row_id, "kind": kind}) \
                from None


def _aad(row_id: int, kind: str) -> bytes:
    return f"cse-gateway-payload:{row_id}:{kind}".encode()


def _kek(private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bytes:
    shared = private.exchange(ec.ECDH(), public)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(shared)


def _wrap(cert: x509.Certificate, data_key: bytes) -> bytes:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return public.encrypt(data_key, _OAEP)
    if isinstance(public, ec.EllipticCurvePublicKey):
        ephemeral = ec.generate_private_key(public.curve)
        point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        return point + keywrap.aes_key_wrap(_kek(ephemeral, public), data_key)
    raise SpoolError("the node's encryption certificate is neither RSA nor EC")


def _unwrap(private: PrivateKey, wrapped: bytes) -> bytes:
    if isinstance(private, rsa.RSAPrivateKey):
        return private.decrypt(wrapped, _OAEP)
    size = 1 + 2 * ((private.curve.key_size + 7) // 8)
    public = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, wrapped[:size])
    return keywrap.aes_key_unwrap(_kek(private, public), wrapped[size:])
