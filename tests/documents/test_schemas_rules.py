"""Every Schematron (and Python) rule fires on the document that breaks it, and only then."""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from gateway.demo import samples
from gateway.documents.schemas import default_registry, load_schema
from gateway.documents.xmlsafe import parse_xml
from gateway.resources import xsd_root

NS = {"i": "urn:cse-gateway:interstate:2", "h": "urn:cse-gateway:international:1"}
Mutation = Callable[[etree._Element], None]


def mutate(data: bytes, *changes: Mutation) -> bytes:
    root = etree.fromstring(data)
    for change in changes:
        change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def text(path: str, value: str) -> Mutation:
    def change(root: etree._Element) -> None:
        element = root.find(path, NS)
        assert element is not None, path
        element.text = value
    return change


def remove(path: str) -> Mutation:
    def change(root: etree._Element) -> None:
        found = root.findall(path, NS)
        assert found, path
        for element in found:
            parent = element.getparent()
            assert parent is not None
            parent.remove(element)
    return change


def attr(path: str, name: str, value: str) -> Mutation:
    def change(root: etree._Element) -> None:
        element = root if path == "." else root.find(path, NS)
        assert element is not None, path
        element.set(name, value)
    return change


def insert_after(path: str, tag: str, value: str) -> Mutation:
    def change(root: etree._Element) -> None:
        element = root.find(path, NS)
        assert element is not None, path
        new = etree.Element(f"{{{NS['i']}}}{tag}")
        new.text = value
        element.addnext(new)
    return change


def insert_after_h(path: str, tag: str, value: str) -> Mutation:
    def change(root: etree._Element) -> None:
        element = root.find(path, NS)
        assert element is not None
        new = etree.Element(f"{{{NS['h']}}}{tag}")
        new.text = value
        element.addnext(new)
    return change


def issues(data: bytes) -> list[tuple[str, str]]:
    return [(i.code, i.path) for i in default_registry().issues(parse_xml(data), data=data)]


