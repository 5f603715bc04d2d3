"""A minimal DER codec for the CMS layers: writing headers and small values, and reading
tag-length-value items over a ``memoryview`` without copying contents.

asn1crypto copies the contents of every level it parses or dumps; for a 100 MB message
that means one copy per nesting level. Here the outer CMS layers are written as small
prefixes/suffixes around the content and read as offsets into one buffer. Only definite
lengths (DER) are read; a constructed OCTET STRING (BER style) is accepted one level deep.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import NamedTuple

from asn1crypto import core

__all__ = [
    "CTX0",
    "CTX0_PRIM",
    "CTX1",
    "INT",
    "OCTETS",
    "OID",
    "SEQ",
    "SET",
    "Malformed",
    "Tlv",
    "children",
    "head",
    "integer",
    "octets",
    "oid",
    "oid_at",
    "read",
    "tlv",
    "top",
]

SEQ, SET, INT, OCTETS, OID = 0x30, 0x31, 0x02, 0x04, 0x06
CTX0, CTX1, CTX0_PRIM = 0xA0, 0xA1, 0x80


# --- writing -----------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def head(tag: int, n: int) -> bytes:
    return bytes([tag]) + _length(n)


def tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return head(tag, len(body)) + body


@cache
def oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def integer(value: int) -> bytes:
    if 0 <= value < 128:  # the version numbers every structure starts with
        return _SMALL_INTEGERS[value]
    return bytes(core.Integer(value).dump())


_SMALL_INTEGERS = tuple(bytes([INT, 1, n]) for n in range(128))


# --- reading over memoryview --------------------------------------------------


class Malformed(Exception):
    pass


class Tlv(NamedTuple):
    """One item: its tag and where it starts, where its contents start, where it ends
    (a tuple: made ~95 times per message, twice as fast to make as a frozen dataclass)."""

    tag: int
    start: int
    body: int
    end: int


def read(buf: memoryview, pos: int, limit: int) -> Tlv:
    if pos + 2 > limit:
        raise Malformed("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise Malformed("multi-byte tags are not used in CMS")
    first = buf[pos + 1]
    if first < 0x80:
        size, body = first, pos + 2
    elif first == 0x80:
        raise Malformed("indefinite length (BER) where DER is required")
    else:
        count = first & 0x7F
        if count > 8 or pos + 2 + count > limit:
            raise Malformed("bad length")
        size = int.from_bytes(buf[pos + 2:pos + 2 + count], "big")
        body = pos + 2 + count
    if body + size > limit:
        raise Malformed("truncated")
    return Tlv(tag, pos, body, body + size)


def children(buf: memoryview, parent: Tlv) -> list[Tlv]:
    """The items inside ``parent``: :func:`read` in a loop, inlined (a message walks ~95
    items; a test compares this with the loop on arbitrary bytes, errors included)."""
    out: list[Tlv] = []
    pos, limit = parent.body, parent.end
    while pos < limit:
        if pos + 2 > limit:
            raise Malformed("truncated")
        tag = buf[pos]
        if tag & 0x1F == 0x1F:
            raise Malformed("multi-byte tags are not used in CMS")
        first = buf[pos + 1]
        if first < 0x80:
            body = pos + 2
            end = body + first
        elif first == 0x80:
            raise Malformed("indefinite length (BER) where DER is required")
        else:
            count = first & 0x7F
            if count > 8 or pos + 2 + count > limit:
                raise Malformed("bad length")
            body = pos + 2 + count
            end = body + int.from_bytes(buf[pos + 2:body], "big")
        if end > limit:
            raise Malformed("truncated")
        out.append(Tlv(tag, pos, body, end))
        pos = end
    return out


def top(buf: memoryview) -> Tlv:
    item = read(buf, 0, len(buf))
    if item.tag != SEQ or item.end != len(buf):
        raise Malformed("not one DER SEQUENCE")
    return item


def oid_at(buf: memoryview, item: Tlv) -> str:
    if item.tag != OID:
        raise Malformed("expected an OBJECT IDENTIFIER")
    return _dotted(buf[item.start:item.end].tobytes())


@lru_cache(maxsize=256)
def _dotted(encoded: bytes) -> str:
    """The dotted form of a DER OBJECT IDENTIFIER, decoded once per distinct encoding (a
    message carries the same dozen OIDs every time). Errors are not memoised."""
    return str(core.ObjectIdentifier.load(encoded).dotted)


def octets(buf: memoryview, item: Tlv, primitive: int) -> memoryview | bytes:
    """Contents of an OCTET STRING (or an implicitly tagged one): a view when primitive,
    the joined segments when constructed (BER style, still accepted)."""
    if item.tag == primitive:
        return buf[item.body:item.end]
    if item.tag == primitive | 0x20:
        segments = children(buf, item)
        if any(c.tag != OCTETS for c in segments):  # one level only: no deep nesting
            raise Malformed("constructed OCTET STRING with non-primitive segments")
        return b"".join(bytes(buf[c.body:c.end]) for c in segments)
    raise Malformed("expected an OCTET STRING")
