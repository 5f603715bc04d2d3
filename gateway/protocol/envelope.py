"""The envelope (protocol layer 1) and the sealed content (layer 4).

``Envelope``: the clear-text :class:`Header` a relay routes on, and ``Payload``, base64 of a
DER CMS ``ContentInfo``. ``Sealed``: the signed content inside the encryption, a copy of the
header and the business document's exact bytes (base64). Both are in namespace
``urn:cse-gateway:envelope:1`` and validated against ``xsd/envelope/envelope.xsd``.

Large documents: base64 is produced and consumed in bounded chunks (``b64_lines``) and the
sealed content is a re-iterable :class:`SealedContent`, so sealing a 100 MB document never
holds more than the finished envelope plus small buffers.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

import pybase64
from lxml import etree

from gateway.documents.schemas import default_registry
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import EnvelopeInvalid, SchemaInvalid, TooLarge, XmlError
from gateway.protocol import canonical
from gateway.protocol.party import Party, PartyInvalid

__all__ = [
    "DEFAULT_MAX_ENVELOPE_BYTES",
    "NS",
    "SERVICES",
    "Buffer",
    "Header",
    "ParsedEnvelope",
    "SealedContent",
    "b64_lines",
    "build_envelope",
    "format_time",
    "header_from_element",
    "header_xml",
    "parse_envelope",
    "parse_sealed",
    "parse_time",
    "take_sealed",
    "write_envelope",
]

NS = "urn:cse-gateway:envelope:1"
SERVICES = ("interstate", "international", "receipt", "ping")
#: An envelope of this size carries a business document of about 140 MB (base64 twice).
DEFAULT_MAX_ENVELOPE_BYTES = 256 * 1024 * 1024

_ACTION = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_CONVERSATION = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: What the chunked helpers accept (collections.abc.Buffer is Python 3.12+).
Buffer = bytes | bytearray | memoryview
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/\s]*(=\s*){0,2}")
_LINE = 57  # raw bytes per 76-character base64 line
_BLOCK = _LINE * 1152  # ~64 KB of input per base64 step


def format_time(value: datetime) -> str:
    """UTC ``xs:dateTime`` with ``Z`` and microseconds only when non-zero."""
    value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")[:-6] \
        + "Z"


def parse_time(text: str, *, where: str = "Created") -> datetime:
    """The inverse of :func:`format_time`; :class:`EnvelopeInvalid` for anything else."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise EnvelopeInvalid("not a valid UTC dateTime", where=where) from None
    if value.tzinfo is None:
        raise EnvelopeInvalid("dateTime has no time zone", where=where)
    return value.astimezone(UTC)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(text: str, field: str) -> str:
    if type(text) is str and _CANONICAL_UUID.fullmatch(text):
        return text  # already what str(uuid.UUID(text)) gives
    try:
        return str(uuid.UUID(text))
    except (ValueError, TypeError, AttributeError):
        raise EnvelopeInvalid(f"{field} is not a UUID", where=field) from None


@dataclass(frozen=True)
class Header:
    """The envelope header. UUIDs are kept in canonical lower-case form and ``created`` in
    UTC, so two headers compare equal exactly when they mean the same thing."""

    message_id: str
    from_party: Party
    to_party: Party
    service: str
    action: str
    created: datetime
    conversation_id: str | None = None
    ref_to_message_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", _uuid(self.message_id, "MessageId"))
        if self.ref_to_message_id is not None:
            ref = _uuid(self.ref_to_message_id, "RefToMessageId")
            object.__setattr__(self, "ref_to_message_id", ref)
        if not isinstance(self.from_party, Party) or not isinstance(self.to_party, Party):
            raise TypeError("Header.from_party and to_party must be Party values")
        if self.service not in SERVICES:
            raise EnvelopeInvalid(f"Service must be one of {', '.join(SERVICES)}",
                                  where="Service")
        if not isinstance(self.action, str) or not _ACTION.fullmatch(self.action):
            raise EnvelopeInvalid("Action must be a document type name", where="Action")
        if self.conversation_id is not None and not _CONVERSATION.fullmatch(
            self.conversation_id
        ):
            raise EnvelopeInvalid("ConversationId has characters that are not allowed",
                                  where="ConversationId")
        if not isinstance(self.created, datetime) or self.created.tzinfo is None:
            raise EnvelopeInvalid("Created must be a time-zone aware datetime",
                                  where="Created")
        object.__setattr__(self, "created", self.created.astimezone(UTC))

    @classmethod
    def new(
        cls,
        *,
        from_party: Party,
        to_party: Party,
        service: str,
        action: str,
        created: datetime,
        conversation_id: str | None = None,
        ref_to_message_id: str | None = None,
    ) -> Header:
        """A header with a fresh random ``MessageId``."""
        return cls(str(uuid.uuid4()), from_party, to_party, service, action, created,
                   conversation_id, ref_to_message_id)


