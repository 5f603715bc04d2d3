"""Keys: generation, file permissions, passphrases, registration, chain checks, and the
``gateway keys`` commands."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.cli import main
from gateway.errors import (
    CertificateExpired,
    CertificateUntrusted,
    CertificateUsageInvalid,
    KeyFileInsecure,
    KeyMaterialError,
    UsageError,
)
from gateway.node.keystore import Keystore, generate_node, load_private_key
from gateway.protocol import certs
from gateway.protocol.party import Party
from tests.support.security import NOW, issue, make_node, pair, spare_ec_key, spare_rsa_key

P = Party.parse("fips:0600000")


def test_generate_writes_the_layout_with_private_modes(tmp_path: Path) -> None:
    node = make_node(tmp_path, "fips:0600000")
    for name in ("sign.key", "encrypt.key", "ca.key"):
        assert (node.path / name).stat().st_mode & 0o777 == 0o600
    assert (node.path / "party").read_text().strip() == "fips:0600000"
    sign, enc = node.identity.signing_cert, node.identity.encryption_cert
    ku = sign.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert ku.content_commitment
    assert not ku.key_encipherment
    ku = enc.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_encipherment
    assert not ku.digital_signature
    assert certs.party_in_san(sign) == P
    assert "fips:0600000" in sign.subject.rfc4514_string()
    assert sign.public_key().key_size == 3072  # type: ignore[union-attr]
    path = certs.validate_chain(sign, trust=node.store.trust(), at=[NOW], usage="sign")
    assert path[-1] == node.ca_cert


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    node = make_node(tmp_path, "fips:0600000")
    with pytest.raises(UsageError):
        generate_node(node.path, P, now=NOW, rsa_bits=2048)


def test_passphrase_and_csr(tmp_path: Path) -> None:
    out = tmp_path / "csr"
    generate_node(out, P, now=NOW, rsa_bits=2048, passphrase=b"s3cret", csr=True)
    assert not (out / "sign.crt").exists()
    csr = x509.load_pem_x509_csr((out / "sign.csr").read_bytes())
    assert csr.is_signature_valid
    assert b"ENCRYPTED" in (out / "sign.key").read_bytes()
    assert load_private_key(out / "sign.key", b"s3cret") is not None
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        load_private_key(out / "sign.key", b"wrong")
    with pytest.raises(KeyMaterialError, match="encrypted"):
        load_private_key(out / "sign.key")


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    node = make_node(tmp_path, "fips:0600000")
    (node.path / "sign.key").chmod(0o640)
    with pytest.raises(KeyFileInsecure, match="chmod 600"):
        Keystore(node.path).identity()
    assert node.path / "sign.key" in node.store.insecure_key_files()


def test_identity_party_must_match(tmp_path: Path) -> None:
    node = make_node(tmp_path, "fips:0600000")
    with pytest.raises(KeyMaterialError, match="belongs to"):
        Keystore(node.path).identity(Party.parse("fips:4800000"))


def test_registration_and_rollover(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    assert {certs.fingerprint(c) for c in b.store.certificates_for(a.party)} == {
        certs.fingerprint(a.identity.signing_cert),
        certs.fingerprint(a.identity.encryption_cert)}
    # a second, longer-lived encryption certificate: the newest wins for sealing
    key = spare_rsa_key()
    newer = issue(issuer_key=a.ca_key, issuer_cert=a.ca_cert, subject="enc 2", key=key,
                  not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=900),
                  usage="encrypt")
    b.store.import_partner(a.party, [newer], now=NOW)
    assert b.store.encryption_certificate_for(a.party, NOW) == newer
    assert len(b.store.partner_certificates(a.party)) == 3


def test_import_refuses_untrusted_and_expired(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    rogue_key = spare_ec_key()
    rogue = issue(issuer_key=rogue_key, issuer_cert=None, subject="Rogue CA", key=rogue_key,
                  not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=9),
                  usage="none", ca=True)
    leaf = issue(issuer_key=rogue_key, issuer_cert=rogue, subject="x", key=spare_rsa_key(),
                 not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=9))
    with pytest.raises(CertificateUntrusted):
        b.store.import_partner(a.party, [leaf], now=NOW)
    old = issue(issuer_key=a.ca_key, issuer_cert=a.ca_cert, subject="old",
                key=spare_rsa_key(), not_before=NOW - timedelta(days=9),
                not_after=NOW - timedelta(days=1))
    with pytest.raises(CertificateExpired):
        b.store.import_partner(a.party, [old], now=NOW)


def test_self_signed_partner_certificate_becomes_its_own_anchor(tmp_path: Path) -> None:
    _, b = pair(tmp_path)
    key = spare_rsa_key()
    cert = issue(issuer_key=key, issuer_cert=None, subject="self", key=key,
                 not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=9))
    done = b.store.import_partner(Party.parse("iso3166:DE"), [cert], now=NOW)
    assert [what for what, _, _ in done] == ["trust", "partner"]
    assert cert in b.store.trust()
    certs.validate_chain(cert, trust=b.store.trust(), at=[NOW], usage="sign")


def test_chain_rules(tmp_path: Path) -> None:
    a = make_node(tmp_path, "fips:0600000")
    trust = [a.ca_cert]
    # a leaf (not a CA) cannot issue
    leaf_key = spare_rsa_key()
    child = issue(issuer_key=a.identity.signing_key, issuer_cert=a.identity.signing_cert,
                  subject="grandchild", key=leaf_key, not_before=NOW - timedelta(days=1),
                  not_after=NOW + timedelta(days=9))
    with pytest.raises(CertificateUntrusted):
        certs.validate_chain(child, trust=trust, intermediates=[a.identity.signing_cert],
                             at=[NOW], usage="sign")
    # validity at every instant given (signing time and now)
    with pytest.raises(CertificateExpired):
        certs.validate_chain(a.identity.signing_cert, trust=trust,
                             at=[NOW, NOW + timedelta(days=400)], usage="sign")
    with pytest.raises(CertificateUsageInvalid):
        certs.validate_chain(a.identity.encryption_cert, trust=trust, at=[NOW], usage="sign")


def test_a_memoised_path_still_checks_time_usage_and_trust(tmp_path: Path) -> None:
    """validate_chain builds each path once; what depends on the call (the instants, the
    usage, the trust store given) is checked on every call."""
    a, b = pair(tmp_path)
    signer = a.identity.signing_cert
    path = certs.validate_chain(signer, trust=[a.ca_cert], at=[NOW], usage="sign")
    assert path[0] is signer
    assert path[-1] == a.ca_cert
    again = certs.validate_chain(signer, trust=[a.ca_cert], at=[NOW], usage="sign")
    assert again == path
    assert again is not path  # a fresh list each time
    with pytest.raises(CertificateExpired):
        certs.validate_chain(signer, trust=[a.ca_cert], at=[NOW + timedelta(days=400)],
                             usage="sign")
    with pytest.raises(CertificateUsageInvalid):
        certs.validate_chain(signer, trust=[a.ca_cert], at=[NOW], usage="encrypt")
    with pytest.raises(CertificateUntrusted):
        certs.validate_chain(signer, trust=[b.ca_cert], at=[NOW], usage="sign")
    # the same leaf object reloaded from DER is the same certificate
    reloaded = certs.parse_der(certs.der(signer))
    assert certs.validate_chain(reloaded, trust=[a.ca_cert], at=[NOW],
                                usage="sign")[0] is reloaded


# --- the commands -------------------------------------------------------------------------


def test_cli_generate_import_list_check(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = pair(tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    out = tmp_path / "gen"
    assert main(["keys", "generate", "--party", "iso3166:DE", "--out", str(out),
                 "--rsa-bits", "2048", "--sign-algorithm", "ecdsa-p256",
                 "--passphrase-file", str(pw)]) == 0
    assert (out / "sign.key").stat().st_mode & 0o777 == 0o600
    assert Keystore(out, b"correct horse").identity().party == Party.parse("iso3166:DE")
    capsys.readouterr()
    assert main(["keys", "import-partner", "--keys", str(a.path), "--party", "iso3166:DE",
                 str(out / "ca.crt"), str(out / "sign.crt"), str(out / "encrypt.crt")]) == 0
    printed = capsys.readouterr().out
    assert certs.fingerprint(certs.load_certificates_file(out / "sign.crt")[0]) in printed
    assert main(["keys", "list", "--keys", str(a.path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"iso3166:DE", "iso3166:NL", "fips:0600000"} <= {r["party"] for r in rows}
    assert all({"subject", "fingerprint", "not_after", "days_left"} <= r.keys() for r in rows)
    assert main(["keys", "list", "--keys", str(a.path)]) == 0
    assert "DAYS LEFT" in capsys.readouterr().out
    assert main(["keys", "check", "--keys", str(a.path)]) == 0
    # certificates from the test templates live ~360 days: a 400-day window flags them
    assert main(["keys", "check", "--keys", str(a.path), "--warn-days", "400"]) == 1
    assert "EXPIRING" in capsys.readouterr().out


def test_cli_check_flags_expired_and_insecure(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    a = make_node(tmp_path, "fips:0600000")
    old = issue(issuer_key=a.ca_key, issuer_cert=a.ca_cert, subject="old",
                key=spare_rsa_key(), not_before=NOW - timedelta(days=9),
                not_after=NOW - timedelta(days=1))
    partner_dir = a.path / "partners" / "iso3166_NL"
    partner_dir.mkdir(parents=True)
    (partner_dir / "old.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (a.path / "encrypt.key").chmod(0o644)
    assert main(["keys", "check", "--keys", str(a.path)]) == 1
    text = capsys.readouterr().out
    assert "EXPIRED" in text
    assert "INSECURE" in text


def test_cli_passphrase_is_never_an_argument_value(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["keys", "generate", "--party", "fips:0600000", "--out", str(tmp_path / "x"),
              "--passphrase", "secret"])
    assert info.value.code == 2


def test_cli_passphrase_from_environment(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_PASS", "from-env")
    out = tmp_path / "env"
    assert main(["keys", "generate", "--party", "fips:0600000", "--out", str(out),
                 "--rsa-bits", "2048", "--passphrase-env", "GW_TEST_PASS"]) == 0
    assert load_private_key(out / "encrypt.key", b"from-env") is not None
    assert os.environ["GW_TEST_PASS"] == "from-env"
