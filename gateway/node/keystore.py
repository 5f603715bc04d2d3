"""A node's key directory: its own keys, the trust store, and partner registrations.

::

    KEYS/party                          this node's party, e.g. "fips:0600000"
    KEYS/sign.key, sign.crt             signing key (0600) and certificate
    KEYS/encrypt.key, encrypt.crt       encryption key (0600) and certificate: RSA (key
                                        transport) or EC P-256 (key agreement)
    KEYS/decrypt/NAME.key, NAME.crt     more encryption keys (0600) and their certificates,
                                        decryption only: the next key during a rollover, or
                                        earlier ones until messages sealed to them expire
    KEYS/ca.key, ca.crt                 the node CA that issued them (generate only; keep
                                        ca.key offline once the node is set up)
    KEYS/chain.pem                      optional intermediates sent along with signatures
    KEYS/trust/*.pem                    trusted CA certificates (and self-signed anchors)
    KEYS/partners/<scheme>_<value>/*.pem  certificates registered for that partner party

Registration is what makes a certificate speak for a party: the directory lists, per
party, the certificates accepted as its signer (several at once, for rollover). Subject
names are never parsed for that decision. Private keys must not be readable by group or
others (:class:`KeyFileInsecure`); they may be encrypted with a passphrase (the same one for
all), which is never taken from a command-line argument.

Encryption-key rollover: put the new pair in ``decrypt/`` and give partners its certificate
(they seal to the registered encryption certificate that lasts longest); later make it the
main ``encrypt.key``/``encrypt.crt`` and move the old pair into ``decrypt/`` until nothing
sealed to it can still arrive. Opening picks the key whose certificate the message names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.errors import (
    AlgorithmNotAllowed,
    CertificateExpired,
    CertificateUsageInvalid,
    FileUnreadable,
    KeyFileInsecure,
    KeyMaterialError,
    UsageError,
)
from gateway.protocol import certs
from gateway.protocol.cms import KeyPair, SigningKey
from gateway.protocol.identity import NodeIdentity
from gateway.protocol.party import Party, PartyInvalid

__all__ = [
    "KeyEntry",
    "Keystore",
    "generate_node",
    "load_private_key",
    "private_key_bytes",
    "read_passphrase",
]

log = logging.getLogger("gateway.keys")

SignAlgorithm = Literal["rsa", "ecdsa-p256"]
#: ``gateway keys generate --curve``: every key of the node on this curve (ECDSA signing,
#: ECDH encryption, the node CA) instead of RSA.
Curve = Literal["p256"]


# --- private keys -------------------------------------------------------------------------


def _check_permissions(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyMaterialError(f"cannot read key file ({exc.strerror})", where=str(path)) \
            from None
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileInsecure(
            f"private key file is readable by others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}",
            where=str(path),
        )


def load_private_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """Load an RSA or EC private key (PEM or DER), refusing files readable by others."""
    _check_permissions(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read key file ({exc.strerror})", where=str(path)) \
            from None
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    try:
        key = loader(data, passphrase)
    except TypeError:
        if passphrase is None:
            raise KeyMaterialError("private key is encrypted: give a passphrase "
                                   "(--passphrase-file or --passphrase-env)",
                                   where=str(path)) from None
        raise KeyMaterialError("private key is not encrypted but a passphrase was given",
                               where=str(path)) from None
    except ValueError:
        raise KeyMaterialError("private key cannot be read (wrong passphrase or not a "
                               "key)", where=str(path)) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError("private key must be RSA or EC", where=str(path))
    return key


def private_key_bytes(key: SigningKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never overwrite) with ``mode`` from the start, durably."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UsageError("refusing to overwrite an existing file", where=str(path)) from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_public_key(key: SigningKey, cert: x509.Certificate) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return key.public_key().public_bytes(enc, fmt) == cert.public_key().public_bytes(enc, fmt)


def _check_encryption_cert(cert: x509.Certificate, file: Path) -> None:
    """keyUsage keyEncipherment (RSA) or keyAgreement (EC) and an acceptable key (RSA >=
    2048 bits or P-256), or :class:`KeyMaterialError` naming ``file``."""
    try:
        certs.check_key_usage(cert, "encrypt")
        certs.check_key(cert, "encrypt")
    except (CertificateUsageInvalid, AlgorithmNotAllowed) as exc:
        raise KeyMaterialError(exc.message, where=str(file)) from None


# --- the directory ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyEntry:
    """One certificate in the key directory, for ``gateway keys list/check``."""

    role: str  # "node-ca", "sign", "encrypt", "decrypt:NAME", "trust", "partner"
    party: Party | None
    path: Path
    cert: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return certs.fingerprint(self.cert)

    def days_left(self, now: datetime) -> float:
        return (self.cert.not_valid_after_utc - now).total_seconds() / 86400


class Keystore:
    """The key directory at ``path`` (see the module docstring for its layout)."""

    def __init__(self, path: Path, passphrase: bytes | None = None) -> None:
        self.path = Path(path)
        self._passphrase = passphrase
        # Certificates read from a directory, reused while the directory is unchanged
        # (importing writes a new file, which changes the directory's mtime).
        self._dir_cache: dict[Path, tuple[int, list[x509.Certificate]]] = {}
        self._party: Party | None = None

    # this node

    def party(self) -> Party:
        if self._party is not None:
            return self._party
        file = self.path / "party"
        try:
            self._party = Party.parse(file.read_text(encoding="utf-8").strip())
            return self._party
        except OSError:
            raise KeyMaterialError("the key directory has no party file",
                                   where=str(file)) from None
        except PartyInvalid as exc:
            raise KeyMaterialError(f"bad party file: {exc.message}", where=str(file)) \
                from None

    def _cert(self, name: str) -> x509.Certificate:
        return certs.load_certificates_file(self.path / name)[0]

    def identity(self, party: Party | None = None) -> NodeIdentity:
        """This node's keys and certificates; ``party`` (from the configuration) must match
        the directory's party file when both exist."""
        recorded = self.party() if (self.path / "party").exists() or party is None else None
        if party is not None and recorded is not None and recorded != party:
            raise KeyMaterialError(f"key directory belongs to {recorded}, not {party}",
                                   where=str(self.path))
        who = party if party is not None else self.party()
        sign_key = load_private_key(self.path / "sign.key", self._passphrase)
        enc_key = load_private_key(self.path / "encrypt.key", self._passphrase)
        sign_cert, enc_cert = self._cert("sign.crt"), self._cert("encrypt.crt")
        if not _same_public_key(sign_key, sign_cert):
            raise KeyMaterialError("sign.key does not match sign.crt", where=str(self.path))
        if not _same_public_key(enc_key, enc_cert):
            raise KeyMaterialError("encrypt.key does not match encrypt.crt",
                                   where=str(self.path))
        _check_encryption_cert(enc_cert, self.path / "encrypt.crt")
        chain_file = self.path / "chain.pem"
        chain = tuple(certs.load_certificates_file(chain_file)) if chain_file.exists() else ()
        return NodeIdentity(who, sign_key, sign_cert, enc_key, enc_cert, chain,
                            self._decryption_keys())

    def _decryption_pairs(self) -> list[tuple[str, Path, Path]]:
        """(name, key file, certificate file) for each pair in ``decrypt/``, by name; a key
        without its certificate (or the reverse) is an error. Other files are ignored."""
        folder = self.path / "decrypt"
        if not folder.is_dir():
            return []
        keys = {f.stem: f for f in folder.glob("*.key")}
        crts = {f.stem: f for f in folder.glob("*.crt")}
        for name in sorted(keys.keys() ^ crts.keys()):
            have, lack = (keys[name], f"{name}.crt") if name in keys \
                else (crts[name], f"{name}.key")
            raise KeyMaterialError(f"decrypt/{have.name} has no decrypt/{lack} beside it",
                                   where=str(have))
        return [(name, keys[name], crts[name]) for name in sorted(keys)]

    def _decryption_keys(self) -> tuple[KeyPair, ...]:
        """The extra decryption pairs, checked like ``encrypt.key``/``encrypt.crt`` (RSA and
        EC pairs may be mixed: migrating from one to the other is a rollover)."""
        out: list[KeyPair] = []
        for name, key_file, crt_file in self._decryption_pairs():
            key = load_private_key(key_file, self._passphrase)
            cert = certs.load_certificates_file(crt_file)[0]
            if not _same_public_key(key, cert):
                raise KeyMaterialError(f"decrypt/{key_file.name} does not match "
                                       f"decrypt/{crt_file.name}", where=str(key_file))
            _check_encryption_cert(cert, crt_file)
            log.debug("extra decryption key %s: certificate %s", name,
                      certs.fingerprint(cert)[:16])
            out.append((key, cert))
        return tuple(out)

    # trust and partners

    @staticmethod
    def _pem_files(directory: Path) -> list[Path]:
        return sorted(directory.glob("*.pem")) if directory.is_dir() else []

    def _certificates_in(self, directory: Path) -> list[x509.Certificate]:
        try:
            stamp = directory.stat().st_mtime_ns
        except OSError:
            return []
        cached = self._dir_cache.get(directory)
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        out: list[x509.Certificate] = []
        for file in self._pem_files(directory):
            out.extend(certs.load_certificates_file(file))
        self._dir_cache[directory] = (stamp, out)
        return list(out)

    def trust(self) -> list[x509.Certificate]:
        return self._certificates_in(self.path / "trust")

    def partner_certificates(self, party: Party) -> list[x509.Certificate]:
        return self._certificates_in(self.path / "partners" / party.dirname)

    def certificates_for(self, party: Party) -> list[x509.Certificate]:
        """:class:`PartyDirectory`: the partner's registered certificates (and this node's
        own signing certificate for its own party)."""
        found = self.partner_certificates(party)
        if (self._party == party or ((self.path / "party").exists() and self.party() == party)) \
                and (self.path / "sign.crt").exists():
            found.append(self._cert("sign.crt"))
        return found

    def encryption_certificate_for(self, party: Party, now: datetime) -> x509.Certificate:
        """The registered certificate to encrypt to: keyEncipherment, valid now, the one
        that lasts longest (so a rollover takes effect as soon as the new one is in)."""
        usable = []
        for cert in self.partner_certificates(party):
            try:
                certs.check_key_usage(cert, "encrypt")
                certs.check_validity(cert, now)
            except (CertificateUsageInvalid, CertificateExpired):
                continue
            usable.append(cert)
        if not usable:
            raise KeyMaterialError(f"no valid encryption certificate is registered for "
                                   f"{party}", where=str(self.path / "partners"))
        return max(usable, key=lambda c: c.not_valid_after_utc)

    def partners(self) -> dict[Party, list[x509.Certificate]]:
        out: dict[Party, list[x509.Certificate]] = {}
        root = self.path / "partners"
        for sub in sorted(root.iterdir()) if root.is_dir() else []:
            scheme, _, value = sub.name.partition("_")
            with contextlib.suppress(PartyInvalid):
                party = Party(scheme, value)
                out[party] = self.partner_certificates(party)
        return out

    def entries(self) -> list[KeyEntry]:
        out: list[KeyEntry] = []
        own = self.party() if (self.path / "party").exists() else None
        for name, role in (("ca.crt", "node-ca"), ("sign.crt", "sign"),
                           ("encrypt.crt", "encrypt")):
            if (self.path / name).exists():
                out.append(KeyEntry(role, own, self.path / name, self._cert(name)))
        for name, _, crt_file in self._decryption_pairs():
            out.append(KeyEntry(f"decrypt:{name}", own, crt_file,
                                certs.load_certificates_file(crt_file)[0]))
        for file in self._pem_files(self.path / "trust"):
            out.extend(KeyEntry("trust", None, file, c)
                       for c in certs.load_certificates_file(file))
        for party in self.partners():
            for file in self._pem_files(self.path / "partners" / party.dirname):
                out.extend(KeyEntry("partner", party, file, c)
                           for c in certs.load_certificates_file(file))
        return out

    def insecure_key_files(self) -> list[Path]:
        folder = self.path / "decrypt"
        extra = sorted(folder.glob("*.key")) if folder.is_dir() else []
        return [file for file in [*(self.path / n for n in ("sign.key", "encrypt.key",
                                                          "ca.key")), *extra]
                if file.exists() and stat.S_IMODE(file.stat().st_mode) & 0o077]

    def import_partner(
        self, party: Party, new: Iterable[x509.Certificate], *, now: datetime
    ) -> list[tuple[str, x509.Certificate, Path]]:
        """Register ``new`` certificates for ``party``. CA certificates among them join the
        trust store; every other one must chain to the trust store (a self-signed one is
        added to it as its own anchor), be valid now and allow signing or key transport.
        Returns (what, certificate, where) for each file written or already present."""
        given = list(new)
        cas = [c for c in given if certs.is_ca(c)]
        leaves = [c for c in given if not certs.is_ca(c)]
        if not leaves:
            raise UsageError("no partner (non-CA) certificate given to register")
        for ca in cas:
            certs.check_validity(ca, now, what="CA certificate")
        anchors = [*self.trust(), *cas]
        plan: list[tuple[str, x509.Certificate, Path]] = []
        for leaf in leaves:
            self_signed = leaf.issuer == leaf.subject and certs.issued_by(leaf, leaf)
            usage: certs.Usage
            try:
                certs.check_key_usage(leaf, "sign")
                usage = "sign"
            except CertificateUsageInvalid:
                usage = "encrypt"
            certs.validate_chain(leaf, trust=[*anchors, *([leaf] if self_signed else [])],
                                 intermediates=cas, at=[now], usage=usage)
            if self_signed:
                plan.append(("trust", leaf, self.path / "trust"))
            plan.append(("partner", leaf, self.path / "partners" / party.dirname))
        plan[:0] = [("trust", c, self.path / "trust") for c in cas]
        done: list[tuple[str, x509.Certificate, Path]] = []
        for what, cert, directory in plan:
            directory.mkdir(parents=True, exist_ok=True)
            target = directory / f"{certs.fingerprint(cert)[:16]}.pem"
            if not target.exists():
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(certs.pem(cert))
                os.replace(tmp, target)
                log.info("registered %s certificate %s for %s", what,
                         certs.fingerprint(cert)[:16], party)
            done.append((what, cert, target))
        return done


