"""The per-message shortcuts on the protocol's hot path give what the long way gives, and
the memoised parts of a check never accept what the check itself refuses."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.documents.xmlsafe import parse_xml
from gateway.errors import (
    CertificateUntrusted,
    EnvelopeInvalid,
    GatewayError,
    ReceiptInvalid,
    SignatureInvalid,
)
from gateway.protocol import certs
from gateway.protocol.cms.common import GCMParameters, _time, _time_der
from gateway.protocol.cms.enveloped import _gcm_parameters
from gateway.protocol.cms.signed import _signing_time
from gateway.protocol.der import SEQ, Malformed, Tlv, children, integer, oid, oid_at, read, top
from gateway.protocol.envelope import (
    _BASE64_TEXT,
    Header,
    _b64_decode,
    _base64_only,
    _encode_lines,
    _uuid,
    parse_envelope,
)
from gateway.protocol.party import Party
from gateway.protocol.receipts import NS as RECEIPT_NS
from gateway.protocol.receipts import (
    _receipt_xml,
    _receipt_xml_built,
    build_receipt,
    verify_receipt,
)
from gateway.protocol.seal import seal
from tests.support.security import NOW, Node, pair

# what may turn up inside a base64 element: the alphabet, padding, every kind of ASCII
# whitespace, other ASCII, Unicode whitespace, other Unicode
_CHARS = st.sampled_from([*"AZaz09+/=-_.!*\x00\x7f", " ", "\n", "\r", "\t", "\x0b", "\x0c",
                          "\x1c", "\x1f", "\u00a0", "\u2028", "\u3000", "é", "\U0001f600"])


@settings(max_examples=3000)
@given(st.lists(_CHARS, max_size=24).map("".join))
def test_base64_check_is_the_regular_expression(text: str) -> None:
    assert _base64_only(text) == (_BASE64_TEXT.fullmatch(text) is not None)


def test_base64_payloads_decode_and_foreign_characters_are_refused() -> None:
    data = bytes(range(256)) * 40
    lines = _encode_lines(data).decode()
    assert _b64_decode(lines, where="Payload") == data
    assert _b64_decode(lines + "\n", where="Payload") == data
    for bad in ("*", "\u00a0x", "=A", "-", "\x00"):
        with pytest.raises(EnvelopeInvalid):
            _b64_decode(lines[:100] + bad + lines[100:], where="Payload")


@pytest.mark.parametrize("moment", [
    datetime(2026, 11, 3, 10, 0, 7, 999_999, tzinfo=UTC),
    datetime(1950, 1, 1, tzinfo=UTC),
    datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2050, 1, 1, tzinfo=UTC),
    datetime(1949, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2050, 1, 1, 2, 30, tzinfo=timezone(timedelta(hours=5))),  # 2049 in UTC
    datetime(2026, 3, 8, 1, 59, 59, tzinfo=timezone(timedelta(hours=-8))),
])
def test_signing_time_der_is_asn1cryptos(moment: datetime) -> None:
    assert _time_der(moment) == bytes(_time(moment).dump())
    assert isinstance(core.Asn1Value.load(_time_der(moment)), core.UTCTime | core.GeneralizedTime)


def test_fingerprints_are_of_the_bytes(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    for cert in (a.identity.signing_cert, b.identity.encryption_cert, a.ca_cert):
        expected = hashlib.sha256(certs.der(cert)).hexdigest()
        assert certs.fingerprint(cert) == expected
        assert certs.fingerprint(certs.parse_der(certs.der(cert))) == expected
    assert certs.fingerprint(a.ca_cert) != certs.fingerprint(b.ca_cert)


def _receipt(a: Node, b: Node) -> tuple[bytes, str]:
    header = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                        action="InterstateTransaction", created=NOW)
    envelope = seal(b"<x/>", header, sender=a.identity,
                    recipient_cert=b.identity.encryption_cert)
    digest = hashlib.sha256(envelope).hexdigest()
    return build_receipt(for_header=header, envelope_digest=digest, status="Delivered",
                         errors=[], received=NOW, node=b.identity, now=NOW), digest


def test_a_receipt_verified_before_is_refused_when_trust_or_time_says_so(
        tmp_path: Path) -> None:
    # the signer's path is built once per (certificate, trust store, intermediates);
    # a reloaded trust store without the partner's CA (SIGHUP after removing it), a time
    # past the signer's validity, or a registration gone are refused all the same
    a, b = pair(tmp_path)
    receipt, digest = _receipt(a, b)
    trust = tuple(a.store.trust())

    def check(*, trust: tuple[object, ...] = trust, now: datetime = NOW,
              directory: object = a.store) -> object:
        return verify_receipt(receipt, expected_signer=b.party, sent_envelope_digest=digest,
                              trust=trust, directory=directory, now=now)  # type: ignore[arg-type]

    for _ in range(2):  # the second time from the memoised path
        assert check().status == "Delivered"  # type: ignore[attr-defined]
    reloaded = tuple(c for c in trust if certs.fingerprint(c) != certs.fingerprint(b.ca_cert))
    assert len(reloaded) < len(trust)
    with pytest.raises(ReceiptInvalid) as untrusted:
        check(trust=reloaded)
    assert untrusted.value.details["cause"] == "CertificateUntrusted"
    after = b.identity.signing_cert.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(ReceiptInvalid) as expired:
        check(now=after)
    assert expired.value.details["cause"] == "CertificateExpired"
    with pytest.raises(ReceiptInvalid) as unregistered:
        check(directory=a.store.__class__(tmp_path / "empty-keys"))
    assert unregistered.value.details["cause"] == "SignerNotRegistered"
    assert check().status == "Delivered"  # type: ignore[attr-defined]


_ERROR_TEXT = st.text(alphabet=st.sampled_from([*"az AZ09.,:;_/()'+-", "<", "&", ">", "\"",
                                                "\r", "\t", "é"]), max_size=30)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["SchemaInvalid", "Duplicate", "TooLarge"]),
                          _ERROR_TEXT), max_size=3),
       st.booleans(), st.booleans())
def test_receipt_xml_written_directly_is_what_lxml_writes(
        errors: list[tuple[str, str]], with_ref: bool, with_to: bool) -> None:
    values = {"receipt_id": "0b1e7c44-5a6f-4a53-9c35-0a1d2b3c4d5e",
              "ref": "1b1e7c44-5a6f-4a53-9c35-0a1d2b3c4d5e" if with_ref else None,
              "from_party": Party.parse("fips:4800000"),
              "to_party": Party.parse("iso3166:NL") if with_to else None,
              "received": datetime(2026, 11, 3, 10, 0, 7, 25, tzinfo=UTC),
              "status": "Rejected" if errors else "Delivered", "errors": errors,
              "digest": "ab" * 32}
    written = _receipt_xml(**values)  # type: ignore[arg-type]
    assert written == _receipt_xml_built(**values)  # type: ignore[arg-type]
    root = parse_xml(written, source="Receipt").getroot()
    texts = [(e.findtext(f"{{{RECEIPT_NS}}}Code"), e.findtext(f"{{{RECEIPT_NS}}}Text") or "")
             for e in root.iter(f"{{{RECEIPT_NS}}}Error")]
    assert texts == [(code, text[:1000]) for code, text in errors]


# --- signing-time, OIDs and the chain check's memoised part --------------------------------


def _signing_time_long_way(buf: memoryview, item: Tlv) -> datetime:
    """The reading before the positional shortcut (strptime, then asn1crypto)."""
    raw = buf[item.start:item.end].tobytes()
    fmt = {0x17: (13, "%y%m%d%H%M%SZ"), 0x18: (15, "%Y%m%d%H%M%SZ")}.get(item.tag)
    if fmt is None:
        raise SignatureInvalid("signing-time is not a time")
    text = raw[item.body - item.start:]
    if len(text) == fmt[0] and text.isascii():
        try:
            return datetime.strptime(text.decode(), fmt[1]).replace(tzinfo=UTC)
        except ValueError:
            pass
    value = (core.UTCTime if item.tag == 0x17 else core.GeneralizedTime).load(raw).native
    if not isinstance(value, datetime):
        raise SignatureInvalid("signing-time is not a time")
    return value


def _time_outcome(fn: Callable[[], datetime]) -> tuple[object, ...]:
    try:
        return ("ok", fn())
    except (GatewayError, ValueError, TypeError, KeyError, OverflowError) as exc:
        return ("error", type(exc), str(exc))


_TWO = st.one_of(st.integers(0, 99).map("{:02d}".format),
                 st.sampled_from(["0", "1", "123", " 1", "+1", "٣٣"]))


@st.composite
def _time_texts(draw: st.DrawFn, tag: int) -> str:
    """Mostly the DER shape (digits in two-digit fields, every value 00-99 including the
    out-of-range ones), sometimes a field of another width or a different end."""
    year = draw(st.integers(0, 99).map("{:02d}".format)) if tag == 0x17 else draw(
        st.sampled_from(["0000", "0001", "1950", "1969", "2026", "2400", "9999", "20"]))
    fields = [draw(st.one_of(st.integers(0, 13), st.integers(0, 99)).map("{:02d}".format)),
              draw(st.one_of(st.integers(0, 32), st.integers(0, 99)).map("{:02d}".format)),
              *(draw(st.one_of(st.integers(0, 61), st.integers(0, 99)).map("{:02d}".format))
                for _ in range(3))]
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.integers(0, 4))] = draw(_TWO)
    tail = draw(st.sampled_from(["Z"] * 6 + ["", "z", "+0000", ".5Z", "ZZ", "Z "]))
    return year + "".join(fields) + tail


@settings(max_examples=1200)
@given(st.data(), st.sampled_from([0x17, 0x18]))
def test_signing_time_by_position_is_strptimes(data: st.DataObject, tag: int) -> None:
    text = data.draw(_time_texts(tag))
    encoded = bytes([tag, len(text.encode())]) + text.encode()
    buf = memoryview(encoded)
    item = read(buf, 0, len(buf))
    assert _time_outcome(lambda: _signing_time(buf, item)) == \
        _time_outcome(lambda: _signing_time_long_way(buf, item))


def test_signing_times_we_write_read_back() -> None:
    for moment in (datetime(1969, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59,
                   tzinfo=UTC), NOW, datetime(2049, 2, 28, tzinfo=UTC),
                   datetime(2050, 1, 1, tzinfo=UTC), datetime(2400, 2, 29, 1, 2, 3, tzinfo=UTC)):
        buf = memoryview(_time_der(moment))
        item = read(buf, 0, len(buf))
        assert _signing_time(buf, item) == _signing_time_long_way(buf, item) == moment


def test_object_identifiers_decode_alike_and_errors_are_not_remembered() -> None:
    for dotted in ("1.2.840.113549.1.7.2", "2.16.840.1.101.3.4.1.46", "1.3.101.112"):
        encoded = oid(dotted)
        buf = memoryview(encoded)
        for _ in range(2):
            assert oid_at(buf, read(buf, 0, len(buf))) == dotted
    for odd in (b"\x06\x02\x2a\x86", b"\x06\x00", b"\x06\x01\x80", b"\x06\x03\x2a\x80\x01"):
        buf = memoryview(odd)

        def direct(odd: bytes = odd) -> str:
            return str(core.ObjectIdentifier.load(odd).dotted)

        expected = _time_outcome(direct)  # type: ignore[arg-type]
        for _ in range(2):
            assert _time_outcome(lambda buf=buf: oid_at(  # type: ignore[misc]
                buf, read(buf, 0, len(buf)))) == expected


def _chain_long_way(leaf: x509.Certificate, *, trust: tuple[x509.Certificate, ...],
                    at: list[datetime], usage: certs.Usage) -> list[x509.Certificate]:
    """validate_chain's checks one by one (no memoised window)."""
    full = [leaf, *certs._path(leaf, trust, ())[1:]]
    for index, cert in enumerate(full):
        certs._check_critical(cert)
        for instant in at:
            certs.check_validity(cert, instant,
                                 what="certificate" if index == 0 else "issuer certificate")
    certs.check_key_usage(leaf, usage)
    certs.check_key(leaf, usage)
    return full


