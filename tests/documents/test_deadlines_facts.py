"""Business keys read from each document type the gateway carries; only short tokens, never
a personal value."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.documents.deadlines import Facts, facts_from_tree, observe, shipped_rules
from gateway.documents.deadlines.facts import token
from gateway.documents.xmlsafe import parse_xml
from tests.support.privacy import values_in

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "valid"
PERSONAL = {"SSN", "Last", "First", "FamilyName", "GivenName", "Line", "Line1", "City",
            "Email", "Phone", "HomePhone", "DateOfBirth", "Name"}


def facts(name: str, **kw: str) -> Facts:
    result = facts_from_tree(parse_xml((SAMPLES / name).read_bytes()), **kw)
    assert result is not None
    return result


def test_interstate_transaction() -> None:
    f = facts("interstate-transaction.xml")
    assert f == Facts(doc="InterstateTransaction", function="ENF", action="R", reason="ERARR",
                      case_id="TST978212965548", other_case_id="OTH044756014165",
                      local_fips="0600000", other_fips="4800000")
    assert f.normalised(outbound=True) == ("TST978212965548", "OTH044756014165")
    assert f.normalised(outbound=False) == ("OTH044756014165", "TST978212965548")


def test_interstate_acknowledgment_and_document_exchange() -> None:
    ack = facts("interstate-acknowledgment.xml")
    assert (ack.doc, ack.function, ack.case_id, ack.other_case_id) == (
        "InterstateAcknowledgment", None, "OTH978212965548", "TST044756014165")
    exchange = facts("document-exchange.xml")
    assert exchange.doc == "DocumentExchange/UniformSupportPetition"
    assert exchange.local_fips == "0600000"


def test_hague_forms_use_the_authorities_references() -> None:
    application = facts("maintenance-application.xml")
    assert application.doc == "MaintenanceApplication"
    ack = facts("acknowledgement-form.xml", conversation_id="conv-1",
                ref_to="0b5e8f5e-1c1e-4a57-9a67-6c1c2a6f2d10")
    # the requested authority (NL) writes the acknowledgement: its reference is its own
    assert (ack.case_id, ack.other_case_id) == ("RSP-56448162", "REQ-51706749")
    assert (ack.local_fips, ack.other_fips) == ("NL", "0600000")
    assert ack.conversation_id == "conv-1"
    assert ack.ref_to == "0b5e8f5e-1c1e-4a57-9a67-6c1c2a6f2d10"
    status = facts("status-report.xml")
    assert (status.case_id, status.other_case_id) == ("RSP-56448162", "REQ-51706749")


def test_the_csenet_xml_form() -> None:
    ns = "urn:cse-gateway:interstate:2"
    root = etree.Element(f"{{{ns}}}InterstateTransaction", nsmap={None: ns})  # type: ignore[dict-item]
    header = etree.SubElement(root, f"{{{ns}}}Header")
    for name, text in (("LocalFIPSState", "06"), ("LocalFIPSCounty", "019"),
                       ("OtherFIPSState", "48"), ("OtherFIPSCounty", "000"),
                       ("OtherFIPSSub", "7A"), ("ActionCode", "R"),
                       ("FunctionalTypeCode", "CSI"), ("ActionReason", "FRINF"),
                       ("CaseID", "CA0000000000001"), ("TransactionSerialNumber", "1")):
        etree.SubElement(header, f"{{{ns}}}{name}").text = text
    f = facts_from_tree(root)
    assert f == Facts(doc="InterstateTransaction", function="CSI", action="R", reason="FRINF",
                      case_id="CA0000000000001", local_fips="0601900", other_fips="4800000")
    assert [code for code, _ in observe(f, shipped_rules(), outbound=True)] == \
        ["clock_started"]


def test_the_other_interstate_documents_in_version_2() -> None:
    ns = "urn:cse-gateway:interstate:2"
    root = etree.Element(f"{{{ns}}}InterstateAcknowledgment", nsmap={None: ns})  # type: ignore[dict-item]
    for name, text in (("LocalFIPS", "4800000"), ("OtherFIPS", "0600000"),
                       ("CaseID", "TX0000000000001"), ("OtherCaseID", "CA0000000000001")):
        etree.SubElement(root, f"{{{ns}}}{name}").text = text
    assert facts_from_tree(root) == Facts(
        doc="InterstateAcknowledgment", case_id="TX0000000000001",
        other_case_id="CA0000000000001", local_fips="4800000", other_fips="0600000")


def test_unknown_documents_give_nothing() -> None:
    assert facts_from_tree(etree.fromstring(b"<Other xmlns='urn:x'/>")) is None


@pytest.mark.parametrize("value", ["987654320", " 987654321 ", "has space", "x" * 65, "",
                                   "semi;colon"])
def test_token_refuses_free_text_and_ssn_shapes(value: str) -> None:
    assert token(value) is None


def test_clock_events_hold_no_personal_value() -> None:
    """Every valid sample, as sent and as received: the event details hold keys and codes
    only."""
    seen_any = False
    for path in sorted(SAMPLES.glob("*.xml")):
        tree = parse_xml(path.read_bytes())
        personal = values_in(tree.getroot(), PERSONAL)
        f = facts_from_tree(tree)
        assert f is not None, path.name
        for outbound in (True, False):
            for _code, detail in observe(f, shipped_rules(), outbound=outbound):
                seen_any = True
                for key, value in detail.items():
                    assert value not in personal, (path.name, key)
                    assert token(value) == value, (path.name, key)
    assert seen_any
