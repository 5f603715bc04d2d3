"""Encryption-key rollover: extra decryption keys in ``KEYS/decrypt/`` (the next key, or
earlier ones), how they load, how opening picks among them, and a whole rollover between
two nodes without losing a message in flight."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.cli import main
from gateway.errors import (
    CertificateUntrusted,
    DecryptionFailed,
    KeyFileInsecure,
    KeyMaterialError,
)
from gateway.node.keystore import (
    Keystore,
    generate_node,
    load_private_key,
    private_key_bytes,
)
from gateway.protocol import certs
from gateway.protocol.envelope import Header, SealedContent, build_envelope
from gateway.protocol.identity import NodeIdentity
from gateway.protocol.party import Party
from gateway.protocol.seal import open_envelope, seal
from tests.support import openssl
from tests.support.security import NOW, Node, issue, pair, spare_ec_key

DOC = b'<?xml version="1.0"?>\n<Note xmlns="urn:x">TESTPERSON 987654323</Note>\n'


@cache
def rsa_key(index: int) -> rsa.RSAPrivateKey:
    """Distinct RSA-2048 keys, made once per process."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def encryption_cert(node: Node, key: rsa.RSAPrivateKey, *, days: int = 900,
                    usage: str = "encrypt", expired: bool = False) -> x509.Certificate:
    """An encryption certificate for ``key`` from ``node``'s CA (partners trust it)."""
    start = NOW - timedelta(days=30 if expired else 1)
    end = NOW - timedelta(days=1) if expired else NOW + timedelta(days=days)
    return issue(issuer_key=node.ca_key, issuer_cert=node.ca_cert,
                 subject=f"{node.party} encrypt", key=key, not_before=start, not_after=end,
                 usage=usage)


def put_pair(keys_dir: Path, name: str, key: rsa.RSAPrivateKey | object,
             cert: x509.Certificate, *, mode: int = 0o600) -> Path:
    """Write ``decrypt/NAME.key`` (with ``mode``) and ``decrypt/NAME.crt``."""
    folder = keys_dir / "decrypt"
    folder.mkdir(exist_ok=True)
    key_file = folder / f"{name}.key"
    key_file.write_bytes(private_key_bytes(key, None))  # type: ignore[arg-type]
    key_file.chmod(mode)
    (folder / f"{name}.crt").write_bytes(certs.pem(cert))
    return key_file


def header(sender: Node | NodeIdentity, to: Node | NodeIdentity) -> Header:
    return Header.new(from_party=sender.party, to_party=to.party, service="interstate",
                      action="Note", created=NOW)


def open_at(node: Node, data: bytes, identity: NodeIdentity | None = None) -> bytes:
    """Open ``data`` at ``node`` (its key directory as it is now)."""
    me = identity if identity is not None else Keystore(node.path).identity()
    return open_envelope(data, node=me, trust=node.store.trust(), directory=node.store,
                         now=NOW).document


def test_no_decrypt_folder_means_no_extra_keys(tmp_path: Path) -> None:
    _, b = pair(tmp_path)
    assert not (b.path / "decrypt").exists()
    assert Keystore(b.path).identity().decryption == ()