def _chain_outcome(fn: Callable[[], list[x509.Certificate]]) -> tuple[object, ...]:
    try:
        return ("ok", tuple(fn()))
    except GatewayError as exc:
        return ("error", type(exc), exc.message, exc.details)


def test_chain_check_with_its_memoised_window_refuses_what_the_checks_refuse(
        tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    trust = tuple(a.store.trust())
    signer, encrypter = b.identity.signing_cert, b.identity.encryption_cert
    ca = b.ca_cert
    second = timedelta(seconds=1)
    instants = [NOW]
    for cert in (signer, encrypter, ca):
        for edge in (cert.not_valid_before_utc, cert.not_valid_after_utc):
            instants.extend((edge - second, edge, edge + second))
    cases = 0
    for leaf in (signer, encrypter):
        for usage in ("sign", "encrypt", "any"):
            for first in instants:
                for later in (NOW, first):
                    at = [first, later]
                    expected = _chain_outcome(lambda leaf=leaf, usage=usage, at=at:
                                              _chain_long_way(leaf, trust=trust, at=at,
                                                              usage=usage))
                    for _ in range(2):  # the second time from the memoised window
                        assert _chain_outcome(lambda leaf=leaf, usage=usage, at=at:
                                              certs.validate_chain(
                                                  leaf, trust=trust, at=at,
                                                  usage=usage)) == expected
                    cases += 1
    assert cases > 100
    untrusting = tuple(c for c in trust if certs.fingerprint(c) != certs.fingerprint(ca))
    with pytest.raises(CertificateUntrusted):
        certs.validate_chain(signer, trust=untrusting, at=[NOW], usage="sign")


@settings(max_examples=500)
@given(st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.text(st.sampled_from("0123456789abcdefABCDEF-{}_+ \n:nrui"), max_size=45)))
def test_uuid_shortcut_is_uuids(text: str) -> None:
    def long_way() -> str:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise EnvelopeInvalid("MessageId is not a UUID", where="MessageId") from None

    expected = _time_outcome(long_way)  # type: ignore[arg-type]
    assert _time_outcome(lambda: _uuid(text, "MessageId")) == expected  # type: ignore[arg-type]


