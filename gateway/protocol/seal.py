"""Seal and open messages: the recipe of protocol layers 1-4, pure (no clock, no disk).

Send: ``Sealed`` (header copy + document) -> SignedData -> AuthEnvelopedData -> Envelope.
Receive, in this order: the envelope against its schema, ``To`` is this node, ``Created``
inside the replay window, decrypt (GCM tag checked before any plaintext is used), verify the
signature, the signer's chain to the trust store (at the signing time and now) and its
registration for ``From``, then the signed header against the outer one, field by field.
Later stages read the document only from the frozen :class:`OpenedMessage`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from cryptography import x509

from gateway.errors import (
    EnvelopeInvalid,
    HeaderMismatch,
    ReplayWindow,
    SignerNotRegistered,
    UnknownRecipient,
    UsageError,
)
from gateway.protocol import certs, cms
from gateway.protocol.envelope import (
    DEFAULT_MAX_ENVELOPE_BYTES,
    Header,
    ParsedEnvelope,
    SealedContent,
    parse_envelope,
    take_sealed,
    write_envelope,
)
from gateway.protocol.identity import PartyDirectory
from gateway.protocol.party import Party

__all__ = [
    "OpenPolicy",
    "OpenedMessage",
    "RecipientKeys",
    "RolloverKeys",
    "SenderKeys",
    "open_envelope",
    "open_parsed",
    "seal",
]

log = logging.getLogger("gateway.protocol.seal")

#: Sealed content up to this size is built once in memory; larger content is streamed
#: twice (digest, then encrypt) so that memory stays near the envelope's own size.
_MATERIALIZE_LIMIT = 16 * 1024 * 1024


class SenderKeys(Protocol):
    """What sealing needs (a :class:`~gateway.protocol.identity.NodeIdentity` has it)."""

    @property
    def party(self) -> Party: ...
    @property
    def signing_key(self) -> cms.SigningKey: ...
    @property
    def signing_cert(self) -> x509.Certificate: ...
    @property
    def chain(self) -> tuple[x509.Certificate, ...]: ...


class RecipientKeys(Protocol):
    """What opening needs (a :class:`~gateway.protocol.identity.NodeIdentity` has it). When the
    object also has ``decryption`` (:class:`RolloverKeys`, as a ``NodeIdentity`` does),
    those extra pairs are used too, each only for a recipient info naming its certificate."""

    @property
    def party(self) -> Party: ...
    @property
    def encryption_key(self) -> cms.DecryptionKey: ...
    @property
    def encryption_cert(self) -> x509.Certificate: ...


@runtime_checkable
class RolloverKeys(Protocol):
    """Extra (key, certificate) pairs a recipient decrypts with besides its main key."""

    @property
    def decryption(self) -> tuple[cms.KeyPair, ...]: ...


@dataclass(frozen=True)
class OpenPolicy:
    """How strict opening is. Defaults are the protocol's; loosen only by explicit choice."""

    max_age: timedelta = timedelta(hours=24)
    max_future: timedelta = timedelta(minutes=5)
    allow_legacy: bool = False  # AES-CBC / PKCS#1 v1.5 key transport (logged when used)
    max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES


@dataclass(frozen=True)
class OpenedMessage:
    """A verified message. ``document`` holds the exact bytes the sender sealed."""

    header: Header
    document: bytes
    signer_fingerprint: str
    signer: x509.Certificate
    signing_time: datetime
    envelope_digest: str


def seal(
    document: bytes,
    header: Header,
    *,
    sender: SenderKeys,
    recipient_cert: x509.Certificate,
    rsa_pss: bool = True,
) -> bytes:
    """The envelope bytes carrying ``document`` from ``sender`` to the holder of
    ``recipient_cert``; ``header.created`` is also the signing time."""
    if header.from_party != sender.party:
        raise UsageError(f"header From is {header.from_party} but this node is {sender.party}")
    if header.service == "receipt":
        raise UsageError("receipts are built with gateway.protocol.receipts.build_receipt")
    certs.check_key_usage(recipient_cert, "encrypt")
    certs.check_key(recipient_cert, "encrypt")
    certs.check_validity(recipient_cert, header.created, what="recipient certificate")
    sealed: cms.Content = SealedContent(header, bytes(document))
    if sealed.length <= _MATERIALIZE_LIMIT:
        # Small enough to hold: base64 once instead of once per pass (digest, encrypt).
        sealed = cms.BytesContent(b"".join(sealed.chunks()))
    signed = cms.sign(sealed, key=sender.signing_key, cert=sender.signing_cert,
                      signing_time=header.created, chain=sender.chain, rsa_pss=rsa_pss)
    encrypted = cms.encrypt(signed, recipient_cert=recipient_cert)
    out = io.BytesIO()
    write_envelope(header, encrypted.chunks(), out)
    log.debug("sealed %s for %s (%d bytes)", header.message_id, header.to_party,
              out.tell())
    return out.getvalue()


