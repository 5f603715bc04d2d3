"""Deterministic synthetic documents for tests, benchmarks and the demo.

Every generator is pure: the same arguments (including ``seed``) give the same bytes, and
no clock is read (dates derive from ``on``, default 2026-11-20). The data is obviously
synthetic: people are called TESTPERSON / TESTCHILD, SSNs come from the SSA advertising
range 987654320-987654329, addresses are "100 TEST ST", phone numbers 555-01xx.
Every generated document is valid against the shipped schemas and rules.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable
from datetime import date, timedelta

from lxml import etree

from gateway.demo import csenet_samples
from gateway.documents.csenet import xmlform

__all__ = [
    "INTERNATIONAL_NS",
    "INTERSTATE_NS",
    "acknowledgement_form",
    "all_samples",
    "document_exchange",
    "interstate_acknowledgment",
    "interstate_transaction",
    "maintenance_application",
    "status_report",
    "synthetic_pdf",
    "transaction_error",
    "transmittal_form",
]

INTERSTATE_NS = xmlform.INTERSTATE_NS
INTERNATIONAL_NS = "urn:cse-gateway:international:1"
DEFAULT_DAY = date(2026, 11, 20)

_GIVEN = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL", "INDIA",
          "JULIET", "KILO", "LIMA")
_LANGUAGES = {"NL": "nl", "DE": "de", "FR": "fr", "NO": "no", "GB": "en", "US": "en",
              "ES": "es", "PL": "pl"}


class _Doc:
    """A tiny builder: children in the document's namespace, text optional."""

    def __init__(self, namespace: str, root: str) -> None:
        self.ns = namespace
        self.root = etree.Element(f"{{{namespace}}}{root}", nsmap={None: namespace})  # type: ignore[dict-item]
        self.root.set("version", "2" if namespace == INTERSTATE_NS else "1")

    def add(self, parent: etree._Element, name: str, text: object = None,
            **attrs: str) -> etree._Element:
        child = etree.SubElement(parent, f"{{{self.ns}}}{name}", attrs)
        if text is not None:
            child.text = str(text)
        return child

    def bytes(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8",
                              pretty_print=True)


def _rng(seed: int) -> random.Random:
    # Synthetic data only: reproducibility matters, unpredictability does not.
    return random.Random(seed)  # noqa: S311


def _case_id(prefix: str, rng: random.Random) -> str:
    return f"{prefix}{rng.randrange(10**12):012d}"


def _money(rng: random.Random, low: int, high: int) -> str:
    return f"{rng.randrange(low * 100, high * 100) / 100:.2f}"


# --- interstate ------------------------------------------------------------------------


def interstate_transaction(
    local_fips: str = "0600000",
    other_fips: str = "4800000",
    *,
    participants: int = 2,
    orders: int = 1,
    collections: int = 1,
    function: str = "ENF",
    action: str = "R",
    reason: str | None = "ERARR",
    case_id: str | None = None,
    serial: int | None = None,
    information_lines: int = 1,
    seed: int = 0,
    on: date = DEFAULT_DAY,
) -> bytes:
    """An ``InterstateTransaction``: the XML form of a CSENet 2000 transaction
    (:mod:`gateway.documents.csenet.xmlform`) with a Case, NCP Identification and NCP Locate
    block and the given numbers of the others (0-9; an Information block when
    ``information_lines``), plus any block the federal rules require of the transaction."""
    for label, count in (("participants", participants), ("orders", orders),
                         ("collections", collections)):
        if not 0 <= count <= 9:
            raise ValueError(f"{label} must be 0..9 (CSENet block limit)")
    counts = {"case": 1, "ncp-identification": 1, "ncp-locate": 1,
              "participant": participants, "order": orders, "collection": collections,
              "information": 1 if information_lines else 0}
    txn = csenet_samples.varied(function, action, reason or "", on=on, seed=seed,
                                local_fips=local_fips, other_fips=other_fips,
                                counts=counts, case_id=case_id, serial=serial,
                                information_lines=information_lines, given=_GIVEN)
    return xmlform.to_xml(txn)


