"""multipart/mixed (RFC 2046) and application/http (RFC 9112 10.2) framing, bytes only.

The wire format of a batch: several envelopes in one HTTPS request, one answer part per
request part (docs/protocol.md, docs/transports.md).

- :func:`encode_multipart` picks a random boundary that occurs in no part and returns
  ``(content_type, body)``: the ``Content-Type`` header value naming the boundary, and
  the body (each part ``--boundary CRLF headers CRLF CRLF bytes``, then the close
  delimiter). Parts are carried as binary, byte-exact.
- :func:`decode_multipart` takes that header value and the body and returns the parts'
  bytes, in order. Strict and linear (``bytes.find``, no regular expressions): the
  boundary is read from the ``boundary`` parameter (quoted or not, 1-70 RFC 2046 bchars),
  the preamble and the epilogue are ignored, delimiters must be whole lines ended by CRLF
  (transport padding of spaces and tabs allowed), a ``--boundary`` not followed by ``--``,
  padding or CRLF is content (not a delimiter), part headers are token names with values
  free of control characters (no folding), at most :data:`MAX_PART_HEADERS` lines of
  :data:`MAX_HEADER_LINE` bytes each; a transfer encoding other than 7bit, 8bit or binary
  is refused (parts are never decoded), as are more than ``max_parts`` parts
  (:class:`TooManyParts`), a part over ``max_part_size`` bytes, zero parts and a missing
  close delimiter.
- :func:`encode_http_response` / :func:`decode_http_response`: one part holding an
  HTTP/1.1 response message: ``HTTP/1.1 <status> <reason> CRLF Content-Type CRLF
  Content-Length CRLF CRLF <body>``.

Every refusal is a :class:`MultipartError` that says what was wrong and where (part
index, counted from 0, and byte offset in the body); it never quotes the content.
"""

from __future__ import annotations

import http.client
import secrets
from collections.abc import Collection, Sequence

__all__ = [
    "MAX_BOUNDARY",
    "MAX_HEADER_LINE",
    "MAX_PART_HEADERS",
    "MultipartError",
    "TooManyParts",
    "boundary_of",
    "decode_http_response",
    "decode_multipart",
    "encode_http_response",
    "encode_multipart",
]

MAX_BOUNDARY = 70  # RFC 2046 5.1.1
MAX_HEADER_LINE = 998  # RFC 5322 2.1.1, without the CRLF
MAX_PART_HEADERS = 32
MAX_PADDING = 998  # transport padding after a delimiter, before its CRLF
_MAX_HEAD = MAX_PART_HEADERS * (MAX_HEADER_LINE + 2) + 2  # a part's header section
_MAX_CONTENT_TYPE = 1000

_DIGITS = b"0123456789"
_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOKEN = _DIGITS + _ALPHA + b"!#$%&'*+-.^_`|~"  # RFC 9110 5.6.2 tchar
_BCHARS = _DIGITS + _ALPHA + b"'()+_,-./:=? "  # RFC 2046 5.1.1 bchars (space not last)
_CTL = bytes(range(9)) + bytes(range(10, 32)) + b"\x7f"  # control characters but tab
_PAD = b" \t"
_EOL = b"\r\n"  # as a set of byte values: a bare CR or LF
_IDENTITY = frozenset({"7bit", "8bit", "binary"})
_NAMED = frozenset({"content-type", "content-length", "content-transfer-encoding",
                    "transfer-encoding"})
_USUAL_ANSWER_HEAD = b"Content-Type: application/xml\r\nContent-Length: "


class MultipartError(ValueError):
    """A body or part we do not take. ``what`` says what was wrong, ``part`` is the part's
    index (from 0) and ``offset`` the byte offset, where known; never the content."""

    def __init__(self, what: str, *, part: int | None = None, offset: int | None = None) -> None:
        where = []
        if part is not None:
            where.append(f"part index {part}")
        if offset is not None:
            where.append(f"byte {offset}")
        super().__init__(f"{what} ({', '.join(where)})" if where else what)
        self.what = what
        self.part = part
        self.offset = offset


class TooManyParts(MultipartError):
    """More parts than the limit (an HTTPS server answers 413, not 400)."""


# --- Content-Type -------------------------------------------------------------------------


