"""The ETSI TS 102 640 (REM) fixtures: a real third-party schema set with imports, and four
published documents that are all invalid. Every listed problem is reported with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.documents.validate import validate_file

ROOT = "/SubmissionAcceptanceRejection"
POSTAL = f"{ROOT}/EvidenceIssuerDetails/NamesPostalAddresses/NamePostalAddress/PostalAddress"
RECIPIENT_NAME = f"{ROOT}/RecipientsDetails/EntityDetails/NamesPostalAddresses/" \
    "NamePostalAddress/EntityName"
SIGNED = f"{ROOT}/Signature/Object/QualifyingProperties/SignedProperties/" \
    "SignedSignatureProperties"

EXPECTED: dict[str, list[tuple[int, int, str, str]]] = {
    "submission-acceptance-1.xml": [
        (2, 1, "SchemaType", f"{ROOT}/@Id"),                      # Id is not an xs:ID
        (15, 21, "SchemaLength", f"{POSTAL}/StreetAddress"),      # empty address parts
        (16, 21, "SchemaLength", f"{POSTAL}/Locality"),
        (17, 21, "SchemaLength", f"{POSTAL}/PostalCode"),
        (18, 21, "SchemaLength", f"{POSTAL}/CountryName"),
        (34, 21, "SchemaMissingElement", RECIPIENT_NAME),         # missing Name
        (41, 9, "SchemaUnexpectedElement",                        # out of order
         f"{ROOT}/SenderMessageDetails/UAMessageIdentifier"),
        (78, 25, "SchemaMissingElement", f"{SIGNED}/SigningCertificate"),
    ],
    "submission-acceptance-2.xml": [
        (36, 21, "SchemaMissingElement", RECIPIENT_NAME),
        (43, 9, "SchemaUnexpectedElement", f"{ROOT}/SenderMessageDetails/UAMessageIdentifier"),
        (86, 25, "SchemaUnexpectedElement", f"{SIGNED}/SigningCertificateV2"),
    ],
    "submission-acceptance-3.xml": [
        (35, 17, "SchemaMissingElement",
         f"{ROOT}/SenderDetails/NamesPostalAddresses/NamePostalAddress/EntityName"),
        (45, 21, "SchemaMissingElement", RECIPIENT_NAME),
        (54, 9, "SchemaUnexpectedElement",
         f"{ROOT}/SenderMessageDetails/MessageIdentifierByREMMD"),
    ],
    "submission-acceptance-4.xml": [  # the whole document on one line: columns matter
        (1, 39, "SchemaType", f"{ROOT}/@Id"),
        (1, 1790, "SchemaMissingElement", RECIPIENT_NAME),
        (1, 2032, "SchemaUnexpectedElement", f"{ROOT}/SenderMessageDetails/UAMessageIdentifier"),
    ],
}


@pytest.fixture(scope="module")
def etsi(fixtures_dir: Path) -> Path:
    return fixtures_dir / "etsi-rem"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_problem_reported_with_line_and_path(etsi: Path, name: str) -> None:
    report = validate_file(etsi / "documents" / name,
                           schema=etsi / "schema" / "TS102640_v2.xsd")
    assert not report.valid
    got = [(i.line, i.column, i.code, i.path) for i in report.issues]
    assert got == EXPECTED[name]


def test_columns_match_the_source(etsi: Path) -> None:
    data = (etsi / "documents" / "submission-acceptance-4.xml").read_bytes()
    assert b"\n" not in data[:2100]
    assert data[1789:1789 + len(b"<EntityName")] == b"<EntityName"  # column 1790, 1-based
    assert data.index(b"<UAMessageIdentifier") + 1 == 2032


def test_messages_do_not_quote_values(etsi: Path) -> None:
    report = validate_file(etsi / "documents" / "submission-acceptance-1.xml",
                           schema=etsi / "schema" / "TS102640_v2.xsd")
    (id_issue,) = [i for i in report.issues if i.path.endswith("/@Id")]
    assert "3023d3c5" not in id_issue.message
    assert id_issue.message == "value is not a valid xs:ID"
