"""Certificates: loading, fingerprints, key usage, and a small, strict chain check.

Why our own chain check rather than ``cryptography.x509.verification``: its policies are
built for the web PKI (server/client EKUs, SAN rules) and check validity at one instant;
this protocol needs no EKU, needs validity at the signing time *and* now, and trusts
registered self-signed certificates directly. The check is short and complete:

- path building from the leaf through the supplied intermediates to a trust anchor (a
  certificate in the trust store, matched by SHA-256 fingerprint); each link's signature is
  verified with the issuer's public key (``verify_directly_issued_by``), each issuer must be
  a CA (basicConstraints ``cA``, keyUsage ``keyCertSign`` when keyUsage is present, path
  length respected); depth at most :data:`MAX_DEPTH`;
- every certificate on the path valid at every instant given (``not_before <= t <=
  not_after``);
- the leaf's keyUsage present and allowing the purpose (``sign``: digitalSignature or
  nonRepudiation; ``encrypt``: keyEncipherment for an RSA key, keyAgreement for an EC
  key); unknown critical extensions refused;
- keys: RSA >= 2048 bits, or EC P-256 (ECDSA for signing, ECDH for encryption).

Which party a certificate speaks for is *not* decided here: that is registration
(:mod:`gateway.node.keystore`), never subject names.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning

from gateway.errors import (
    AlgorithmNotAllowed,
    CertificateExpired,
    CertificateUntrusted,
    CertificateUsageInvalid,
    FileUnreadable,
)
from gateway.protocol.party import Party, PartyInvalid

__all__ = [
    "MAX_DEPTH",
    "Usage",
    "check_key",
    "check_key_usage",
    "check_validity",
    "der",
    "describe",
    "fingerprint",
    "is_ca",
    "issued_by",
    "load_certificates",
    "load_certificates_file",
    "parse_der",
    "party_in_san",
    "pem",
    "read_fully",
    "validate_chain",
]

MAX_DEPTH = 6
Usage = Literal["sign", "encrypt", "any"]

_HANDLED = (
    x509.BasicConstraints,
    x509.KeyUsage,
    x509.ExtendedKeyUsage,
    x509.SubjectAlternativeName,
    x509.SubjectKeyIdentifier,
    x509.AuthorityKeyIdentifier,
    x509.CertificatePolicies,
    x509.CRLDistributionPoints,
    x509.AuthorityInformationAccess,
)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@lru_cache(maxsize=1024)
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex (how registrations are named).
    Memoised per certificate (equal certificates are equal DER, so this is a pure
    function of the bytes): opening a message and checking a receipt each name the
    signer and every registered certificate of the partner."""
    return hashlib.sha256(der(cert)).hexdigest()