IT = samples.interstate_transaction
HEADER = "/InterstateTransaction/Header"
IT_RULES: dict[str, tuple[bytes, str]] = {
    # a block removed (or an indicator changed) while the header's indicator still satisfies
    # the federal indicator rules: only the block count fails
    "BlockCountCase": (mutate(IT(), remove("i:Case")), HEADER),
    "BlockCountNCPIdentification": (mutate(IT(), remove("i:NCPIdentification")), HEADER),
    "BlockCountNCPLocate": (mutate(IT(), remove("i:NCPLocate")), HEADER),
    "BlockCountParticipant": (mutate(IT(), text("i:Header/i:ParticipantDataInd", "3")),
                              HEADER),
    "BlockCountOrder": (mutate(IT(), text("i:Header/i:OrderDataInd", "2")), HEADER),
    "BlockCountCollection": (mutate(IT(), remove("i:Collection")), HEADER),
    "BlockCountInformation": (mutate(IT(), text("i:Header/i:InformationInd", "0")), HEADER),
    "FunctionActionReason": (mutate(IT(), text("i:Header/i:ActionReason", "GSC02")), HEADER),
    "InterstateFIPS": (mutate(IT(), text("i:Header/i:OtherFIPSState", "06")), HEADER),
}
OTHER_RULES: dict[str, tuple[bytes, str]] = {
    "AckDateOrder": (mutate(samples.interstate_acknowledgment(),
                            text("i:ReceivedDate", "2030-01-01")), "/InterstateAcknowledgment"),
    "AckRejectReason": (mutate(samples.interstate_acknowledgment(),
                               text("i:Status", "Rejected")), "/InterstateAcknowledgment"),
    "ErrorFIPS": (mutate(samples.transaction_error(), text("i:OtherFIPS", "4800000")),
                  "/TransactionError"),
    "AuthorityFIPS": (mutate(samples.maintenance_application(),
                             remove("h:RequestingAuthority/h:FIPS")),
                      "/MaintenanceApplication/RequestingAuthority"),
    "AuthoritiesDiffer": (mutate(samples.transmittal_form(),
                                 remove("h:RequestingAuthority/h:FIPS"),
                                 text("h:RequestingAuthority/h:Country", "NL")),
                          "/TransmittalForm"),
    "ApplicantRole": (mutate(samples.maintenance_application(),
                             attr("h:Applicant", "role", "Debtor")), "/MaintenanceApplication"),
    "DebtorApplicantRole": (mutate(samples.maintenance_application(
        application_type="Art10.2.c"), attr("h:Applicant", "role", "PublicBody")),
        "/MaintenanceApplication"),
    "DecisionRequired": (mutate(samples.maintenance_application(
        application_type="Art10.1.b"), remove("h:Decision")), "/MaintenanceApplication"),
    "SpecificMeasureRequired": (mutate(samples.maintenance_application(
        application_type="Art7"), remove("h:SpecificMeasure")), "/MaintenanceApplication"),
    "SupportedPersonRequired": (mutate(samples.maintenance_application(),
                                       remove("h:SupportedPerson")), "/MaintenanceApplication"),
    "DecisionEndDate": (mutate(samples.maintenance_application(),
                               text("h:Decision/h:EndDate", "2000-01-01")),
                        "/MaintenanceApplication/Decision/EndDate"),
    "AcknowledgementWithin6Weeks": (samples.acknowledgement_form(days_after_receipt=43),
                                    "/AcknowledgementForm"),
    "LastReportDate": (mutate(samples.status_report(subsequent=True),
                              remove("h:LastReportDate")), "/StatusOfApplicationReport"),
    "LastReportBefore": (mutate(samples.status_report(subsequent=True),
                                text("h:LastReportDate", "2030-01-01")),
                         "/StatusOfApplicationReport"),
    "DocumentDigest": (mutate(samples.document_exchange(pdf_bytes=1000),
                              text("i:SHA256", "0" * 64)), "/DocumentExchange/SHA256"),
    "DocumentSize": (mutate(samples.document_exchange(pdf_bytes=1000), text("i:Size", "999")),
                     "/DocumentExchange/Size"),
}


def _not_pdf() -> bytes:
    body = b"GIF89a not a pdf" * 10
    return mutate(samples.document_exchange(pdf_bytes=1000),
                  text("i:Content", base64.b64encode(body).decode()),
                  text("i:Size", str(len(body))),
                  text("i:SHA256", hashlib.sha256(body).hexdigest()))


OTHER_RULES["DocumentIsPDF"] = (_not_pdf(), "/DocumentExchange/Content")
ALL_RULES = {**IT_RULES, **OTHER_RULES}


@pytest.mark.parametrize("rule", sorted(ALL_RULES))
def test_rule_fires_alone(rule: str) -> None:
    data, path = ALL_RULES[rule]
    assert issues(data) == [(f"Rule.{rule}", path)]


def test_every_rule_has_a_test() -> None:
    ids = set()
    for sch in xsd_root().rglob("*.sch"):
        for node in parse_xml(sch.read_bytes()).getroot().iter(etree.Element):
            if etree.QName(node).localname in ("assert", "report") and node.get("id"):
                ids.add(node.get("id"))
    ids |= {"DocumentDigest", "DocumentSize", "DocumentIsPDF"}
    assert ids == set(ALL_RULES)


@pytest.mark.parametrize("days", [0, 1, 41, 42])
def test_acknowledgement_within_six_weeks_passes(days: int) -> None:
    assert issues(samples.acknowledgement_form(days_after_receipt=days)) == []


@pytest.mark.parametrize("days", [-1, 43, 400])
def test_acknowledgement_outside_six_weeks_fails(days: int) -> None:
    assert issues(samples.acknowledgement_form(days_after_receipt=days)) == [
        ("Rule.AcknowledgementWithin6Weeks", "/AcknowledgementForm")]


