"""The hardened parser refuses hostile and broken input with a clear, located error."""

from __future__ import annotations

import pytest

from gateway.errors import TooLarge, XmlEmpty, XmlEncodingError, XmlError, XmlForbidden
from gateway.xmlsafe import parse_xml

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<r>&x;</r>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol4;</lolz>"""


def test_parses_plain_document() -> None:
    tree = parse_xml(b"<?xml version='1.0' encoding='UTF-8'?><a><b>1</b></a>")
    assert tree.getroot().tag == "a"
    assert tree.getroot()[0].sourceline == 1


@pytest.mark.parametrize("payload", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
def test_doctype_refused(payload: bytes) -> None:
    with pytest.raises(XmlForbidden) as info:
        parse_xml(payload, source="in.xml")
    assert info.value.code == "XmlForbidden"
    assert info.value.line == 2
    assert "passwd" not in str(info.value)


def test_doctype_in_utf16_refused() -> None:
    with pytest.raises(XmlForbidden):
        parse_xml(XXE.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
                  .encode("utf-16"))


def test_empty_and_whitespace() -> None:
    for data in (b"", b"  \n\t"):
        with pytest.raises(XmlEmpty):
            parse_xml(data)


def test_size_limit() -> None:
    with pytest.raises(TooLarge) as info:
        parse_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)
    assert info.value.details["limit"] == 50


def test_truncated_reports_position() -> None:
    with pytest.raises(XmlError) as info:
        parse_xml(b"<a>\n  <b>text</b>\n  <c>", source="t.xml")
    assert info.value.line is not None
    assert info.value.where is not None
    assert info.value.where.startswith("t.xml:")


def test_not_xml() -> None:
    with pytest.raises(XmlError):
        parse_xml(b"SSN,NAME\n987654320,DOE\n")


def test_wrong_encoding() -> None:
    with pytest.raises(XmlEncodingError):
        parse_xml("<?xml version='1.0' encoding='UTF-8'?><a>Müller</a>".encode("latin-1"))


def test_error_message_never_quotes_content() -> None:
    with pytest.raises(XmlError) as info:
        parse_xml(b"<Name>987654320</Nome>")
    assert "987654320" not in str(info.value)