def _differences(outer: Header, inner: Header) -> list[str]:
    return [f.name for f in fields(Header) if getattr(outer, f.name) != getattr(inner, f.name)]


def open_parsed(
    parsed: ParsedEnvelope,
    *,
    node: RecipientKeys,
    trust: Sequence[x509.Certificate],
    directory: PartyDirectory | None,
    now: datetime,
    policy: OpenPolicy = OpenPolicy(),
) -> OpenedMessage:
    """Open an envelope already read by :func:`parse_envelope` (a relay or the daemon
    parses first to route on ``To``). ``directory`` None accepts any signer that chains
    to ``trust`` for the ``From`` party (the ``gateway open`` command without
    ``--sender-cert``); the daemon always passes its registrations."""
    return _open(parsed.header, parsed.digest, [parsed.payload_der], node=node, trust=trust,
                 directory=directory, now=now, policy=policy)


def _open(
    header: Header,
    digest: str,
    payload_box: list[bytes],
    *,
    node: RecipientKeys,
    trust: Sequence[x509.Certificate],
    directory: PartyDirectory | None,
    now: datetime,
    policy: OpenPolicy,
) -> OpenedMessage:
    # Large messages: each intermediate (payload, plaintext, signed content) is dropped as
    # soon as the next one exists, so at most two of them are alive at any time.
    if header.service == "receipt":
        raise EnvelopeInvalid("this envelope is a receipt; verify it with verify_receipt",
                              where="Header/Service")
    if header.to_party != node.party:
        raise UnknownRecipient(f"the message is addressed to {header.to_party}, "
                               f"this node is {node.party}", where="Header/To")
    if header.created < now - policy.max_age or header.created > now + policy.max_future:
        raise ReplayWindow(
            f"Created {header.created:%Y-%m-%dT%H:%M:%SZ} is outside the accepted window "
            f"({policy.max_age} back, {policy.max_future} ahead)", where="Header/Created")
    payload = payload_box.pop()
    # what isinstance(node, RolloverKeys) checks (runtime protocols test hasattr), without
    # its ~10 us per call
    extra = node.decryption if hasattr(node, "decryption") else ()
    plaintext = cms.decrypt(payload, key=node.encryption_key, cert=node.encryption_cert,
                            extra_keys=extra, allow_legacy=policy.allow_legacy)
    del payload
    registered = list(directory.certificates_for(header.from_party)) if directory else []
    verified = cms.verify(plaintext, extra_certificates=registered)
    del plaintext
    content_box = [verified.content]
    signer, signing_time = verified.signer, verified.signing_time
    intermediates = verified.certificates
    del verified  # the signed content now lives only in ``content_box``
    certs.validate_chain(signer, trust=trust, intermediates=intermediates,
                         at=[signing_time, now], usage="sign")
    fingerprint = certs.fingerprint(signer)
    if directory is not None and fingerprint not in {certs.fingerprint(c) for c in registered}:
        raise SignerNotRegistered(
            f"the signer certificate {fingerprint[:16]} is not registered for "
            f"{header.from_party}", details={"fingerprint": fingerprint})
    inner, document = take_sealed(content_box, max_bytes=policy.max_bytes)
    different = _differences(header, inner)
    if different:
        raise HeaderMismatch(
            "the signed header differs from the envelope header in: " + ", ".join(different),
            details={"fields": different})
    return OpenedMessage(header=header, document=document, signer_fingerprint=fingerprint,
                         signer=signer, signing_time=signing_time, envelope_digest=digest)


def open_envelope(
    data: bytes,
    *,
    node: RecipientKeys,
    trust: Sequence[x509.Certificate],
    directory: PartyDirectory | None,
    now: datetime,
    policy: OpenPolicy = OpenPolicy(),
) -> OpenedMessage:
    """Check, decrypt and verify envelope bytes; see :func:`open_parsed`. Raises a
    :class:`~gateway.errors.SecurityError` subclass, :class:`EnvelopeInvalid` or
    :class:`~gateway.errors.TooLarge`; returns nothing partial."""
    parsed = parse_envelope(data, max_bytes=policy.max_bytes)
    header, digest, box = parsed.header, parsed.digest, [parsed.payload_der]
    del parsed  # the payload now lives only in ``box``, which _open empties
    return _open(header, digest, box, node=node, trust=trust, directory=directory, now=now,
                 policy=policy)
