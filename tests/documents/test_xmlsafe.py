"""The hardened parser refuses hostile and broken input with a clear, located error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.documents.xmlsafe import parse_xml, tostring
from gateway.errors import TooLarge, XmlEmpty, XmlEncodingError, XmlError, XmlForbidden
from tests.support.listener import recording_listener

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


# --- more hostile and broken input ------------------------------------------------------



@pytest.fixture
def listener() -> Iterator[tuple[int, list[tuple[str, int]]]]:
    with recording_listener() as value:
        yield value


def test_external_dtd_refused_without_fetching(
    listener: tuple[int, list[tuple[str, int]]],
) -> None:
    port, seen = listener
    payload = (f'<?xml version="1.0"?>\n<!DOCTYPE r SYSTEM "http://127.0.0.1:{port}/x.dtd">\n'
               "<r>&x;</r>").encode()
    with pytest.raises(XmlForbidden):
        parse_xml(payload)
    time.sleep(0.3)
    assert seen == []


def test_parameter_entity_refused() -> None:
    payload = (b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd">'
               b" %p;]>\n<r/>")
    with pytest.raises(XmlForbidden):
        parse_xml(payload)


def test_lowercase_and_spaced_doctype_refused() -> None:
    with pytest.raises(XmlForbidden):
        parse_xml(b"<?xml version='1.0'?>\n<!  doctype r []>\n<r/>")


def test_billion_laughs_refused_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(XmlForbidden):
        parse_xml(LAUGHS.replace(b"&lol4;", b"&lol4;" * 1000))
    # Nothing was expanded: refusing is a scan of the bytes, not a parse (generous bound).
    assert time.perf_counter() - start < 1.0


def test_undefined_entity_is_an_error_not_expansion() -> None:
    with pytest.raises(XmlError) as info:
        parse_xml(b"<r>&secret;</r>", source="e.xml")
    assert "secret" not in str(info.value)


def test_xinclude_is_not_processed(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("SHOULD NOT APPEAR")
    data = (b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="'
            + str(tmp_path / "x.txt").encode() + b'" parse="text"/></r>')
    tree = parse_xml(data)
    assert b"SHOULD NOT APPEAR" not in tostring(tree)


def test_utf16_document_with_bom_parses() -> None:
    data = "<?xml version='1.0' encoding='UTF-16'?><a>ü</a>".encode("utf-16")
    assert parse_xml(data).getroot().text == "ü"


def test_utf8_bom_parses() -> None:
    assert parse_xml(b"\xef\xbb\xbf<a>1</a>").getroot().text == "1"


def test_binary_garbage_is_malformed() -> None:
    with pytest.raises(XmlError) as info:
        parse_xml(bytes(range(256)) * 4, source="bin")
    assert info.value.where is not None


def test_size_limit_is_inclusive() -> None:
    data = b"<a>" + b"x" * 10 + b"</a>"
    assert parse_xml(data, max_bytes=len(data)).getroot().tag == "a"
    with pytest.raises(TooLarge):
        parse_xml(data, max_bytes=len(data) - 1)


def test_default_limit_is_50_mb() -> None:
    from gateway.documents.xmlsafe import DEFAULT_MAX_BYTES

    assert DEFAULT_MAX_BYTES == 50 * 1024 * 1024


def test_truncated_message_says_so() -> None:
    with pytest.raises(XmlError) as info:
        parse_xml(b"<a><b>987654320</b>")
    assert "truncated" in info.value.message
    assert "987654320" not in str(info.value)


def test_large_text_node_needs_opt_in() -> None:
    data = b"<a>" + b"QUJD" * (11 * 1024 * 1024 // 4) + b"</a>"
    with pytest.raises(XmlError):
        parse_xml(data)
    assert len(parse_xml(data, huge_text=True).getroot().text or "") > 10 * 1024 * 1024