def test_message_sealed_to_the_next_key_opens(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    nxt = encryption_cert(b, rsa_key(1))
    put_pair(b.path, "next", rsa_key(1), nxt)
    identity = Keystore(b.path).identity()
    assert [certs.fingerprint(c) for _, c in identity.decryption] == [certs.fingerprint(nxt)]
    assert identity.encryption_cert == b.identity.encryption_cert  # main key unchanged
    to_next = seal(DOC, header(a, b), sender=a.identity, recipient_cert=nxt)
    to_main = seal(DOC, header(a, b), sender=a.identity,
                   recipient_cert=b.identity.encryption_cert)
    assert open_at(b, to_next, identity) == DOC
    assert open_at(b, to_main, identity) == DOC
    # without the extra pair the same envelope does not open
    with pytest.raises(DecryptionFailed):
        open_at(b, to_next, b.identity)


def test_message_sealed_to_the_previous_key_opens_after_the_swap(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    in_flight = seal(DOC, header(a, b), sender=a.identity,
                     recipient_cert=b.identity.encryption_cert)
    # the main encryption key is replaced; the old pair moves into decrypt/
    (b.path / "decrypt").mkdir()
    os.replace(b.path / "encrypt.key", b.path / "decrypt" / "previous.key")
    os.replace(b.path / "encrypt.crt", b.path / "decrypt" / "previous.crt")
    new = encryption_cert(b, rsa_key(2))
    (b.path / "encrypt.key").write_bytes(private_key_bytes(rsa_key(2), None))
    (b.path / "encrypt.key").chmod(0o600)
    (b.path / "encrypt.crt").write_bytes(certs.pem(new))
    identity = Keystore(b.path).identity()
    assert identity.encryption_cert == new
    assert [c for _, c in identity.decryption] == [b.identity.encryption_cert]
    assert open_at(b, in_flight, identity) == DOC
    assert open_at(b, seal(DOC, header(a, b), sender=a.identity, recipient_cert=new),
                   identity) == DOC


def test_message_for_a_key_the_node_does_not_hold_is_refused(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    put_pair(b.path, "next", rsa_key(1), encryption_cert(b, rsa_key(1)))
    identity = Keystore(b.path).identity()
    stranger = encryption_cert(b, rsa_key(3))
    data = seal(DOC, header(a, b), sender=a.identity, recipient_cert=stranger)
    with pytest.raises(DecryptionFailed, match="no recipient info matches any of this "
                                               "node's decryption keys") as caught:
        open_at(b, data, identity)
    assert caught.value.code == "DecryptionFailed"


def test_a_key_is_not_tried_on_a_recipient_info_that_does_not_name_it(tmp_path: Path) -> None:
    # Wrapped with the extra key's public key, but the recipient info names another
    # certificate (other issuer and serial): the node holds the key, yet must not use it.
    a, b = pair(tmp_path)
    nxt = encryption_cert(b, rsa_key(1))
    put_pair(b.path, "next", rsa_key(1), nxt)
    identity = Keystore(b.path).identity()
    other_ca = spare_ec_key()
    ca = issue(issuer_key=other_ca, issuer_cert=None, subject="Other CA", key=other_ca,
               not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=9),
               usage="none", ca=True)
    alias = issue(issuer_key=other_ca, issuer_cert=ca, subject="alias", key=rsa_key(1),
                  not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=9),
                  usage="encrypt")
    assert alias.public_key() == nxt.public_key()
    data = seal(DOC, header(a, b), sender=a.identity, recipient_cert=alias)
    with pytest.raises(DecryptionFailed, match="no recipient info matches"):
        open_at(b, data, identity)


def test_readable_extra_key_is_refused(tmp_path: Path) -> None:
    _, b = pair(tmp_path)
    key_file = put_pair(b.path, "next", rsa_key(1), encryption_cert(b, rsa_key(1)),
                        mode=0o644)
    with pytest.raises(KeyFileInsecure, match="chmod 600") as caught:
        Keystore(b.path).identity()
    assert caught.value.where == str(key_file)
    assert key_file in Keystore(b.path).insecure_key_files()


def test_extra_key_is_read_with_the_same_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    generate_node(out, Party.parse("iso3166:NL"), now=NOW, rsa_bits=2048,
                  passphrase=b"s3cret", self_signed=True)
    enc_key = load_private_key(out / "encrypt.key", b"s3cret")
    cert = issue(issuer_key=enc_key, issuer_cert=None, subject="next", key=rsa_key(1),
                 not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=9),
                 usage="encrypt")
    folder = out / "decrypt"
    folder.mkdir()
    for name, passphrase in (("next", b"s3cret"), ("other", b"different")):
        (folder / f"{name}.key").write_bytes(private_key_bytes(rsa_key(1), passphrase))
        (folder / f"{name}.key").chmod(0o600)
        (folder / f"{name}.crt").write_bytes(certs.pem(cert))
    with pytest.raises(KeyMaterialError, match="wrong passphrase") as caught:
        Keystore(out, b"s3cret").identity()
    assert caught.value.where == str(folder / "other.key")
    for suffix in (".key", ".crt"):
        (folder / f"other{suffix}").unlink()
    assert [c for _, c in Keystore(out, b"s3cret").identity().decryption] == [cert]


@pytest.mark.parametrize("case", ["mismatch", "ec-key-encipherment", "no-key-encipherment",
                                  "key-without-cert", "cert-without-key"])
