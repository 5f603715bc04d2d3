"""The daemon's view of its key directory, loaded once (and reloaded on demand).

The keystore reads files on every call; the pipelines need the same answers hundreds of
times a second, so :class:`NodeKeys` takes a snapshot: this node's identity, the trust
store, every registered partner certificate (as a
:class:`~gateway.protocol.identity.StaticDirectory`) and, per party, the encryption certificate to
seal to. It also implements the outbound pipeline's receipt check with
:func:`gateway.protocol.receipts.verify_receipt`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cryptography import x509

from gateway.errors import CertificateExpired, CertificateUsageInvalid, KeyMaterialError
from gateway.node.config import Config
from gateway.node.keystore import Keystore
from gateway.protocol import certs
from gateway.protocol.envelope import ParsedEnvelope
from gateway.protocol.identity import NodeIdentity, StaticDirectory
from gateway.protocol.party import Party
from gateway.protocol.receipts import SignerChecks, verify_receipt
from gateway.store.spool import Message

__all__ = ["NodeKeys", "ReceiptCheck", "ReceiptOutcome", "load_node_keys"]


@dataclass(frozen=True)
class ReceiptOutcome:
    """A verified receipt, reduced to what the spool needs."""

    delivered: bool
    receipt_id: str
    ref_to_message_id: str
    errors: tuple[tuple[str, str], ...] = ()


class ReceiptCheck(Protocol):
    """Verify ``data`` as the receipt for ``message`` (signed by its ``to_party``, naming
    its envelope digest); raise a :class:`SecurityError` when it is not one."""

    def __call__(self, data: bytes, *, message: Message, now: datetime,
                 parsed: ParsedEnvelope | None = None) -> ReceiptOutcome: ...



@dataclass(frozen=True)
class NodeKeys:
    identity: NodeIdentity
    trust: tuple[x509.Certificate, ...]
    directory: StaticDirectory
    encryption: Mapping[Party, tuple[x509.Certificate, ...]]
    max_bytes: int
    #: the receipt signers that passed their time-independent checks against this
    #: snapshot's trust store and directory (a reload makes a new snapshot, and a new one)
    signers: SignerChecks = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signers", SignerChecks(self.trust, self.directory))

    def recipient_cert(self, party: Party, now: datetime) -> x509.Certificate:
        """The registered encryption certificate for ``party`` valid at ``now`` (the one
        lasting longest, so a rollover takes effect at once)."""
        usable = []
        for cert in self.encryption.get(party, ()):
            try:
                certs.check_validity(cert, now)
            except CertificateExpired:
                continue
            usable.append(cert)
        if not usable:
            raise KeyMaterialError(f"no valid encryption certificate is registered for {party}")
        return max(usable, key=lambda c: c.not_valid_after_utc)

    def check_receipt(self, data: bytes, *, message: Message, now: datetime,
                      parsed: ParsedEnvelope | None = None) -> ReceiptOutcome:
        """:class:`ReceiptCheck` over ``verify_receipt``."""
        verified = verify_receipt(
            data, expected_signer=Party.parse(message.to_party or ""),
            sent_envelope_digest=message.envelope_digest or "", trust=self.trust,
            directory=self.directory, now=now, max_bytes=self.max_bytes, parsed=parsed,
            signers=self.signers)
        return ReceiptOutcome(verified.status == "Delivered", verified.receipt_id,
                              verified.ref_to_message_id or "", tuple(verified.errors))


def load_node_keys(config: Config) -> NodeKeys:
    """Read the key directory named by ``node.keys_dir`` (passphrase from the environment
    variable ``node.key_passphrase_env`` when set)."""
    passphrase = None
    if config.node.key_passphrase_env:
        value = os.environ.get(config.node.key_passphrase_env)
        if not value:
            raise KeyMaterialError(f"environment variable {config.node.key_passphrase_env} "
                                   "(node.key_passphrase_env) is not set")
        passphrase = value.encode()
    store = Keystore(config.node.keys_dir, passphrase)
    identity = store.identity(Party.parse(config.node.party))
    entries: dict[Party, list[x509.Certificate]] = {}
    encryption: dict[Party, tuple[x509.Certificate, ...]] = {}
    for party, certificates in store.partners().items():
        entries[party] = list(certificates)
        usable = []
        for cert in certificates:
            try:
                certs.check_key_usage(cert, "encrypt")
            except CertificateUsageInvalid:
                continue
            usable.append(cert)
        encryption[party] = tuple(usable)
    entries.setdefault(identity.party, []).append(identity.signing_cert)
    return NodeKeys(identity, tuple(store.trust()), StaticDirectory(entries), encryption,
                    config.limits.max_message_bytes * 2)