def _params(value: str) -> tuple[str, list[tuple[str, str]]]:
    """The media type (lower case) and the parameters (names lower case, values
    unquoted) of a Content-Type value; raises MultipartError when it is malformed."""
    if len(value) > _MAX_CONTENT_TYPE:
        raise MultipartError(f"Content-Type over {_MAX_CONTENT_TYPE} characters")
    media, _, rest = value.partition(";")
    params: list[tuple[str, str]] = []
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t":
            i += 1
        if i == n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise MultipartError("Content-Type: a parameter without '='")
        name = rest[i:eq].strip(" \t").lower()
        if not name or not _is_token(name.encode("latin-1")):
            raise MultipartError("Content-Type: a parameter name that is not a token")
        i = eq + 1
        if i < n and rest[i] == '"':
            chars: list[str] = []
            i += 1
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            if i == n:
                raise MultipartError("Content-Type: an unterminated quoted parameter")
            i += 1
            param = "".join(chars)
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            param = rest[i:end].strip(" \t")
            i = end
        params.append((name, param))
        while i < n and rest[i] in " \t":
            i += 1
        if i < n:
            if rest[i] != ";":
                raise MultipartError("Content-Type: text after a parameter value")
            i += 1
    return media.strip(" \t").lower(), params


def boundary_of(content_type: str, *, media_type: str = "multipart/mixed") -> bytes:
    """The boundary named by a ``Content-Type`` header value of ``media_type``."""
    media, params = _params(content_type)
    if media != media_type:
        raise MultipartError(f"Content-Type is not {media_type}")
    found = [v for k, v in params if k == "boundary"]
    if len(found) != 1:
        raise MultipartError("Content-Type needs exactly one boundary parameter")
    return _check_boundary(found[0])


def _check_boundary(text: str) -> bytes:
    if not 1 <= len(text) <= MAX_BOUNDARY:
        raise MultipartError(f"the boundary must be 1 to {MAX_BOUNDARY} characters, "
                             f"not {len(text)}")
    raw = text.encode("latin-1", "replace")
    if not text.isascii() or raw.translate(None, _BCHARS) or raw.endswith(b" "):
        raise MultipartError("the boundary has characters outside RFC 2046 bchars")
    return raw


def _is_token(raw: bytes) -> bool:
    return bool(raw) and not raw.translate(None, _TOKEN)


def _content_type_value(boundary: bytes) -> str:
    text = boundary.decode("ascii")
    if _is_token(boundary):
        return f"multipart/mixed; boundary={text}"
    return f'multipart/mixed; boundary="{text}"'  # bchars hold no '"' or '\'


# --- encoding -----------------------------------------------------------------------------


def encode_multipart(parts: Sequence[bytes], *, part_type: str = "application/xml",
                     boundary: str | None = None) -> tuple[str, bytes]:
    """``(content_type, body)``: ``parts`` as a multipart/mixed body, each with the header
    ``Content-Type: <part_type>``. A random boundary (``cse-batch-`` + 32 hex digits) is
    picked again while it occurs in a part; a given ``boundary`` that occurs in one is
    refused."""
    if not parts:
        raise MultipartError("a multipart body needs at least one part")
    if boundary is not None:
        chosen = _check_boundary(boundary)
        clash = _clash(parts, b"--" + chosen)
        if clash is not None:
            raise MultipartError("the boundary occurs in a part", part=clash)
    else:
        for _ in range(8):
            chosen = b"cse-batch-" + secrets.token_hex(16).encode("ascii")
            if _clash(parts, b"--" + chosen) is None:
                break
        else:  # 2**-128 per part and try: never, short of a broken random source
            raise MultipartError("no boundary found that occurs in no part")
    head = b"\r\n--" + chosen + b"\r\nContent-Type: " + part_type.encode("ascii") + b"\r\n\r\n"
    pieces: list[bytes] = []
    for part in parts:
        pieces.append(head)
        pieces.append(part)
    pieces[0] = head[2:]  # the first delimiter starts the body: no CRLF before it
    pieces.append(b"\r\n--" + chosen + b"--\r\n")
    return _content_type_value(chosen), b"".join(pieces)


def _clash(parts: Sequence[bytes], dash_boundary: bytes) -> int | None:
    """The index of the first part holding ``dash_boundary``, else None. Enough: a
    delimiter (CRLF ``--boundary``) cannot straddle a part's edge (a part starts after
    CRLF CRLF and is followed by a delimiter's CR, and bchars hold no CR or LF)."""
    for index, part in enumerate(parts):
        if dash_boundary in part:
            return index
    return None


def encode_http_response(status: int, body: bytes, *,
                         content_type: str = "application/xml") -> bytes:
    """One ``application/http`` part: an HTTP/1.1 response with ``status`` and ``body``
    (``Content-Length: 0`` for a bare answer)."""
    if not 200 <= status <= 599:
        raise MultipartError(f"an answer status must be 200 to 599, not {status}")
    reason = http.client.responses.get(status, "")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


# --- decoding -----------------------------------------------------------------------------


