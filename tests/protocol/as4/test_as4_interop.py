"""Real AS4 messages and receipts from Holodeck B2B, phase4, Domibus, Governikus, RSSBus and
AS4.NET (tests/fixtures/as4/README.md): our profile must open, verify and refuse them as
those implementations do."""

from __future__ import annotations

import datetime as dt
import gzip

import pytest

from gateway import errors
from gateway.protocol.as4 import dsig, ebms, mime, ns, receipt, soap, xenc
from gateway.protocol.as4.message import open_user_message
from tests.support.as4_keys import fixture, load

AT_2024 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
AT_2022 = dt.datetime(2022, 3, 7, 18, 0, tzinfo=dt.UTC)
AT_2017 = dt.datetime(2017, 10, 24, 12, 0, tzinfo=dt.UTC)


def test_holodeck_signed_and_encrypted_message_opens() -> None:
    key_b, _cert_b = load("AccessPointB.pfx")
    _key_a, cert_a = load("AccessPointA.pfx")
    opened = open_user_message(
        fixture("holodeck/as4-encrypted-signed-issuerserial.as4"),
        decrypt_key=key_b, trusted=[cert_a], now=AT_2024,
    )
    assert opened.signature.signature_method == ns.RSA_SHA384
    assert opened.signature.trusted
    assert opened.encryption is not None
    assert opened.encryption.key_transport == ns.RSA_OAEP_MGF1P
    assert set(opened.encryption.content_ciphers) == {ns.AES128_GCM}
    user = opened.user_message
    assert user.sender.party_id == "org:holodeckb2b:example:company:A"
    assert user.action == "StoreMessage"
    kinds = {p.mime_type: p.content for p in opened.payloads}
    assert set(kinds) == {"image/jpeg", "application/xml"}
    assert kinds["image/jpeg"][:3] == b"\xff\xd8\xff"  # a JPEG, decompressed
    assert kinds["application/xml"].lstrip().startswith(b"<")
    assert len(opened.signature.covered_cids) == 2


def test_holodeck_message_refused_with_the_wrong_trust_or_key() -> None:
    key_a, cert_a = load("AccessPointA.pfx")
    key_b, cert_b = load("AccessPointB.pfx")
    data = fixture("holodeck/as4-encrypted-signed-issuerserial.as4")
    with pytest.raises(errors.As4FailedAuthentication):  # signed by A, we trust only B
        open_user_message(data, decrypt_key=key_b, trusted=[cert_b], now=AT_2024)
    with pytest.raises(errors.As4FailedDecryption):  # encrypted for B, A's key
        open_user_message(data, decrypt_key=key_a, trusted=[cert_a], now=AT_2024)


def test_holodeck_signed_only_message_verifies() -> None:
    _key_b, cert_b = load("AccessPointB.pfx")
    opened = open_user_message(
        fixture("holodeck/signed_holodeck_message.as4"),
        decrypt_key=None, trusted=[cert_b], now=AT_2024,
    )
    assert opened.encryption is None
    assert len(opened.payloads) == 2
    assert all(p.content for p in opened.payloads)


def test_holodeck_attachment_tampered_is_refused() -> None:
    _key_b, cert_b = load("AccessPointB.pfx")
    data = bytearray(fixture("holodeck/signed_holodeck_message.as4"))
    data[-400] ^= 0x01  # a byte inside the last (gzip) attachment
    with pytest.raises(errors.As4Error) as info:
        open_user_message(bytes(data), decrypt_key=None, trusted=[cert_b], now=AT_2024)
    assert info.value.ebms_code in ("EBMS:0101", "EBMS:0303")


