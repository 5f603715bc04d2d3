"""gateway.demo.samples: deterministic, obviously synthetic, always valid."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.demo import samples
from gateway.documents.describe import describe
from gateway.documents.validate import validate_bytes
from gateway.documents.xmlsafe import parse_xml


@pytest.mark.parametrize("name", sorted(samples.all_samples()))
def test_deterministic_and_valid(name: str) -> None:
    make = samples.all_samples()[name]
    assert make() == make()
    report = validate_bytes(make(), source=name)
    assert report.valid, report.issues
    assert describe(parse_xml(make())).name == name


@given(seed=st.integers(0, 10**6), participants=st.integers(0, 9), orders=st.integers(0, 9),
       collections=st.integers(0, 9), lines=st.integers(0, 5))
def test_interstate_transaction_always_valid(seed: int, participants: int, orders: int,
                                             collections: int, lines: int) -> None:
    data = samples.interstate_transaction(participants=participants, orders=orders,
                                          collections=collections, information_lines=lines,
                                          seed=seed)
    report = validate_bytes(data, source="gen")
    assert report.valid, report.issues


@given(seed=st.integers(0, 10**6),
       kind=st.sampled_from(["Art10.1.a", "Art10.1.b", "Art10.1.c", "Art10.1.d", "Art10.1.e",
                             "Art10.1.f", "Art10.2.a", "Art10.2.b", "Art10.2.c", "Art7"]),
       outbound=st.booleans(), country=st.sampled_from(["NL", "DE", "NO", "PL", "GB"]))
def test_hague_documents_always_valid(seed: int, kind: str, outbound: bool,
                                      country: str) -> None:
    for data in (
        samples.maintenance_application(country, "0600000", outbound=outbound,
                                        application_type=kind, seed=seed),
        samples.transmittal_form(country, "4800000", outbound=outbound,
                                 application_type=kind, seed=seed),
        samples.acknowledgement_form(country, outbound=outbound, seed=seed),
        samples.status_report(country, outbound=outbound, subsequent=seed % 2 == 1, seed=seed),
    ):
        report = validate_bytes(data, source="gen")
        assert report.valid, report.issues


def test_data_is_obviously_synthetic() -> None:
    data = samples.interstate_transaction(participants=9, seed=7).decode()
    ssns = re.findall(r"<SSN>(\d+)</SSN>", data)
    assert len(ssns) == 10
    assert all(987654320 <= int(s) <= 987654329 for s in ssns)
    lasts = set(re.findall(r"<Last>([^<]+)</Last>", data))
    assert lasts <= {"TESTPERSON", "TESTCHILD", "TESTWORKER"}
    assert all(line.endswith("TEST ST") for line in re.findall(r"<Line1>([^<]+)<", data))


def test_block_limits_enforced() -> None:
    with pytest.raises(ValueError, match=r"0\.\.9"):
        samples.interstate_transaction(participants=10)


def test_document_exchange_carries_its_pdf() -> None:
    data = samples.document_exchange(pdf_bytes=50_000, seed=3)
    root = parse_xml(data).getroot()
    ns = "{urn:cse-gateway:interstate:2}"
    pdf = base64.b64decode("".join((root.findtext(f"{ns}Content") or "").split()))
    assert len(pdf) == 50_000
    assert pdf.startswith(b"%PDF-1.4")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert root.findtext(f"{ns}SHA256") == hashlib.sha256(pdf).hexdigest()
    assert root.findtext(f"{ns}Size") == "50000"


def test_large_document_exchange_validates() -> None:
    data = samples.document_exchange(pdf_bytes=12 * 1024 * 1024)
    assert len(data) > 16 * 1024 * 1024
    report = validate_bytes(data, source="big")
    assert report.valid, report.issues


def test_seed_changes_content() -> None:
    assert samples.interstate_transaction(seed=1) != samples.interstate_transaction(seed=2)
