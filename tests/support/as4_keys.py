"""Loading the published third-party AS4 test keys, and fresh keys for our own messages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

AS4_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "as4"

PASSWORDS = {
    "AccessPointA.pfx": "Pz4cZK4SULUwmraZa",
    "AccessPointB.pfx": "Pz4cZK4SULUwmraZb",
    "partyC.p12": "ExampleC",
    "domibus-blue_gw.p12": "test123",
    "domibus-red_gw.p12": "test123",
    "phase4-ph-as4.p12": "test123",
}


def fixture(name: str) -> bytes:
    return (AS4_FIXTURES / name).read_bytes()


def load(name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key, cert, _ = pkcs12.load_key_and_certificates(
        fixture(f"keys/{name}"), PASSWORDS[name].encode()
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    assert cert is not None
    return key, cert


def make_identity(
    cn: str, *, now: dt.datetime | None = None, bits: int = 2048
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh self-signed RSA key and certificate (generated per test run, never stored)."""
    now = now or dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert
