"""Reading the documents this gateway writes, in the exact bytes it writes them, without
building an XML tree: the ``Envelope`` and the ``Sealed`` content
(:mod:`gateway.protocol.envelope`) and the signed ``Receipt``
(:mod:`gateway.protocol.receipts`).

Every function here recognises only and never refuses: it returns ``None`` for anything
that is not byte for byte in the form our writers produce (or whose values it cannot
vouch for), and the caller then takes the full path (hardened parse, schema check against
``xsd/``), which gives every refusal and its message. What is recognised is schema-valid
by construction:

- the prolog, root element, namespace declaration, ``version`` attribute and the element
  sequence are fixed bytes; each value matches the XSD pattern of its type, with only
  characters that need no escaping (so the XML is well-formed and the text is exactly the
  value), and optional elements appear in the schema's order;
- ``UtcDateTimeType`` values must also be real instants: month, day, hour, minute and
  second are range-checked here and the calendar (day of month, leap years) by
  :func:`datetime.fromisoformat` in :func:`~gateway.protocol.envelope.parse_time`; a year
  Python cannot hold (0000) or anything else it refuses falls back;
- base64 text must be exactly what :func:`~gateway.protocol.envelope.b64_lines` writes for
  the bytes it decodes to (a leading newline, 76-character lines each ending in a newline,
  canonical padding): decoded once and re-encoded to compare, which also rules out any
  character ``a2b_base64`` would skip.

The values are then read through the same constructors as the full path (``Header``,
:func:`parse_time`), so a recognised document gives an equal result.
``tests/protocol/test_security_canonical.py`` checks both claims (recognised => the full
path accepts with the same value; our own output is recognised) on a corpus of mutated
envelopes, sealed contents and receipts.
"""

from __future__ import annotations

import binascii
import re
from datetime import datetime

import pybase64

__all__ = ["MAX_CANONICAL_BYTES", "b64_exact", "header_values", "match_header_document",
           "receipt_values"]

#: Larger documents always take the full path (re-encoding to compare would hold another
#: copy of the text; the per-message cost this saves is negligible at that size).
MAX_CANONICAL_BYTES = 16 * 1024 * 1024

_ENV_NS = b"urn:cse-gateway:envelope:1"
_UUID = rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PARTY = rb"fips:[0-9]{7}|iso3166:[A-Z]{2}(?:-[A-Z0-9]{1,8})?"
# UtcDateTimeType's pattern, with the fields range-checked (the calendar is checked by
# datetime.fromisoformat when the value is read).
_TIME = (rb"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
         rb"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?Z")
_HEADER = (
    rb"<Header><MessageId>(?P<mid>" + _UUID + rb")</MessageId>"
    rb"(?:<ConversationId>(?P<conv>[A-Za-z0-9._:\-]{1,128})</ConversationId>)?"
    rb"(?:<RefToMessageId>(?P<ref>" + _UUID + rb")</RefToMessageId>)?"
    rb"<From>(?P<from>" + _PARTY + rb")</From><To>(?P<to>" + _PARTY + rb")</To>"
    rb"<Service>(?P<service>interstate|international|receipt|ping)</Service>"
    rb"<Action>(?P<action>[A-Za-z][A-Za-z0-9_]{0,63})</Action>"
    rb"<Created>(?P<created>" + _TIME + rb")</Created></Header>"
)


def _document(root: bytes, body: bytes) -> tuple[re.Pattern[bytes], bytes]:
    """The start (through ``<body>`` and its leading newline) and the exact end of a
    document with ``root`` in the envelope namespace, as the writers produce it."""
    start = re.compile(rb'<\?xml version="1\.0" encoding="UTF-8"\?>\n<' + root
                       + rb' xmlns="' + re.escape(_ENV_NS) + rb'" version="1">' + _HEADER
                       + rb"<" + body + rb">\n")
    return start, b"</" + body + b"></" + root + b">\n"


_DOCUMENTS = {"Envelope": _document(b"Envelope", b"Payload"),
              "Sealed": _document(b"Sealed", b"Document")}


