"""Cross-implementation, elliptic-curve suite: what the gateway seals to a P-256 recipient
opens with stock ``openssl cms -decrypt``, and what ``openssl cms -encrypt -aes-256-gcm
-recip EC.crt -keyopt ecdh_kdf_md:sha256`` builds opens in the gateway; OpenSSL's other
choices (SHA-1 KDF, cofactor DH, AES-128) are refused. Keys made by ``openssl`` and by
``gateway keys generate --curve p256``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from gateway.errors import AlgorithmNotAllowed
from gateway.protocol import cms
from gateway.protocol.cms import enveloped
from gateway.protocol.cms.kari import key_agree_info
from gateway.protocol.envelope import (
    Header,
    SealedContent,
    build_envelope,
    parse_envelope,
    parse_sealed,
)
from gateway.protocol.identity import NodeIdentity, StaticDirectory
from gateway.protocol.party import Party
from gateway.protocol.seal import open_envelope, seal
from tests.support import openssl
from tests.support.openssl import DOC, A, B, now
from tests.support.security import pair

pytestmark = pytest.mark.integration

def openssl_ec_node(directory: Path, party: Party) -> tuple[NodeIdentity, Path]:
    """A node whose CA, signing and encryption keys (P-256) were all made by openssl."""
    return openssl.make_node(directory, party, ec=True)


OsNodes = tuple[Path, NodeIdentity, Path, NodeIdentity]


@pytest.fixture(scope="module")
def os_nodes(tmp_path_factory: pytest.TempPathFactory) -> OsNodes:
    """(dir, sender, sender CA, recipient): dir/a and dir/b hold openssl-made P-256 keys."""
    base = tmp_path_factory.mktemp("openssl-ec-nodes")
    sender, sender_ca = openssl_ec_node(base / "a", A)
    recipient, _ = openssl_ec_node(base / "b", B)
    return base, sender, sender_ca, recipient


def check_with_openssl(work: Path, envelope: bytes, recip: Path, key: Path,
                       trust: Path) -> tuple[Header, bytes]:
    """The protocol's "Checking by hand" commands, verbatim, on ``envelope``."""
    (work / "payload.der").write_bytes(parse_envelope(envelope).payload_der)
    openssl.decrypt(work, Path("payload.der"), recip, key, Path("signed.der"))
    openssl.verify(work, Path("signed.der"), trust, Path("sealed.xml"))
    return parse_sealed((work / "sealed.xml").read_bytes())


def openssl_payload(work: Path, content: bytes, recip: Path, **options: object) -> bytes:
    (work / "content.bin").write_bytes(content)
    openssl.encrypt_ec(work, Path("content.bin"), recip, Path("os-payload.der"),
                       **options)  # type: ignore[arg-type]
    return (work / "os-payload.der").read_bytes()


def test_gateway_keys_gateway_seal_opens_with_openssl(tmp_path: Path) -> None:
    a, b = pair(tmp_path, sign_algorithm="p256", b_keys="p256")
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = seal(DOC, h, sender=a.identity, recipient_cert=b.identity.encryption_cert)
    inner, document = check_with_openssl(tmp_path, data, b.path / "encrypt.crt",
                                         b.path / "encrypt.key", a.path / "ca.crt")
    assert document == DOC
    assert inner == h


def test_openssl_keys_gateway_seal_opens_with_openssl(tmp_path: Path,
                                                      os_nodes: OsNodes) -> None:
    base, sender, sender_ca, recipient = os_nodes
    h = Header.new(from_party=A, to_party=B, service="international", action="Note",
                   created=now())
    data = seal(DOC, h, sender=sender, recipient_cert=recipient.encryption_cert)
    _, document = check_with_openssl(tmp_path, data, base / "b" / "enc.pem",
                                     base / "b" / "enc.key", sender_ca)
    assert document == DOC


def test_user_keying_material_interoperates(tmp_path: Path, os_nodes: OsNodes,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyAgreeRecipientInfo carrying a ukm (which the gateway reads but does not
    write) derives the same key in OpenSSL: the KDF's shared info is the same."""
    base, sender, sender_ca, recipient = os_nodes
    monkeypatch.setattr(enveloped, "key_agree_info",
                        partial(key_agree_info, ukm=b"\x07" * 64))
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    data = seal(DOC, h, sender=sender, recipient_cert=recipient.encryption_cert)
    _, document = check_with_openssl(tmp_path, data, base / "b" / "enc.pem",
                                     base / "b" / "enc.key", sender_ca)
    assert document == DOC


@pytest.mark.parametrize("keyid", [False, True])
def test_openssl_built_message_opens_in_gateway(tmp_path: Path, os_nodes: OsNodes,
                                                keyid: bool) -> None:
    """``openssl cms -sign`` (ECDSA) then ``-encrypt -aes-256-gcm -keyopt
    ecdh_kdf_md:sha256`` (recipient named by issuer and serial, or with ``-keyid`` by
    subject key identifier)."""
    base, sender, sender_ca, recipient = os_nodes
    h = Header.new(from_party=A, to_party=B, service="interstate", action="Note",
                   created=now())
    (tmp_path / "sealed-in.xml").write_bytes(SealedContent(h, DOC).to_bytes())
    openssl.sign(tmp_path, Path("sealed-in.xml"), base / "a" / "sign.pem",
                 base / "a" / "sign.key", Path("os-signed.der"), keyid=keyid)
    openssl.encrypt_ec(tmp_path, Path("os-signed.der"), base / "b" / "enc.pem",
                       Path("os-payload.der"), keyid=keyid)
    data = build_envelope(h, (tmp_path / "os-payload.der").read_bytes())
    opened = open_envelope(data, node=recipient, trust=[openssl.load_cert(sender_ca)],
                           directory=StaticDirectory({A: [sender.signing_cert]}), now=now())
    assert opened.document == DOC
    assert opened.header == h


def test_openssl_to_gateway_keys(tmp_path: Path) -> None:
    _, b = pair(tmp_path, sign_algorithm="p256", b_keys="p256")
    der = openssl_payload(tmp_path, DOC, b.path / "encrypt.crt")
    ident = b.identity
    assert cms.decrypt(der, key=ident.encryption_key, cert=ident.encryption_cert) == DOC


@pytest.mark.parametrize(("options", "expected"), [
    ({"keyopts": ()}, "sha256kdf-scheme is required"),  # OpenSSL's default: SHA-1 KDF
    ({"keyopts": ("ecdh_kdf_md:sha384",)}, "sha256kdf-scheme is required"),
    ({"keyopts": ("ecdh_kdf_md:sha256", "ecdh_cofactor_mode:1")},
     "sha256kdf-scheme is required"),
    ({"cipher": "-aes-128-gcm"}, "AES-256-GCM is required"),
])
def test_openssl_other_choices_are_refused(tmp_path: Path, os_nodes: OsNodes,
                                           options: dict[str, object], expected: str) -> None:
    base, _, _, recipient = os_nodes
    der = openssl_payload(tmp_path, DOC, base / "b" / "enc.pem", **options)
    with pytest.raises(AlgorithmNotAllowed, match=expected):
        cms.decrypt(der, key=recipient.encryption_key, cert=recipient.encryption_cert)