def test_as4net_encrypted_message_decrypts_but_is_refused_unsigned() -> None:
    key_c, _ = load("partyC.p12")
    message = mime.parse_message(fixture("holodeck/as4-encrypted-compressed-message.as4"))
    envelope = soap.parse_envelope(message.soap)
    parts, info = xenc.decrypt_attachments(envelope, message.attachments, key_c)
    assert info is not None
    assert info.key_transport == ns.RSA_OAEP
    assert info.oaep_digest == ns.SHA256
    plain = [gzip.decompress(p.content) for p in parts]
    assert plain[0][:3] == b"\xff\xd8\xff"
    with pytest.raises(errors.As4FailedAuthentication):
        open_user_message(fixture("holodeck/as4-encrypted-compressed-message.as4"),
                          decrypt_key=key_c, trusted=None, now=AT_2017)


def test_rssbus_signature_and_xml_digests_verify() -> None:
    message = mime.parse_message(fixture("holodeck/rssbus_message.as4"))
    envelope = soap.parse_envelope(message.soap)
    # The attachment is encrypted for a key that is not public: its digest cannot be
    # checked, everything else must.
    verified = dsig.verify(envelope, attachments={p.content_id or "": None
                                                  for p in message.attachments},
                           trusted=None, now=None)
    assert verified.signature_method == ns.RSA_SHA256
    assert envelope.messaging.get(ns.WSU_ID) in verified.covered_ids
    assert not verified.covered_cids
    assert "21X-NL-A-A0A0A-Z" in verified.certificate.subject.rfc4514_string()


@pytest.mark.parametrize(("name", "at"), [
    ("receipts/governikus.as4in", AT_2022),
    ("receipts/helger.as4in", AT_2022),
])
def test_governikus_and_phase4_receipts_verify(name: str, at: dt.datetime) -> None:
    verified = receipt.verify_receipt(fixture(name), trusted=None, now=at)
    assert verified.ref_to_message_id
    assert verified.nri  # NonRepudiationInformation with the request's references
    assert verified.signature.signature_method == ns.RSA_SHA256


def test_phase4_receipt_verifies_against_its_published_certificate() -> None:
    _key, cert = load("phase4-ph-as4.p12")
    at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    data = fixture("receipts/TestReceipt11.xml")
    envelope = soap.parse_envelope(mime.parse_message(data).soap)
    verified = dsig.verify(envelope, attachments={}, trusted=[cert], now=at)
    assert verified.trusted
    assert envelope.body.get(ns.WSU_ID) in verified.covered_ids
    _other_key, other = load("AccessPointA.pfx")
    with pytest.raises(errors.As4FailedAuthentication):
        dsig.verify(envelope, attachments={}, trusted=[other], now=at)
    # This old phase4 receipt signs only the Body: its eb:Messaging (RefToMessageId) could
    # be swapped, so as evidence we refuse it.
    with pytest.raises(errors.As4InvalidReceipt, match="eb:Messaging is not signed"):
        receipt.verify_receipt(data, trusted=[cert], now=at)


def test_as4net_receipt_parses() -> None:
    message = mime.parse_message(fixture("receipts/as4net-receipt.xml"))
    envelope = soap.parse_envelope(message.soap)
    assert receipt.nri_references(envelope)


@pytest.mark.parametrize("name", [
    "negative/dataport1-tampered.as4in",
    "negative/receipt_with_invalid_signature.as4",
])
def test_tampered_and_broken_receipts_are_refused(name: str) -> None:
    with pytest.raises(errors.As4InvalidReceipt) as info:
        receipt.verify_receipt(fixture(name), trusted=None, now=None)
    assert info.value.ebms_code == "EBMS:0302"