def test_bad_extra_pair_names_the_file(tmp_path: Path, case: str) -> None:
    _, b = pair(tmp_path)
    folder = b.path / "decrypt"
    if case == "mismatch":
        put_pair(b.path, "next", rsa_key(1), encryption_cert(b, rsa_key(2)))
        expected, where = "decrypt/next.key does not match decrypt/next.crt", "next.key"
    elif case == "ec-key-encipherment":  # an EC key agrees keys: keyAgreement, not this
        ec_cert = issue(issuer_key=b.ca_key, issuer_cert=b.ca_cert, subject="ec",
                        key=spare_ec_key(), not_before=NOW - timedelta(days=1),
                        not_after=NOW + timedelta(days=9), usage="key-encipherment")
        put_pair(b.path, "next", spare_ec_key(), ec_cert)
        expected, where = "decrypt/next.crt: .*keyAgreement", "next.crt"
    elif case == "no-key-encipherment":
        put_pair(b.path, "next", rsa_key(1), encryption_cert(b, rsa_key(1), usage="sign"))
        expected, where = "decrypt/next.crt: .*keyEncipherment", "next.crt"
    elif case == "key-without-cert":
        put_pair(b.path, "next", rsa_key(1), encryption_cert(b, rsa_key(1)))
        (folder / "next.crt").unlink()
        expected, where = "decrypt/next.key has no decrypt/next.crt", "next.key"
    else:
        put_pair(b.path, "next", rsa_key(1), encryption_cert(b, rsa_key(1)))
        (folder / "next.key").unlink()
        expected, where = "decrypt/next.crt has no decrypt/next.key", "next.crt"
    with pytest.raises(KeyMaterialError, match=expected) as caught:
        Keystore(b.path).identity()
    assert caught.value.where == str(folder / where)


def test_main_encryption_certificate_needs_key_encipherment_too(tmp_path: Path) -> None:
    _, b = pair(tmp_path)
    key = load_private_key(b.path / "encrypt.key")
    assert isinstance(key, rsa.RSAPrivateKey)
    (b.path / "encrypt.crt").write_bytes(certs.pem(encryption_cert(b, key, usage="sign")))
    with pytest.raises(KeyMaterialError, match="keyEncipherment") as caught:
        Keystore(b.path).identity()
    assert caught.value.where == str(b.path / "encrypt.crt")