def read_fully(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` after reading every field the gateway uses. cryptography parses names,
    keys and extensions lazily, so a malformed certificate can load and fail later;
    raises ``ValueError`` here instead (callers translate it)."""
    try:
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        cert.public_key()
        list(cert.extensions)
        _ = (cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except Exception as exc:  # cryptography raises a dozen unrelated types
        # (ValueError, TypeError, UnsupportedAlgorithm, DuplicateExtension,
        # UnsupportedGeneralNameType, ...) for malformed certificates; all mean the same.
        raise ValueError(f"unreadable certificate ({type(exc).__name__})") from None
    return cert


def parse_der(data: bytes) -> x509.Certificate:
    """A DER certificate, fully read; ``ValueError`` for anything malformed, including
    what cryptography only warns about (e.g. a negative serial number)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            return read_fully(x509.load_der_x509_certificate(data))
        except (x509.InvalidVersion, CryptographyDeprecationWarning) as exc:
            raise ValueError(f"unreadable certificate ({type(exc).__name__})") from None


def load_certificates(data: bytes, *, source: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in PEM ``data`` (one or many), or one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            with warnings.catch_warnings():
                warnings.simplefilter("error", CryptographyDeprecationWarning)
                pems = x509.load_pem_x509_certificates(data)
            certs = [parse_der(c.public_bytes(serialization.Encoding.DER)) for c in pems]
        else:
            certs = [parse_der(data)]
    except (ValueError, x509.InvalidVersion, CryptographyDeprecationWarning):
        raise FileUnreadable("not a readable PEM or DER X.509 certificate",
                             where=source) from None
    if not certs:
        raise FileUnreadable("no certificate found", where=source)
    return certs


def load_certificates_file(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"cannot read ({exc.strerror})", where=str(path)) from None
    return load_certificates(data, source=str(path))


def party_in_san(cert: x509.Certificate) -> Party | None:
    """The ``urn:cse-gateway:party:`` URI in the subjectAltName, for display and defaults
    only (never for deciding who a signer speaks for)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        prefix = "urn:cse-gateway:party:"
        if uri.startswith(prefix):
            try:
                return Party.parse(uri[len(prefix):])
            except PartyInvalid:
                return None
    return None


def describe(cert: x509.Certificate) -> str:
    """Subject and fingerprint prefix, for messages (no personal data is in certs here)."""
    return f"{cert.subject.rfc4514_string()} [{fingerprint(cert)[:16]}]"


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def check_validity(cert: x509.Certificate, at: datetime, *, what: str = "certificate") -> None:
    if at < cert.not_valid_before_utc:
        raise CertificateExpired(
            f"{what} {describe(cert)} is not yet valid at {at:%Y-%m-%dT%H:%M:%SZ} "
            f"(valid from {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ})",
            details={"fingerprint": fingerprint(cert), "reason": "not_yet_valid"},
        )
    if at > cert.not_valid_after_utc:
        raise CertificateExpired(
            f"{what} {describe(cert)} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
            details={"fingerprint": fingerprint(cert), "reason": "expired"},
        )


def check_key_usage(cert: x509.Certificate, usage: Usage) -> None:
    """The leaf's keyUsage must be present and allow ``usage``."""
    if usage == "any":
        return
    ku = _key_usage(cert)
    if ku is None:
        raise CertificateUsageInvalid(f"certificate {describe(cert)} has no keyUsage")
    if usage == "sign" and not (ku.digital_signature or ku.content_commitment):
        raise CertificateUsageInvalid(
            f"certificate {describe(cert)} is not for signing (keyUsage lacks "
            "digitalSignature and nonRepudiation)")
    if usage != "encrypt":
        return
    if isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        if not ku.key_agreement:
            raise CertificateUsageInvalid(
                f"certificate {describe(cert)} is not for key agreement (keyUsage lacks "
                "keyAgreement)")
    elif not ku.key_encipherment:
        raise CertificateUsageInvalid(
            f"certificate {describe(cert)} is not for key transport (keyUsage lacks "
            "keyEncipherment)")


def check_key(cert: x509.Certificate, usage: Usage) -> None:
    """RSA >= 2048 bits, or EC P-256 (ECDSA signing, ECDH key agreement)."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise AlgorithmNotAllowed(f"certificate {describe(cert)}: RSA key under 2048 bits")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise AlgorithmNotAllowed(f"certificate {describe(cert)}: EC keys must be P-256")
        return
    raise AlgorithmNotAllowed(f"certificate {describe(cert)}: key type not allowed for "
                              f"{usage}")


def _check_critical(cert: x509.Certificate) -> None:
    for ext in cert.extensions:
        if ext.critical and not isinstance(ext.value, _HANDLED):
            raise CertificateUntrusted(
                f"certificate {describe(cert)} has an unsupported critical extension "
                f"{ext.oid.dotted_string}")


def issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _may_issue(issuer: x509.Certificate, below: int) -> bool:
    """``below``: how many CA certificates (not the leaf) sit under ``issuer`` on the path."""
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca or (bc.path_length is not None and below > bc.path_length):
        return False
    ku = _key_usage(issuer)
    return ku is None or ku.key_cert_sign


@lru_cache(maxsize=256)
def _path(leaf: x509.Certificate, trust: tuple[x509.Certificate, ...],
          intermediates: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
    """The path from ``leaf`` to one of ``trust`` (leaf first). Depends on nothing but
    the certificates, so it is built once per distinct set: a partner signs every
    message with the same certificate, and building verifies a signature per link.
    Only successes are memoised (an exception is not cached)."""
    anchors = {fingerprint(c): c for c in trust}
    candidates = [*anchors.values(), *intermediates]
    path = [leaf]
    current = leaf
    while fingerprint(current) not in anchors:
        if len(path) > MAX_DEPTH:
            raise CertificateUntrusted(f"certificate {describe(leaf)}: chain too long")
        issuer = next(
            (c for c in candidates
             if c.subject == current.issuer and c not in path
             and _may_issue(c, len(path) - 1) and issued_by(current, c)),
            None,
        )
        if issuer is None:
            raise CertificateUntrusted(
                f"certificate {describe(leaf)} does not chain to a trusted certificate",
                details={"fingerprint": fingerprint(leaf)},
            )
        path.append(issuer)
        current = issuer
    return tuple(path)


def _passing_window(path: tuple[x509.Certificate, ...], usage: Usage
                    ) -> tuple[datetime, datetime] | None:
    """When every check :func:`validate_chain` makes that does not depend on the time
    passes for ``path`` (critical extensions, the leaf's key usage and key), the span in
    which every certificate on it is valid; None otherwise (the caller then runs the
    checks one by one, which raise the first failure)."""
    try:
        return _window(path, usage)
    except Exception:  # whatever it is, the checks one by one raise it
        return None


@lru_cache(maxsize=256)
def _window(path: tuple[x509.Certificate, ...], usage: Usage) -> tuple[datetime, datetime]:
    """What :func:`_passing_window` returns, memoised per path and usage: a partner signs
    every message and receipt with the same certificate. Failures are not memoised."""
    for cert in path:
        _check_critical(cert)
    check_key_usage(path[0], usage)
    check_key(path[0], usage)
    return (max(c.not_valid_before_utc for c in path),
            min(c.not_valid_after_utc for c in path))


def validate_chain(
    leaf: x509.Certificate,
    *,
    trust: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    at: Sequence[datetime],
    usage: Usage,
) -> list[x509.Certificate]:
    """Check ``leaf`` for ``usage`` at every instant in ``at`` and return its path to a
    trust anchor (leaf first). Raises :class:`CertificateUntrusted`,
    :class:`CertificateExpired`, :class:`CertificateUsageInvalid` or
    :class:`AlgorithmNotAllowed`."""
    path = [leaf, *_path(leaf, tuple(trust), tuple(intermediates))[1:]]
    window = _passing_window(tuple(path), usage)
    if window is not None and all(window[0] <= instant <= window[1] for instant in at):
        return path  # every check below would pass
    for index, cert in enumerate(path):
        _check_critical(cert)
        for instant in at:
            check_validity(cert, instant,
                           what="certificate" if index == 0 else "issuer certificate")
    check_key_usage(leaf, usage)
    check_key(leaf, usage)
    return path
