"""A strict HTTP/1.1 request-head reader for the HTTPS server (no email parser).

``read_head(request_line, readline)`` takes the request line already read (the server
checks its length first: over ``MAX_LINE`` is 414) and reads the header lines with
``readline(limit)``; it returns a :class:`RequestHead` or raises :class:`HeadError`
carrying the status to answer (0: close without answering, as for an empty line).

It keeps what the standard library's ``BaseHTTPRequestHandler.parse_request`` +
``http.client.parse_headers`` accept and answer, with the same limits (a line longer
than 65,536 bytes or more than 100 lines including the blank one: 431; a request line
that is too long: 414, checked by the caller; HTTP/2 and later: 505; unknown methods are
the caller's 501) and the same results (method, path with a leading ``//`` collapsed,
version, keep-alive, ``Expect: 100-continue``), and refuses what RFC 9112 says a server
must or should refuse where the standard library lets it through. Each refusal has a
stable ``reason``; ``STRICTER`` names those where the standard library would have
accepted the request (tests/transports/test_http1_differential.py proves the rest):

- ``bare-cr``: a CR not followed by LF anywhere in the head (the email parser splits
  lines at a lone CR: a second header hidden inside a value);
- ``obs-fold``: a header line starting with a space or tab (line folding, RFC 9112 5.2),
  also before the first header;
- ``field-name``: a header name that is empty, not a token (RFC 9110 5.6.2: no spaces,
  no ``(),/:;<=>?@[\\]{}"``, nothing outside ASCII), or a line with no colon (the email
  parser would end the headers there silently and drop the rest);
- ``field-value``: a control character other than tab in a value (NUL, DEL, ...);
- ``content-length``: more than one ``Content-Length`` (even equal ones), or one that is
  not plain digits (``+5``, ``5_0``, ``5 5``, ``-1``: ``int()`` took the first two); for
  every method, not just POST;
- ``request-line``: anything but ``METHOD SP target SP HTTP/x.y`` with single spaces and
  printable ASCII (tabs, other whitespace, control or non-ASCII bytes, a missing part,
  an HTTP/0.9 two-word ``GET /``);
- ``version``: ``HTTP/0.x`` (the standard library would answer without a status line);
- ``incomplete``: the connection ended inside the head (no blank line): closed without
  an answer, where the standard library answered what it had;
- ``transfer-encoding`` (``body_length``, for a request whose body we read): a
  ``Transfer-Encoding`` other than exactly ``chunked`` answers 411, also an empty one
  (which the server's earlier ``if headers.get(...)`` let through to a
  ``Content-Length`` beside it), and ``chunked`` beside a ``Content-Length`` answers 400
  (RFC 9112 6.3: a likely request-smuggling attempt).

A chunked body (``Transfer-Encoding: chunked``, which Apache CXF, and so Domibus, sends
by default for any request over 4 KB) is read by :func:`read_chunked`: strict chunk
lines (hex size, optional extensions, CRLF), the body's limit checked before each chunk
is read, trailer fields checked like header fields and dropped.

Values are latin-1 text with surrounding spaces and tabs removed (RFC 9110 5.5; the
standard library keeps trailing ones). ``Connection`` is read as a token list over all
its fields: ``close`` anywhere closes (the standard library only looked for a first
field that is exactly ``close``), ``keep-alive`` keeps an HTTP/1.0 connection open.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["MAX_HEADER_LINES", "MAX_LINE", "STRICTER", "HeadError", "RequestHead",
           "body_length", "read_chunked", "read_head"]

MAX_LINE = 65536  # http.client._MAXLINE and the request-line limit of http.server
MAX_HEADER_LINES = 100  # http.client._MAXHEADERS: header lines plus the blank line

STRICTER = frozenset({"bare-cr", "obs-fold", "field-name", "field-value", "content-length",
                      "request-line", "version", "incomplete", "transfer-encoding"})

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110 5.6.2
_FIELD_NAME = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(rb"(%s) ([\x21-\x7e]+) (HTTP/[\x21-\x7e]*)" % _TOKEN)
_SIMPLE_REQUEST_LINE = re.compile(rb"(%s) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\r?\n" % _TOKEN)
# name ":" OWS value OWS EOL, where a value is anything but control characters (tab is
# allowed); the value's trailing blanks are stripped after the match
_FIELD_LINE = re.compile(rb"(%s):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n" % _TOKEN)
_OWS = b" \t"
# chunk-size [ chunk-ext ] CRLF (RFC 9112 7.1.1): at most 16 hex digits (no sign, no
# spaces, no 0x); an extension is anything but control characters after a ";"
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(;[^\x00-\x08\x0a-\x1f\x7f]*)?\r\n")


class HeadError(Exception):
    """A request head we do not take: answer ``status`` (0: just close) and say why."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class RequestHead(NamedTuple):
    """One parsed request head. ``fields`` keeps every header in order, names as sent;
    ``get`` finds the first by name, ignoring case."""

    method: str
    path: str
    version: str
    keep_alive: bool
    expect_continue: bool
    content_length: int | None
    transfer_encoding: str | None
    fields: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for field_name, value in self.fields:
            if field_name.lower() == wanted:
                return value
        return default