def transaction_error(local_fips: str = "4800000", other_fips: str = "0600000", *,
                      errors: int = 1, seed: int = 0, on: date = DEFAULT_DAY) -> bytes:
    """A ``TransactionError`` naming fields of a refused transaction."""
    rng = _rng(seed)
    doc = _Doc(INTERSTATE_NS, "TransactionError")
    doc.add(doc.root, "LocalFIPS", local_fips)
    doc.add(doc.root, "OtherFIPS", other_fips)
    doc.add(doc.root, "SerialNumber", f"{rng.randrange(10**12):012d}")
    doc.add(doc.root, "CaseID", _case_id("TST", rng))
    doc.add(doc.root, "ErrorDate", on.isoformat())
    for index in range(errors):
        error = doc.add(doc.root, "Error")
        doc.add(error, "Severity", "Fatal" if index == 0 else "Warning")
        doc.add(error, "Code", f"E{100 + index:03d}")
        doc.add(error, "Field", "OtherCaseID")
        doc.add(error, "Description", "other state case ID not found")
    return doc.bytes()


def interstate_acknowledgment(local_fips: str = "4800000", other_fips: str = "0600000", *,
                              status: str = "Accepted", seed: int = 0,
                              on: date = DEFAULT_DAY) -> bytes:
    """An ``InterstateAcknowledgment`` of a received transaction."""
    rng = _rng(seed)
    doc = _Doc(INTERSTATE_NS, "InterstateAcknowledgment")
    doc.add(doc.root, "LocalFIPS", local_fips)
    doc.add(doc.root, "OtherFIPS", other_fips)
    doc.add(doc.root, "SerialNumber", f"{rng.randrange(10**12):012d}")
    doc.add(doc.root, "CaseID", _case_id("OTH", rng))
    doc.add(doc.root, "OtherCaseID", _case_id("TST", rng))
    doc.add(doc.root, "ReceivedDate", (on - timedelta(days=3)).isoformat())
    doc.add(doc.root, "AcknowledgedDate", on.isoformat())
    doc.add(doc.root, "Status", status)
    if status == "Rejected":
        doc.add(doc.root, "ReasonCode", "REJCT")
    return doc.bytes()


def synthetic_pdf(size: int, *, seed: int = 0) -> bytes:
    """A structurally plausible PDF of exactly ``size`` bytes (at least 400)."""
    size = max(size, 400)
    head = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
            b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\n"
            b"4 0 obj << /Length ")
    tail = b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    fixed = len(head) + len(tail) + len(b" >> stream\n") + 10
    body_len = size - fixed
    length = f"{body_len:010d}".encode()
    body = _rng(seed).randbytes(body_len)
    data = head + length + b" >> stream\n" + body + tail
    return data[:size] if len(data) > size else data


def document_exchange(local_fips: str = "0600000", other_fips: str = "4800000", *,
                      pdf_bytes: int = 8192, form: str = "UniformSupportPetition",
                      seed: int = 0, on: date = DEFAULT_DAY) -> bytes:
    """A ``DocumentExchange`` (EDE) carrying a synthetic PDF of ``pdf_bytes`` bytes."""
    rng = _rng(seed)
    pdf = synthetic_pdf(pdf_bytes, seed=seed)
    doc = _Doc(INTERSTATE_NS, "DocumentExchange")
    doc.add(doc.root, "LocalFIPS", local_fips)
    doc.add(doc.root, "OtherFIPS", other_fips)
    doc.add(doc.root, "CaseID", _case_id("TST", rng))
    doc.add(doc.root, "OtherCaseID", _case_id("OTH", rng))
    doc.add(doc.root, "DocumentDate", on.isoformat())
    doc.add(doc.root, "FormType", form)
    doc.add(doc.root, "FileName", f"{form.lower()}-{seed}.pdf")
    doc.add(doc.root, "MediaType", "application/pdf")
    doc.add(doc.root, "Size", len(pdf))
    doc.add(doc.root, "SHA256", hashlib.sha256(pdf).hexdigest())
    doc.add(doc.root, "Content", "\n" + base64.encodebytes(pdf).decode("ascii"))
    return doc.bytes()


# --- international (2007 Hague Convention) ---------------------------------------------


def _authority(doc: _Doc, parent: etree._Element, name: str, country: str,
               fips: str | None) -> None:
    authority = doc.add(parent, name)
    doc.add(authority, "Country", country)
    if fips:
        doc.add(authority, "FIPS", fips)
        doc.add(authority, "Name", f"TEST STATE CHILD SUPPORT AGENCY {fips[:2]}")
    else:
        doc.add(authority, "Name", f"TEST CENTRAL AUTHORITY {country}")
    contact = doc.add(authority, "Contact")
    doc.add(contact, "Name", "TEST CONTACT OFFICER")
    doc.add(contact, "Email", f"central.authority@{country.lower()}.example.test")
    doc.add(authority, "Language", _LANGUAGES.get(country, "en"))


