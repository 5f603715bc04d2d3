"""Cross-implementation: what the gateway seals opens with stock ``openssl cms`` (the exact
commands of the protocol), and what OpenSSL builds the same way opens in the gateway, with
keys made by ``openssl`` and by ``gateway keys generate``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from gateway.cli import main as gateway_main
from gateway.errors import AlgorithmNotAllowed
from gateway.node.keystore import Keystore
from gateway.protocol.envelope import (
    Header,
    SealedContent,
    build_envelope,
    parse_envelope,
    parse_sealed,
)
from gateway.protocol.identity import NodeIdentity, StaticDirectory
from gateway.protocol.party import Party
from gateway.protocol.receipts import build_receipt
from gateway.protocol.seal import OpenPolicy, open_envelope, seal
from tests.support import openssl
from tests.support.openssl import DOC, A, B, now
from tests.support.security import pair

pytestmark = pytest.mark.integration

def openssl_node(directory: Path, party: Party) -> tuple[NodeIdentity, Path]:
    """A node whose CA, signing and encryption keys were all made by openssl."""
    return openssl.make_node(directory, party)


@pytest.fixture(scope="module")
def os_nodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NodeIdentity, Path,
                                                              NodeIdentity]:
    """(dir, sender, sender CA, recipient): dir/a and dir/b hold openssl-made keys."""
    base = tmp_path_factory.mktemp("openssl-nodes")
    sender, sender_ca = openssl_node(base / "a", A)
    recipient, _ = openssl_node(base / "b", B)
    return base, sender, sender_ca, recipient


OsNodes = tuple[Path, NodeIdentity, Path, NodeIdentity]


def check_with_openssl(work: Path, envelope: bytes, recip: Path, key: Path,
                       trust: Path) -> tuple[Header, bytes]:
    """The protocol's "Independent check", verbatim, on ``envelope``."""
    (work / "payload.der").write_bytes(parse_envelope(envelope).payload_der)
    openssl.decrypt(work, Path("payload.der"), recip, key, Path("signed.der"))
    openssl.verify(work, Path("signed.der"), trust, Path("sealed.xml"))
    return parse_sealed((work / "sealed.xml").read_bytes())


def openssl_envelope(work: Path, h: Header, document: bytes, *, sign_cert: Path,
                     sign_key: Path, recip: Path, pss: bool = False,
                     legacy: bool = False, keyid: bool = False) -> bytes:
    """An envelope whose CMS layers were built by ``openssl cms -sign`` / ``-encrypt``."""
    (work / "sealed-in.xml").write_bytes(SealedContent(h, document).to_bytes())
    openssl.sign(work, Path("sealed-in.xml"), sign_cert, sign_key, Path("os-signed.der"),
                 pss=pss, keyid=keyid)
    openssl.encrypt(work, Path("os-signed.der"), recip, Path("os-payload.der"), legacy=legacy,
                    keyid=keyid)
    return build_envelope(h, (work / "os-payload.der").read_bytes())


