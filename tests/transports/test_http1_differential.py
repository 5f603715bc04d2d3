"""transports.http1 against the standard library's request parsing, on thousands of
generated and mutated request heads.

The reference is what the HTTPS server did before issue 18's sixth pass:
``BaseHTTPRequestHandler.parse_request`` (request line, ``http.client.parse_headers``
and its email parser, ``Connection``, ``Expect``) behind ``handle_one_request``'s
414 check, then the server's own POST framing rules (``_post_framing`` below, copied
from that version, with one deliberate change since: a body that is exactly
``Transfer-Encoding: chunked`` is read, where that version answered 411). For every
input:

- both accept: the same method, path, version, ``Expect: 100-continue``, body length and
  header fields (values compared without trailing blanks, which the standard library
  kept) and the same keep-alive decision, except where a ``Connection`` field lists
  several tokens or comes twice (documented: ``close`` anywhere closes);
- the reference refuses: we refuse too, with the same status unless we found one of our
  stricter reasons first;
- only we refuse: our reason is one of ``http1.STRICTER`` and an independent check on
  the raw bytes below (``_stricter_reasons``) confirms that reason applies.
"""

from __future__ import annotations

import io
import itertools
import random
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports import http1
from transports.http1 import HeadError, body_length, read_head


@dataclass(frozen=True)
class Accepted:
    method: str
    path: str
    version: str
    keep_alive: bool
    expect_continue: bool
    length: int | None  # the body length for a POST, None for other methods
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Refused:
    status: int  # 0: closed without an answer
    reason: str = ""


class _Stdlib(BaseHTTPRequestHandler):
    """The standard library's parse, on bytes in memory, recording what it answers."""

    protocol_version = "HTTP/1.1"

    def __init__(self, data: bytes) -> None:  # no socket, no handle() loop
        self.rfile = io.BytesIO(data)
        self.wfile = io.BytesIO()
        self.statuses: list[int] = []
        self.continued = False

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        self.statuses.append(int(code))

    def handle_expect_100(self) -> bool:
        self.continued = True
        return True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _post_framing(headers: Any) -> int | Refused | None:
    """https_server.do_POST's framing checks before the request-head reader, on the email
    Message; plus, since the server reads chunked bodies (RFC 9112 7.1: what Apache CXF,
    and so Domibus, sends by default), a ``Transfer-Encoding`` that is exactly
    ``chunked`` without a ``Content-Length``: a chunked body (None)."""
    codings = ",".join(headers.get_all("Transfer-Encoding") or [])
    if [c.strip(" \t").lower() for c in codings.split(",")] == ["chunked"] \
            and headers.get("Content-Length") is None:
        return None
    if headers.get("Transfer-Encoding"):
        return Refused(411)
    text = headers.get("Content-Length")
    if text is None:
        return Refused(411)
    try:
        length = int(text)
        if length < 0:
            raise ValueError(text)
    except ValueError:
        return Refused(400)
    return length


def reference(data: bytes) -> Accepted | Refused:
    h = _Stdlib(data)
    h.raw_requestline = h.rfile.readline(65537)
    if len(h.raw_requestline) > 65536:
        return Refused(414)
    if not h.raw_requestline:
        return Refused(0)
    if not h.parse_request():
        return Refused(h.statuses[0] if h.statuses else 0)
    if h.command not in {"GET", "POST"}:
        return Refused(501)
    length: int | None = None
    if h.command == "POST":
        framing = _post_framing(h.headers)
        if isinstance(framing, Refused):
            return framing
        length = framing
    fields = tuple((name, value.rstrip(" \t")) for name, value in h.headers.items())
    return Accepted(h.command, h.path, h.request_version, not h.close_connection,
                    h.continued, length, fields)


def ours(data: bytes) -> Accepted | Refused:
    rfile = io.BytesIO(data)
    first = rfile.readline(65537)
    if len(first) > 65536:
        return Refused(414)
    if not first:
        return Refused(0)
    try:
        head = read_head(first, rfile.readline)
        if head.method not in {"GET", "POST"}:
            return Refused(501)
        length = body_length(head) if head.method == "POST" else None
    except HeadError as exc:
        return Refused(exc.status, exc.reason)
    return Accepted(head.method, head.path, head.version, head.keep_alive,
                    head.expect_continue, length, head.fields)


