"""Who a node is on the wire, and which certificates speak for which party.

Pure values: :class:`NodeIdentity` (the keys a node signs and decrypts with) and the
:class:`PartyDirectory` interface with an in-memory :class:`StaticDirectory`. Loading them
from a key directory on disk is :mod:`gateway.node.keystore`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from gateway.protocol.cms import DecryptionKey, KeyPair, SigningKey
from gateway.protocol.party import Party

__all__ = ["NodeIdentity", "PartyDirectory", "StaticDirectory"]


@dataclass(frozen=True)
class NodeIdentity:
    """What this node signs and decrypts with."""

    party: Party
    signing_key: SigningKey
    signing_cert: x509.Certificate
    #: RSA (RSA-OAEP key transport) or EC P-256 (ECDH key agreement), as the
    #: encryption certificate says.
    encryption_key: DecryptionKey
    encryption_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    #: Extra (key, certificate) pairs this node also decrypts with (``KEYS/decrypt/``):
    #: the next encryption key during a rollover, or earlier ones. The main encryption key
    #: is not repeated here.
    decryption: tuple[KeyPair, ...] = ()


class PartyDirectory(Protocol):
    """Which certificates are registered to speak for a party."""

    def certificates_for(self, party: Party) -> Sequence[x509.Certificate]: ...


@dataclass(frozen=True)
class StaticDirectory:
    """A :class:`PartyDirectory` held in memory (tests, the ``open`` command)."""

    entries: Mapping[Party, Sequence[x509.Certificate]] = field(default_factory=dict)

    def certificates_for(self, party: Party) -> Sequence[x509.Certificate]:
        return tuple(self.entries.get(party, ()))
