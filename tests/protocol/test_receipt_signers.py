"""Receipt signers remembered (``receipts.SignerChecks``): what a partner's receipts share
(the signer's chain, key usage, registration) is checked once per certificate, but a
remembered signer never lets through what the full checks refuse: an expired or not yet
valid certificate, a signing time outside its validity, another certificate, another
party, another trust store or directory (a reload), a receipt for another message or a
tampered one."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import ReceiptInvalid
from gateway.protocol.cms import SigningKey
from gateway.protocol.envelope import Header, build_envelope, parse_envelope
from gateway.protocol.identity import NodeIdentity, StaticDirectory
from gateway.protocol.party import Party
from gateway.protocol.receipts import SignerChecks, build_receipt, verify_receipt
from tests.support.security import NOW, Node, issue, pair, spare_ec_key, with_signer

HOUR = timedelta(hours=1)


def short_lived(b: Node, key: SigningKey | None = None) -> tuple[SigningKey, x509.Certificate]:
    """A signing certificate for ``b`` from its CA, valid from an hour before NOW to an
    hour after."""
    key = key or spare_ec_key()
    return key, issue(issuer_key=b.ca_key, issuer_cert=b.ca_cert, subject="b-short", key=key,
                      not_before=NOW - HOUR, not_after=NOW + HOUR)


class World:
    """``a`` checking receipts from ``b``, whose registered signing certificate is the
    short-lived one: trust and directory as a daemon's key snapshot holds them."""

    def __init__(self, tmp_path: Path) -> None:
        self.a, self.b = pair(tmp_path, sign_algorithm="p256", b_keys="p256")
        self.key, self.cert = short_lived(self.b)
        self.signer = with_signer(self.b, self.key, self.cert)
        self.trust = tuple(self.a.store.trust())
        self.directory = StaticDirectory({self.b.party: [self.b.ca_cert, self.cert]})
        self.checks = SignerChecks(self.trust, self.directory)

    def receipt(self, *, signer: NodeIdentity | None = None, at: datetime = NOW,
                digest: str | None = None) -> tuple[bytes, str]:
        h = Header.new(from_party=self.a.party, to_party=self.b.party, service="interstate",
                       action="InterstateTransaction", created=at)
        sent = hashlib.sha256(h.message_id.encode()).hexdigest()
        data = build_receipt(for_header=h, envelope_digest=digest or sent,
                             status="Delivered", errors=[], received=at,
                             node=signer or self.signer, now=at)
        return data, sent

    def verify(self, data: bytes, sent: str, *, now: datetime = NOW,
               signers: SignerChecks | str | None = "mine",
               directory: StaticDirectory | None = None,
               expected: Party | None = None) -> object:
        return verify_receipt(
            data, expected_signer=expected or self.b.party, sent_envelope_digest=sent,
            trust=self.trust, directory=directory or self.directory, now=now,
            signers=self.checks if signers == "mine" else signers)  # type: ignore[arg-type]


def same_refusal(world: World, data: bytes, sent: str, **kwargs: object) -> str:
    """Refused with the checks remembered exactly as without them; the cause."""
    with pytest.raises(ReceiptInvalid) as fresh:
        world.verify(data, sent, signers=None, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ReceiptInvalid) as remembered:
        world.verify(data, sent, **kwargs)  # type: ignore[arg-type]
    assert (remembered.value.message, remembered.value.details) == (
        fresh.value.message, fresh.value.details)
    return str(remembered.value.details.get("cause", remembered.value.code))


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    data, sent = w.receipt()
    w.verify(data, sent)  # the signer passed: remembered from now on
    assert len(w.checks._passed) == 1
    return w


def test_a_remembered_signer_gives_the_verdict_of_the_full_checks(world: World) -> None:
    data, sent = world.receipt(at=NOW + timedelta(minutes=5))
    fresh = world.verify(data, sent, now=NOW + timedelta(minutes=6), signers=None)
    assert world.verify(data, sent, now=NOW + timedelta(minutes=6)) == fresh