@pytest.mark.parametrize("pair", [
    ("domibus/MSHAS4Request.xml", "domibus/MSHAS4Response.xml"),
    ("domibus/MSHAS4Request-signOnly.xml", "domibus/MSHAS4Response-signOnly.xml"),
])
def test_domibus_receipt_nri_matches_the_request_signature(pair: tuple[str, str]) -> None:
    request = soap.parse_envelope(mime.parse_message(fixture(pair[0])).soap)
    response = soap.parse_envelope(mime.parse_message(fixture(pair[1])).soap)
    assert request.security is not None
    signature = request.security.find(f"{{{ns.DS}}}Signature")
    assert signature is not None
    signed = dsig.signed_references(signature)
    nri = receipt.nri_references(response)
    assert len(signed) == 3
    receipt.check_nri(nri, signed)  # raises when they differ
    forged = [dsig.Reference(r.uri, r.digest_method, b"\0" * 32, r.transforms)
              if r.uri.startswith("cid:") else r for r in signed]
    with pytest.raises(errors.As4InvalidReceipt):
        receipt.check_nri(nri, forged)


def test_domibus_blue_gw_key_unwraps_the_request_key() -> None:
    key, _ = load("domibus-blue_gw.p12")
    request = soap.parse_envelope(mime.parse_message(fixture("domibus/MSHAS4Request.xml")).soap)
    assert request.security is not None
    encrypted_key = request.security.find(f"{{{ns.XENC}}}EncryptedKey")
    assert encrypted_key is not None
    method = encrypted_key.find(f"{{{ns.XENC}}}EncryptionMethod")
    assert method is not None
    assert method.get("Algorithm") == ns.RSA_OAEP
    assert len(xenc.unwrap_key(encrypted_key, key)) == 16  # an AES-128 key
    red, _ = load("domibus-red_gw.p12")
    with pytest.raises(errors.As4FailedDecryption):
        xenc.unwrap_key(encrypted_key, red)


@pytest.mark.parametrize(("name", "expected"), [
    ("negative/WrongSigningAlgorithm.xml", "EBMS:0101"),
    ("negative/WrongSigningDigestAlgorithm.xml", "EBMS:0101"),
    ("negative/WrongCompression.mime", "EBMS:0303"),
    ("negative/UserMessageNoPartyID.xml", "EBMS:0009"),
    ("negative/TwoUserMessages.xml", "EBMS:0003"),
])
def test_negative_cases_get_the_right_ebms_error(name: str, expected: str) -> None:
    with pytest.raises(errors.As4Error) as info:
        open_user_message(fixture(name), decrypt_key=None, trusted=None, now=None)
    assert info.value.ebms_code == expected, info.value


@pytest.mark.parametrize("name", [
    "domibus/MSHAS4Request.xml", "domibus/MSHAS4Request-signOnly.xml",
    "holodeck/as4-encrypted-signed-issuerserial.as4", "holodeck/signed_holodeck_message.as4",
])
def test_business_messages_of_other_implementations_are_not_test_messages(name: str) -> None:
    """ebMS 3.0 Core 5.2.2's test service and action (what Domibus's connection
    monitoring sends) mark a test message; these real messages are business messages, and
    the same Domibus header with the test service and action (its service type kept) is
    one."""
    user = ebms.parse_user_message(soap.parse_envelope(mime.parse_message(fixture(name)).soap)
                                   .messaging)
    assert not ebms.is_test(user)
    if name.startswith("domibus/"):
        text = fixture(name).replace(b">bdx:noprocess<", f">{ebms.TEST_SERVICE}<".encode())
        test = ebms.parse_user_message(soap.parse_envelope(mime.parse_message(
            text.replace(b">TC1Leg1<", f">{ebms.TEST_ACTION}<".encode())).soap).messaging)
        assert ebms.is_test(test)
        assert (test.service_type, test.message_id) == (user.service_type, user.message_id)
        # the test service alone is enough (never delivered, whatever the action); the
        # test action without it is refused, as Domibus refuses it
        service_only = ebms.parse_user_message(
            soap.parse_envelope(mime.parse_message(text).soap).messaging)
        assert ebms.is_test(service_only)
        action_only = fixture(name).replace(b">TC1Leg1<", f">{ebms.TEST_ACTION}<".encode())
        with pytest.raises(errors.As4ValueInconsistent):
            ebms.parse_user_message(
                soap.parse_envelope(mime.parse_message(action_only).soap).messaging)
