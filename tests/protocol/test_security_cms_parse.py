"""cms.verify reads SignerInfo with the DER codec: each encoding variant another CMS
writer may use is accepted with the same meaning, and each malformation is refused with
SignatureInvalid. The SignedData here is assembled by hand (and really signed), so one
field at a time can differ from what :func:`gateway.protocol.cms.sign` writes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import core
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.errors import AlgorithmNotAllowed, DecryptionFailed, EnvelopeInvalid, SignatureInvalid
from gateway.protocol import cms
from gateway.protocol.certs import der
from gateway.protocol.cms import common as cms_common
from gateway.protocol.der import CTX0, CTX1, OCTETS, SEQ, SET, integer, oid, tlv
from tests.support.security import issue, spare_rsa_key

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
CONTENT = b"<Sealed>synthetic</Sealed>"
SHA256_ALG = tlv(SEQ, oid("2.16.840.1.101.3.4.2.1"))
SHA256_RSA_ALG = tlv(SEQ, oid("1.2.840.113549.1.1.11"), b"\x05\x00")
SHA1_ALG = tlv(SEQ, oid("1.3.14.3.2.26"))


@pytest.fixture(scope="module")
def signer() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = spare_rsa_key()
    cert = issue(issuer_key=key, issuer_cert=None, subject="Test Signer", key=key,
                 not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30))
    return key, cert


def attribute(dotted: str, *values: bytes) -> bytes:
    return tlv(SEQ, oid(dotted), tlv(SET, *values))


def utc_time(text: str) -> bytes:
    return tlv(0x17, text.encode())


def generalized_time(text: str) -> bytes:
    return tlv(0x18, text.encode())


def standard_attributes(time_value: bytes) -> list[bytes]:
    return [
        attribute(cms.OID_ATTR_CONTENT_TYPE, oid(cms.OID_DATA)),
        attribute(cms.OID_ATTR_SIGNING_TIME, time_value),
        attribute(cms.OID_ATTR_MESSAGE_DIGEST,
                  tlv(OCTETS, hashlib.sha256(CONTENT).digest())),
    ]


def signed_data(key: rsa.RSAPrivateKey, cert: x509.Certificate, attrs: list[bytes], *,
                sid: bytes | None = None, digest_alg: bytes = SHA256_ALG,
                unsigned: bytes | None = None) -> bytes:
    body = b"".join(sorted(attrs))
    signature = key.sign(tlv(SET, body), apad.PKCS1v15(), hashes.SHA256())
    if sid is None:
        sid = tlv(SEQ, cert.issuer.public_bytes(), integer(cert.serial_number))
    info = tlv(SEQ, integer(1), sid, digest_alg, tlv(CTX0, body), SHA256_RSA_ALG,
               tlv(OCTETS, signature), *([unsigned] if unsigned else []))
    content = tlv(SEQ, oid(cms.OID_DATA), tlv(CTX0, tlv(OCTETS, CONTENT)))
    sd = tlv(SEQ, integer(1), tlv(SET, digest_alg), content, tlv(CTX0, der(cert)),
             tlv(SET, info))
    return tlv(SEQ, oid(cms.OID_SIGNED_DATA), tlv(CTX0, sd))


def test_hand_built_signed_data_verifies(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    verified = cms.verify(signed_data(key, cert, standard_attributes(
        utc_time("261122120000Z"))))
    assert verified.content == CONTENT
    assert verified.signer == cert
    assert verified.signing_time == NOW


@pytest.mark.parametrize(("encoded", "expected"), [
    (generalized_time("20511122120000Z"), datetime(2051, 11, 22, 12, 0, tzinfo=UTC)),
    # not DER, but written by some encoders: read through asn1crypto
    (generalized_time("20261122120000.5Z"),
     datetime(2026, 11, 22, 12, 0, 0, 500000, tzinfo=UTC)),
    (utc_time("261122130000+0100"), NOW),
])
def test_signing_time_encodings(signer, encoded: bytes, expected: datetime  # type: ignore[no-untyped-def]
                                ) -> None:
    key, cert = signer
    verified = cms.verify(signed_data(key, cert, standard_attributes(encoded)))
    assert verified.signing_time == expected


def test_signing_time_that_is_not_a_time_is_refused(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    with pytest.raises(SignatureInvalid, match="signing-time"):
        cms.verify(signed_data(key, cert, standard_attributes(tlv(OCTETS, b"261122"))))
    with pytest.raises(SignatureInvalid):
        cms.verify(signed_data(key, cert, standard_attributes(utc_time("26112X120000Z"))))


def test_unsigned_attributes_are_ignored(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    unsigned = tlv(CTX1, attribute("1.2.840.113549.1.9.6", tlv(SEQ, integer(1))))
    verified = cms.verify(signed_data(key, cert, standard_attributes(
        utc_time("261122120000Z")), unsigned=unsigned))
    assert verified.content == CONTENT


def test_extra_signed_attributes_are_ignored(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    smime_caps = attribute("1.2.840.113549.1.9.15", tlv(SEQ, tlv(SEQ, oid(cms.OID_AES256_GCM))))
    attrs = [*standard_attributes(utc_time("261122120000Z")), smime_caps]
    assert cms.verify(signed_data(key, cert, attrs)).content == CONTENT


def test_duplicate_attribute_is_refused(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    attrs = [*standard_attributes(utc_time("261122120000Z")),
             attribute(cms.OID_ATTR_SIGNING_TIME, utc_time("261122110000Z"))]
    with pytest.raises(SignatureInvalid, match="appears twice"):
        cms.verify(signed_data(key, cert, attrs))


def test_attribute_with_two_values_is_refused(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    attrs = standard_attributes(utc_time("261122120000Z"))
    attrs[1] = attribute(cms.OID_ATTR_SIGNING_TIME, utc_time("261122120000Z"),
                         utc_time("261122110000Z"))
    with pytest.raises(SignatureInvalid, match="one value"):
        cms.verify(signed_data(key, cert, attrs))


@pytest.mark.parametrize("missing", [0, 1, 2])
def test_missing_required_attribute_is_refused(signer, missing: int  # type: ignore[no-untyped-def]
                                               ) -> None:
    key, cert = signer
    attrs = standard_attributes(utc_time("261122120000Z"))
    del attrs[missing]
    with pytest.raises(SignatureInvalid, match="is missing"):
        cms.verify(signed_data(key, cert, attrs))


def test_other_content_type_attribute_is_refused(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    attrs = standard_attributes(utc_time("261122120000Z"))
    attrs[0] = attribute(cms.OID_ATTR_CONTENT_TYPE, oid(cms.OID_SIGNED_DATA))
    with pytest.raises(SignatureInvalid, match="content-type"):
        cms.verify(signed_data(key, cert, attrs))


def test_sha1_digest_algorithm_is_refused(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    with pytest.raises(AlgorithmNotAllowed, match="SHA-256"):
        cms.verify(signed_data(key, cert, standard_attributes(utc_time("261122120000Z")),
                               digest_alg=SHA1_ALG))


def test_sha256_with_null_parameters_is_accepted(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    alg = tlv(SEQ, oid("2.16.840.1.101.3.4.2.1"), b"\x05\x00")
    assert cms.verify(signed_data(key, cert, standard_attributes(
        utc_time("261122120000Z")), digest_alg=alg)).content == CONTENT


def test_issuer_name_encoded_differently_still_names_the_signer(signer) -> None:  # type: ignore[no-untyped-def]
    """The certificate's issuer CN is a UTF8String; a writer that re-encodes it as a
    PrintableString names the same issuer (RFC 5280 name comparison)."""
    key, cert = signer
    printable = ax509.Name.build({"common_name": "Test Signer"}, use_printable=True).dump()
    assert printable != cert.issuer.public_bytes()
    sid = tlv(SEQ, printable, integer(cert.serial_number))
    verified = cms.verify(signed_data(key, cert, standard_attributes(
        utc_time("261122120000Z")), sid=sid))
    assert verified.signer == cert


def test_sid_naming_another_serial_is_not_the_signer(signer) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    sid = tlv(SEQ, cert.issuer.public_bytes(), integer(cert.serial_number + 1))
    with pytest.raises(SignatureInvalid, match="not included"):
        cms.verify(signed_data(key, cert, standard_attributes(
            utc_time("261122120000Z")), sid=sid))


@pytest.mark.parametrize("cut", ["no signed attributes", "signature not octets",
                                 "trailing junk field"])
def test_malformed_signer_info_is_refused(signer, cut: str) -> None:  # type: ignore[no-untyped-def]
    key, cert = signer
    attrs = b"".join(sorted(standard_attributes(utc_time("261122120000Z"))))
    signature = key.sign(tlv(SET, attrs), apad.PKCS1v15(), hashes.SHA256())
    sid = tlv(SEQ, cert.issuer.public_bytes(), integer(cert.serial_number))
    fields = [integer(1), sid, SHA256_ALG, tlv(CTX0, attrs), SHA256_RSA_ALG,
              tlv(OCTETS, signature)]
    if cut == "no signed attributes":
        del fields[3]
    elif cut == "signature not octets":
        fields[5] = tlv(0x03, b"\x00" + signature)
    else:
        fields.append(tlv(SEQ, b""))
    content = tlv(SEQ, oid(cms.OID_DATA), tlv(CTX0, tlv(OCTETS, CONTENT)))
    sd = tlv(SEQ, integer(1), tlv(SET, SHA256_ALG), content, tlv(CTX0, der(cert)),
             tlv(SET, tlv(SEQ, *fields)))
    with pytest.raises(SignatureInvalid):
        cms.verify(tlv(SEQ, oid(cms.OID_SIGNED_DATA), tlv(CTX0, sd)))


def test_time_values_agree_with_asn1crypto() -> None:
    """The direct DER time reading gives what asn1crypto gives, on both forms; a UTCTime's
    50-99 are 1950-1999 (RFC 5652, 11.3)."""
    from gateway.protocol.cms.signed import _signing_time
    from gateway.protocol.der import read

    for value in (datetime(1950, 1, 1, tzinfo=UTC), datetime(1968, 2, 29, 12, tzinfo=UTC),
                  datetime(1969, 1, 1, tzinfo=UTC),
                  datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), NOW,
                  datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
                  datetime(2049, 1, 1, tzinfo=UTC), datetime(2050, 6, 1, 8, 30, tzinfo=UTC)):
        encoded = (core.UTCTime(value) if value.year < 2050
                   else core.GeneralizedTime(value)).dump()
        buf = memoryview(encoded)
        assert _signing_time(buf, read(buf, 0, len(buf))) == value


# --- AuthEnvelopedData, read the same way ---------------------------------------------------

OAEP_SHA256 = cms_common._algorithm_der("rsaes_oaep")


def auth_enveloped(recipient: x509.Certificate, *, nonce_params: bytes | None = None,
                   content_oid: str = cms.OID_AES256_GCM, key_alg: bytes = OAEP_SHA256,
                   other_infos: tuple[bytes, ...] = (), rid: bytes | None = None) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, nonce = b"k" * 32, b"n" * 12
    sealed = AESGCM(key).encrypt(nonce, CONTENT, None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    public = recipient.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    wrapped = public.encrypt(key, apad.OAEP(apad.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    if rid is None:
        rid = tlv(SEQ, recipient.issuer.public_bytes(), integer(recipient.serial_number))
    ktri = tlv(SEQ, integer(0), rid, key_alg, tlv(OCTETS, wrapped))
    params = tlv(SEQ, tlv(OCTETS, nonce), integer(16)) if nonce_params is None \
        else nonce_params
    eci = tlv(SEQ, oid(cms.OID_DATA), tlv(SEQ, oid(content_oid), params),
              tlv(0x80, ciphertext))
    aed = tlv(SEQ, integer(0), tlv(SET, *other_infos, ktri), eci, tlv(OCTETS, tag))
    return tlv(SEQ, oid(cms.OID_AUTH_ENVELOPED_DATA), tlv(CTX0, aed))


@pytest.fixture(scope="module")
def recipient() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = spare_rsa_key()
    cert = issue(issuer_key=key, issuer_cert=None, subject="Test Recipient", key=key,
                 not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30),
                 usage="encrypt")
    return key, cert


def test_hand_built_auth_enveloped_data_decrypts(recipient) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    assert cms.decrypt(auth_enveloped(cert), key=key, cert=cert) == CONTENT


def test_other_recipient_info_kinds_are_skipped(recipient) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    kekri = tlv(0xA2, integer(4), tlv(SEQ, tlv(OCTETS, b"kek-id")),
                tlv(SEQ, oid("2.16.840.1.101.3.4.1.45")), tlv(OCTETS, b"x" * 40))
    assert cms.decrypt(auth_enveloped(cert, other_infos=(kekri,)), key=key,
                       cert=cert) == CONTENT


def test_recipient_named_by_key_identifier(recipient) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cms.decrypt(auth_enveloped(cert, rid=tlv(0x80, ski)), key=key,
                       cert=cert) == CONTENT


def test_recipient_info_for_someone_else_is_not_tried(recipient) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    rid = tlv(SEQ, cert.issuer.public_bytes(), integer(cert.serial_number + 1))
    with pytest.raises(DecryptionFailed, match="not encrypted for this node"):
        cms.decrypt(auth_enveloped(cert, rid=rid), key=key, cert=cert)


def test_gcm_without_icv_length_means_12_and_is_refused(recipient) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    with pytest.raises(AlgorithmNotAllowed, match="16-byte tag"):
        cms.decrypt(auth_enveloped(cert, nonce_params=tlv(SEQ, tlv(OCTETS, b"n" * 12))),
                    key=key, cert=cert)


def test_other_content_encryption_is_refused(recipient) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    with pytest.raises(AlgorithmNotAllowed, match=r"2\.16\.840\.1\.101\.3\.4\.1\.6 "):
        cms.decrypt(auth_enveloped(cert, content_oid="2.16.840.1.101.3.4.1.6"), key=key,
                    cert=cert)


@pytest.mark.parametrize("params", [b"\x05\x00", tlv(SEQ, integer(16)),
                                    tlv(SEQ, tlv(OCTETS, b"n" * 12), integer(16), integer(1))])
def test_malformed_gcm_parameters_are_refused(recipient, params: bytes) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    with pytest.raises(EnvelopeInvalid):
        cms.decrypt(auth_enveloped(cert, nonce_params=params), key=key, cert=cert)


def test_oaep_with_sha1_is_refused(recipient) -> None:  # type: ignore[no-untyped-def]
    key, cert = recipient
    sha1_oaep = tlv(SEQ, oid("1.2.840.113549.1.1.7"), tlv(SEQ))  # all defaults: SHA-1
    with pytest.raises(AlgorithmNotAllowed, match="SHA-256"):
        cms.decrypt(auth_enveloped(cert, key_alg=sha1_oaep), key=key, cert=cert)