def test_expiry_is_never_remembered(world: World) -> None:
    # signed while valid, checked after the certificate expired
    data, sent = world.receipt(at=NOW + timedelta(minutes=30))
    assert same_refusal(world, data, sent, now=NOW + 2 * HOUR) == "CertificateExpired"
    # checked while valid, but signed after it expired (or before it was valid)
    for at in (NOW + 2 * HOUR, NOW - 2 * HOUR):
        data, sent = world.receipt(at=at)
        assert same_refusal(world, data, sent, now=NOW) == "CertificateExpired"
    # and a valid one still passes from what was remembered
    data, sent = world.receipt()
    world.verify(data, sent)


def test_another_certificate_of_the_same_party_is_checked_afresh(world: World) -> None:
    # issued by the same trusted CA for the same party's key, but never registered
    key, cert = short_lived(world.b, world.key)
    data, sent = world.receipt(signer=with_signer(world.b, key, cert))
    assert same_refusal(world, data, sent) == "SignerNotRegistered"
    # an untrusted issuer, same subject and key
    rogue = issue(issuer_key=key, issuer_cert=None, subject="b-short", key=key,
                  not_before=NOW - HOUR, not_after=NOW + HOUR)
    data, sent = world.receipt(signer=with_signer(world.b, key, rogue))
    assert same_refusal(world, data, sent) == "CertificateUntrusted"


def test_a_signer_remembered_for_one_party_is_not_taken_for_another(world: World) -> None:
    # b's certificate signs a receipt saying it comes from another party: that party's
    # registrations do not include it (its own key is someone else's)
    other = Party.parse("fips:4800000")
    directory = StaticDirectory({**world.directory.entries,
                                 other: [world.b.ca_cert, world.a.identity.signing_cert]})
    checks = SignerChecks(world.trust, directory)
    world.checks = checks
    data, sent = world.receipt()
    world.verify(data, sent, directory=directory)  # remembered for b
    relabelled = replace(world.signer, party=other)
    data, sent = world.receipt(signer=relabelled)
    assert same_refusal(world, data, sent, directory=directory,
                        expected=other) == "SignerNotRegistered"


def test_another_directory_or_trust_store_is_not_answered_from_memory(world: World) -> None:
    # the registration removed (what a key reload gives: another directory object)
    removed = StaticDirectory({world.b.party: [world.b.ca_cert]})
    data, sent = world.receipt()
    assert same_refusal(world, data, sent, directory=removed) == "SignerNotRegistered"
    # the trust store changed under the same checks
    checks = SignerChecks(world.trust, world.directory)
    world.verify(data, sent, signers=checks)
    with pytest.raises(ReceiptInvalid) as got:
        verify_receipt(data, expected_signer=world.b.party, sent_envelope_digest=sent,
                       trust=(world.a.ca_cert,), directory=world.directory, now=NOW,
                       signers=checks)
    assert got.value.details["cause"] == "CertificateUntrusted"


def test_a_receipt_for_another_message_or_tampered_is_refused(world: World) -> None:
    data, sent = world.receipt(digest="1" * 64)
    with pytest.raises(ReceiptInvalid, match="EnvelopeDigest"):
        world.verify(data, sent)
    data, sent = world.receipt()
    parsed = parse_envelope(data)
    der = parsed.payload_der
    at = der.find(b"Delivered")
    tampered = build_envelope(parsed.header, der[:at] + b"Rejected!" + der[at + 9:])
    assert same_refusal(world, tampered, sent) == "SignatureInvalid"
    # the signature replaced by another signer's over the same content
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = build_receipt(for_header=None, envelope_digest=sent, status="Delivered",
                           errors=[], received=NOW, node=with_signer(
                               world.b, other_key, world.cert), now=NOW,
                           to_party=world.a.party)
    assert same_refusal(world, forged, sent) == "SignatureInvalid"