def test_keys_list_and_check_show_extra_decryption_certificates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, b = pair(tmp_path)
    nxt = encryption_cert(b, rsa_key(1))
    put_pair(b.path, "next", rsa_key(1), nxt)
    assert main(["keys", "list", "--keys", str(b.path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    extra = [r for r in rows if r["role"] == "decrypt:next"]
    assert [r["fingerprint"] for r in extra] == [certs.fingerprint(nxt)]
    assert extra[0]["party"] == str(b.party)
    assert main(["keys", "check", "--keys", str(b.path)]) == 0
    capsys.readouterr()
    put_pair(b.path, "old", rsa_key(2), encryption_cert(b, rsa_key(2), expired=True))
    assert main(["keys", "check", "--keys", str(b.path)]) == 1
    text = capsys.readouterr().out
    assert "EXPIRED   decrypt:old" in text
    assert "remove the pair" in text
    assert "decrypt:next" not in text
    (b.path / "decrypt" / "next.key").chmod(0o640)
    assert main(["keys", "check", "--keys", str(b.path)]) == 1
    assert "INSECURE" in capsys.readouterr().out


@pytest.mark.integration
@pytest.mark.parametrize("keyid", [False, True])
def test_openssl_message_to_the_extra_key_opens(tmp_path: Path, keyid: bool) -> None:
    # openssl cms -encrypt to the extra certificate, by issuer+serial or by key identifier
    a, b = pair(tmp_path)
    nxt = encryption_cert(b, rsa_key(1))
    put_pair(b.path, "next", rsa_key(1), nxt)
    h = header(a, b)
    (tmp_path / "sealed.xml").write_bytes(SealedContent(h, DOC).to_bytes())
    openssl.sign(tmp_path, Path("sealed.xml"), a.path / "sign.crt", a.path / "sign.key",
                 Path("signed.der"))
    openssl.encrypt(tmp_path, Path("signed.der"), b.path / "decrypt" / "next.crt",
                    Path("payload.der"), keyid=keyid)
    data = build_envelope(h, (tmp_path / "payload.der").read_bytes())
    assert open_at(b, data) == DOC


def test_full_rollover_loses_no_message(tmp_path: Path) -> None:
    """The procedure of docs/operations.md, between partner A and node B rolling over."""
    a, b = pair(tmp_path)
    old_enc, old_sign = b.identity.encryption_cert, b.identity.signing_cert

    # 1. B generates its new keys beside the old ones.
    staging = tmp_path / "keys.next"
    generate_node(staging, b.party, now=NOW, days=400, rsa_bits=2048)
    new_enc = certs.load_certificates_file(staging / "encrypt.crt")[0]
    new_sign = certs.load_certificates_file(staging / "sign.crt")[0]
    # Signing with the new key before A registered it is refused: order matters.
    early = Keystore(staging).identity()
    with pytest.raises(CertificateUntrusted):
        open_at(a, seal(DOC, header(early, a), sender=early,
                        recipient_cert=b.store.encryption_certificate_for(a.party, NOW)))

    # 2. The new encryption key joins decrypt/ (copied with its 0600 mode).
    (b.path / "decrypt").mkdir()
    shutil.copy2(staging / "encrypt.key", b.path / "decrypt" / "next.key")
    shutil.copy2(staging / "encrypt.crt", b.path / "decrypt" / "next.crt")
    b_during = Keystore(b.path).identity()
    assert [c for _, c in b_during.decryption] == [new_enc]

    # A still encrypts to the old certificate: this envelope is in flight (retried as is).
    assert a.store.encryption_certificate_for(b.party, NOW) == old_enc
    in_flight = seal(DOC, header(a, b), sender=a.identity,
                     recipient_cert=a.store.encryption_certificate_for(b.party, NOW))

    # 3. A registers B's new certificates and from now on encrypts to the new one.
    a.store.import_partner(b.party, [certs.load_certificates_file(staging / n)[0]
                                     for n in ("ca.crt", "sign.crt", "encrypt.crt")],
                           now=NOW)
    assert a.store.encryption_certificate_for(b.party, NOW) == new_enc
    to_new = seal(DOC, header(a, b), sender=a.identity,
                  recipient_cert=a.store.encryption_certificate_for(b.party, NOW))
    assert open_at(b, in_flight, b_during) == DOC
    assert open_at(b, to_new, b_during) == DOC
    # B's old signature is still accepted meanwhile.
    from_old = seal(DOC, header(b, a), sender=b_during,
                    recipient_cert=b.store.encryption_certificate_for(a.party, NOW))
    assert open_envelope(from_old, node=a.identity, trust=a.store.trust(),
                         directory=a.store, now=NOW).signer == old_sign

    # 4. B swaps: old encryption pair into decrypt/, new keys into place, new CA trusted.
    os.replace(b.path / "encrypt.key", b.path / "decrypt" / "previous.key")
    os.replace(b.path / "encrypt.crt", b.path / "decrypt" / "previous.crt")
    for name in ("sign.key", "sign.crt", "encrypt.key", "encrypt.crt"):
        os.replace(staging / name, b.path / name)
    os.replace(staging / "ca.crt", b.path / "trust" / "next-ca.pem")
    for name in ("next.key", "next.crt"):
        (b.path / "decrypt" / name).unlink()
    b_after = Keystore(b.path).identity()
    assert (b_after.encryption_cert, b_after.signing_cert) == (new_enc, new_sign)
    assert [c for _, c in b_after.decryption] == [old_enc]

    # The envelope sealed to the old certificate still opens; so does the new traffic.
    assert open_at(b, in_flight, b_after) == DOC
    assert open_at(b, to_new, b_after) == DOC

    # B's new signature is accepted by A, which registered the new signing certificate.
    from_new = seal(DOC, header(b, a), sender=b_after,
                    recipient_cert=b.store.encryption_certificate_for(a.party, NOW))
    opened = open_envelope(from_new, node=a.identity, trust=a.store.trust(),
                           directory=a.store, now=NOW)
    assert opened.signer_fingerprint == certs.fingerprint(new_sign)
    assert opened.document == DOC

    # 5. Once retries have expired the previous pair is removed; the old envelope is dead.
    for name in ("previous.key", "previous.crt"):
        (b.path / "decrypt" / name).unlink()
    with pytest.raises(DecryptionFailed):
        open_at(b, in_flight)
    assert open_at(b, to_new) == DOC