def test_first_report_must_not_have_last_report_date() -> None:
    data = mutate(samples.status_report(),
                  insert_after_h("h:ReportType", "LastReportDate", "2026-01-01"))
    assert issues(data) == [("Rule.LastReportDate", "/StatusOfApplicationReport")]


def _code_rows() -> list[tuple[str, str, str]]:
    table = parse_xml((xsd_root() / "interstate" / "codes.xml").read_bytes()).getroot()
    return [(r.get("function") or "", r.get("action") or "", r.get("reason") or "")
            for r in table if isinstance(r.tag, str)]


def test_every_listed_combination_is_accepted() -> None:
    rows = _code_rows()
    assert len(rows) > 40
    for function, action, reason in rows:
        data = samples.interstate_transaction(function=function, action=action,
                                              reason=reason or None)
        assert issues(data) == [], (function, action, reason)


@pytest.mark.parametrize(("function", "action", "reason"), [
    ("ENF", "R", None), ("LO1", "R", "LSADR"), ("CSI", "P", "FRINF"), ("MSC", "P", "GSC19"),
])
def test_unlisted_combinations_are_refused(function: str, action: str,
                                           reason: str | None) -> None:
    data = samples.interstate_transaction(function=function, action=action, reason=reason)
    assert issues(data) == [("Rule.FunctionActionReason", "/InterstateTransaction/Header")]


def test_code_table_is_baked_in_at_load(tmp_path: Path) -> None:
    copy = tmp_path / "xsd"
    shutil.copytree(xsd_root(), copy)
    table = copy / "interstate" / "codes.xml"
    table.write_text(table.read_text().replace(
        "</CodeTable>",
        '<Combination function="ENF" action="R" reason="LSADR" source="local">t</Combination>'
        "</CodeTable>"))
    compiled = load_schema(copy / "interstate" / "interstate.xsd")
    table.unlink()  # validating must not need the file any more
    data = samples.interstate_transaction(reason="LSADR")
    assert compiled.issues(parse_xml(data), data=data) == []
    # and the shipped table still refuses it
    assert issues(data) == [("Rule.FunctionActionReason", "/InterstateTransaction/Header")]


def test_rule_messages_never_carry_personal_values() -> None:
    data = mutate(IT(), text("i:Header/i:ParticipantDataInd", "3"),
                  insert_after("i:Order/i:OrderEffectiveDate", "OrderEndDate", "20000101"),
                  text("i:NCPIdentification/i:NameLast", "ZQXSECRET"),
                  text("i:Case/i:CaseStatus", "Q"))
    root = etree.fromstring(data)
    personal = {el.text for el in root.iter() if etree.QName(el).localname in
                ("SSN", "NameLast", "NameFirst", "ResidentialAddressLine1", "ResidentialCity",
                 "DateOfBirth") and el.text}
    found = default_registry().issues(parse_xml(data), data=data)
    assert sorted(i.code for i in found) == ["Rule.BlockCountParticipant",
                                             "Rule.csenet.date.order",
                                             "Rule.csenet.field.enumeration"]
    for issue in found:
        assert not any(value in issue.message for value in personal)


@pytest.mark.parametrize(("change", "code", "path"), [
    (text("i:NCPIdentification/i:SSN", "98765432A"), "SchemaPattern",
     "/InterstateTransaction/NCPIdentification/SSN"),
    (remove("i:Case/i:CaseType"), "Rule.csenet.field.required", "/InterstateTransaction/Case"),
    (text("i:Header/i:CSENetVersionNumber", "002"), "Rule.csenet.header.version",
     "/InterstateTransaction/Header/CSENetVersionNumber"),
    (remove("i:Order/i:OrderType"), "Rule.csenet.order.type", "/InterstateTransaction/Order"),
])
def test_federal_edits_run_on_the_xml_form(change: Mutation, code: str, path: str) -> None:
    assert issues(mutate(IT(), change)) == [(code, path)]