# --- an independent account of where we are meant to be stricter ------------------------

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _head_lines(data: bytes) -> tuple[list[bytes], bool]:
    """The lines of the head (line ends removed) and whether a blank line ended it."""
    lines: list[bytes] = []
    for raw in data.split(b"\n")[:-1] if b"\n" in data else []:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if lines and not line:
            return lines, True
        lines.append(line)
    return lines, False


def _stricter_reasons(data: bytes) -> set[str]:
    lines, complete = _head_lines(data)
    reasons: set[str] = set()
    if not complete:
        reasons.add("incomplete")
    if not lines:
        return reasons
    request, fields = lines[0], lines[1:]
    if any(b"\r" in line for line in lines):
        reasons.add("bare-cr")
    if re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]+\.[0-9]+",
                    request) is None:
        reasons.add("request-line")
    if re.search(rb" HTTP/0+\.[0-9]+$", request):
        reasons.add("version")
    lengths: list[bytes] = []
    for line in fields:
        if line[:1] in {b" ", b"\t"}:
            reasons.add("obs-fold")
            continue
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            reasons.add("field-name")
            continue
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value.strip(b" \t")):
            reasons.add("field-value")
        if name.lower() == b"content-length":
            lengths.append(value.strip(b" \t"))
        if name.lower() == b"transfer-encoding":
            reasons.add("transfer-encoding")
    if len(lengths) > 1 or any(not v.isdigit() for v in lengths):
        reasons.add("content-length")
    return reasons


def _connection_is_a_list(data: bytes) -> bool:
    values = [v for n, _, v in (line.partition(b":") for line in _head_lines(data)[0][1:])
              if n.strip().lower() == b"connection"]
    return len(values) > 1 or any(b"," in v for v in values)


def _expect_had_blanks(data: bytes) -> bool:
    return re.search(rb"(?im)^expect:[ \t]*100-continue[ \t]+\r?$", data) is not None


def check(data: bytes) -> None:
    theirs, mine = reference(data), ours(data)
    if isinstance(theirs, Refused):
        assert isinstance(mine, Refused), f"we accept what the stdlib refuses: {data!r}"
        if mine.status != theirs.status:
            assert mine.reason in http1.STRICTER, (data, theirs, mine)
            assert mine.reason in _stricter_reasons(data), (data, theirs, mine)
        return
    if isinstance(mine, Refused):
        assert mine.reason in http1.STRICTER, (data, theirs, mine)
        assert mine.reason in _stricter_reasons(data), (data, theirs, mine)
        return
    assert (mine.method, mine.path, mine.version, mine.length, mine.fields) == (
        theirs.method, theirs.path, theirs.version, theirs.length, theirs.fields), data
    if mine.keep_alive != theirs.keep_alive:
        assert _connection_is_a_list(data), (data, theirs, mine)
    if mine.expect_continue != theirs.expect_continue:
        assert _expect_had_blanks(data), (data, theirs, mine)


# --- inputs ------------------------------------------------------------------------------

BODY = b"<Envelope/>"

SEEDS: list[bytes] = [
    # http.client (our own client)
    b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nAccept-Encoding: identity\r\n"
    b"Content-Length: 11\r\nContent-Type: application/octet-stream\r\n\r\n" + BODY,
    # curl
    b"POST /v1/messages HTTP/1.1\r\nHost: gw.example:8443\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\nContent-Type: application/octet-stream\r\nContent-Length: 11\r\n"
    b"Expect: 100-continue\r\n\r\n" + BODY,
    # an AS4 access point (Apache HttpClient style)
    b"POST /as4 HTTP/1.1\r\nContent-Type: multipart/related; boundary=\"MIMEBoundary_1\";"
    b" type=\"application/soap+xml\"; start=\"<root.message@cxf.apache.org>\"\r\n"
    b"SOAPAction: \"\"\r\nMIME-Version: 1.0\r\nContent-Length: 11\r\n"
    b"Host: ap.example:443\r\nConnection: Keep-Alive\r\n"
    b"User-Agent: Apache-HttpClient/4.5.13 (Java/11.0.20)\r\nAccept-Encoding: gzip,deflate"
    b"\r\n\r\n" + BODY,
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"POST /v1/messages HTTP/1.0\r\nContent-Length: 11\r\n\r\n" + BODY,
    b"POST /v1/messages HTTP/1.1\nHost: x\nContent-Length: 11\n\n" + BODY,  # bare LF
    b"POST //v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    b"GET /healthz?x=1 HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
]

