"""One test per federal edit: a valid transaction, one change, and the edit's rule must be
reported (so each case fails when its edit is removed). Framing rules are tested in
test_csenet_codec.py, xml.form in test_csenet_xml.py; the last test checks every rule of
the catalogue has a case."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

import pytest

from gateway.demo.csenet_samples import transaction
from gateway.documents.csenet import RULES, Record, Transaction, check, decode
from gateway.documents.csenet.edits import case_id_problem, check_fields
from gateway.documents.csenet.records import ErrorRecord
from gateway.documents.csenet.table import ACTIONS, FUNCTIONS, lookup, rows

TODAY = dt.date(2026, 12, 4)


def put(record: Record, **raw: str) -> Record:
    """The record with fields' exact text replaced (keys with _ for -)."""
    text = record.text
    for key, value in raw.items():
        spec = record.spec().field(key.replace("_", "-"))
        assert len(value) == spec.length, key
        text = text[:spec.offset] + value + text[spec.offset + spec.length:]
    return type(record)(text)


def header(**raw: str) -> Callable[[Transaction], Transaction]:
    return lambda t: replace(t, header=put(t.header, **raw))


def block(name: str, number: int = 1, **raw: str) -> Callable[[Transaction], Transaction]:
    def change(t: Transaction) -> Transaction:
        if name in ("participants", "orders", "collections"):
            many = list(getattr(t, name))
            many[number - 1] = put(many[number - 1], **raw)
            return replace(t, **{name: tuple(many)})
        return replace(t, **{name: put(getattr(t, name), **raw)})
    return change


def drop(name: str, keep: int = 0) -> Callable[[Transaction], Transaction]:
    def change(t: Transaction) -> Transaction:
        value = getattr(t, name)
        new = value[:keep] if isinstance(value, tuple) else None
        return replace(t, **{name: new}).with_counts()
    return change


def chain(*changes: Callable[[Transaction], Transaction]) -> Callable[[Transaction], Transaction]:
    def change(t: Transaction) -> Transaction:
        for step in changes:
            t = step(t)
        return t
    return change


TOMORROW = (TODAY + dt.timedelta(days=1)).strftime("%Y%m%d")
B = " "

