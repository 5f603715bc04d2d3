"""The XML form of a CSENet transaction: every field an element, blanks omitted, the
from-server header, and clear refusals for XML that does not map onto the layout."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from lxml import etree

from gateway.demo.csenet_samples import transaction
from gateway.documents.csenet import decode
from gateway.documents.csenet.layout import RECORD_NAMES, record_spec
from gateway.documents.csenet.xmlform import INTERSTATE_NS, element_name, from_xml, to_xml
from gateway.errors import CsenetInvalid

TODAY = dt.date(2026, 12, 4)
NS = {"i": INTERSTATE_NS}


def test_element_names_are_unique_per_record() -> None:
    for name in RECORD_NAMES:
        names = [element_name(f.key) for f in record_spec(name).fields]
        assert len(set(names)) == len(names), name
    assert element_name("Mother-s-Maiden-Or-Father-s-Name") == "MothersMaidenOrFathersName"
    assert element_name("CSENet-Version-Number") == "CSENetVersionNumber"
    assert element_name("NCP-Identification-Ind") == "NCPIdentificationInd"


def test_wire_text_in_elements_and_blank_fields_omitted() -> None:
    txn = transaction("ENF", "R", "ERARR", today=TODAY, serial=42)
    root = etree.fromstring(to_xml(txn))
    assert root.get("version") == "2"
    assert root.findtext("i:Header/i:TransactionSerialNumber", namespaces=NS) == "000000000042"
    assert root.findtext("i:Header/i:TransactionDate", namespaces=NS) == "20261203"
    assert root.find("i:Header/i:ErrorReasonCode", NS) is None       # blank: no element
    assert root.findtext("i:Order/i:OrderFreqAmount", namespaces=NS) == "000000025000"
    assert root.findtext("i:Case/i:PaymentMailAddressLine1", namespaces=NS) == "PO BOX 100"
    assert len(root.findall("i:Participant", NS)) == 2


def test_from_server_header_round_trips() -> None:
    txn = transaction("CSI", "P", "FSINF", today=TODAY)
    received = txn.header.received(TODAY, dt.time(8, 0))  # type: ignore[attr-defined]
    text = received.text + "".join(b.text for _, _, b in txn.blocks())
    inbound = decode(text.encode(), kind="from-server")
    xml = to_xml(inbound)
    assert b'form="from-server"' in xml
    assert from_xml(xml).to_text() == text


def _refusal(xml: bytes) -> list[tuple[str, str, str]]:
    with pytest.raises(CsenetInvalid) as caught:
        from_xml(xml)
    return [(i.block, i.field, i.rule) for i in caught.value.issues]


def test_refusals_name_block_and_field() -> None:
    good = to_xml(transaction("LO1", "R", today=TODAY))
    assert from_xml(good).to_bytes() == transaction("LO1", "R", today=TODAY).to_bytes()
    wrong_length = good.replace(b"<TransactionDate>20261203", b"<TransactionDate>2026123")
    assert _refusal(wrong_length) == [("header", "Transaction-Date", "xml.form")]
    too_long = good.replace(b"<CaseID>CA-SAMPLE-0001", b"<CaseID>CA-SAMPLE-0001-TOO-LONG")
    assert _refusal(too_long) == [("header", "Case-ID", "xml.form")]
    unknown = good.replace(b"<CaseType>", b"<Bogus>X</Bogus><CaseType>")
    assert _refusal(unknown) == [("case", "Bogus", "xml.form")]
    count = good.replace(b"<CaseDataInd>1</CaseDataInd>", b"<CaseDataInd>0</CaseDataInd>")
    assert _refusal(count) == [("header", "Case-Data-Ind", "xml.form")]
    order = good.replace(b"<CaseStatus>O</CaseStatus>", b"").replace(
        b"<CaseType>S</CaseType>", b"<CaseType>S</CaseType><CaseStatus>O</CaseStatus>"
        b"<CaseStatus>O</CaseStatus>")
    assert _refusal(order) == [("case", "Case-Status", "xml.form")]
    with pytest.raises(CsenetInvalid, match="not an InterstateTransaction"):  # version 1
        from_xml(b"<InterstateTransaction xmlns='urn:cse-gateway:interstate:1'/>")


def test_refusals_of_the_document_shape() -> None:
    """What is wrong with the blocks themselves (not a field) is named on the block, with
    no field: Header first, a known form, data blocks of this namespace in IGD order, and
    one-digit indicators."""
    good = to_xml(transaction("LO1", "R", today=TODAY))
    ns = f"{{{INTERSTATE_NS}}}"

    def refused(change: Callable[[etree._Element], object]) -> list[tuple[str, str, str]]:
        root = etree.fromstring(good)
        change(root)
        return _refusal(etree.tostring(root))

    assert refused(lambda r: r.append(r[0])) == [("header", "-", "xml.form")]
    assert refused(lambda r: r[0].set("form", "sideways")) == [("header", "-", "xml.form")]
    assert refused(lambda r: etree.SubElement(r, "{urn:other}Case")) == \
        [("Case", "-", "xml.form")]
    assert refused(lambda r: r.append(r.find(ns + "Case"))) == [("case", "-", "xml.form")]
    assert refused(lambda r: setattr(r[0].find(ns + "CaseDataInd"), "text", "X")) == \
        [("header", "-", "xml.form")]
