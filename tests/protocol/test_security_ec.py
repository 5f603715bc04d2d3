"""The elliptic-curve suite: ECDH P-256 key agreement (``KeyAgreeRecipientInfo``,
dhSinglePass-stdDH-sha256kdf-scheme, AES-256 key wrap) with AES-256-GCM content, ECDSA
P-256 signatures; RSA and EC partners side by side; tampering with every part of the
key-agreement recipient info."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import (
    AlgorithmNotAllowed,
    DecryptionFailed,
    EnvelopeInvalid,
    GatewayError,
)
from gateway.protocol import certs, cms
from gateway.protocol.cms import enveloped
from gateway.protocol.cms.kari import key_agree_info
from gateway.protocol.der import oid
from gateway.protocol.envelope import Header, build_envelope, parse_envelope
from gateway.protocol.identity import NodeIdentity, StaticDirectory
from gateway.protocol.seal import open_envelope, seal
from tests.support.security import NOW, Node, issue, make_node, pair, register

DOC = b'<?xml version="1.0"?>\n<Note xmlns="urn:x">TESTPERSON 987654321</Note>\n'
ECDH_SHA256KDF = "1.3.132.1.11.1"
AES256_WRAP = "2.16.840.1.101.3.4.1.45"


@pytest.fixture
def ec_nodes(tmp_path: Path) -> tuple[Node, Node]:
    return pair(tmp_path, sign_algorithm="p256", b_keys="p256")


def sealed(a: Node, b: Node, document: bytes = DOC) -> bytes:
    h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                   action="Note", created=NOW)
    return seal(document, h, sender=a.identity,
                recipient_cert=a.store.encryption_certificate_for(b.party, NOW))


def open_at(node: Node, data: bytes) -> bytes:
    return open_envelope(data, node=node.identity, trust=node.store.trust(),
                         directory=node.store, now=NOW).document


def rejects(node: Node, data: bytes, error: type[GatewayError]) -> GatewayError:
    with pytest.raises(error) as info:
        open_at(node, data)
    assert info.value.code == error.code
    return info.value


def payload(data: bytes) -> bytes:
    return parse_envelope(data).payload_der


def rewrap(data: bytes, der: bytes) -> bytes:
    return build_envelope(parse_envelope(data).header, der)


def kari(der: bytes) -> acms.KeyAgreeRecipientInfo:
    [info] = acms.ContentInfo.load(der)["content"]["recipient_infos"]
    assert info.name == "kari"
    return info.chosen


def replace_once(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) == 1
    assert len(old) == len(new)
    return der.replace(old, new)


# --- what is written ----------------------------------------------------------------------


def test_all_ec_round_trip_and_wire_form(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    assert isinstance(b.identity.encryption_key, ec.EllipticCurvePrivateKey)
    data = sealed(a, b)
    assert open_at(b, data) == DOC
    info = kari(payload(data))
    assert info["version"].native == "v3"
    assert info["originator"].name == "originator_key"
    originator = info["originator"].chosen
    assert originator["algorithm"]["algorithm"].dotted == "1.2.840.10045.2.1"
    assert originator["algorithm"]["parameters"].native is None  # absent, as OpenSSL writes
    assert len(originator["public_key"].native) == 65  # uncompressed P-256 point
    assert info["ukm"].native is None
    assert info["key_encryption_algorithm"]["algorithm"].dotted == ECDH_SHA256KDF
    wrap = info["key_encryption_algorithm"]["parameters"]
    assert wrap.dump() == bytes.fromhex("300b060960864801650304012d")  # id-aes256-wrap, no params
    [entry] = info["recipient_encrypted_keys"]
    assert entry["rid"].name == "issuer_and_serial_number"
    assert entry["rid"].chosen["serial_number"].native == b.identity.encryption_cert.serial_number
    assert len(entry["encrypted_key"].native) == 40  # AES key wrap of 32 bytes


def test_each_message_has_its_own_ephemeral_key(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    points = {kari(payload(sealed(a, b)))["originator"].chosen["public_key"].native
              for _ in range(3)}
    assert len(points) == 3


def test_rsa_and_ec_partners_in_one_deployment(tmp_path: Path) -> None:
    """One RSA node talks to an EC partner and an RSA partner: it seals to whatever key
    the partner's encryption certificate holds, and opens what each sends it."""
    rsa_node = make_node(tmp_path, "fips:0600000")
    ec_partner = make_node(tmp_path, "iso3166:NL", sign_algorithm="p256")
    rsa_partner = make_node(tmp_path, "fips:4800000")
    for one, other in ((rsa_node, ec_partner), (rsa_node, rsa_partner)):
        register(one, other)
        register(other, one)
    to_ec, to_rsa = sealed(rsa_node, ec_partner), sealed(rsa_node, rsa_partner)
    [to_ec_info] = acms.ContentInfo.load(payload(to_ec))["content"]["recipient_infos"]
    [to_rsa_info] = acms.ContentInfo.load(payload(to_rsa))["content"]["recipient_infos"]
    assert (to_ec_info.name, to_rsa_info.name) == ("kari", "ktri")
    assert open_at(ec_partner, to_ec) == DOC
    assert open_at(rsa_partner, to_rsa) == DOC
    assert open_at(rsa_node, sealed(ec_partner, rsa_node)) == DOC  # ECDSA-signed, RSA-OAEP


