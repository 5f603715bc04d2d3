"""Regenerate tests/samples/ from gateway.demo.samples (run from the repository root):

    .venv/bin/python tests/samples/regenerate.py

valid/: realistic documents of every type, accepted through the registry (no --schema).
invalid/: each breaks exactly one rule (a pattern, an enumeration, a cardinality, a
Schematron rule, or the hardened parser); invalid/expected.json lists, per file, every
issue it must produce as [code, path] (path "" for parser errors). Synthetic data only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from gateway.demo import samples

HERE = Path(__file__).resolve().parent

VALID: dict[str, Callable[[], bytes]] = {
    "interstate-transaction": samples.interstate_transaction,
    "interstate-transaction-locate": lambda: samples.interstate_transaction(
        "3600000", "1200000", participants=0, orders=0, collections=0, function="LO1",
        action="P", reason="LSADR", information_lines=0, seed=4),
    "transaction-error": samples.transaction_error,
    "interstate-acknowledgment": samples.interstate_acknowledgment,
    "document-exchange": lambda: samples.document_exchange(pdf_bytes=2048),
    "transmittal-form": samples.transmittal_form,
    "maintenance-application": samples.maintenance_application,
    "maintenance-application-art7": lambda: samples.maintenance_application(
        application_type="Art7", seed=1),
    "maintenance-application-debtor": lambda: samples.maintenance_application(
        "DE", "4800000", outbound=False, application_type="Art10.2.b", seed=2),
    "acknowledgement-form": samples.acknowledgement_form,
    "status-report": samples.status_report,
    "status-report-subsequent": lambda: samples.status_report(subsequent=True, seed=3),
}


def sub(data: bytes, pattern: str, replacement: str, count: int = 1) -> bytes:
    """Replace the first ``count`` matches of ``pattern``; fail loudly if there are fewer."""
    text = data.decode()
    new, n = re.subn(pattern, replacement, text, count=count, flags=re.S)
    if n != count:
        raise SystemExit(f"pattern {pattern!r} matched {n} time(s), expected {count}")
    return new.encode()


IT = "/InterstateTransaction"
MA = "/MaintenanceApplication"


def invalid() -> dict[str, tuple[bytes, list[list[str]]]]:
    it = samples.interstate_transaction()
    it9 = samples.interstate_transaction(participants=9)
    participant = re.search(rb"  <Participant>\n.*?</Participant>\n", it9, re.S)
    assert participant is not None
    ten = it9.replace(participant.group(0), participant.group(0) * 2, 1)
    ma = samples.maintenance_application()
    return {
        # --- InterstateTransaction (the XML form of a CSENet transaction) ---
        "interstate-transaction.ssn-area-666.xml": (
            sub(it, r"(<NCPIdentification>.*?<SSN>)\d{3}", r"\g<1>666"),
            [["SchemaPattern", f"{IT}/NCPIdentification/SSN"]]),
        "interstate-transaction.ssn-area-900.xml": (
            sub(it, r"(<Participant>.*?<Participant>.*?<SSN>)\d{3}", r"\g<1>900"),
            [["SchemaPattern", f"{IT}/Participant[2]/SSN"]]),
        "interstate-transaction.function-code.xml": (
            sub(it, r"<FunctionalTypeCode>ENF<", "<FunctionalTypeCode>XYZ<"),
            [["Rule.FunctionActionReason", f"{IT}/Header"],
             ["Rule.csenet.field.enumeration", f"{IT}/Header/FunctionalTypeCode"]]),
        "interstate-transaction.ten-participants.xml": (
            ten, [["Rule.BlockCountParticipant", f"{IT}/Header"],
                  ["SchemaUnexpectedElement", f"{IT}/Participant[10]"]]),
        "interstate-transaction.missing-case-id.xml": (
            sub(it, r"\s*<CaseID>[^<]*</CaseID>", ""),
            [["Rule.csenet.header.case-id-missing", f"{IT}/Header"]]),
        "interstate-transaction.block-count.xml": (
            sub(it, r"<ParticipantDataInd>2<", "<ParticipantDataInd>3<"),
            [["Rule.BlockCountParticipant", f"{IT}/Header"]]),
        "interstate-transaction.reason-code.xml": (
            sub(it, r"<ActionReason>ERARR<", "<ActionReason>LSADR<"),
            [["Rule.FunctionActionReason", f"{IT}/Header"]]),
        "interstate-transaction.order-end-date.xml": (
            sub(it, r"(<OrderEffectiveDate>\d{8}</OrderEffectiveDate>)",
                r"\g<1><OrderEndDate>19990101</OrderEndDate>"),
            [["Rule.csenet.date.order", f"{IT}/Order/OrderEndDate"]]),
        "interstate-transaction.amount-decimal-point.xml": (
            sub(it, r"<OrderFreqAmount>0*(\d{3})(\d\d)<", r"<OrderFreqAmount>000000\1.\2<"),
            [["SchemaPattern", f"{IT}/Order/OrderFreqAmount"]]),
        "interstate-transaction.same-state.xml": (
            sub(it, r"<OtherFIPSState>48<", "<OtherFIPSState>06<"),
            [["Rule.InterstateFIPS", f"{IT}/Header"]]),
        "interstate-transaction.missing-order.xml": (
            sub(sub(it, r"\s*<Order>.*?</Order>", ""), r"<OrderDataInd>1<",
                "<OrderDataInd>0<"),
            [["Rule.csenet.header.order-ind", f"{IT}/Header/OrderDataInd"],
             ["Rule.csenet.header.table-blocks", f"{IT}/Header/OrderDataInd"]]),
        "interstate-transaction.case-status.xml": (
            sub(it, r"<CaseStatus>O<", "<CaseStatus>X<"),
            [["Rule.csenet.field.enumeration", f"{IT}/Case/CaseStatus"]]),
        # --- TransactionError / InterstateAcknowledgment ---
        "transaction-error.severity.xml": (
            sub(samples.transaction_error(), r"<Severity>Fatal<", "<Severity>Severe<"),
            [["SchemaEnumeration", "/TransactionError/Error/Severity"]]),
        "interstate-acknowledgment.rejected-without-reason.xml": (
            sub(samples.interstate_acknowledgment(), r"<Status>Accepted<",
                "<Status>Rejected<"),
            [["Rule.AckRejectReason", "/InterstateAcknowledgment"]]),
        "interstate-acknowledgment.before-received.xml": (
            sub(samples.interstate_acknowledgment(), r"<AcknowledgedDate>\d{4}",
                "<AcknowledgedDate>2020"),
            [["Rule.AckDateOrder", "/InterstateAcknowledgment"]]),
        # --- DocumentExchange ---
        "document-exchange.digest.xml": (
            sub(samples.document_exchange(pdf_bytes=2048), r"<SHA256>[0-9a-f]{8}",
                "<SHA256>00000000"),
            [["Rule.DocumentDigest", "/DocumentExchange/SHA256"]]),
        "document-exchange.form-type.xml": (
            sub(samples.document_exchange(pdf_bytes=2048), r"<FormType>[^<]*<",
                "<FormType>Form42<"),
            [["SchemaEnumeration", "/DocumentExchange/FormType"]]),
        # --- TransmittalForm ---
        "transmittal-form.country.xml": (
            sub(samples.transmittal_form(), r"<Country>NL<", "<Country>XX<"),
            [["SchemaEnumeration", "/TransmittalForm/RequestedAuthority/Country"]]),
        "transmittal-form.no-documents.xml": (
            sub(samples.transmittal_form(), r"\s*<EnclosedDocument>.*</EnclosedDocument>", ""),
            [["SchemaMissingElement", "/TransmittalForm"]]),
        # --- MaintenanceApplication ---
        "maintenance-application.currency.xml": (
            sub(ma, r'<Amount currency="EUR"', '<Amount currency="EUX"'),
            [["SchemaEnumeration", f"{MA}/Decision/Amount/@currency"]]),
        "maintenance-application.amount-fraction.xml": (
            sub(ma, r'(<Amount currency="EUR">\d+\.\d\d)<', r"\g<1>5<"),
            [["SchemaDigits", f"{MA}/Decision/Amount"]]),
        "maintenance-application.debtor-role.xml": (
            sub(samples.maintenance_application(application_type="Art10.2.b"),
                r'role="Debtor"', 'role="Creditor"'),
            [["Rule.DebtorApplicantRole", MA]]),
        "maintenance-application.decision-end-date.xml": (
            sub(ma, r"(<Decision>.*?<EndDate>)\d{4}", r"\g<1>2001"),
            [["Rule.DecisionEndDate", f"{MA}/Decision/EndDate"]]),
        "maintenance-application.art7-without-measure.xml": (
            sub(samples.maintenance_application(application_type="Art7"),
                r"\s*<SpecificMeasure>[^<]*</SpecificMeasure>", ""),
            [["Rule.SpecificMeasureRequired", MA]]),
        "maintenance-application.us-without-fips.xml": (
            sub(ma, r"\s*<FIPS>0600000</FIPS>", ""),
            [["Rule.AuthorityFIPS", f"{MA}/RequestingAuthority"]]),
        # --- AcknowledgementForm ---
        "acknowledgement-form.after-6-weeks.xml": (
            samples.acknowledgement_form(days_after_receipt=43),
            [["Rule.AcknowledgementWithin6Weeks", "/AcknowledgementForm"]]),
        "acknowledgement-form.language.xml": (
            sub(samples.acknowledgement_form(), r"<Language>nl<", "<Language>xx<"),
            [["SchemaEnumeration", "/AcknowledgementForm/RequestedAuthority/Language"]]),
        # --- StatusOfApplicationReport ---
        "status-report.subsequent-without-last.xml": (
            sub(samples.status_report(subsequent=True),
                r"\s*<LastReportDate>[^<]*</LastReportDate>", ""),
            [["Rule.LastReportDate", "/StatusOfApplicationReport"]]),
        "status-report.status.xml": (
            sub(samples.status_report(), r"<Status>InProgress<", "<Status>Done<"),
            [["SchemaEnumeration", "/StatusOfApplicationReport/Status"]]),
        # --- the hardened parser ---
        "hostile.xxe.xml": (
            b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
            b'<InterstateTransaction xmlns="urn:cse-gateway:interstate:2">&x;'
            b"</InterstateTransaction>\n",
            [["XmlForbidden", ""]]),
        "hostile.billion-laughs.xml": (
            b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
            b' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
            b' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
            b"]>\n<lolz>&lol3;</lolz>\n",
            [["XmlForbidden", ""]]),
        "broken.truncated.xml": (it[: len(it) // 2], [["XmlMalformed", ""]]),
        "broken.not-xml.xml": (b"SSN,LAST,FIRST\n987654320,TESTPERSON,ALPHA\n",
                               [["XmlMalformed", ""]]),
        "broken.empty.xml": (b"", [["XmlEmpty", ""]]),
        "broken.latin1.xml": (
            "<?xml version='1.0' encoding='UTF-8'?>\n<Note>Müller</Note>\n".encode("latin-1"),
            [["XmlEncoding", ""]]),
    }


def main() -> None:
    (HERE / "valid").mkdir(exist_ok=True)
    (HERE / "invalid").mkdir(exist_ok=True)
    for name, make in VALID.items():
        (HERE / "valid" / f"{name}.xml").write_bytes(make())
    expected = {}
    for name, (data, issues) in sorted(invalid().items()):
        (HERE / "invalid" / name).write_bytes(data)
        expected[name] = issues
    (HERE / "invalid" / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