def header_xml(header: Header) -> bytes:
    """The ``<Header>`` element (no namespace declaration: it sits inside a root that has
    the default namespace). Every value is pattern-checked, so no escaping is needed."""
    parts = [f"<Header><MessageId>{header.message_id}</MessageId>"]
    if header.conversation_id is not None:
        parts.append(f"<ConversationId>{header.conversation_id}</ConversationId>")
    if header.ref_to_message_id is not None:
        parts.append(f"<RefToMessageId>{header.ref_to_message_id}</RefToMessageId>")
    parts.append(
        f"<From>{header.from_party}</From><To>{header.to_party}</To>"
        f"<Service>{header.service}</Service><Action>{header.action}</Action>"
        f"<Created>{format_time(header.created)}</Created></Header>"
    )
    return "".join(parts).encode("ascii")


def header_from_element(element: etree._Element, *, where: str = "Header") -> Header:
    """Read a schema-valid ``<Header>`` element into a :class:`Header`."""
    values: dict[str, str] = {}
    for child in element:
        if isinstance(child.tag, str):
            values[etree.QName(child).localname] = (child.text or "").strip()
    return _header_from_values(values, where=where)


def _header_from_values(values: dict[str, str], *, where: str) -> Header:
    """A :class:`Header` from its fields' texts by element name (the full path reads them
    from the tree, :mod:`gateway.protocol.canonical` from the exact bytes)."""
    try:
        return Header(
            message_id=values["MessageId"],
            from_party=Party.parse(values["From"]),
            to_party=Party.parse(values["To"]),
            service=values["Service"],
            action=values["Action"],
            created=parse_time(values["Created"], where=f"{where}/Created"),
            conversation_id=values.get("ConversationId"),
            ref_to_message_id=values.get("RefToMessageId"),
        )
    except KeyError as exc:
        raise EnvelopeInvalid(f"header field {exc.args[0]} is missing", where=where) from None
    except PartyInvalid as exc:
        raise EnvelopeInvalid(f"bad party: {exc.message}", where=where) from None


# --- base64 in bounded chunks -------------------------------------------------------------


def b64_lines(chunks: Iterable[Buffer]) -> Iterator[bytes]:
    """Base64 of the concatenation of ``chunks`` in 76-character lines, each ending in a
    newline, produced ~64 KB at a time (never one copy of the whole input)."""
    carry = b""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        if carry:
            need = _BLOCK - len(carry)
            carry += view[:need].tobytes()
            view = view[need:]
            if len(carry) < _BLOCK:
                continue
            yield _encode_lines(carry)
            carry = b""
        whole = len(view) - len(view) % _BLOCK
        for start in range(0, whole, _BLOCK):
            yield _encode_lines(view[start:start + _BLOCK])
        carry = view[whole:].tobytes()
    if carry:
        yield _encode_lines(carry)


def _encode_lines(data: Buffer) -> bytes:
    """What ``base64.encodebytes`` gives (76-character lines, each ending in a newline),
    from pybase64's SIMD encoder (same bytes; about 3x faster than ``binascii`` in one call
    cut into lines, a test compares them)."""
    return pybase64.encodebytes(data)


def _base64_text(element: etree._Element, *, where: str) -> str:
    """The text of a base64 element; comments or processing instructions inside it would
    split the text the schema saw from what ``.text`` returns, so they are refused."""
    if len(element):
        raise EnvelopeInvalid("only base64 text is allowed here (no comments or "
                              "processing instructions)", where=where)
    return element.text or ""


#: What :data:`_BASE64_TEXT` allows before the padding: the alphabet and what ``\s``
#: matches in ASCII (str.isspace: tab, LF, VT, FF, CR, 0x1c-0x1f, space).
_B64_BODY = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
             + bytes(c for c in range(128) if chr(c).isspace()))


