"""describe(): the routing facts of each business document."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.demo import samples
from gateway.documents.describe import DocumentInfo, describe
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import UnknownDocumentType

IS = "urn:cse-gateway:interstate:2"
HG = "urn:cse-gateway:international:1"


def test_interstate_transaction() -> None:
    data = samples.interstate_transaction("0600000", "4800000", case_id="CASE00000000001")
    assert describe(parse_xml(data)) == DocumentInfo(
        IS, "InterstateTransaction", "interstate", "fips:0600000", "fips:4800000",
        "CASE00000000001")


@pytest.mark.parametrize("make", [samples.transaction_error, samples.interstate_acknowledgment,
                                  samples.document_exchange])
def test_other_interstate_documents(make: Callable[[str, str], bytes]) -> None:
    info = describe(parse_xml(make("3600000", "1200000")))
    assert (info.service, info.sender, info.destination) == \
        ("interstate", "fips:3600000", "fips:1200000")
    assert info.case_id


def test_application_goes_from_requesting_to_requested() -> None:
    out = describe(parse_xml(samples.maintenance_application("NL", "0600000", outbound=True)))
    assert (out.sender, out.destination, out.service) == \
        ("fips:0600000", "iso3166:NL", "international")
    assert out.case_id is not None
    assert out.case_id.startswith("REQ-")
    inbound = describe(parse_xml(samples.transmittal_form("DE", "4800000", outbound=False)))
    assert (inbound.sender, inbound.destination) == ("iso3166:DE", "fips:4800000")


def test_answers_go_from_requested_back_to_requesting() -> None:
    # NL acknowledges the application California sent it
    ack = describe(parse_xml(samples.acknowledgement_form("NL", "0600000", outbound=False)))
    assert (ack.name, ack.sender, ack.destination) == \
        ("AcknowledgementForm", "iso3166:NL", "fips:0600000")
    # California reports on an application Norway sent it
    report = describe(parse_xml(samples.status_report("NO", "0600000", outbound=True)))
    assert (report.sender, report.destination) == ("fips:0600000", "iso3166:NO")
    assert report.case_id is not None
    assert report.case_id.startswith("RSP-")


def test_accepts_element_too() -> None:
    root = parse_xml(samples.status_report()).getroot()
    assert describe(root).name == "StatusOfApplicationReport"


@pytest.mark.parametrize("data", [
    b"<Envelope xmlns='urn:cse-gateway:envelope:1'/>",
    b"<InterstateTransaction/>",
    b"<Other xmlns='urn:cse-gateway:interstate:2'/>",
])
def test_other_roots_are_unknown(data: bytes) -> None:
    with pytest.raises(UnknownDocumentType):
        describe(parse_xml(data))


def test_info_is_frozen() -> None:
    info = describe(parse_xml(samples.status_report()))
    with pytest.raises(AttributeError):
        info.name = "x"  # type: ignore[misc]