def _headers(body: bytes, start: int, end: int, part: int | None) -> dict[str, str]:
    """Header lines in ``body[start:end]`` (CRLF-separated, without the blank line) as
    lower-case names to values; strict: token names, no folding, no control
    characters, no repeated name, at most MAX_PART_HEADERS lines of MAX_HEADER_LINE."""
    fields: dict[str, str] = {}
    pos = start
    while pos < end:
        eol = body.find(b"\r\n", pos, end)
        eol = end if eol < 0 else eol
        if len(fields) >= MAX_PART_HEADERS:
            raise MultipartError(f"more than {MAX_PART_HEADERS} header lines", part=part,
                                 offset=pos)
        if eol - pos > MAX_HEADER_LINE:
            raise MultipartError(f"a header line over {MAX_HEADER_LINE} bytes", part=part,
                                 offset=pos)
        line = body[pos:eol]
        if b"\r" in line or b"\n" in line:
            raise MultipartError("a CR or LF alone in a header line", part=part, offset=pos)
        if line[:1] in (b" ", b"\t"):
            raise MultipartError("a folded or indented header line", part=part, offset=pos)
        name, colon, value = line.partition(b":")
        if not colon or not _is_token(name):
            raise MultipartError("a header line without a token name and colon", part=part,
                                 offset=pos)
        value = value.strip(_PAD)
        if len(value.translate(None, _CTL)) != len(value):
            raise MultipartError("a control character in a header value", part=part,
                                 offset=pos)
        key = name.decode("ascii").lower()
        if key in fields:
            named = key if key in _NAMED else "a header field"  # never echo other names
            raise MultipartError(f"{named} repeated", part=part, offset=pos)
        fields[key] = value.decode("latin-1")
        pos = eol + 2
    return fields


def _split_head(body: bytes, start: int, end: int, part: int | None) -> tuple[int, int]:
    """Where the header section of ``body[start:end]`` ends (before its blank line) and
    where the content starts; no headers at all when it starts with CRLF."""
    if body.startswith(b"\r\n", start, end) or start == end:
        return start, min(start + 2, end)
    blank = body.find(b"\r\n\r\n", start, min(end, start + _MAX_HEAD))
    if blank < 0:
        if end - start >= _MAX_HEAD:
            raise MultipartError(f"part headers longer than {_MAX_HEAD} bytes", part=part,
                                 offset=start)
        raise MultipartError("no blank line after the part headers", part=part,
                             offset=start)
    return blank, blank + 4


def _delimiter_end(body: bytes, at: int, after: int,
                   part: int | None = None) -> tuple[int, bool] | None:
    """For ``--boundary`` found at ``at``, ending at ``after``: ``(where the next line
    starts, is it the close delimiter)``; None when this is content that merely starts
    like one."""
    n = len(body)
    close = body.startswith(b"--", after)
    pos = after + 2 if close else after
    limit = min(n, pos + MAX_PADDING)
    start_pad = pos
    while pos < limit and body[pos] in _PAD:
        pos += 1
    if body.startswith(b"\r\n", pos):
        return pos + 2, close
    if close and pos == n:
        return n, True  # the close delimiter at the very end, without CRLF
    if not close and pos == start_pad and body[pos:pos + 1] not in (b"\r", b"\n", b""):
        return None  # "--boundaryX...": not a delimiter line
    what = "the close delimiter" if close else "a delimiter"
    if pos - start_pad >= MAX_PADDING:
        raise MultipartError(f"{what} has over {MAX_PADDING} bytes of padding",
                             part=part, offset=at)
    raise MultipartError(f"{what} is not followed by CRLF", part=part, offset=at)


def _next_delimiter(body: bytes, dash: bytes, pos: int,
                    part: int | None) -> tuple[int, int, bool] | None:
    """The first delimiter line at or after ``pos``: ``(where the content before it ends,
    where the line after it starts, is it the close delimiter)``, or None. A delimiter
    is ``--boundary`` at the start of a line: after CRLF (its own: not the CRLF ending
    the line at ``pos``), or at the very start of the body. One starting after a bare CR
    or LF is refused; ``--boundary`` elsewhere in a line is content."""
    found = body.find(dash, pos)
    while found >= 0:
        after = found + len(dash)
        crlf = found >= pos + 2 and body[found - 2:found] == b"\r\n"
        if crlf or found == 0 or body[found - 1] in _EOL or found == pos:
            line = _delimiter_end(body, found, after, part)
            if line is not None:
                if crlf:
                    return found - 2, line[0], line[1]
                if found == 0:
                    return 0, line[0], line[1]
                raise MultipartError("a delimiter line not preceded by its own CRLF (line "
                                     "ends must be CRLF)", part=part, offset=found)
        found = body.find(dash, after)
    return None