# --- generation ---------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CSE Gateway")])


def _new_key(kind: SignAlgorithm, rsa_bits: int) -> SigningKey:
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def _key_usage(*, sign: bool = False, encrypt: SigningKey | None = None,
               ca: bool = False) -> x509.KeyUsage:
    """keyUsage for a signing, CA or encryption certificate; an encryption certificate
    (``encrypt``: its key) gets keyEncipherment for RSA, keyAgreement for EC."""
    agree = isinstance(encrypt, ec.EllipticCurvePrivateKey)
    return x509.KeyUsage(digital_signature=sign, content_commitment=sign,
                         key_encipherment=encrypt is not None and not agree,
                         data_encipherment=False, key_agreement=agree, key_cert_sign=ca,
                         crl_sign=ca, encipher_only=False, decipher_only=False)


def _leaf(party: Party, role: str, key: SigningKey, *, ca_key: SigningKey,
          ca_cert: x509.Certificate | None, now: datetime, days: int) -> x509.Certificate:
    """A signing or encryption certificate issued by ``ca_cert`` (self-signed if None)."""
    subject = _name(f"{party} {role}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject if ca_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=role == "sign",
                                  encrypt=key if role == "encrypt" else None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(party.uri)]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())


def _csr(party: Party, role: str, key: SigningKey) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(f"{party} {role}"))
        .add_extension(_key_usage(sign=role == "sign",
                                  encrypt=key if role == "encrypt" else None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(party.uri)]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


def generate_node(
    out: Path,
    party: Party,
    *,
    now: datetime,
    days: int = 730,
    sign_algorithm: SignAlgorithm = "rsa",
    curve: Curve | None = None,
    rsa_bits: int = 3072,
    passphrase: bytes | None = None,
    csr: bool = False,
    self_signed: bool = False,
) -> list[Path]:
    """Create a node key directory at ``out``: signing and encryption keys, and either a
    node CA with the two certificates it issued (the default: partners trust one CA and
    leaf rollover needs no trust change), or two self-signed certificates, each its own
    trust anchor (``self_signed``), or two CSRs for a real CA (``csr``). Never overwrites.
    Keys are RSA (``rsa_bits``; ``sign_algorithm`` "ecdsa-p256" makes the signing and CA
    keys ECDSA P-256), or with ``curve`` "p256" all P-256: ECDSA signing and CA keys and an
    ECDH encryption key (certificate keyUsage keyAgreement). Returns the files written."""
    if csr and self_signed:
        raise UsageError("--csr and --self-signed exclude each other")
    if rsa_bits < 2048:
        raise UsageError("RSA keys must be at least 2048 bits")
    if curve is not None:
        if curve != "p256":
            raise UsageError(f"curve {curve} is not supported (p256 is)")
        sign_algorithm = "ecdsa-p256"
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("trust", "partners"):
        (out / sub).mkdir(exist_ok=True)
    written: list[Path] = []

    def put(name: str, data: bytes, mode: int = 0o644) -> None:
        _write_new(out / name, data, mode)
        written.append(out / name)

    for name in ("sign.key", "encrypt.key", "party"):
        if (out / name).exists():
            raise UsageError("refusing to overwrite an existing key directory",
                             where=str(out / name))
    sign_key = _new_key(sign_algorithm, rsa_bits)
    enc_key: SigningKey = (ec.generate_private_key(ec.SECP256R1()) if curve is not None
                           else rsa.generate_private_key(public_exponent=65537,
                                                         key_size=rsa_bits))
    put("party", f"{party}\n".encode())
    put("sign.key", private_key_bytes(sign_key, passphrase), 0o600)
    put("encrypt.key", private_key_bytes(enc_key, passphrase), 0o600)
    if csr:
        for role, key in (("sign", sign_key), ("encrypt", enc_key)):
            put(f"{role}.csr", _csr(party, role, key).public_bytes(serialization.Encoding.PEM))
        return written
    if self_signed:
        for role, key in (("sign", sign_key), ("encrypt", enc_key)):
            cert = certs.pem(_leaf(party, role, key, ca_key=key, ca_cert=None, now=now,
                                   days=days))
            put(f"{role}.crt", cert)
            put(f"trust/self-{role}.pem", cert)  # its own anchor (loopback, own receipts)
        return written
    ca_key = _new_key(sign_algorithm, rsa_bits)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{party} node CA"))
        .issuer_name(_name(f"{party} node CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days + 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    put("ca.key", private_key_bytes(ca_key, passphrase), 0o600)
    put("ca.crt", certs.pem(ca_cert))
    for role, key in (("sign", sign_key), ("encrypt", enc_key)):
        put(f"{role}.crt", certs.pem(_leaf(party, role, key, ca_key=ca_key, ca_cert=ca_cert,
                                            now=now, days=days)))
    # The node trusts its own CA (loopback tests, its own receipts).
    put("trust/self-ca.pem", certs.pem(ca_cert))
    return written


def read_passphrase(file: str | None, env: str | None) -> bytes | None:
    """The passphrase from a file (first line) or an environment variable, never argv."""
    if file and env:
        raise UsageError("give --passphrase-file or --passphrase-env, not both")
    if file:
        try:
            text = Path(file).read_bytes().splitlines()
        except OSError as exc:
            raise FileUnreadable(f"cannot read passphrase file ({exc.strerror})",
                                 where=file) from None
        if not text or not text[0]:
            raise UsageError("passphrase file is empty", where=file)
        return text[0]
    if env:
        value = os.environ.get(env)
        if not value:
            raise UsageError(f"environment variable {env} is not set or empty")
        return value.encode()
    return None