#: characters of base64 text :func:`_base64_only` checks at a time: a large payload's text
#: is not copied whole (once to cut the padding off, once more as bytes) to be checked
_CHECK_CHARS = 1 << 20


def _base64_only(text: str) -> bool:
    """Whether ``text`` matches :data:`_BASE64_TEXT` (base64 characters and whitespace,
    then at most two ``=`` each followed by whitespace). ASCII text is checked with
    ``bytes.translate``, :data:`_CHECK_CHARS` characters at a time (about 4x faster than
    the regular expression over an envelope's payload); anything else goes through the
    expression itself."""
    if not text.isascii():
        return _BASE64_TEXT.fullmatch(text) is not None
    pad = text.find("=")
    end = len(text) if pad < 0 else pad
    for start in range(0, end, _CHECK_CHARS):  # text[0:len(text)] is text itself, no copy
        if text[start:min(start + _CHECK_CHARS, end)].encode("ascii").translate(
                None, _B64_BODY):
            return False
    return pad < 0 or _BASE64_TEXT.fullmatch(text, pad) is not None


def _b64_decode(text: str | None, *, where: str) -> bytes:
    # Only base64 characters and whitespace (line breaks) are allowed; a2b_base64 alone
    # (and libxml2's base64Binary check) would silently skip anything else.
    if text and not _base64_only(text):
        raise EnvelopeInvalid("not valid base64 (characters other than base64 and "
                              "whitespace)", where=where)
    try:
        # a2b_base64 skips whitespace and line breaks and reads the str without a copy.
        return binascii.a2b_base64(text or "")
    except (binascii.Error, ValueError):
        raise EnvelopeInvalid("not valid base64", where=where) from None


# --- Envelope -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedEnvelope:
    """A schema-valid envelope: its header, the DER payload, and ``digest``, the SHA-256 hex
    of the exact envelope bytes (what a receipt's ``EnvelopeDigest`` names)."""

    header: Header
    payload_der: bytes
    digest: str


def _envelope_prefix(header: Header) -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<Envelope xmlns="' + NS.encode()
            + b'" version="1">' + header_xml(header) + b"<Payload>\n")


_ENVELOPE_SUFFIX = b"</Payload></Envelope>\n"


def write_envelope(header: Header, payload_chunks: Iterable[Buffer], out: BinaryIO) -> None:
    """Write the envelope for ``header`` whose payload is the concatenation of
    ``payload_chunks`` (DER bytes, base64-encoded here in bounded chunks)."""
    out.write(_envelope_prefix(header))
    for line in b64_lines(payload_chunks):
        out.write(line)
    out.write(_ENVELOPE_SUFFIX)


def build_envelope(header: Header, payload_der: bytes) -> bytes:
    """The envelope bytes for ``header`` and a DER CMS ``ContentInfo``."""
    out = io.BytesIO()
    write_envelope(header, [payload_der], out)
    return out.getvalue()


def _parse_checked(data: bytes, *, root: str, source: str, max_bytes: int) -> etree._Element:
    try:
        tree = parse_xml(data, max_bytes=max_bytes, source=source, huge_text=True)
    except TooLarge:
        raise
    except XmlError as exc:
        raise EnvelopeInvalid(f"{root} is not acceptable XML: {exc.message}",
                              where=exc.where or source) from None
    top = tree.getroot()
    if top.tag != f"{{{NS}}}{root}":
        raise EnvelopeInvalid(f"root element is not {{{NS}}}{root}", where=source)
    try:
        default_registry().check(tree, source=source)
    except SchemaInvalid as exc:
        where = [f"line {i.line}" for i in exc.issues[:3]]
        raise EnvelopeInvalid(
            f"{root} does not match its schema ({len(exc.issues)} error(s) at "
            f"{', '.join(where)})",
            where=source,
            details={"issues": [
                {"line": i.line, "path": i.path,
                 "message": re.sub(r"'[^']*'", "'…'", i.message)[:300]}
                for i in exc.issues[:10]
            ]},
        ) from None
    return top


