"""CMS (RFC 5652 / 5083 / 5084 / 4055) for the protocol's layers 2 and 3, without I/O.

- :func:`sign` builds a ``ContentInfo``/``SignedData`` with attached ``id-data`` content,
  the signer certificate, and signed attributes content-type, message-digest and
  signing-time (RSA-PSS or RSASSA-PKCS1-v1_5 with SHA-256, or ECDSA P-256 with SHA-256).
- :func:`encrypt` wraps content in a ``ContentInfo``/``AuthEnvelopedData``: AES-256-GCM
  (12-byte nonce, ICV length 16 in ``GCMParameters``, tag in ``mac``, no ``authAttrs``),
  content key transported with RSAES-OAEP SHA-256 / MGF1-SHA-256 (parameters explicit) to
  an RSA certificate, or agreed by ephemeral-static ECDH (``dhSinglePass-stdDH-sha256kdf``,
  AES-256 key wrap; :mod:`.kari`) with a P-256 certificate.
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


from gateway.protocol.cms.common import (
    OID_AES256_GCM,
    OID_ATTR_CONTENT_TYPE,
    OID_ATTR_MESSAGE_DIGEST,
    OID_ATTR_SIGNING_TIME,
    OID_AUTH_ENVELOPED_DATA,
    OID_DATA,
    OID_ENVELOPED_DATA,
    OID_SIGNED_DATA,
    BytesContent,
    Content,
    DecryptionKey,
    KeyPair,
    SigningKey,
)
from gateway.protocol.cms.enveloped import decrypt, encrypt
from gateway.protocol.cms.signed import SignedContent, VerifiedSignature, sign, verify

__all__ = [
    "OID_AES256_GCM",
    "OID_ATTR_CONTENT_TYPE",
    "OID_ATTR_MESSAGE_DIGEST",
    "OID_ATTR_SIGNING_TIME",
    "OID_AUTH_ENVELOPED_DATA",
    "OID_DATA",
    "OID_ENVELOPED_DATA",
    "OID_SIGNED_DATA",
    "BytesContent",
    "Content",
    "DecryptionKey",
    "KeyPair",
    "SignedContent",
    "SigningKey",
    "VerifiedSignature",
    "decrypt",
    "encrypt",
    "sign",
    "verify",
]
