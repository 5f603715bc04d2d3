"""MIME multipart/related (SOAP with Attachments) parsing and building, byte-exact.

The attachment digests of an AS4 signature are over a part's content octets, so a part's
body is kept exactly as it arrived (after undoing a ``base64`` or ``quoted-printable``
Content-Transfer-Encoding, which is not part of the content). Accepts a raw MIME body
(boundary on the first line, as tools save it), a MIME entity with its own headers, or an
HTTP capture (status/headers, blank line, body); CRLF or bare LF line ends.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
import secrets
from dataclasses import dataclass, field

from gateway.errors import As4MimeInconsistency

__all__ = [
    "Message",
    "Part",
    "build_multipart",
    "content_type_params",
    "parse_message",
]

MAX_PARTS = 1000
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_TOKEN_PARAM = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@dataclass(frozen=True)
class Part:
    """One MIME part: lower-cased header names to values, and the decoded content."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/octet-stream")

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()

    @property
    def content_id(self) -> str | None:
        """The Content-ID without angle brackets (the ``cid:`` reference's target)."""
        value = self.headers.get("content-id")
        if value is None:
            return None
        value = value.strip()
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1]
        return value


@dataclass(frozen=True)
class Message:
    """A received AS4 message: the SOAP envelope's bytes and the attachments, in order."""

    content_type: str
    soap: bytes
    attachments: tuple[Part, ...] = field(default_factory=tuple)
    http_headers: dict[str, str] = field(default_factory=dict)

    def attachment(self, cid: str) -> Part | None:
        for part in self.attachments:
            if part.content_id == cid:
                return part
        return None


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower case) and its parameters (names lower case, values unquoted)."""
    media = value.split(";", 1)[0].strip().lower()
    params: dict[str, str] = {}
    for match in _TOKEN_PARAM.finditer(value):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return media, params


def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Split at the first blank line (CRLF or LF); None when there is none."""
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        return None
    return data[: match.start()], data[match.end() :]


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    current: str | None = None
    for raw in re.split(rb"\r?\n", block):
        if not raw:
            continue
        if raw[:1] in (b" ", b"\t") and current is not None:
            headers[current] += " " + raw.strip().decode("latin-1")
            continue
        name, sep, value = raw.partition(b":")
        if not sep:
            continue  # an HTTP status line, or junk: not a header
        current = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[current] = f"{headers[current]}, {text}" if current in headers else text
    return headers


def _looks_like_headers(block: bytes) -> bool:
    lines = [line for line in re.split(rb"\r?\n", block) if line]
    if not lines:
        return False
    first = lines[0]
    if first.startswith(b"HTTP/") or re.match(rb"^[A-Z]+ \S+ HTTP/", first):
        lines = lines[1:]
    return bool(lines) and all(
        _HEADER_LINE.match(line) or line[:1] in (b" ", b"\t") for line in lines
    )


def _decode_transfer(headers: dict[str, str], body: bytes, where: str) -> bytes:
    encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
    if encoding in ("binary", "8bit", "7bit", ""):
        return body
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            raise As4MimeInconsistency(
                "part is not valid base64", where=where
            ) from None
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    raise As4MimeInconsistency(
        "unknown Content-Transfer-Encoding", where=where, details={"encoding": encoding}
    )


def _split_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts' raw bytes (headers and content) between the boundaries."""
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[bytes] = []
    start: int | None = None
    closed = False
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
        if match.group(1):
            closed = True
            break
        start = match.end()
        if len(parts) > MAX_PARTS:
            raise As4MimeInconsistency("too many MIME parts", where="mime")
    if start is None:
        raise As4MimeInconsistency("the MIME boundary does not occur in the body", where="mime")
    if not closed:
        raise As4MimeInconsistency("the MIME body has no closing boundary", where="mime")
    return parts