def _routing(doc: _Doc, country: str, fips: str, outbound: bool, rng: random.Random,
             *, with_requested_ref: bool = False) -> None:
    """Requesting/requested authorities: outbound = the US state asks ``country``."""
    us = ("US", fips)
    foreign = (country, None)
    requesting, requested = (us, foreign) if outbound else (foreign, us)
    _authority(doc, doc.root, "RequestingAuthority", *requesting)
    _authority(doc, doc.root, "RequestedAuthority", *requested)
    doc.add(doc.root, "RequestingReference", f"REQ-{rng.randrange(10**8):08d}")
    if with_requested_ref:
        doc.add(doc.root, "RequestedReference", f"RSP-{rng.randrange(10**8):08d}")


def _intl_person(doc: _Doc, parent: etree._Element, name: str, family: str,
                 rng: random.Random, *, born: date, **attrs: str) -> etree._Element:
    person = doc.add(parent, name, **attrs)
    names = doc.add(person, "Name")
    doc.add(names, "FamilyName", family)
    doc.add(names, "GivenName", rng.choice(_GIVEN).title())
    doc.add(person, "DateOfBirth", born.isoformat())
    return person


_DECISION_TYPES = ("Art10.1.a", "Art10.1.b", "Art10.1.e", "Art10.1.f", "Art10.2.a",
                   "Art10.2.b", "Art10.2.c")


def maintenance_application(country: str = "NL", fips: str = "0600000", *,
                            outbound: bool = True, application_type: str = "Art10.1.a",
                            supported_persons: int = 2, seed: int = 0,
                            on: date = DEFAULT_DAY) -> bytes:
    """A ``MaintenanceApplication`` of any Article 10 type or an Article 7 request."""
    rng = _rng(seed)
    doc = _Doc(INTERNATIONAL_NS, "MaintenanceApplication")
    doc.add(doc.root, "ApplicationType", application_type)
    doc.add(doc.root, "ApplicationDate", on.isoformat())
    _routing(doc, country, fips, outbound, rng)
    debtor_applies = application_type.startswith("Art10.2")
    role = "Debtor" if debtor_applies else "Creditor"
    _intl_person(doc, doc.root, "Applicant", "Testperson", rng, born=date(1984, 3, 9), role=role)
    if not debtor_applies and application_type != "Art7":
        for _ in range(supported_persons):
            born = date(2012 + rng.randrange(10), 1 + rng.randrange(12), 5)
            child = _intl_person(doc, doc.root, "SupportedPerson", "Testchild", rng, born=born)
            doc.add(child, "Basis", "Parentage")
    _intl_person(doc, doc.root, "Debtor", "Testdebtor", rng, born=date(1981, 7, 21))
    if application_type in _DECISION_TYPES:
        decision = doc.add(doc.root, "Decision")
        doc.add(decision, "Tribunal", "TEST DISTRICT COURT")
        doc.add(decision, "Country", "US" if not outbound else country)
        doc.add(decision, "DecisionDate", (on - timedelta(days=400)).isoformat())
        doc.add(decision, "Amount", _money(rng, 150, 800), currency="EUR" if outbound else "USD")
        doc.add(decision, "Frequency", "Monthly")
        doc.add(decision, "EffectiveDate", (on - timedelta(days=380)).isoformat())
        doc.add(decision, "EndDate", (on + timedelta(days=365 * 10)).isoformat())
        doc.add(decision, "Arrears", _money(rng, 0, 3000), currency="EUR" if outbound else "USD")
    if application_type == "Art7":
        doc.add(doc.root, "SpecificMeasure", "Locate the debtor (Article 7(2)(b))")
    payment = doc.add(doc.root, "PaymentInstructions")
    doc.add(payment, "Payee", "TEST STATE DISBURSEMENT UNIT")
    doc.add(payment, "Currency", "USD" if outbound else "EUR")
    doc.add(payment, "PaymentReference", f"PAY-{rng.randrange(10**6):06d}")
    return doc.bytes()