def match_header_document(data: bytes, root: str) -> tuple[re.Match[bytes], int, int] | None:
    """For ``data`` in the exact form :func:`~gateway.protocol.envelope.write_envelope`
    (``root`` "Envelope") or :class:`~gateway.protocol.envelope.SealedContent` ("Sealed")
    writes: the header match, and where the base64 lines start and end (after the leading
    newline, up to the closing tag)."""
    if len(data) > MAX_CANONICAL_BYTES:
        return None
    start, end = _DOCUMENTS[root]
    match = start.match(data)
    if match is None or not data.endswith(end) or match.end() > len(data) - len(end):
        return None
    return match, match.end(), len(data) - len(end)


def header_values(match: re.Match[bytes]) -> dict[str, str]:
    """The header fields of a :func:`match_header_document` match, by element name (what
    the full path's ``header_from_element`` collects)."""
    values = {"MessageId": match["mid"], "From": match["from"], "To": match["to"],
              "Service": match["service"], "Action": match["action"],
              "Created": match["created"], "ConversationId": match["conv"],
              "RefToMessageId": match["ref"]}
    return {name: value.decode("ascii") for name, value in values.items()
            if value is not None}


def b64_exact(data: bytes, start: int, end: int) -> bytes | None:
    """The non-empty bytes ``data[start:end]`` encodes when it is exactly the base64 lines
    :func:`~gateway.protocol.envelope.b64_lines` writes for them; else None.

    Without its newlines the text must decode strictly (alphabet and padding only) and be
    the canonical encoding of what it decodes to (so canonical padding bits too); it must
    have one newline per started 76 characters, one after every 76 characters and one at
    the end: together, the newlines are exactly where ``b64_lines`` puts them."""
    size = end - start
    if size < 5 or data[end - 1] != 0x0A:
        return None
    flat = data[start:end].replace(b"\n", b"")
    full_lines, rest = divmod(len(flat), 76)
    if size - len(flat) != full_lines + (rest > 0):
        return None
    if data[start + 76:end:77] != b"\n" * full_lines:
        return None
    try:
        raw = pybase64.b64decode(flat, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw or pybase64.b64encode(raw) != flat:
        return None
    return raw


_RECEIPT = re.compile(
    rb"<\?xml version='1\.0' encoding='UTF-8'\?>\n"
    rb'<Receipt xmlns="urn:cse-gateway:receipt:1" version="1">'
    rb"<ReceiptId>(?P<rid>" + _UUID + rb")</ReceiptId>"
    rb"(?:<RefToMessageId>(?P<ref>" + _UUID + rb")</RefToMessageId>)?"
    rb"<From>(?P<from>" + _PARTY + rb")</From>(?:<To>(?P<to>" + _PARTY + rb")</To>)?"
    rb"<Received>(?P<received>" + _TIME + rb")</Received>"
    rb"<Status>(?P<status>Delivered|Rejected)</Status>"
    rb"(?P<errors>(?:<Error><Code>[A-Za-z][A-Za-z0-9]{0,63}</Code>"
    rb"(?:<Text>[A-Za-z0-9 .,:;_/()'+\-]{1,1000}</Text>)?</Error>)*)"
    rb'<EnvelopeDigest algorithm="sha-256">(?P<digest>[0-9a-f]{64})</EnvelopeDigest>'
    rb"</Receipt>"
)
_ERROR = re.compile(rb"<Error><Code>([^<]*)</Code>(?:<Text>([^<]*)</Text>)?</Error>")


def receipt_values(document: bytes
                   ) -> tuple[dict[str, str], tuple[tuple[str, str], ...]] | None:
    """For a ``Receipt`` in the exact form ``receipts._receipt_xml`` writes it without
    escaping: what the full path's ``_fields`` returns (values by element name, stripped;
    the errors as (code, text)). None otherwise, and when ``Received`` is not an instant
    (the full path refuses that as schema-invalid)."""
    match = _RECEIPT.fullmatch(document)
    if match is None:
        return None
    try:
        datetime.fromisoformat(match["received"].decode("ascii"))
    except ValueError:
        return None
    names = {"ReceiptId": "rid", "RefToMessageId": "ref", "From": "from", "To": "to",
             "Received": "received", "Status": "status", "EnvelopeDigest": "digest"}
    values = {name: match[group].decode("ascii").strip() for name, group in names.items()
              if match[group] is not None}
    errors = tuple((code.decode("ascii").strip(), (text or b"").decode("ascii").strip())
                   for code, text in _ERROR.findall(match["errors"]))
    return values, errors