# what the mutations put in, replace or remove: the bytes RFC 9112 cares about
PIECES: list[bytes] = [
    b" ", b"  ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n ", b"\r\n\t", b":", b"\x00", b"\x01",
    b"\x0b", b"\x0c", b"\x1c", b"\x7f", b"\x80", b"\x85", b"\xa0", b"\xff", b",", b"/",
    b"//", b"0", b"1", b"9", b"+", b"-", b"_", b"(", b"\"", b"@", b"a", b"Z", b"HTTP/",
    b".", b"\xc3\xa9",
]

EXTRA_FIELDS: list[bytes] = [
    b"Content-Length: 11", b"Content-Length: 5", b"Content-Length:11", b"Content-Length: 11 ",
    b"Content-Length: +11", b"Content-Length: -1", b"Content-Length: 1_1",
    b"Content-Length: 11, 11", b"Content-Length: ", b"Content-Length: 0011",
    b"Content-Length: 99999999999999999999", b"content-length: 11", b"Content-Length : 11",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding:", b"Transfer-Encoding: identity",
    b"Transfer-Encoding: gzip, chunked", b"TRANSFER-ENCODING: chunked",
    b"Connection: close", b"Connection: keep-alive", b"Connection: Close",
    b"Connection: close, TE", b"Connection: TE, close", b"Connection: keep-alive, TE",
    b"Connection: upgrade", b"Connection:", b"Expect: 100-continue", b"Expect: 100-Continue",
    b"Expect: 100-continue ", b"Expect: something", b"Host: a", b"Host: b",
    b" folded", b"\tfolded", b"X-Note: a\rb", b"X-Note: a\x00b", b"X-Note: caf\xe9",
    b"X Bad: 1", b"(x): 1", b": empty name", b"no colon here", b"From someone",
    b"X-Note: a:b:c", b"X-Many:   spaced   out   ", b"X-Del: \x7f",
]

REQUEST_LINES: list[bytes] = [
    b"POST /v1/messages HTTP/1.1", b"POST /v1/messages HTTP/1.0", b"GET /healthz HTTP/1.1",
    b"GET /healthz", b"GET", b"POST /v1/messages HTTP/2.0", b"POST /v1/messages HTTP/0.9",
    b"POST /v1/messages HTTP/1.2", b"POST /v1/messages HTTP/01.01", b"POST /v1/messages HTTP/1",
    b"POST /v1/messages HTTP/1.1.1", b"POST /v1/messages http/1.1", b"POST /v1/messages XYZ",
    b"POST  /v1/messages HTTP/1.1", b"POST\t/v1/messages HTTP/1.1",
    b"POST /v1/messages HTTP/1.1 ", b" POST /v1/messages HTTP/1.1", b"PUT /v1/messages HTTP/1.1",
    b"HEAD /healthz HTTP/1.1", b"post /v1/messages HTTP/1.1", b"POST /a b HTTP/1.1",
    b"POST /v1/messages\xa0HTTP/1.1", b"POST /v1/m\xe9ssages HTTP/1.1",
    b"POST /v1/messages HTTP/10.0", b"POST /v1/messages HTTP/1.12345678901",
    b"POST ///v1/messages HTTP/1.1", b"POST * HTTP/1.1", b"G@T /healthz HTTP/1.1",
    b"POST /v1/messages HTTP/\xb9.1", b"", b"  ", b"\r",
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    head_end = data.find(b"\r\n\r\n")
    limit = (head_end + 4) if head_end >= 0 else len(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(max(limit, 1))
        piece = rng.choice(PIECES)
        choice = rng.random()
        if choice < 0.4:
            data = data[:at] + piece + data[at:]
        elif choice < 0.8:
            data = data[:at] + piece + data[at + 1:]
        else:
            data = data[:at] + data[at + rng.randint(1, 4):]
    return data


VALID_LINES = [*REQUEST_LINES[:3], b"POST /as4 HTTP/1.1", b"POST ///v1/messages HTTP/1.1",
               b"POST /v1/messages HTTP/1.2", b"GET /healthz HTTP/1.0"]
_TCHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VCHARS = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))