def parse_message(data: bytes, content_type: str | None = None) -> Message:
    """Parse an AS4 message from a raw MIME body, a MIME entity or an HTTP capture.

    ``content_type`` is the HTTP Content-Type when the caller has it (the HTTP listener);
    otherwise it is taken from headers in ``data``, or the boundary from the first line.
    A message without attachments may be a bare SOAP envelope.
    """
    http_headers: dict[str, str] = {}
    stripped = data.lstrip(b"\r\n")
    if content_type is None and not stripped.startswith((b"--", b"<")):
        split = _split_head(stripped)
        if split is not None and _looks_like_headers(split[0]):
            http_headers = _parse_headers(split[0])
            stripped = split[1]
            content_type = http_headers.get("content-type")
    if content_type is None:
        if stripped.startswith(b"--"):
            first = re.split(rb"\r?\n", stripped, maxsplit=1)[0]
            boundary = first[2:].rstrip()
            content_type = (
                f'multipart/related; boundary="{boundary.decode("latin-1")}"; '
                'type="application/soap+xml"'
            )
        else:
            content_type = "application/soap+xml"
    media, params = content_type_params(content_type)
    if media != "multipart/related":
        if media not in ("application/soap+xml", "text/xml", "application/xml"):
            raise As4MimeInconsistency(
                "message is neither SOAP nor multipart/related",
                where="Content-Type",
                details={"media_type": media},
            )
        return Message(content_type, stripped, (), http_headers)
    boundary_text = params.get("boundary")
    if not boundary_text:
        raise As4MimeInconsistency("multipart/related without a boundary", where="Content-Type")
    raw_parts = _split_parts(stripped, boundary_text.encode("latin-1"))
    parts: list[Part] = []
    for index, raw in enumerate(raw_parts):
        split = _split_head(raw)
        if split is None or not _looks_like_headers(split[0]):
            # a part with no headers at all: the content starts right after the boundary
            headers: dict[str, str] = {}
            body = raw[2:] if raw.startswith(b"\r\n") else raw[1:] if raw.startswith(b"\n") else raw
        else:
            headers = _parse_headers(split[0])
            body = split[1]
        parts.append(Part(headers, _decode_transfer(headers, body, f"mime part {index + 1}")))
    if not parts:
        raise As4MimeInconsistency("the MIME message has no parts", where="mime")
    root_index = 0
    start = params.get("start")
    if start:
        wanted = start.strip("<>")
        for index, part in enumerate(parts):
            if part.content_id == wanted:
                root_index = index
                break
        else:
            raise As4MimeInconsistency("the start part is missing", where="Content-Type")
    root = parts[root_index]
    if root.media_type not in ("application/soap+xml", "text/xml", "application/xml"):
        raise As4MimeInconsistency(
            "the root MIME part is not a SOAP envelope",
            where="mime part 1",
            details={"media_type": root.media_type},
        )
    attachments = tuple(p for i, p in enumerate(parts) if i != root_index)
    seen: set[str] = set()
    for index, part in enumerate(attachments):
        cid = part.content_id
        if not cid:
            raise As4MimeInconsistency(
                "an attachment has no Content-ID", where=f"attachment {index + 1}"
            )
        if cid in seen:
            raise As4MimeInconsistency("two attachments share a Content-ID", where="mime")
        seen.add(cid)
    return Message(content_type, root.content, attachments, http_headers)


def build_multipart(
    soap: bytes,
    attachments: list[Part],
    *,
    soap_content_id: str,
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """The HTTP Content-Type and body of a SOAP-with-attachments message (binary parts)."""
    boundary = boundary or f"MIMEBoundary_{secrets.token_hex(24)}"
    out = bytearray()
    root_headers = {
        "Content-Type": "application/soap+xml; charset=UTF-8",
        "Content-Transfer-Encoding": "binary",
        "Content-ID": f"<{soap_content_id}>",
    }
    for headers, content in [(root_headers, soap)] + [
        (_title_headers(part), part.content) for part in attachments
    ]:
        if f"--{boundary}".encode() in content:  # pragma: no cover - 192 random bits
            raise As4MimeInconsistency("the MIME boundary occurs in a part", where="mime")
        out += f"--{boundary}\r\n".encode()
        for name, value in headers.items():
            out += f"{name}: {value}\r\n".encode("latin-1")
        out += b"\r\n" + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="application/soap+xml"; '
        f'start="<{soap_content_id}>"'
    )
    return content_type, bytes(out)


def _title_headers(part: Part) -> dict[str, str]:
    headers = {"Content-Type": part.content_type, "Content-Transfer-Encoding": "binary"}
    if part.content_id:
        headers["Content-ID"] = f"<{part.content_id}>"
    return headers