def transmittal_form(country: str = "NL", fips: str = "0600000", *, outbound: bool = True,
                     application_type: str = "Art10.1.a", documents: int = 3, seed: int = 0,
                     on: date = DEFAULT_DAY) -> bytes:
    """A ``TransmittalForm`` (Annex 1) listing ``documents`` enclosures."""
    rng = _rng(seed)
    doc = _Doc(INTERNATIONAL_NS, "TransmittalForm")
    doc.add(doc.root, "FormDate", on.isoformat())
    _routing(doc, country, fips, outbound, rng)
    _intl_person(doc, doc.root, "Applicant", "Testperson", rng, born=date(1984, 3, 9))
    doc.add(doc.root, "NonDisclosure", "N")
    doc.add(doc.root, "ApplicationType", application_type)
    titles = ("Application form", "Copy of the decision", "Statement of enforceability",
              "Financial circumstances form", "Proof of notice")
    for index in range(max(documents, 1)):
        enclosed = doc.add(doc.root, "EnclosedDocument")
        doc.add(enclosed, "Title", titles[index % len(titles)])
        doc.add(enclosed, "Language", "en")
        doc.add(enclosed, "Pages", 1 + rng.randrange(12))
    return doc.bytes()


def acknowledgement_form(country: str = "NL", fips: str = "0600000", *,
                         outbound: bool = False, days_after_receipt: int = 10,
                         seed: int = 0, on: date = DEFAULT_DAY) -> bytes:
    """An ``AcknowledgementForm`` (Annex 2). ``outbound`` means the US state acknowledges an
    application requested of it by ``country``; otherwise ``country`` acknowledges ours."""
    rng = _rng(seed)
    doc = _Doc(INTERNATIONAL_NS, "AcknowledgementForm")
    doc.add(doc.root, "AcknowledgementDate", on.isoformat())
    # The requesting authority is whoever sent the application: the other side.
    _routing(doc, country, fips, not outbound, rng, with_requested_ref=True)
    doc.add(doc.root, "ApplicationType", "Art10.1.a")
    doc.add(doc.root, "DateReceived", (on - timedelta(days=days_after_receipt)).isoformat())
    doc.add(doc.root, "InitialStep", "ApplicationRegistered")
    doc.add(doc.root, "InitialStep", "ForwardedToCompetentAuthority")
    contact = doc.add(doc.root, "Contact")
    doc.add(contact, "Name", "TEST CONTACT OFFICER")
    doc.add(contact, "Phone", "+15550100")
    return doc.bytes()


def status_report(country: str = "NL", fips: str = "0600000", *, outbound: bool = False,
                  subsequent: bool = False, steps: int = 2, seed: int = 0,
                  on: date = DEFAULT_DAY) -> bytes:
    """A ``StatusOfApplicationReport`` from the requested authority (see
    :func:`acknowledgement_form` for ``outbound``)."""
    rng = _rng(seed)
    doc = _Doc(INTERNATIONAL_NS, "StatusOfApplicationReport")
    doc.add(doc.root, "ReportDate", on.isoformat())
    doc.add(doc.root, "ReportType", "Subsequent" if subsequent else "First")
    if subsequent:
        doc.add(doc.root, "LastReportDate", (on - timedelta(days=90)).isoformat())
    _routing(doc, country, fips, not outbound, rng, with_requested_ref=True)
    doc.add(doc.root, "ApplicationType", "Art10.1.a")
    for index in range(max(steps, 1)):
        step = doc.add(doc.root, "Step")
        doc.add(step, "Date", (on - timedelta(days=10 * (steps - index))).isoformat())
        doc.add(step, "Description", f"Synthetic step {index + 1}: file reviewed")
    doc.add(doc.root, "Status", "InProgress")
    doc.add(doc.root, "NextStep", "Hearing to be scheduled")
    return doc.bytes()


def all_samples() -> dict[str, Callable[[], bytes]]:
    """One default generator per document type, keyed by root element name."""
    return {
        "InterstateTransaction": interstate_transaction,
        "TransactionError": transaction_error,
        "InterstateAcknowledgment": interstate_acknowledgment,
        "DocumentExchange": document_exchange,
        "TransmittalForm": transmittal_form,
        "MaintenanceApplication": maintenance_application,
        "AcknowledgementForm": acknowledgement_form,
        "StatusOfApplicationReport": status_report,
    }
