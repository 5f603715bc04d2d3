"""A small TLS certificate authority for mutual TLS between gateways (EC P-256).

``gateway init`` gives every node one (``tls/ca.crt``, ``tls/ca.key``) and issues the
node's HTTPS server certificate (serverAuth, the names partners connect to) and its client
certificate (clientAuth) from it; the demo network uses one for all its nodes. A partner
pins this CA for our server (``ca_file``) and adds it to its listener's ``client_ca``.
An agency with its own PKI uses its own certificates instead and never needs this.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import UsageError

__all__ = ["TlsCa", "san_names"]


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def san_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses of a certificate's subjectAltName, in order."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UsageError("refusing to overwrite an existing file", where=str(path)) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class TlsCa:
    """Creates ``DIRECTORY/STEM.crt`` (and ``STEM.key``, 0600, when ``keep_key``) and issues
    certificates into the same folder: ``issue(stem, server=...)`` writes ``STEM.crt`` and
    ``STEM.key`` (0600)."""

    def __init__(self, directory: Path, now: dt.datetime, *,
                 name: str = "CSE Gateway demo TLS CA", organization: str = "CSE Gateway demo",
                 days: int = 7, stem: str = "tls-ca", keep_key: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.now = now
        self.days = days
        self.organization = organization
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(organization, name)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        self.cert_file = directory / f"{stem}.crt"
        _write(self.cert_file, self.cert.public_bytes(serialization.Encoding.PEM), 0o644)
        if keep_key:
            _write(directory / f"{stem}.key", self._key_bytes(self.key), 0o600)

    @staticmethod
    def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def issue(self, stem: str, *, server: bool,
              hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> tuple[Path, Path]:
        """A server (serverAuth, ``hosts`` as subjectAltName) or client (clientAuth)
        certificate; returns (certificate file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(_name(self.organization, stem))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(minutes=5))
            .not_valid_after(self.now + dt.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False))
        if server:
            names = list(dict.fromkeys(hosts))
            if not names:
                raise UsageError("a server certificate needs at least one host name")
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(h) for h in names]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file, key_file = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(key_file, self._key_bytes(key), 0o600)
        return cert_file, key_file