# (rule, function, action, reason, change, field the issue names)
CASES: list[tuple[str, str, str, str, Callable[[Transaction], Transaction], str]] = [
    ("field.numeric", "ENF", "R", "ERARR", block("ncp_identification", SSN="98765432X"), "SSN"),
    ("field.ssn", "ENF", "R", "ERARR", block("participants", 2, SSN="666123456"), "SSN"),
    ("field.date", "LO1", "R", "", header(Transaction_Date="20261332"), "Transaction-Date"),
    ("field.time", "LO1", "R", "", header(Sent_Time="256000"), "Sent-Time"),
    ("field.enumeration", "LO1", "R", "", block("case", Case_Status="X"), "Case-Status"),
    ("field.required", "LO1", "R", "", block("case", Case_Type=B), "Case-Type"),
    ("field.reserved", "LO1", "R", "", header(Transaction_Type="XX"), "Transaction-Type"),
    ("header.version", "LO1", "R", "", header(CSENet_Version_Number="002"),
     "CSENet-Version-Number"),
    ("header.serial", "LO1", "R", "", header(Transaction_Serial_Number="0" * 12),
     "Transaction-Serial-Number"),
    ("header.future-date", "LO1", "R", "", header(Transaction_Date=TOMORROW),
     "Transaction-Date"),
    ("header.table", "MSC", "P", "GSC02", header(Action_Reason="GSC04"), "Action-Reason"),
    ("header.case-id", "LO1", "R", "", header(Case_ID=" CA-SAMPLE-0001"), "Case-ID"),
    ("header.case-id-missing", "ENF", "P", "ESREG", header(Other_Case_ID=B * 15),
     "Other-Case-ID"),
    ("header.attachments", "LO1", "R", "", header(Attachments_Ind="Y"), "Information-Ind"),
    ("header.table-blocks", "ENF", "P", "ESREG", drop("orders"), "Order-Data-Ind"),
    ("header.case-ind", "ENF", "P", "EILPP", drop("case"), "Case-Data-Ind"),
    ("header.ncp-identification-ind", "ENF", "P", "EILPP", drop("ncp_identification"),
     "NCP-Identification-Ind"),
    ("header.ncp-locate-ind", "ENF", "R", "EREXO", drop("ncp_locate"), "NCP-Locate-Data-Ind"),
    ("header.participant-ind", "PAT", "R", "", drop("participants", keep=1),
     "Participant-Data-Ind"),
    ("header.order-ind", "ENF", "R", "EREXO", drop("orders"), "Order-Data-Ind"),
    ("header.collection-ind", "COL", "P", "CITAX", drop("collections"), "Collection-Data-Ind"),
    ("header.information-ind", "MSC", "P", "GSCAS", drop("information"), "Information-Ind"),
    ("case.payment-address", "EST", "R", "SRORD",
     block("case", Payment_Mail_Address_Line_1=B * 25), "Payment-Mail-Address-Line-1"),
    ("ncp.ssn", "ENF", "P", "ESREG", block("ncp_identification", SSN=B * 9), "SSN"),
    ("ncp.height", "LO1", "R", "", block("ncp_identification", Height_In=B * 2), "Height-In"),
    ("date.past", "LO1", "R", "", block("ncp_identification", Date_Of_Birth="20261204"),
     "Date-Of-Birth"),
    ("locate.address-or-employer", "ENF", "R", "ERARR",
     block("ncp_locate", Residential_Address_Line_1=B * 25, Mailing_Address_Line_1=B * 25,
           Employer_Name=B * 40), "Residential-Address-Line-1"),
    ("locate.details", "ENF", "R", "ERARR",
     block("ncp_locate", Residential_Address_Confirmed_Ind=B),
     "Residential-Address-Confirmed-Ind"),
    ("date.order", "ENF", "R", "ERARR",
     block("ncp_locate", Residential_Address_End_Date="19990101"),
     "Residential-Address-End-Date"),
    ("locate.wage", "ENF", "R", "ERARR", block("ncp_locate", Wage_Qtr=B), "Wage-Qtr"),
    ("participant.name", "PAT", "R", "", block("participants", 2, Name_First=B * 16),
     "Name-First"),
    ("participant.role", "LO1", "R", "", lambda t: t, "-"),  # replaced below
    ("participant.grpay", "MSC", "R", "GRPAY", block("participants", 2, Relationship="C"),
     "Relationship"),
    ("participant.dob", "PAT", "R", "", block("participants", 2, Date_Of_Birth=B * 8),
     "Date-Of-Birth"),
    ("participant.dependent", "PAT", "R", "", block("participants", 2,
                                                    Dependent_Relation_CP=B),
     "Dependent-Relation-CP"),
    ("order.fips", "ENF", "R", "ERARR", block("orders", 1, Order_FIPS_County=B * 3),
     "Order-FIPS-County"),
    ("order.filing-date", "ENF", "R", "ERARR", block("orders", 1, Order_Filing_Date=B * 8),
     "Order-Filing-Date"),
    ("order.type", "ENF", "R", "ERARR", block("orders", 1, Order_Type=B), "Order-Type"),
    ("order.effective-date", "ENF", "R", "ERARR",
     block("orders", 1, Order_Effective_Date="0" * 8), "Order-Effective-Date"),
    ("order.medical-ordered", "ENF", "P", "ESREG", block("orders", 1, Medical_Ordered=B),
     "Medical-Ordered"),
    ("order.frequency", "ENF", "R", "ERARR", block("orders", 1, Order_Freq=B), "Order-Freq"),
    ("order.arrears-dates", "ENF", "R", "ERARR",
     block("orders", 1, Arrears_Non_TANF_From_Date=B * 8), "Arrears-Non-TANF-From-Date"),
    ("collection.citax", "COL", "P", "CITAX", block("collections", 1, Payment_Source=B),
     "Payment-Source"),
    ("collection.posting", "COL", "P", "CITAX",
     block("collections", 1, Date_Of_Posting="20000101"), "Date-Of-Posting"),
    ("information.status", "ENF", "R", "ERALL", block("information", Status_Change_Code=B),
     "Status-Change-Code"),
    ("information.new-case-id", "MSC", "P", "GSCAS", block("information", New_Case_ID=B * 15),
     "New-Case-ID"),
    ("information.text", "MSC", "P", "REJCT",
     block("information", Information_Text_Line_1=B * 80), "Information-Text-Line-1"),
    ("information.gstai", "MSC", "P", "GSTAI",
     block("information", Information_Text_Line_1="ABC".ljust(80)),
     "Information-Text-Line-1"),
]
CASES[[c[0] for c in CASES].index("participant.role")] = (
    "participant.role", "PAT", "R", "", block("participants", 1, Participant_Status=B),
    "Participant-Status")


@pytest.mark.parametrize(("rule", "function", "action", "reason", "change", "field"), CASES,
                         ids=[c[0] for c in CASES])