def test_rsa_and_ec_keys_side_by_side_in_one_node(tmp_path: Path) -> None:
    """Migration: an RSA node with its next (EC) encryption key in ``decrypt/`` opens
    messages sealed to either; so does the EC node keeping its previous RSA key."""
    a, b = pair(tmp_path)
    ec_twin = make_node(tmp_path / "twin", "iso3166:NL", sign_algorithm="p256")
    (b.path / "decrypt").mkdir()
    for suffix in (".key", ".crt"):
        source = ec_twin.path / f"encrypt{suffix}"
        (b.path / "decrypt" / f"next{suffix}").write_bytes(source.read_bytes())
    (b.path / "decrypt" / "next.key").chmod(0o600)
    migrating = b.store.identity()
    assert isinstance(migrating.decryption[0][0], ec.EllipticCurvePrivateKey)
    trust, directory = b.store.trust(), b.store
    for recipient in (b.identity.encryption_cert, ec_twin.identity.encryption_cert):
        h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                       action="Note", created=NOW)
        data = seal(DOC, h, sender=a.identity, recipient_cert=recipient)
        opened = open_envelope(data, node=migrating, trust=trust, directory=directory,
                               now=NOW)
        assert opened.document == DOC
    # an EC main key with the previous RSA pair: both kinds open too
    i = migrating
    swapped = NodeIdentity(i.party, i.signing_key, i.signing_cert, i.decryption[0][0],
                           i.decryption[0][1], decryption=((i.encryption_key,
                                                            i.encryption_cert),))
    h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                   action="Note", created=NOW)
    data = seal(DOC, h, sender=a.identity, recipient_cert=i.encryption_cert)
    assert open_envelope(data, node=swapped, trust=trust, directory=directory,
                         now=NOW).document == DOC


def test_cms_decrypt_keeps_its_signature_for_ec_keys(ec_nodes: tuple[Node, Node]) -> None:
    """``cms.encrypt``/``cms.decrypt`` (used directly for encryption at rest) take an EC
    certificate and key exactly as they take RSA ones."""
    _, b = ec_nodes
    ident = b.identity
    blob = cms.encrypt(cms.BytesContent(DOC), recipient_cert=ident.encryption_cert)
    der = b"".join(bytes(c) for c in blob.chunks())
    assert cms.decrypt(der, key=ident.encryption_key, cert=ident.encryption_cert) == DOC


# --- refused ------------------------------------------------------------------------------


def test_key_kind_must_fit_the_recipient_info(ec_nodes: tuple[Node, Node]) -> None:
    _, b = ec_nodes
    der = payload(sealed(*ec_nodes))
    wrong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(DecryptionFailed, match="key agreement"):
        cms.decrypt(der, key=wrong, cert=b.identity.encryption_cert)


def test_other_curves_are_refused(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    p384 = ec.generate_private_key(ec.SECP384R1())
    cert = issue(issuer_key=b.ca_key, issuer_cert=b.ca_cert, subject="p384", key=p384,
                 not_before=NOW, not_after=NOW.replace(year=NOW.year + 1), usage="encrypt")
    h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                   action="Note", created=NOW)
    with pytest.raises(AlgorithmNotAllowed, match="P-256"):
        seal(DOC, h, sender=a.identity, recipient_cert=cert)
    with pytest.raises(AlgorithmNotAllowed):
        key_agree_info(os.urandom(32), cert)


def test_ec_certificate_needs_key_agreement(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    key = b.identity.encryption_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = issue(issuer_key=b.ca_key, issuer_cert=b.ca_cert, subject="enc", key=key,
                 not_before=NOW, not_after=NOW.replace(year=NOW.year + 1),
                 usage="key-encipherment")
    h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                   action="Note", created=NOW)
    with pytest.raises(GatewayError, match="keyAgreement"):
        seal(DOC, h, sender=a.identity, recipient_cert=cert)
    certs.check_key_usage(b.identity.encryption_cert, "encrypt")  # the real one has it


@pytest.mark.parametrize(("old", "new", "expected"), [
    (ECDH_SHA256KDF, "1.3.132.1.11.2", "sha256kdf-scheme is required"),  # SHA-384 KDF
    (ECDH_SHA256KDF, "1.3.132.1.14.1", "sha256kdf-scheme is required"),  # cofactor DH
    (ECDH_SHA256KDF, "1.3.132.1.15.1", "sha256kdf-scheme is required"),  # MQV
    (AES256_WRAP, "2.16.840.1.101.3.4.1.5", "must be id-aes256-wrap"),  # AES-128 wrap
])
def test_other_schemes_and_wraps_are_refused(ec_nodes: tuple[Node, Node], old: str, new: str,
                                             expected: str) -> None:
    a, b = ec_nodes
    data = sealed(a, b)
    changed = replace_once(payload(data), oid(old), oid(new))
    error = rejects(b, rewrap(data, changed), AlgorithmNotAllowed)
    assert expected in error.message


