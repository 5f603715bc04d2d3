"""Envelopes from A to B as a partner seals them, good and bad, and twin B nodes to
receive them (the same party and keys, each its own spool and inbox), for the tests of
the receiving side (tests/node/test_receive_pool.py, tests/node/test_inbound_batch.py)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.keystore import Keystore, generate_node
from gateway.node.nodekeys import NodeKeys, load_node_keys
from gateway.node.receive_pool import ReceivePool
from gateway.protocol.envelope import Header, parse_envelope
from gateway.protocol.identity import NodeIdentity
from gateway.protocol.party import Party
from gateway.protocol.receipts import verify_receipt
from gateway.protocol.seal import seal
from tests.support.gwnodes import NodeSpec, PartnerSpec, wait_until, write_config

__all__ = ["POOLED", "Sealer", "pooled", "receipt_fields", "specs"]

A, B = "fips:0600000", "fips:4800000"
POOLED = "[limits]\nintake_workers = 0\nreceive_workers = 2\n"


def specs(root: Path, cache: Path, *b_names: str, extra: str = POOLED,
          inbox: dict[str, object] | None = None) -> tuple[NodeSpec, list[NodeSpec]]:
    """Node A and one node B per name (the same party and keys, each its own spool and
    inbox)."""
    a = NodeSpec("a", A, root / "a", extra=extra)
    a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
    bs = []
    for name in b_names:
        b = NodeSpec(name, B, root / name, extra=extra, inbox_options=dict(inbox or {}))
        b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
        bs.append(b)
    for spec in (a, *bs):
        write_config(spec, cache, [a, *bs])
    return a, bs


class Sealer:
    """Envelopes from A to B, good and bad, sealed as a partner would."""

    def __init__(self, a: NodeSpec, root: Path, now: datetime) -> None:
        self.keys: NodeKeys = load_node_keys(load_config(a.config_path))
        self.now = now
        # keys that B does not know: a second A (untrusted), a second B (cannot decrypt)
        generate_node(root / "stranger-a", Party.parse(A), now=now, curve="p256")
        generate_node(root / "stranger-b", Party.parse(B), now=now, curve="p256")
        self.stranger: NodeIdentity = Keystore(root / "stranger-a").identity(Party.parse(A))
        self.other_b = Keystore(root / "stranger-b").identity(Party.parse(B)).encryption_cert

    def envelope(self, document: bytes, *, created: datetime | None = None,
                 sender: NodeIdentity | None = None, to_other_b: bool = False,
                 to: str = B) -> bytes:
        """``to``: another party than B makes an envelope B only relays (sealed to B's
        certificate all the same: a relay does not open it)."""
        header = Header.new(from_party=Party.parse(A), to_party=Party.parse(to),
                            service="interstate", action="InterstateTransaction",
                            created=created or self.now)
        cert = self.other_b if to_other_b else self.keys.recipient_cert(Party.parse(B),
                                                                        self.now)
        return seal(document, header, sender=sender or self.keys.identity,
                    recipient_cert=cert)

    def cases(self) -> dict[str, bytes]:
        good = [interstate_transaction("0600000", "4800000", seed=i) for i in range(3)]
        invalid = good[0].replace(b"<CaseID>", b"<Unexpected/><CaseID>", 1)
        assert invalid != good[0]
        tampered = self.envelope(good[1])
        message_id = parse_envelope(tampered).header.message_id
        tampered = tampered.replace(message_id.encode(), str(uuid.uuid4()).encode(), 1)
        return {
            "delivered-0": self.envelope(good[0]),
            "delivered-1": self.envelope(good[1]),
            "delivered-2": self.envelope(good[2]),
            "SchemaInvalid": self.envelope(invalid),
            "ReplayWindow": self.envelope(good[0], created=self.now + timedelta(hours=1)),
            "HeaderMismatch": tampered,
            "untrusted": self.envelope(good[0], sender=self.stranger),
            "DecryptionFailed": self.envelope(good[0], to_other_b=True),
        }


def receipt_fields(receipt: bytes, sealer: Sealer, envelope: bytes) -> tuple[object, ...]:
    """What a receipt says, less its own id (random) and signature bytes."""
    v = verify_receipt(receipt, expected_signer=Party.parse(B),
                       sent_envelope_digest=parse_envelope(envelope).digest,
                       trust=sealer.keys.trust, directory=sealer.keys.directory,
                       now=sealer.now)
    return (v.ref_to_message_id, v.from_party, v.to_party, v.status, v.errors, v.received,
            v.envelope_digest, v.signer_fingerprint)


def pooled(gateway: Gateway) -> ReceivePool:
    """``gateway``'s receive workers (two), started and ready."""
    pool = gateway.start_receive_pool()
    assert pool is not None
    wait_until(pool.ready, 60, "the receive workers")
    assert len(pool.pids()) == 2
    return pool
