"""A throw-away TLS PKI for tests, benchmarks and the demo (made with ``cryptography``).

    pki = TestPki(tmp_path)
    server = pki.server()                 # cert for 127.0.0.1 / localhost, signed by pki.ca
    client = pki.client("node-a")         # clientAuth cert signed by pki.ca
    pki.ca.cert                           # CA certificate file to pin / trust
    rogue = pki.other_ca()                # an unrelated CA (untrusted variants)
    old = pki.server(expired=True)        # validity ended yesterday

Keys are EC P-256 (fast to make), written 0600, never committed anywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Ca", "TestPki", "TlsFiles"]


@dataclass(frozen=True)
class TlsFiles:
    """A certificate and its key as PEM files; ``chain`` is cert + issuing CA."""

    cert: Path
    key: Path
    subject: str
    fingerprint: str  # SHA-256 of the DER, lower-case hex


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CSE Gateway Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class Ca:
    """A test certificate authority that issues server and client certificates."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert = directory / f"{name}.crt"
        self.cert.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        common_name: str,
        *,
        server: bool,
        ips: tuple[str, ...] = ("127.0.0.1",),
        dns: tuple[str, ...] = ("localhost",),
        expired: bool = False,
        not_yet_valid: bool = False,
        file_stem: str | None = None,
    ) -> TlsFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        if expired:
            start, end = now - dt.timedelta(days=10), now - dt.timedelta(days=1)
        elif not_yet_valid:
            start, end = now + dt.timedelta(days=1), now + dt.timedelta(days=10)
        else:
            start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=10)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        stem = file_stem or common_name
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return TlsFiles(
            cert=cert_path,
            key=key_path,
            subject=certificate.subject.rfc4514_string(),
            fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        )


class TestPki:
    """A CA plus helpers for the certificates the HTTPS tests need."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = Ca(self.directory, "test-ca")
        self._others = 0

    def server(self, name: str = "gateway-server", *, expired: bool = False) -> TlsFiles:
        stem = f"{name}-expired" if expired else name
        return self.ca.issue(name, server=True, expired=expired, file_stem=stem)

    def client(self, name: str = "gateway-client", *, expired: bool = False) -> TlsFiles:
        stem = f"{name}-expired" if expired else name
        return self.ca.issue(name, server=False, expired=expired, file_stem=stem)

    def other_ca(self) -> Ca:
        """An unrelated CA: what it issues is untrusted by ``self.ca``."""
        self._others += 1
        return Ca(self.directory, f"rogue-ca-{self._others}")