def test_small_integers_are_asn1cryptos() -> None:
    for value in range(-300, 3000):
        assert integer(value) == bytes(core.Integer(value).dump())


@settings(max_examples=200)
@given(st.binary(min_size=12, max_size=12))
def test_gcm_parameters_are_asn1cryptos(nonce: bytes) -> None:
    expected = GCMParameters({"aes_nonce": nonce, "aes_icvlen": 16}).dump()
    assert _gcm_parameters(nonce) == bytes(expected)


def _children_long_way(buf: memoryview, parent: Tlv) -> list[Tlv]:
    out: list[Tlv] = []
    pos = parent.body
    while pos < parent.end:
        item = read(buf, pos, parent.end)
        out.append(item)
        pos = item.end
    return out


def _der_outcome(fn: Callable[[], list[Tlv]]) -> tuple[object, ...]:
    try:
        return ("ok", fn())
    except Malformed as exc:
        return ("error", str(exc))


_DER_BYTES = st.lists(st.one_of(
    st.sampled_from([b"\x30", b"\x04", b"\x80", b"\x81", b"\x82\x01", b"\x88", b"\x89",
                     b"\x1f", b"\x3f", b"\x00", b"\x7f", b"\x81\x80", b"\x84\x00\x00\x00\x03"]),
    st.binary(max_size=4)), max_size=12).map(b"".join)