def _random_field(rng: random.Random) -> bytes:
    """A well-formed field with a random token name and a value of visible characters,
    obs-text and inner blanks, with random blanks around it."""
    name = bytes(rng.choice(_TCHARS) for _ in range(rng.randint(1, 12)))
    words = [bytes(rng.choice(_VCHARS) for _ in range(rng.randint(1, 8)))
             for _ in range(rng.randint(0, 3))]
    blanks = [b"", b" ", b"\t", b"  "]
    return (name + b":" + rng.choice(blanks) + rng.choice([b" ", b"\t"]).join(words)
            + rng.choice(blanks))


def _compose(rng: random.Random) -> bytes:
    request = rng.choice(VALID_LINES if rng.random() < 0.6 else REQUEST_LINES)
    fields = [b"Host: x", *rng.sample(EXTRA_FIELDS, rng.randint(0, 3))]
    fields += [_random_field(rng) for _ in range(rng.randint(0, 4))]
    rng.shuffle(fields)
    if rng.random() < 0.7:
        fields.insert(rng.randint(0, len(fields)), b"Content-Length: 11")
    eol = b"\r\n" if rng.random() < 0.9 else b"\n"
    ending = eol if rng.random() < 0.95 else b""
    return eol.join([request, *fields]) + eol + ending + BODY