def _canonical(data: bytes, root: str, max_bytes: int) -> tuple[Header, bytes] | None:
    """The header and decoded base64 of an ``Envelope`` (``root``) or ``Sealed`` document
    in the exact bytes this gateway writes, without a tree or a schema run; None for
    anything else (see :mod:`gateway.protocol.canonical`: it only recognises, the full
    path refuses)."""
    if type(data) is not bytes or len(data) > max_bytes:
        return None
    found = canonical.match_header_document(data, root)
    if found is None:
        return None
    match, start, end = found
    raw = canonical.b64_exact(data, start, end)
    if raw is None:
        return None
    try:
        header = _header_from_values(canonical.header_values(match), where=root)
    except EnvelopeInvalid:
        return None  # e.g. year 0000: the full path says what is wrong
    return header, raw


def parse_envelope(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES, source: str = "envelope"
) -> ParsedEnvelope:
    """Check ``data`` is a schema-valid envelope and read it. Decrypts nothing: a relay
    routes on ``header.to_party``. Raises :class:`EnvelopeInvalid` or :class:`TooLarge`.
    An envelope in the exact form :func:`write_envelope` writes is read without building
    a tree (:func:`_canonical`); any other goes through :func:`_parse_envelope_full`."""
    digest = hashlib.sha256(data).hexdigest()
    fast = _canonical(data, "Envelope", max_bytes)
    if fast is not None:
        return ParsedEnvelope(header=fast[0], payload_der=fast[1], digest=digest)
    return _parse_envelope_full(data, digest, max_bytes=max_bytes, source=source)


def _parse_envelope_full(data: bytes, digest: str, *, max_bytes: int,
                         source: str) -> ParsedEnvelope:
    """The hardened parse and the schema check: every refusal comes from here."""
    top = _parse_checked(data, root="Envelope", source=source, max_bytes=max_bytes)
    header = header_from_element(top[0], where=f"{source}/Header")
    text = _base64_text(top[1], where=f"{source}/Payload")
    del top  # frees libxml2's copy of the payload text before decoding
    payload = _b64_decode(text, where=f"{source}/Payload")
    del text
    if not payload:
        raise EnvelopeInvalid("Payload is empty", where=f"{source}/Payload")
    return ParsedEnvelope(header=header, payload_der=payload, digest=digest)


# --- Sealed -------------------------------------------------------------------------------


class SealedContent:
    """The ``Sealed`` document for ``header`` and ``document``, produced in chunks on demand
    (iterate ``chunks()`` as often as needed; ``len()`` is its exact size in bytes)."""

    def __init__(self, header: Header, document: bytes) -> None:
        self.header = header
        self.document = document
        self._prefix = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Sealed xmlns="'
                        + NS.encode() + b'" version="1">' + header_xml(header)
                        + b"<Document>\n")
        self._suffix = b"</Document></Sealed>\n"
        n = len(document)
        b64 = 4 * ((n + 2) // 3)
        lines = (n + _LINE - 1) // _LINE
        self.length = len(self._prefix) + b64 + lines + len(self._suffix)

    def __len__(self) -> int:
        return self.length

    def chunks(self) -> Iterator[bytes]:
        yield self._prefix
        yield from b64_lines([self.document])
        yield self._suffix

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())


def parse_sealed(data: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
                 source: str = "Sealed") -> tuple[Header, bytes]:
    """Read verified sealed content: the signed header copy and the document's bytes."""
    return take_sealed([data], max_bytes=max_bytes, source=source)


def take_sealed(box: list[bytes], *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
                source: str = "Sealed") -> tuple[Header, bytes]:
    """:func:`parse_sealed` on the bytes in ``box``, which it empties so that they can be
    freed as soon as the tree is built (a large document is then held at most twice)."""
    data = box.pop()
    fast = _canonical(data, "Sealed", max_bytes)
    if fast is not None:
        return fast
    box.append(data)
    del data  # the full path frees the bytes once its tree is built: nothing else may hold them
    return _take_sealed_full(box, max_bytes=max_bytes, source=source)


def _take_sealed_full(box: list[bytes], *, max_bytes: int, source: str
                      ) -> tuple[Header, bytes]:
    """The hardened parse and the schema check of ``Sealed`` (every refusal)."""
    data = box.pop()
    top = _parse_checked(data, root="Sealed", source=source, max_bytes=max_bytes)
    del data
    header = header_from_element(top[0], where=f"{source}/Header")
    text = _base64_text(top[1], where=f"{source}/Document")
    del top
    return header, _b64_decode(text, where=f"{source}/Document")