@settings(max_examples=1500)
@given(_DER_BYTES, st.integers(0, 3), st.integers(0, 3))
def test_children_inlined_is_the_read_loop(data: bytes, skip: int, cut: int) -> None:
    buf = memoryview(data)
    parent = Tlv(SEQ, 0, min(skip, len(data)), max(min(skip, len(data)), len(data) - cut))
    assert _der_outcome(lambda: children(buf, parent)) == \
        _der_outcome(lambda: _children_long_way(buf, parent))


def test_children_of_our_messages_are_the_read_loop(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    receipt, _digest = _receipt(a, b)
    der = parse_envelope(receipt).payload_der
    buf = memoryview(der)
    stack = [top(buf)]
    walked = 0
    while stack:
        item = stack.pop()
        expected = _children_long_way(buf, item)
        assert children(buf, item) == expected
        walked += len(expected)
        stack.extend(c for c in expected if c.tag & 0x20)
    assert walked > 50


@settings(max_examples=600)
@given(st.one_of(
    st.sampled_from(["fips:0600000", "iso3166:NL", "iso3166:DE-BY", " fips:4800000 ",
                     "fips:060000", "FIPS:0600000", "iso3166:nl", "x:y", "fips0600000", ""]),
    st.text(st.sampled_from("fipso3166:0123456789NLDEBY- \t"), max_size=40)))
def test_party_parse_memoised_is_the_parse(text: str) -> None:
    def outcome(fn: Callable[[], Party]) -> tuple[object, ...]:
        try:
            return ("ok", fn())
        except GatewayError as exc:
            return ("error", type(exc), exc.message)

    expected = outcome(lambda: Party._from_text(text))
    for _ in range(2):  # the second time from the memo, when it was a success
        assert outcome(lambda: Party.parse(text)) == expected