def generated(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cases: list[bytes] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            cases.append(_compose(rng))
        elif kind == 1:
            cases.append(_mutate(rng, rng.choice(SEEDS)))
        elif kind == 2:
            cases.append(_mutate(rng, _compose(rng)))
        else:  # well-formed: the values must come out the same
            fields = [_random_field(rng) for _ in range(rng.randint(0, 12))]
            fields.insert(rng.randint(0, len(fields)), b"Content-Length: 11")
            cases.append(b"\r\n".join([rng.choice(VALID_LINES), *fields]) + b"\r\n\r\n"
                         + BODY)
    return cases


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", SEEDS)
def test_ordinary_requests_parse_as_the_standard_library_parses_them(data: bytes) -> None:
    check(data)
    assert isinstance(ours(data), Accepted) or data.startswith(b"POST /v1/messages HTTP/1.1"
                                                                b"\r\nTransfer-Encoding")


@pytest.mark.parametrize("seed", range(8))
def test_generated_and_mutated_requests_agree_or_are_stricter(seed: int) -> None:
    for data in generated(1500, seed):
        check(data)


def test_the_generator_reaches_every_kind_of_outcome() -> None:
    """The inputs are not all accepted or all refused: each documented difference and
    each shared refusal occurs (else the differential test proves little)."""
    outcomes: set[str] = set()
    for data in generated(1500, 0) + generated(1500, 1):
        theirs, mine = reference(data), ours(data)
        if isinstance(mine, Refused):
            outcomes.add(mine.reason or str(mine.status))
            if isinstance(theirs, Accepted):
                outcomes.add("stricter")
            else:
                outcomes.add(f"both {theirs.status}")
        else:
            outcomes.add("accepted")
    assert {"accepted", "stricter", "both 400", "both 411", "both 505", "both 501"} <= outcomes
    assert outcomes >= http1.STRICTER


_ATOMS = st.sampled_from(
    [*PIECES, b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"close",
     b"keep-alive", b"100-continue", b"chunked", b"GET", b"POST", b"/healthz", b"HTTP/1.1",
     b"HTTP/1.0", b"11", b": "])


@settings(max_examples=400)
@given(request=st.sampled_from([*VALID_LINES, *REQUEST_LINES]),
       fields=st.lists(st.lists(_ATOMS, max_size=8).map(b"".join), max_size=6),
       tail=st.binary(max_size=8))
def test_arbitrary_heads_agree_or_are_stricter(request: bytes, fields: list[bytes],
                                               tail: bytes) -> None:
    check(b"\r\n".join([request, *fields]) + b"\r\n\r\n" + tail)


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"POST /v1/messages HTTP/1.1\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
         400, "obs-fold"),
        (b"POST /v1/messages HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\n", 400, "bare-cr"),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
         400, "content-length"),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\n",
         400, "content-length"),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400, "content-length"),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length : 5\r\n\r\n", 400, "field-name"),
        (b"POST /v1/messages HTTP/1.1\r\nbroken line\r\nContent-Length: 5\r\n\r\n",
         400, "field-name"),
        (b"POST /v1/messages HTTP/1.1\r\nX: a\x00b\r\nContent-Length: 5\r\n\r\n",
         400, "field-value"),
        (b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\n",
         411, "transfer-encoding"),
        (b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5"
         b"\r\n\r\n", 400, "transfer-encoding"),
        (b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
         411, "transfer-encoding"),
        (b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n", 411, "transfer-encoding"),
        (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n", 411, "no-content-length"),
        (b"GET /healthz\r\n\r\n", 400, "request-line"),
        (b"GET /healthz HTTP/0.9\r\n\r\n", 505, "version"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505, "version"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 0, "incomplete"),
        (b"\r\n", 0, "empty"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X: 1\r\n" * 100 + b"\r\n", 431, "too-many-headers"),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 65536 + b"\r\n\r\n", 431, "line-too-long"),
    ],
)
def test_refusals(data: bytes, status: int, reason: str) -> None:
    assert ours(data) == Refused(status, reason)
    check(data)


def test_the_limits_are_the_standard_librarys() -> None:
    at_limit = b"GET /healthz HTTP/1.1\r\n" + b"X: 1\r\n" * 99 + b"\r\n"
    assert isinstance(ours(at_limit), Accepted)
    assert isinstance(reference(at_limit), Accepted)
    longest = b"GET /healthz HTTP/1.1\r\nX: " + b"a" * (65536 - 5) + b"\r\n\r\n"
    assert isinstance(ours(longest), Accepted)
    assert isinstance(reference(longest), Accepted)
    for data in (at_limit, longest, b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\n\r\n"):
        check(data)
    assert ours(b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\n\r\n") == Refused(414)


def test_connection_tokens_and_expect() -> None:
    def accepted(data: bytes) -> Accepted:
        result = ours(data)
        assert isinstance(result, Accepted)
        return result

    get = b"GET /healthz HTTP/1.1\r\n"
    assert accepted(get + b"\r\n").keep_alive
    assert not accepted(get + b"Connection: close\r\n\r\n").keep_alive
    assert not accepted(get + b"Connection: TE, Close\r\n\r\n").keep_alive
    assert not accepted(get + b"Connection: TE\r\nConnection: close\r\n\r\n").keep_alive
    assert not accepted(b"GET /healthz HTTP/1.0\r\n\r\n").keep_alive
    assert accepted(b"GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive
    assert accepted(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: 100-Continue\r\n\r\n"
                    ).expect_continue
    assert not accepted(b"POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n"
                        b"\r\n").expect_continue
    head = read_head(get, io.BytesIO(b"X-A: 1\r\nx-a: 2\r\n\r\n").readline)
    assert head.get("X-a") == "1"
    assert head.get("missing", "none") == "none"


# --- chunked bodies ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8),
       upper=st.booleans(), extension=st.sampled_from([b"", b";a", b";a=b;c=\"d e\""]),
       trailers=st.lists(st.sampled_from([b"T: 1", b"Expires: never", b"X-Y:"]),
                         max_size=3))
def test_a_chunked_body_reads_back_as_sent(body: bytes, cuts: list[int], upper: bool,
                                           extension: bytes, trailers: list[bytes]) -> None:
    """However the body is cut into chunks (sizes in either case of hex, extensions,
    trailer fields), what is read is the body; every byte of the message is consumed."""
    bounds = sorted({0, len(body), *(c for c in cuts if c <= len(body))})
    wire = b""
    for start, end in itertools.pairwise(bounds):
        size = f"{end - start:X}" if upper else f"{end - start:x}"
        wire += size.encode() + extension + b"\r\n" + body[start:end] + b"\r\n"
    wire += b"0" + extension + b"\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    rfile = io.BytesIO(wire + b"NEXT")
    assert http1.read_chunked(rfile.readline, rfile.read, len(body)) == body
    assert rfile.read() == b"NEXT"  # the next request starts right after
    if body:
        rfile = io.BytesIO(wire)
        with pytest.raises(HeadError) as refused:
            http1.read_chunked(rfile.readline, rfile.read, len(body) - 1)
        assert (refused.value.status, refused.value.reason) == (413, "too-large")
    for end in range(0, len(wire), max(1, len(wire) // 7)):  # cut short anywhere
        rfile = io.BytesIO(wire[:end])
        with pytest.raises(HeadError) as ended:
            http1.read_chunked(rfile.readline, rfile.read, len(body))
        assert (ended.value.status, ended.value.reason) == (0, "incomplete")