def test_edit(rule: str, function: str, action: str, reason: str,  # noqa: PLR0917
              change: Callable[[Transaction], Transaction], field: str) -> None:
    valid = transaction(function, action, reason, today=TODAY, serial=5)
    assert check(valid, today=TODAY) == []
    broken = change(valid)
    data = broken.to_bytes()
    issues = check(decode(data, position=4), today=TODAY, position=4)
    found = [i for i in issues if i.rule == rule]
    assert found, (rule, [str(i) for i in issues])
    assert any(i.field == field for i in found), [str(i) for i in found]
    for issue in found:
        assert issue.position == 4
        if issue.columns:  # the columns point at the field in the transaction's bytes
            start, end = issue.columns
            spec_len = end - start + 1
            assert 1 <= start <= end <= len(data)
            assert spec_len >= 1


@pytest.mark.parametrize("case_id", [" CA-0001", "000000000000000", "CA*0001", "CA\\0001",
                                     "0 0 0"])
def test_each_case_id_rule(case_id: str) -> None:
    assert case_id_problem(case_id.ljust(15)) is not None
    t = header(Case_ID=case_id.ljust(15))(transaction("LO1", "R", today=TODAY))
    assert "header.case-id" in {i.rule for i in check(t, today=TODAY)}


def test_new_case_id_follows_the_case_id_rules() -> None:
    t = block("information", New_Case_ID="0" * 15)(
        transaction("MSC", "P", "GSCAS", today=TODAY))
    assert [(i.rule, i.field) for i in check(t, today=TODAY)] == [("header.case-id",
                                                                  "New-Case-ID")]


def test_attachments_need_text_in_the_information_block() -> None:
    t = chain(header(Attachments_Ind="Y"),
              block("information", Information_Text_Line_1=B * 80))(
        transaction("ENF", "R", "ERALL", today=TODAY))
    assert [i.rule for i in check(t, today=TODAY)] == ["information.text"]


def test_error_record_gap_rule() -> None:
    record = ErrorRecord.build({"Error-Code": "GT01"})
    assert list(check_fields(record)) == []
    bad = ErrorRecord(record.text[:14] + "X" + record.text[15:])
    assert [rule for _, rule, _ in check_fields(bad)] == ["field.gap"]


def test_reserved_numeric_fields_may_be_zero_filled_and_overdue_must_be_0() -> None:
    t = transaction("LO1", "R", today=TODAY)
    assert check(header(Due_Date="0" * 8)(t), today=TODAY) == []
    assert [i.rule for i in check(header(Overdue_Ind="1")(t), today=TODAY)] == \
        ["field.reserved"]


INVALID_COMBINATIONS = [("CSI", "A", ""), ("MSC", "P", "GSC04"), ("CSI", "M", ""),
                        ("MSC", "R", "GSADD"), ("MSC", "U", "GSDEL"), ("LO1", "P", "FAMVI"),
                        ("COL", "R", "CITAX"), ("ENF", "R", "FRINF"), ("CSI", "R", ""),
                        ("PAT", "P", "")]


@pytest.mark.parametrize(("function", "action", "reason"), INVALID_COMBINATIONS)
def test_invalid_combinations_are_refused(function: str, action: str, reason: str) -> None:
    assert lookup(function, action, reason) is None
    t = header(Functional_Type_Code=function, Action_Code=action,
               Action_Reason=reason.ljust(5))(transaction("MSC", "P", "GSC02", today=TODAY))
    assert "header.table" in {i.rule for i in check(t, today=TODAY)}


def test_every_function_action_pair_without_a_row_is_refused() -> None:
    valid = {(r.function, r.action) for r in rows()}
    base = transaction("MSC", "P", "GSC02", today=TODAY)
    for function in FUNCTIONS:
        for action in ACTIONS:
            if (function, action) in valid:
                continue
            t = header(Functional_Type_Code=function, Action_Code=action,
                       Action_Reason=B * 5)(base)
            assert "header.table" in {i.rule for i in check(t, today=TODAY)}


def test_messages_never_carry_the_value() -> None:
    t = chain(block("ncp_identification", SSN="98765432X", Name_Last="ZQXSECRET".ljust(21)),
              block("case", Case_Status="Q"))(transaction("ENF", "R", "ERARR", today=TODAY))
    for issue in check(t, today=TODAY):
        text = str(issue) + repr(issue.to_dict())
        assert "98765432X" not in text
        assert "ZQXSECRET" not in text


def test_every_rule_has_a_test() -> None:
    tested = {c[0] for c in CASES} | {"field.gap", "xml.form"} | {
        "transaction.duplicate", "transaction.refused"} | {  # tests/node/test_csenet_daemon.py
        "framing.ascii", "framing.line-ending", "framing.empty-line", "framing.length"}
    assert tested == set(RULES), set(RULES) ^ tested