def _strip_eol(line: bytes) -> bytes | None:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return None


def _request_line(raw: bytes) -> tuple[str, str, str, tuple[int, int]]:
    match = _SIMPLE_REQUEST_LINE.fullmatch(raw)  # the usual case, in one step
    if match is not None:
        method, path = match.group(1).decode("ascii"), match.group(2).decode("ascii")
        number = (int(match.group(3)), int(match.group(4)))
        version = f"HTTP/{number[0]}.{number[1]}"
    else:
        method, path, version, number = _unusual_request_line(raw)
    if number >= (2, 0):
        raise HeadError(505, "version", "only HTTP/1.x is served here")
    if number < (1, 0):
        raise HeadError(505, "version", "HTTP/0.x is not served here")
    if path.startswith("//"):  # as http.server (gh-87389): no scheme-relative paths
        path = "/" + path.lstrip("/")
    return method, path, version, number


def _unusual_request_line(raw: bytes) -> tuple[str, str, str, tuple[int, int]]:
    line = _strip_eol(raw)
    if line is None:
        raise HeadError(0, "incomplete", "the connection ended inside the request line")
    if not line.strip():
        raise HeadError(0, "empty", "an empty request line")  # as http.server: just close
    if b"\r" in line:
        raise HeadError(400, "bare-cr", "a CR without LF in the request line")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise HeadError(400, "request-line", "not METHOD SP target SP HTTP/x.y in ASCII")
    version = match.group(3).decode("ascii")
    numbers = version[5:].split(".")
    if len(numbers) != 2 or not all(n.isdigit() and len(n) <= 10 for n in numbers):
        raise HeadError(400, "version", "a malformed HTTP version")
    return (match.group(1).decode("ascii"), match.group(2).decode("ascii"), version,
            (int(numbers[0]), int(numbers[1])))


def _read_lines(readline: Callable[[int], bytes]) -> list[bytes]:
    """The header lines before the blank one, with http.client's limits."""
    lines: list[bytes] = []
    while True:
        line = readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeadError(431, "line-too-long", f"a header line over {MAX_LINE} bytes")
        if len(lines) >= MAX_HEADER_LINES:  # this line would be the 101st
            raise HeadError(431, "too-many-headers",
                            f"more than {MAX_HEADER_LINES} header lines")
        if line in {b"\r\n", b"\n"}:
            return lines
        if not line:
            raise HeadError(0, "incomplete", "the connection ended inside the headers")
        lines.append(line)


def _refuse_field(raw: bytes) -> HeadError:
    """Why a header line that is not ``token ":" OWS value OWS`` is refused."""
    line = _strip_eol(raw)
    if line is None:
        return HeadError(0, "incomplete", "the connection ended inside a header line")
    if b"\r" in line:
        return HeadError(400, "bare-cr", "a CR without LF in a header line")
    if line[:1] in {b" ", b"\t"}:
        return HeadError(400, "obs-fold", "a folded or indented header line")
    name, colon, _ = line.partition(b":")
    if not colon or _FIELD_NAME.fullmatch(name) is None:
        return HeadError(400, "field-name", "a header line without a token name and colon")
    return HeadError(400, "field-value", "a control character in a header value")


