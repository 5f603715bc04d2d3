"""The one hardened XML parser every part of the gateway uses.

Refuses outright: a DOCTYPE (and with it every entity declaration, so XXE and
billion-laughs payloads are rejected before anything is expanded), documents over the size
limit, empty input and non-XML. Never touches the network. Errors name the line and column
libxml2 reports, never the offending text.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

from gateway.errors import TooLarge, XmlEmpty, XmlEncodingError, XmlError, XmlForbidden

__all__ = ["DEFAULT_MAX_BYTES", "parse_xml", "tostring"]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

# A DOCTYPE or ENTITY declaration, in the encodings a document may start with. UTF-16/32
# input is decoded for the check (cheap: only the prolog is looked at).
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)

_local = threading.local()


def _parser(huge_text: bool = False) -> etree.XMLParser:
    # lxml parsers are not thread-safe: one per thread (and one per huge_text setting).
    attr = "huge_parser" if huge_text else "parser"
    parser: etree.XMLParser | None = getattr(_local, attr, None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=huge_text,
            remove_blank_text=False,
            collect_ids=False,
        )
        setattr(_local, attr, parser)
    return parser


def _prolog_text(data: bytes) -> bytes:
    """The bytes to scan for declarations, transcoded to UTF-8 when a BOM says UTF-16/32."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding, errors="replace").encode("utf-8")
            except LookupError:  # pragma: no cover - codecs always present
                return data
    if data[:4] in (b"<\x00?\x00", b"\x00<\x00?"):  # UTF-16 without BOM
        encoding = "utf-16-le" if data[0] == 0x3C else "utf-16-be"
        return data.decode(encoding, errors="replace").encode("utf-8")
    return data


def _where(source: str | None, line: int | None, column: int | None) -> str | None:
    if source is None:
        return None
    if line is None:
        return source
    return f"{source}:{line}:{column or 0}"


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    source: str | None = None,
    base_url: str | None = None,
    huge_text: bool = False,
) -> etree._ElementTree:
    """Parse ``data`` safely and return the tree.

    ``source`` (a file name or a label such as ``envelope``) is used only in error
    messages; ``base_url`` (a local path) lets an XSD resolve relative imports.
    ``huge_text`` lifts libxml2's 10 MB limit on one text node (base64 payloads of large
    envelopes); ``max_bytes`` and the DOCTYPE/entity refusal still apply.
    Raises :class:`~gateway.errors.XmlError` or a subclass; never an lxml error.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_xml takes bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise TooLarge(
            f"document is {len(data)} bytes, over the limit of {max_bytes}",
            where=source,
            details={"size": len(data), "limit": max_bytes},
        )
    if not data or data.isspace():  # (no copy, unlike strip())
        raise XmlEmpty("document is empty", where=source)
    match = _FORBIDDEN.search(_prolog_text(data))
    if match:
        kind = match.group(1).decode().upper()
        line = data.count(b"\n", 0, match.start()) + 1 if match.start() < len(data) else None
        raise XmlForbidden(
            f"{kind} declarations are not allowed (DTDs and entities are refused)",
            where=_where(source, line, None),
            line=line,
        )
    try:
        root = (
            etree.fromstring(data, _parser(huge_text), base_url=base_url)
            if base_url
            else etree.fromstring(data, _parser(huge_text))
        )
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (None, None)
        text = str(exc.msg or "")
        lowered = text.lower()
        encoding_words = ("encoding", "utf-8", "not proper", "invalid char")
        if any(word in lowered for word in encoding_words):
            cls: type[XmlError] = XmlEncodingError
            message = "document is not in the encoding it declares"
        elif "premature end" in lowered:
            cls = XmlError
            message = "document is truncated or malformed"
        else:
            cls = XmlError
            message = "document is not well-formed XML"
        # libxml2's own message names the construct (never the data); keep its first line
        # without any quoted text, which could hold case data.
        reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text.splitlines()[0] if text else "")
        raise cls(
            f"{message} ({reason})" if reason else message,
            where=_where(source, line, column),
            line=line,
            column=column,
        ) from None
    except ValueError as exc:  # e.g. unicode strings with an encoding declaration
        raise XmlEncodingError(
            "document cannot be decoded", where=source, details={"reason": type(exc).__name__}
        ) from None
    tree = root.getroottree()
    # Defence in depth: the scan above should already have refused any DOCTYPE.
    if getattr(tree.docinfo, "doctype", ""):
        raise XmlForbidden("DOCTYPE declarations are not allowed", where=source)
    return tree


def tostring(element: etree._Element | etree._ElementTree) -> bytes:
    """Serialize as UTF-8 with an XML declaration (the gateway's canonical output form)."""
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")
