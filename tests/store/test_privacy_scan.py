"""The privacy scans (tests/support/privacy.py) read a copy as a person holding it would: a
value counts wherever it is written, and base64 counts for what it decodes to. So four
letters that turn up by chance in the base64 of an encrypted envelope (how ``LIMA`` was
"found" in a dump of the HA store) are not a leak, while a document kept base64-encoded,
or signed but not encrypted, is one although its values are nowhere written literally."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from gateway.demo.samples import interstate_transaction
from gateway.protocol import cms
from gateway.protocol.envelope import Header, SealedContent, build_envelope, parse_envelope
from gateway.protocol.seal import seal
from tests.support.privacy import leaks, personal_values
from tests.support.security import NOW, Node, make_node, register

DOCUMENT = interstate_transaction("0600000", "4800000", seed=7)
VALUES = {v for v in personal_values([DOCUMENT]) if v.encode() in DOCUMENT}


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> tuple[Node, Node, Header]:
    base: Path = tmp_path_factory.mktemp("scan")
    a, b = make_node(base, "fips:0600000"), make_node(base, "fips:4800000")
    register(a, b)
    register(b, a)
    header = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                        action="InterstateTransaction", created=NOW)
    return a, b, header


def test_the_document_is_found_where_it_is_written() -> None:
    assert len(VALUES) > 10
    assert leaks(DOCUMENT.decode(), VALUES) == sorted(VALUES)
    # run together, as in a fixed-width record: still found
    assert leaks("98765432019800115LIMAALPHA", {"987654320", "19800115", "LIMA"}) == [
        "19800115", "987654320", "LIMA"]


def test_an_encrypted_envelope_holds_none_even_with_a_chance_match(
        parties: tuple[Node, Node, Header]) -> None:
    a, b, header = parties
    envelope = seal(DOCUMENT, header, sender=a.identity,
                    recipient_cert=b.identity.encryption_cert)
    assert leaks(envelope.decode("latin-1"), VALUES) == []
    # What a chance match is: ciphertext bytes whose base64 happens to read LIMA (put on
    # a 3-byte boundary inside the encrypted content, so the base64 shows it whole).
    der = bytearray(parse_envelope(envelope).payload_der)
    info = acms.ContentInfo.load(bytes(der))
    ciphertext = info["content"]["auth_encrypted_content_info"]["encrypted_content"].contents
    at = der.find(ciphertext) + 300
    at += -at % 3
    der[at:at + 3] = base64.b64decode("LIMA")
    chance = build_envelope(header, bytes(der)).decode("latin-1")
    assert "LIMA" in chance  # what the literal search reported
    assert leaks(chance, {"LIMA"}) == []


def test_what_base64_hides_is_found(parties: tuple[Node, Node, Header]) -> None:
    a, _, header = parties
    # the signed layer alone (signed, not encrypted): the document is base64 inside it
    signed = cms.sign(SealedContent(header, DOCUMENT), key=a.identity.signing_key,
                      cert=a.identity.signing_cert, signing_time=NOW).to_bytes()
    clear = build_envelope(header, signed).decode("latin-1")
    assert [v for v in VALUES if v in clear] == []  # nowhere written literally
    assert leaks(clear, VALUES) == sorted(VALUES)
    # a document base64 on one line, in a JSON record
    record = json.dumps({"copy": base64.b64encode(DOCUMENT).decode()})
    assert leaks(record, VALUES) == sorted(VALUES)
