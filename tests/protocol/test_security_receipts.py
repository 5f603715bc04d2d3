"""Signed receipts: build, verify, and every way a receipt must be refused."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.errors import GatewayError, ReceiptInvalid, UsageError
from gateway.protocol.envelope import Header, ParsedEnvelope, build_envelope, parse_envelope
from gateway.protocol.party import Party
from gateway.protocol.receipts import SignerChecks, build_receipt, verify_receipt
from gateway.protocol.seal import seal
from tests.support.security import NOW, Node, make_node, pair, register


@pytest.fixture
def nodes(tmp_path: Path) -> tuple[Node, Node]:
    return pair(tmp_path)


def sent(a: Node, b: Node) -> tuple[Header, bytes]:
    h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                   action="InterstateTransaction", created=NOW, conversation_id="c-7")
    return h, seal(b"<x/>", h, sender=a.identity, recipient_cert=b.identity.encryption_cert)


def verify_at(a: Node, data: bytes, digest: str, signer: Party) -> object:
    """Verify from the bytes and, when they parse, from the envelope the daemon has
    already parsed, and with the signer checks remembered (twice: the second time from
    what the first remembered): every path must reach the same verdict."""
    trust = a.store.trust()
    checks = SignerChecks(trust, a.store)

    def run(parsed: ParsedEnvelope | None, signers: SignerChecks | None = None
            ) -> tuple[object, ReceiptInvalid | None]:
        try:
            return verify_receipt(data, expected_signer=signer, sent_envelope_digest=digest,
                                  trust=trust, directory=a.store, now=NOW,
                                  parsed=parsed, signers=signers), None
        except ReceiptInvalid as exc:
            return None, exc

    result, error = run(None)
    for _ in range(2):
        again, again_error = run(None, checks)
        assert again == result
        assert (again_error is None) == (error is None)
        if error is not None and again_error is not None:
            assert (again_error.message, again_error.details) == (error.message, error.details)
    try:
        parsed = parse_envelope(data, source="receipt")
    except GatewayError:
        pass  # unreadable: only the bytes path applies
    else:
        again, again_error = run(parsed)
        assert again == result
        assert (again_error is None) == (error is None)
        if error is not None and again_error is not None:
            assert (again_error.message, again_error.details) == (error.message, error.details)
    if error is not None:
        raise error
    return result


def test_delivered_receipt_round_trip(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    h, envelope = sent(a, b)
    digest = hashlib.sha256(envelope).hexdigest()
    receipt = build_receipt(for_header=h, envelope_digest=digest, status="Delivered",
                            errors=[], received=NOW, node=b.identity,
                            now=NOW + timedelta(seconds=2))
    outer = parse_envelope(receipt).header
    assert (outer.service, outer.action, outer.from_party, outer.to_party) == (
        "receipt", "Receipt", b.party, a.party)
    assert outer.ref_to_message_id == h.message_id
    assert outer.conversation_id == "c-7"
    v = verify_at(a, receipt, digest, b.party)
    assert v.status == "Delivered"  # type: ignore[attr-defined]
    assert v.ref_to_message_id == h.message_id  # type: ignore[attr-defined]
    assert v.envelope_digest == digest  # type: ignore[attr-defined]
    assert v.errors == ()  # type: ignore[attr-defined]
    assert v.received == NOW  # type: ignore[attr-defined]
    assert v.raw == receipt  # type: ignore[attr-defined]


def test_rejected_receipt_carries_codes_and_escaped_text(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    h, envelope = sent(a, b)
    digest = hashlib.sha256(envelope).hexdigest()
    errors = [("SignatureInvalid", "the signature does not verify <&>"), ("Duplicate", "")]
    receipt = build_receipt(for_header=h, envelope_digest=digest, status="Rejected",
                            errors=errors, received=NOW, node=b.identity, now=NOW)
    v = verify_at(a, receipt, digest, b.party)
    assert v.status == "Rejected"  # type: ignore[attr-defined]
    assert v.errors == tuple(errors)  # type: ignore[attr-defined]


def test_receipt_for_unreadable_envelope_has_no_ref(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    digest = hashlib.sha256(b"garbage").hexdigest()
    with pytest.raises(UsageError):
        build_receipt(for_header=None, envelope_digest=digest, status="Rejected",
                      errors=[("EnvelopeInvalid", "not XML")], received=NOW,
                      node=b.identity, now=NOW)
    receipt = build_receipt(for_header=None, envelope_digest=digest, status="Rejected",
                            errors=[("EnvelopeInvalid", "not XML")], received=NOW,
                            node=b.identity, now=NOW, to_party=a.party)
    assert b"RefToMessageId" not in receipt
    v = verify_at(a, receipt, digest, b.party)
    assert v.ref_to_message_id is None  # type: ignore[attr-defined]


def test_build_refuses_inconsistent_status(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    h, _ = sent(a, b)
    for status, errors in (("Delivered", [("X", "y")]), ("Rejected", []),
                           ("Maybe", [])):
        with pytest.raises(UsageError):
            build_receipt(for_header=h, envelope_digest="0" * 64, status=status,  # type: ignore[arg-type]
                          errors=errors, received=NOW, node=b.identity, now=NOW)
    with pytest.raises(UsageError):
        build_receipt(for_header=h, envelope_digest="0" * 64, status="Rejected",
                      errors=[("bad code!", "")], received=NOW, node=b.identity, now=NOW)


def _cause(a: Node, data: bytes, digest: str, signer: Party) -> str:
    with pytest.raises(ReceiptInvalid) as info:
        verify_at(a, data, digest, signer)
    return str(info.value.details.get("cause", info.value.code))


def test_digest_of_other_bytes_is_refused(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    h, envelope = sent(a, b)
    receipt = build_receipt(for_header=h, envelope_digest="1" * 64, status="Delivered",
                            errors=[], received=NOW, node=b.identity, now=NOW)
    with pytest.raises(ReceiptInvalid, match="EnvelopeDigest"):
        verify_at(a, receipt, hashlib.sha256(envelope).hexdigest(), b.party)


def test_receipt_from_the_wrong_party_is_refused(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    c = make_node(tmp_path, "fips:4800000")
    register(a, c)
    h, envelope = sent(a, b)
    digest = hashlib.sha256(envelope).hexdigest()
    # c signs a receipt for a message that went to b
    forged = build_receipt(for_header=h, envelope_digest=digest, status="Delivered",
                           errors=[], received=NOW, node=c.identity, now=NOW)
    with pytest.raises(ReceiptInvalid, match="comes from"):
        verify_at(a, forged, digest, b.party)
    # ... and relabelled as coming from b: c's certificate is not registered for b
    relabelled = forged.replace(b"<From>fips:4800000</From>", b"<From>iso3166:NL</From>")
    assert _cause(a, relabelled, digest, b.party) == "SignerNotRegistered"


def test_tampered_receipt_is_refused(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    h, envelope = sent(a, b)
    digest = hashlib.sha256(envelope).hexdigest()
    receipt = build_receipt(for_header=h, envelope_digest=digest, status="Delivered",
                            errors=[], received=NOW, node=b.identity, now=NOW)
    parsed = parse_envelope(receipt)
    der = parsed.payload_der
    at = der.find(b"Delivered")
    tampered = der[:at] + b"Rejected!" + der[at + 9:]
    assert _cause(a, build_envelope(parsed.header, tampered), digest, b.party) == \
        "SignatureInvalid"
    # the outer header re-pointed at another message
    other = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                       action="X", created=NOW)
    moved = receipt.replace(h.message_id.encode(), other.message_id.encode())
    with pytest.raises(ReceiptInvalid, match="RefToMessageId"):
        verify_at(a, moved, digest, b.party)


def test_a_message_is_not_a_receipt(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    _, envelope = sent(b, a)
    with pytest.raises(ReceiptInvalid, match="not a receipt"):
        verify_at(a, envelope, "0" * 64, b.party)


def test_ecdsa_signed_receipt(tmp_path: Path) -> None:
    b, a = pair(tmp_path, "iso3166:NL", "fips:0600000", sign_algorithm="ecdsa-p256")
    h, envelope = sent(a, b)
    digest = hashlib.sha256(envelope).hexdigest()
    receipt = build_receipt(for_header=h, envelope_digest=digest, status="Delivered",
                            errors=[], received=NOW, node=b.identity, now=NOW)
    assert verify_at(a, receipt, digest, b.party).status == "Delivered"  # type: ignore[attr-defined]