def test_static_originator_key_is_refused(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    data = sealed(a, b)
    der = payload(data)
    info = kari(der)
    original = info["originator"].dump()
    # [0] EXPLICIT { [1] originatorKey ... } -> [0] EXPLICIT { [0] subjectKeyIdentifier }
    body = original[2:]
    static = bytes([original[0], original[1], 0x80]) + body[1:]
    error = rejects(b, rewrap(data, replace_once(der, original, static)), AlgorithmNotAllowed)
    assert "ephemeral-static" in error.message


def test_flipped_ephemeral_point_or_wrapped_key(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    data = sealed(a, b)
    der = payload(data)
    info = kari(der)
    point = info["originator"].chosen["public_key"].native
    wrapped = info["recipient_encrypted_keys"][0]["encrypted_key"].native
    for value, at in ((point, 1), (point, 40), (point, 64), (wrapped, 0), (wrapped, 39)):
        where = der.index(value) + at
        changed = der[:where] + bytes([der[where] ^ 0x01]) + der[where + 1:]
        rejects(b, rewrap(data, changed), DecryptionFailed)


def test_not_for_this_node(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    data = sealed(a, b)
    der = payload(data)
    serial = kari(der)["recipient_encrypted_keys"][0]["rid"].chosen["serial_number"]
    raw = serial.contents
    other = raw[:-1] + bytes([raw[-1] ^ 0x01])
    error = rejects(b, rewrap(data, replace_once(der, raw, other)), DecryptionFailed)
    assert "not encrypted for this node" in error.message


def test_every_byte_of_the_key_agreement_info_matters(ec_nodes: tuple[Node, Node]) -> None:
    """Flip each byte of the KeyAgreeRecipientInfo: every change is refused with a
    GatewayError (nothing opens, nothing else escapes)."""
    a, b = ec_nodes
    der = payload(sealed(a, b))
    blob = kari(der).dump()
    start = der.index(blob)
    for offset in range(start, start + len(blob)):
        changed = der[:offset] + bytes([der[offset] ^ 0x01]) + der[offset + 1:]
        with pytest.raises(GatewayError):
            cms.decrypt(changed, key=b.identity.encryption_key,
                        cert=b.identity.encryption_cert)


def test_version_and_structure(ec_nodes: tuple[Node, Node]) -> None:
    a, b = ec_nodes
    data = sealed(a, b)
    der = payload(data)
    blob = kari(der).dump()
    bad_version = blob.replace(b"\x02\x01\x03", b"\x02\x01\x02", 1)
    rejects(b, rewrap(data, replace_once(der, blob, bad_version)), EnvelopeInvalid)


def test_user_keying_material_is_used(ec_nodes: tuple[Node, Node],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A ukm, when a sender includes one (the gateway writes none), enters the KDF
    (RFC 5753 entityUInfo): the message opens, and with another ukm it does not."""
    a, b = ec_nodes
    ukm = b"\x5a" * 64
    monkeypatch.setattr(enveloped, "key_agree_info", partial(key_agree_info, ukm=ukm))
    data = sealed(a, b)
    der = payload(data)
    assert kari(der)["ukm"].native == ukm
    assert open_at(b, data) == DOC
    other = replace_once(der, ukm, b"\x5b" + ukm[1:])
    rejects(b, rewrap(data, other), DecryptionFailed)


# --- properties ---------------------------------------------------------------------------

KINDS = st.sampled_from(["rsa", "ecdsa-p256", "p256"])


@settings(max_examples=30, deadline=None)
@given(document=st.binary(max_size=4000), sender_keys=KINDS, recipient_keys=KINDS,
       flip=st.none() | st.integers(0, 10_000))
def test_property_round_trip_any_key_mix(
    tmp_path_factory: pytest.TempPathFactory, document: bytes, sender_keys: str,
    recipient_keys: str, flip: int | None,
) -> None:
    """Any mix of RSA and EC keys: the document comes back exactly; any flipped payload
    byte is refused with a GatewayError (or, outside what is read, changes nothing)."""
    base = tmp_path_factory.getbasetemp() / "ec-prop"
    a = make_node(base, "fips:0600000", sign_algorithm=sender_keys)
    b = make_node(base, "iso3166:NL", sign_algorithm=recipient_keys)
    h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                   action="Note", created=NOW)
    data = seal(document, h, sender=a.identity, recipient_cert=b.identity.encryption_cert)
    directory = StaticDirectory({a.party: [a.identity.signing_cert]})
    der = payload(data)
    if flip is not None:
        at = flip % len(der)
        data = rewrap(data, der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1:])
    try:
        opened = open_envelope(data, node=b.identity, trust=[a.ca_cert],
                               directory=directory, now=NOW)
    except GatewayError:
        assert flip is not None
        return
    assert opened.document == document
