"""Signing keys and self-signed certificates for audit tests and the audit benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.store.audit import KeySigner


def make_signer(kind: str = "rsa", party: str = "fips:0600000") -> KeySigner:
    """A fresh key (RSA-2048 or ECDSA P-256) and a self-signed signing certificate."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return KeySigner(key, cert)


def write_signer(signer: KeySigner, directory: Path) -> tuple[Path, Path]:
    """Write ``sign.key`` (PKCS#8 PEM, 0600) and ``sign.crt`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "sign.key"
    cert_path = directory / "sign.crt"
    key_path.write_bytes(signer._key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(signer.certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