def decode_multipart(content_type: str, body: bytes, *, max_parts: int,
                     part_types: Collection[str] | None = None,
                     max_part_size: int | None = None) -> list[bytes]:
    """The parts' bytes of a multipart/mixed ``body``, in order. ``part_types`` (lower
    case) lists the media types a part's ``Content-Type`` may have (None: any, or none).
    Raises :class:`TooManyParts` past ``max_parts`` parts and :class:`MultipartError`
    for anything else we do not take."""
    dash = b"--" + boundary_of(content_type)
    # the header section encode_multipart writes, read without parsing it (same result)
    usual = (b"Content-Type: " + next(iter(part_types)).encode("latin-1") + b"\r\n\r\n"
             if part_types is not None and len(part_types) == 1 else None)
    first = _next_delimiter(body, dash, 0, None)  # after the preamble
    if first is None:
        raise MultipartError("no delimiter line for the boundary", offset=0)
    _, start, close = first
    if close:
        raise MultipartError("a multipart body with no parts", offset=first[0])
    parts: list[bytes] = []
    while True:
        index = len(parts)
        if index >= max_parts:
            raise TooManyParts(f"more than {max_parts} parts", part=index, offset=start)
        found = _next_delimiter(body, dash, start, index)
        if found is None:
            raise MultipartError("no close delimiter after the last part", part=index,
                                 offset=start)
        end, next_start, next_close = found
        if usual is not None and body.startswith(usual, start, end):
            content = start + len(usual)
        else:
            head_end, content = _split_head(body, start, end, index)
            if head_end > start or part_types is not None:
                _check_part(_headers(body, start, head_end, index), part_types, index,
                            start)
        if max_part_size is not None and end - content > max_part_size:
            raise MultipartError(f"a part over {max_part_size} bytes", part=index,
                                 offset=content)
        parts.append(body[content:end])
        start, close = next_start, next_close
        if close:
            return parts  # the epilogue, if any, is ignored


def _check_part(fields: dict[str, str], part_types: Collection[str] | None, index: int,
                offset: int) -> None:
    encoding = fields.get("content-transfer-encoding")
    if encoding is not None and encoding.strip().lower() not in _IDENTITY:
        raise MultipartError("a Content-Transfer-Encoding other than 7bit, 8bit or binary",
                             part=index, offset=offset)
    if part_types is not None:
        media = fields.get("content-type", "").split(";", 1)[0].strip(" \t").lower()
        if media not in part_types:
            wanted = " or ".join(sorted(part_types))
            raise MultipartError(f"a part whose Content-Type is not {wanted}", part=index,
                                 offset=offset)


def decode_http_response(part: bytes, *, index: int | None = None) -> tuple[int, bytes]:
    """``(status, body)`` of an ``application/http`` part holding one HTTP/1.x response
    (a final status 200-599; a ``Content-Length``, when given, must match the body)."""
    eol = part.find(b"\r\n", 0, MAX_HEADER_LINE + 2)
    if eol < 0:
        raise MultipartError("no CRLF-ended status line", part=index, offset=0)
    line = part[:eol]
    code = line[9:12]
    if (line[:7] != b"HTTP/1." or line[7:8] not in (b"0", b"1") or line[8:9] != b" "
            or len(code) != 3 or code.translate(None, _DIGITS)
            or (len(line) > 12 and line[12:13] != b" ")
            or len(line.translate(None, _CTL)) != len(line)):
        raise MultipartError("not an HTTP/1.x status line", part=index, offset=0)
    status = int(code)
    if not 200 <= status <= 599:
        raise MultipartError(f"status {status} is not a final answer", part=index, offset=9)
    if part.startswith(_USUAL_ANSWER_HEAD, eol + 2):  # as encode_http_response writes it
        at = eol + 2 + len(_USUAL_ANSWER_HEAD)
        blank = part.find(b"\r\n\r\n", at, at + 22)
        if blank > at and not part[at:blank].translate(None, _DIGITS) and (
                int(part[at:blank]) == len(part) - blank - 4):
            return status, part[blank + 4:]
    head_end, content = _split_head(part, eol + 2, len(part), index)
    fields = _headers(part, eol + 2, head_end, index)
    if "transfer-encoding" in fields:
        raise MultipartError("a Transfer-Encoding in an answer part", part=index,
                             offset=eol + 2)
    body = part[content:]
    length = fields.get("content-length")
    if length is not None and (not length.isdigit() or not length.isascii()
                               or int(length) != len(body)):
        raise MultipartError(f"Content-Length does not match the {len(body)}-byte body",
                             part=index, offset=eol + 2)
    return status, body
