"""Test nodes for the security tests: key directories made by ``gateway.node.keystore`` (once per
process, then copied), partners registered both ways, and hand-made certificates for the
expired / not-yet-valid / untrusted / wrong-usage cases. Plain functions, usable outside
pytest (benchmarks, the demo)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.node.keystore import Keystore, generate_node, load_private_key
from gateway.protocol.cms import SigningKey
from gateway.protocol.identity import NodeIdentity
from gateway.protocol.party import Party

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Node:
    party: Party
    path: Path
    store: Keystore
    identity: NodeIdentity

    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.path / "ca.crt").read_bytes())

    @property
    def ca_key(self) -> SigningKey:
        return _ca_key(self.path.name)


_ROOT = Path(tempfile.mkdtemp(prefix="gw-security-keys-"))
atexit.register(shutil.rmtree, _ROOT, True)


@cache
def _template(party: str, sign_algorithm: str) -> Path:
    """``sign_algorithm``: "rsa", "ecdsa-p256" (RSA encryption), or "p256" (every key EC,
    as ``gateway keys generate --curve p256``)."""
    out = _ROOT / f"{party.replace(':', '_')}-{sign_algorithm}"
    if sign_algorithm == "p256":
        generate_node(out, Party.parse(party), now=NOW - timedelta(days=3), days=365,
                      curve="p256")
    else:
        generate_node(out, Party.parse(party), now=NOW - timedelta(days=3), days=365,
                      sign_algorithm=sign_algorithm)  # type: ignore[arg-type]
    return out


@cache
def _identity(party: str, sign_algorithm: str) -> NodeIdentity:
    # Loading an RSA-3072 key checks it (~0.1 s): load each template's keys once.
    return Keystore(_template(party, sign_algorithm)).identity()


def make_node(base: Path, party: str, *, sign_algorithm: str = "rsa") -> Node:
    """A node key directory under ``base`` (generated once per process, then copied);
    ``sign_algorithm`` as for :func:`_template` ("p256": an all-EC node)."""
    target = base / f"{party.replace(':', '_')}-{sign_algorithm}"
    if not target.exists():
        shutil.copytree(_template(party, sign_algorithm), target)
    store = Keystore(target)
    return Node(Party.parse(party), target, store, _identity(party, sign_algorithm))


@cache
def _ca_key(name: str) -> SigningKey:
    return load_private_key(_ROOT / name / "ca.key")


def register(at: Node, partner: Node) -> None:
    """``at`` trusts ``partner``'s CA and registers its signing and encryption certs."""
    at.store.import_partner(
        partner.party,
        [partner.ca_cert, partner.identity.signing_cert, partner.identity.encryption_cert],
        now=NOW,
    )


def pair(base: Path, a: str = "fips:0600000", b: str = "iso3166:NL",
         *, sign_algorithm: str = "rsa", b_keys: str = "rsa") -> tuple[Node, Node]:
    """Two nodes registered with each other; ``sign_algorithm`` is the first's keys,
    ``b_keys`` the second's (see :func:`make_node`)."""
    first = make_node(base, a, sign_algorithm=sign_algorithm)
    second = make_node(base, b, sign_algorithm=b_keys)
    register(first, second)
    register(second, first)
    return first, second


@cache
def spare_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def spare_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def issue(
    *,
    issuer_key: SigningKey,
    issuer_cert: x509.Certificate | None,
    subject: str,
    key: SigningKey,
    not_before: datetime,
    not_after: datetime,
    usage: str = "sign",
    ca: bool = False,
) -> x509.Certificate:
    """A certificate for ``key``, issued by ``issuer_cert``/``issuer_key`` (self-signed when
    ``issuer_cert`` is None). ``usage``: "sign", "encrypt" (keyEncipherment for an RSA key,
    keyAgreement for an EC key, as the protocol requires), or "key-encipherment" (that
    bit whatever the key)."""
    agree = usage == "encrypt" and isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=usage == "sign", content_commitment=False,
                key_encipherment=usage in {"encrypt", "key-encipherment"} and not agree,
                data_encipherment=False, key_agreement=agree, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def with_signer(node: Node, key: SigningKey, cert: x509.Certificate) -> NodeIdentity:
    """``node``'s identity signing with another key and certificate."""
    i = node.identity
    return NodeIdentity(i.party, key, cert, i.encryption_key, i.encryption_cert, i.chain)