def read_head(request_line: bytes, readline: Callable[[int], bytes]) -> RequestHead:
    """Parse ``request_line`` and read and parse the header lines after it."""
    method, path, version, number = _request_line(request_line)
    fields: list[tuple[str, str]] = []
    content_length: int | None = None
    transfer_encoding: str | None = None
    connection: list[str] = []
    expect: str | None = None
    for raw in _read_lines(readline):
        match = _FIELD_LINE.fullmatch(raw)
        if match is None:
            raise _refuse_field(raw)
        name = match.group(1).decode("ascii")
        value = match.group(2).rstrip(_OWS).decode("latin-1")
        fields.append((name, value))
        lowered = name.lower()
        if lowered == "content-length":
            if content_length is not None:
                raise HeadError(400, "content-length", "more than one Content-Length")
            if not value.isdigit() or not value.isascii():
                raise HeadError(400, "content-length", "a Content-Length that is not digits")
            content_length = int(value)
        elif lowered == "transfer-encoding":
            transfer_encoding = value if transfer_encoding is None else (
                f"{transfer_encoding}, {value}")
        elif lowered == "connection":
            connection.extend(t.strip(" \t").lower() for t in value.split(","))
        elif lowered == "expect" and expect is None:
            expect = value.lower()
    if "close" in connection:
        keep_alive = False
    elif "keep-alive" in connection:
        keep_alive = True
    else:
        keep_alive = number >= (1, 1)
    return RequestHead(
        method, path, version, keep_alive,
        # string comparison, as http.server does it ("HTTP/1.01" does not qualify)
        expect == "100-continue" and version >= "HTTP/1.1",
        content_length, transfer_encoding, tuple(fields),
    )


def body_length(head: RequestHead) -> int | None:
    """The length of the body of a request whose body will be read: its
    ``Content-Length``, or None for a chunked body (``Transfer-Encoding: chunked``, read
    with :func:`read_chunked`). Refused: both at once (400: RFC 9112 6.3 calls that a
    likely smuggling attempt), any other or an empty transfer coding, or neither (411)."""
    coding = head.transfer_encoding
    if coding is not None:
        if [c.strip(" \t").lower() for c in coding.split(",")] != ["chunked"]:
            raise HeadError(411, "transfer-encoding",
                            "Content-Length or Transfer-Encoding: chunked required")
        if head.content_length is not None:
            raise HeadError(400, "transfer-encoding",
                            "both Transfer-Encoding and Content-Length")
        return None
    if head.content_length is None:
        raise HeadError(411, "no-content-length", "Content-Length required")
    return head.content_length


def read_chunked(readline: Callable[[int], bytes], read: Callable[[int], bytes],
                 limit: int) -> bytes:
    """A chunked request body (RFC 9112 7.1), read to its end: the chunks' data joined;
    chunk extensions and trailer fields are checked and dropped. Raises
    :class:`HeadError`: 413 as soon as the chunks announce more than ``limit`` bytes in
    all (before reading that chunk), 400 for a malformed chunk line, chunk end or trailer
    field (strict: hex digits, optional ``;`` extensions, CRLF), 431 for more than
    :data:`MAX_HEADER_LINES` trailer lines, 0 when the connection ended inside."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = readline(MAX_LINE + 1)
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            if len(line) > MAX_LINE:
                raise HeadError(400, "chunk", f"a chunk line over {MAX_LINE} bytes")
            if not line.endswith(b"\n"):
                raise HeadError(0, "incomplete", "the connection ended inside a chunked body")
            raise HeadError(400, "chunk", "a chunk line that is not hex digits, extensions "
                            "and CRLF")
        size = int(match.group(1), 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise HeadError(413, "too-large", f"a chunked body over {limit} bytes")
        data = read(size)
        if len(data) < size:
            raise HeadError(0, "incomplete", "the connection ended inside a chunk")
        end = read(2)
        if end != b"\r\n":
            if len(end) < 2:
                raise HeadError(0, "incomplete", "the connection ended inside a chunk")
            raise HeadError(400, "chunk", "chunk data longer than its size")
        parts.append(data)
    for raw in _read_lines(readline):  # the trailer section, with the headers' limits
        if _FIELD_LINE.fullmatch(raw) is None:
            error = _refuse_field(raw)
            raise HeadError(error.status, error.reason, f"trailer: {error.detail}")
    return b"".join(parts)