def test_gateway_keys_gateway_seal_opens_with_openssl(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = seal(DOC, h, sender=a.identity, recipient_cert=b.identity.encryption_cert)
    inner, document = check_with_openssl(tmp_path, data, b.path / "encrypt.crt",
                                         b.path / "encrypt.key", a.path / "ca.crt")
    assert document == DOC
    assert inner == h


def test_openssl_keys_gateway_seal_opens_with_openssl(tmp_path: Path, os_nodes: OsNodes) -> None:
    base, sender, sender_ca, recipient = os_nodes
    h = Header.new(from_party=A, to_party=B, service="international", action="Note",
                   created=now())
    for pss in (True, False):
        data = seal(DOC, h, sender=sender, recipient_cert=recipient.encryption_cert,
                    rsa_pss=pss)
        _, document = check_with_openssl(tmp_path, data, base / "b" / "enc.pem",
                                         base / "b" / "enc.key", sender_ca)
        assert document == DOC


@pytest.mark.parametrize("pss", [False, True])
def test_openssl_built_message_opens_in_gateway_openssl_keys(tmp_path: Path, pss: bool,
                                                            os_nodes: OsNodes) -> None:
    base, sender, sender_ca, recipient = os_nodes
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = openssl_envelope(tmp_path, h, DOC, sign_cert=base / "a" / "sign.pem",
                            sign_key=base / "a" / "sign.key", recip=base / "b" / "enc.pem",
                            pss=pss)
    opened = open_envelope(data, node=recipient, trust=[openssl.load_cert(sender_ca)],
                           directory=StaticDirectory({A: [sender.signing_cert]}), now=now())
    assert opened.document == DOC
    assert opened.header == h
    assert opened.envelope_digest == hashlib.sha256(data).hexdigest()


def test_openssl_built_message_opens_in_gateway_gateway_keys(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = openssl_envelope(tmp_path, h, DOC, sign_cert=a.path / "sign.crt",
                            sign_key=a.path / "sign.key", recip=b.path / "encrypt.crt")
    opened = open_envelope(data, node=b.identity, trust=b.store.trust(), directory=b.store,
                           now=now())
    assert opened.document == DOC


def test_openssl_legacy_cbc_is_refused_unless_allowed(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = openssl_envelope(tmp_path, h, DOC, sign_cert=a.path / "sign.crt",
                            sign_key=a.path / "sign.key", recip=b.path / "encrypt.crt",
                            legacy=True)
    with pytest.raises(AlgorithmNotAllowed):
        open_envelope(data, node=b.identity, trust=b.store.trust(), directory=b.store,
                      now=now())
    opened = open_envelope(data, node=b.identity, trust=b.store.trust(), directory=b.store,
                           now=now(), policy=OpenPolicy(allow_legacy=True))
    assert opened.document == DOC


def test_receipt_signature_verifies_with_openssl(tmp_path: Path) -> None:
    _, b = pair(tmp_path)
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    receipt = build_receipt(for_header=h, envelope_digest="ab" * 32, status="Delivered",
                            errors=[], received=now(), node=b.identity, now=now())
    (tmp_path / "r.der").write_bytes(parse_envelope(receipt).payload_der)
    openssl.verify(tmp_path, Path("r.der"), b.path / "ca.crt", Path("r.xml"))
    assert b"<EnvelopeDigest" in (tmp_path / "r.xml").read_bytes()


def test_cli_both_ways_with_openssl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair(tmp_path)
    doc = tmp_path / "doc.xml"
    doc.write_bytes(DOC)
    env = tmp_path / "env.xml"
    code = gateway_main(["seal", "--from", str(A), "--to", str(B),
                         "--sign-key", str(a.path / "sign.key"),
                         "--sign-cert", str(a.path / "sign.crt"),
                         "--recipient-cert", str(b.path / "encrypt.crt"),
                         "--service", "interstate", "--no-validate", str(doc), "-o", str(env)])
    assert code == 0
    _, document = check_with_openssl(tmp_path, env.read_bytes(), b.path / "encrypt.crt",
                                     b.path / "encrypt.key", a.path / "ca.crt")
    assert document == DOC
    # and back: OpenSSL builds, `gateway open` opens
    h = Header.new(from_party=B, to_party=A, service="interstate", action="Note",
                   created=now())
    (tmp_path / "back.xml").write_bytes(openssl_envelope(
        tmp_path, h, DOC, sign_cert=b.path / "sign.crt", sign_key=b.path / "sign.key",
        recip=a.path / "encrypt.crt"))
    out = tmp_path / "out.xml"
    code = gateway_main(["open", "--decrypt-key", str(a.path / "encrypt.key"),
                         "--decrypt-cert", str(a.path / "encrypt.crt"),
                         "--trust", str(b.path / "ca.crt"),
                         "--sender-cert", str(b.path / "sign.crt"),
                         str(tmp_path / "back.xml"), "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.read_bytes() == DOC


def test_subject_key_identifier_recipient_and_signer_ids(tmp_path: Path) -> None:
    """OpenSSL's ``-keyid`` names the recipient and the signer by subjectKeyIdentifier."""
    a, b = pair(tmp_path)
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = openssl_envelope(tmp_path, h, DOC, sign_cert=a.path / "sign.crt",
                            sign_key=a.path / "sign.key", recip=b.path / "encrypt.crt",
                            keyid=True)
    der = parse_envelope(data).payload_der
    rid = acms.ContentInfo.load(der)["content"]["recipient_infos"][0].chosen["rid"]
    assert rid.name == "subject_key_identifier"
    signed = acms.ContentInfo.load((tmp_path / "os-signed.der").read_bytes())
    assert signed["content"]["signer_infos"][0]["sid"].name == "subject_key_identifier"
    opened = open_envelope(data, node=b.identity, trust=b.store.trust(), directory=b.store,
                           now=now())
    assert opened.document == DOC


def test_ecdsa_signer_opens_with_openssl(tmp_path: Path) -> None:
    a, b = pair(tmp_path, sign_algorithm="ecdsa-p256")
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = seal(DOC, h, sender=a.identity, recipient_cert=b.identity.encryption_cert)
    _, document = check_with_openssl(tmp_path, data, b.path / "encrypt.crt",
                                     b.path / "encrypt.key", a.path / "ca.crt")
    assert document == DOC
    back = openssl_envelope(tmp_path, h, DOC, sign_cert=a.path / "sign.crt",
                            sign_key=a.path / "sign.key", recip=b.path / "encrypt.crt")
    assert open_envelope(back, node=b.identity, trust=b.store.trust(), directory=b.store,
                         now=now()).document == DOC


def test_self_signed_nodes_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``gateway keys generate --self-signed``: each certificate is its own trust anchor,
    registered (and trusted) by the partner with ``import-partner``."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for party, out in ((A, a_dir), (B, b_dir)):
        assert gateway_main(["keys", "generate", "--party", str(party), "--out", str(out),
                             "--self-signed", "--rsa-bits", "2048"]) == 0
    assert not (a_dir / "ca.crt").exists()
    assert gateway_main(["keys", "import-partner", "--keys", str(b_dir), "--party", str(A),
                         str(a_dir / "sign.crt"), str(a_dir / "encrypt.crt")]) == 0
    capsys.readouterr()
    a, b = Keystore(a_dir), Keystore(b_dir)
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = seal(DOC, h, sender=a.identity(), recipient_cert=b.identity().encryption_cert)
    opened = open_envelope(data, node=b.identity(), trust=b.trust(), directory=b, now=now())
    assert opened.document == DOC
    _, document = check_with_openssl(tmp_path, data, b_dir / "encrypt.crt",
                                     b_dir / "encrypt.key", a_dir / "sign.crt")
    assert document == DOC
