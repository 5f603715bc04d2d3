"""Elliptic-curve node keys: ``gateway keys generate --curve p256``, loading an EC
encryption key, registering EC partner certificates at an RSA node and the reverse, and
choosing the certificate to seal to when a partner has both kinds registered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.cli import main
from gateway.errors import KeyMaterialError, UsageError
from gateway.node.keystore import Keystore, generate_node, load_private_key
from gateway.protocol import certs
from gateway.protocol.party import Party
from tests.support.security import NOW, issue, make_node, pair

P = Party.parse("iso3166:DE")


def _usage(cert: x509.Certificate) -> x509.KeyUsage:
    return cert.extensions.get_extension_for_class(x509.KeyUsage).value


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) \
        and isinstance(key.curve, ec.SECP256R1)


def test_cli_generate_curve_p256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys"
    assert main(["keys", "generate", "--party", str(P), "--out", str(out),
                 "--curve", "p256"]) == 0
    capsys.readouterr()
    identity = Keystore(out).identity()
    for name in ("ca.key", "sign.key", "encrypt.key"):
        assert _is_p256(load_private_key(out / name))
        assert (out / name).stat().st_mode & 0o777 == 0o600
    assert _is_p256(identity.signing_cert.public_key())
    assert _is_p256(identity.encryption_cert.public_key())
    enc = _usage(identity.encryption_cert)
    assert enc.key_agreement
    assert not enc.key_encipherment
    assert not enc.digital_signature
    sign = _usage(identity.signing_cert)
    assert sign.digital_signature
    assert not sign.key_agreement
    certs.validate_chain(identity.encryption_cert, trust=Keystore(out).trust(),
                         intermediates=[], at=[datetime.now(UTC)], usage="encrypt")
    assert main(["keys", "check", "--keys", str(out)]) == 0


def test_cli_curve_excludes_sign_algorithm(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["keys", "generate", "--party", str(P), "--out", str(tmp_path / "k"),
              "--curve", "p256", "--sign-algorithm", "rsa"])
    assert caught.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_generate_curve_csr_and_self_signed(tmp_path: Path) -> None:
    generate_node(tmp_path / "csr", P, now=NOW, curve="p256", csr=True)
    csr = x509.load_pem_x509_csr((tmp_path / "csr" / "encrypt.csr").read_bytes())
    assert _is_p256(csr.public_key())
    assert csr.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement
    generate_node(tmp_path / "self", P, now=NOW, curve="p256", self_signed=True)
    identity = Keystore(tmp_path / "self").identity()
    assert _is_p256(identity.encryption_key.public_key())
    with pytest.raises(UsageError, match="p384"):
        generate_node(tmp_path / "bad", P, now=NOW, curve="p384")  # type: ignore[arg-type]


def test_encrypt_key_must_match_and_be_p256(tmp_path: Path) -> None:
    node = make_node(tmp_path, "fips:0600000", sign_algorithm="p256")
    p384 = ec.generate_private_key(ec.SECP384R1())
    cert = issue(issuer_key=node.ca_key, issuer_cert=node.ca_cert, subject="enc",
                 key=p384, not_before=NOW - timedelta(days=1),
                 not_after=NOW + timedelta(days=9), usage="encrypt")
    (node.path / "encrypt.crt").write_bytes(certs.pem(cert))
    with pytest.raises(KeyMaterialError, match="does not match"):
        Keystore(node.path).identity()
    key_file = node.path / "encrypt.key"
    key_file.unlink()
    from gateway.node.keystore import private_key_bytes

    key_file.write_bytes(private_key_bytes(p384, None))
    key_file.chmod(0o600)
    with pytest.raises(KeyMaterialError, match="P-256") as caught:
        Keystore(node.path).identity()
    assert caught.value.where == str(node.path / "encrypt.crt")


def test_rsa_node_registers_an_ec_partner_and_the_reverse(tmp_path: Path) -> None:
    rsa_node, ec_node = pair(tmp_path, b_keys="p256")
    to_ec = rsa_node.store.encryption_certificate_for(ec_node.party, NOW)
    assert to_ec == ec_node.identity.encryption_cert  # not the EC signing certificate
    to_rsa = ec_node.store.encryption_certificate_for(rsa_node.party, NOW)
    assert isinstance(to_rsa.public_key(), rsa.RSAPublicKey)


def test_partner_migrating_to_ec_is_sealed_to_the_newer_certificate(tmp_path: Path) -> None:
    """A partner that registers an EC encryption certificate next to its RSA one (the
    migration in docs/operations.md) is sealed to the one lasting longest."""
    a, b = pair(tmp_path)
    twin = make_node(tmp_path / "twin", str(b.party), sign_algorithm="p256")
    new_cert = issue(issuer_key=b.ca_key, issuer_cert=b.ca_cert, subject="enc-ec",
                     key=twin.identity.encryption_key, not_before=NOW - timedelta(days=1),
                     not_after=b.identity.encryption_cert.not_valid_after_utc
                     + timedelta(days=30), usage="encrypt")
    a.store.import_partner(b.party, [new_cert], now=NOW)
    assert a.store.encryption_certificate_for(b.party, NOW) == new_cert
