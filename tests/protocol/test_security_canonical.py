"""The tree-free reading of envelopes, sealed contents and receipts in the exact form this
gateway writes them (gateway.protocol.canonical) against the full path (hardened parse and
schema check), on a corpus of mutated documents: whatever the shortcut recognises, the
full path accepts with the same value, and the public functions give exactly the full
path's outcome (the same value, or the same error class, code, message, place and
details). Our own output is always recognised."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.protocol import canonical
from gateway.protocol.envelope import (
    Header,
    SealedContent,
    _canonical,
    _encode_lines,
    _parse_envelope_full,
    _take_sealed_full,
    build_envelope,
    parse_envelope,
    take_sealed,
)
from gateway.protocol.party import Party
from gateway.protocol.receipts import _PLAIN, _fields, _fields_full, _receipt_xml

MAX = 1 << 24
PARTIES = [Party.parse(p) for p in ("fips:4800000", "fips:0600000", "iso3166:NL",
                                    "iso3166:DE-BY", "iso3166:AU-ABCDEFGH")]
T0 = datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC)


def _outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn())
    except GatewayError as exc:
        return ("error", type(exc), exc.code, exc.message, exc.where, exc.details)


def _headers(rng: random.Random, count: int) -> Iterator[Header]:
    for i in range(count):
        created = T0 + timedelta(seconds=rng.randrange(-10**8, 10**8),
                                 microseconds=rng.choice([0, 0, 1, 999_999, 500_000]))
        yield Header.new(
            from_party=rng.choice(PARTIES), to_party=rng.choice(PARTIES),
            service=rng.choice(["interstate", "international", "receipt", "ping"]),
            action=rng.choice(["InterstateTransaction", "Receipt", "A", "a_1" * 21]),
            created=created,
            conversation_id=rng.choice([None, "c-1", "x" * 128, "a.b:c_d-e"]) if i % 2 else None,
            ref_to_message_id=rng.choice([None, "0b1e7c44-5a6f-4a53-9c35-0a1d2b3c4d5e"]),
        )


def _seeds() -> list[tuple[str, bytes]]:
    """Our own envelopes and sealed contents: many header shapes and base64 lengths
    (every residue of 3 and of 57, whole and partial last lines)."""
    rng = random.Random(18)
    out: list[tuple[str, bytes]] = []
    for i, header in enumerate(_headers(rng, 80)):
        size = i * 7 + 1 if i < 60 else rng.randrange(1, 40_000)
        payload = os.urandom(size)
        out.append(("Envelope", build_envelope(header, payload)))
        out.append(("Sealed", SealedContent(header, payload).to_bytes()))
    return out


SEEDS = _seeds()

# Values that are or are not valid where they land (dates the calendar refuses, hour 24,
# a leap second, other spellings of UTC, markup, entities, whitespace, non-ASCII).
_INSERTS = [b" ", b"\n", b"\r\n", b"\t", b"\r", b"<!-- c -->", b"<?pi x?>", b"&#65;", b"&amp;",
            b"=", b"==", b"A", b"Q", b"+", b"/", b"-", b"_", b"0", b"\x00", b"\xc3\xa9",
            b"<x/>", b"\"", b"'", b"Z", b"+00:00", b".1234567", b"T"]
_DATES = [b"2026-02-29T00:00:00Z", b"2024-02-29T12:00:00Z", b"0000-01-01T00:00:00Z",
          b"2026-12-05T24:00:00Z", b"2026-12-31T23:59:60Z", b"2026-13-01T00:00:00Z",
          b"2026-04-31T00:00:00Z", b"2026-12-05T01:02:03z", b"2026-12-05T01:02:03+00:00",
          b"2026-12-05T01:02:03.1234567Z", b"2026-12-05T01:02:03.Z", b"9999-12-31T23:59:59Z",
          b"0001-01-01T00:00:00Z", b"1900-02-29T00:00:00Z", b"2000-02-29T00:00:00Z",
          b" 2026-12-05T01:02:03Z", b"2026-12-05T01:02:03Z ", b"2026-12-05T01:02:03.000000Z"]


def _mutants(kind: str, data: bytes, rng: random.Random) -> Iterator[bytes]:
    n = len(data)
    for _ in range(6):
        pos = rng.randrange(n)
        yield data[:pos] + rng.choice(_INSERTS) + data[pos:]
        yield data[:pos] + bytes([rng.randrange(256)]) + data[pos + 1:]
        yield data[:pos] + data[pos + rng.randrange(1, 4):]
    body = b"<Payload>\n" if kind == "Envelope" else b"<Document>\n"
    start = data.index(body) + len(body)
    end = data.rindex(b"</")
    end = data.rindex(b"</", 0, end)
    text = data[start:end]
    # base64 text edits: positions near the padding and line ends, other line lengths,
    # CRLF, padding and non-canonical trailing bits
    for pos in {0, 75, 76, 77, len(text) - 1, len(text) - 2, len(text) - 3, len(text) - 4}:
        if 0 <= pos < len(text):
            for insert in (b"\n", b" ", b"=", b"A"):
                yield data[:start + pos] + insert + data[start + pos:]
            yield data[:start + pos] + data[start + pos + 1:]
            yield data[:start + pos] + bytes([text[pos] ^ 1]) + data[start + pos + 1:]
    flat = text.replace(b"\n", b"")
    for width in (64, 72, 75, 80):
        lines = b"\n".join(flat[i:i + width] for i in range(0, len(flat), width)) + b"\n"
        yield data[:start] + lines + data[end:]
    yield data[:start] + text.replace(b"\n", b"\r\n") + data[end:]
    yield data[:start] + text[:-1] + data[end:]
    yield data[:start] + text + b"\n" + data[end:]
    yield data[:start - 1] + data[start:]
    yield data[:start] + data[end:]
    yield data[:start] + b"\n" + flat + b"\n" + data[end:]
    if b"=" in text:  # non-canonical padding bits, and padding left out
        pad = start + text.index(b"=")
        alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        for step in (1, 2, 3):
            other = alphabet[(alphabet.index(data[pad - 1]) + step) % 64]
            yield data[:pad - 1] + bytes([other]) + data[pad:]
        yield data[:start] + text.replace(b"=", b"") + data[end:]
    # header values and prolog
    created = data.index(b"<Created>") + len(b"<Created>")
    created_end = data.index(b"</Created>")
    for date in _DATES:
        yield data[:created] + date + data[created_end:]
    for old, new in [(b"<MessageId>", b"<MessageId> "), (b'"1.0"', b"'1.0'"),
                     (b'encoding="UTF-8"', b'encoding="utf-8"'), (b'version="1"', b'version="2"'),
                     (b'version="1">', b'version="1" >'), (b"<Header>", b"<Header >"),
                     (b'<?xml version="1.0" encoding="UTF-8"?>\n', b""),
                     (b"</Header>", b"</Header>\n"), (b"fips:", b"FIPS:"),
                     (b"iso3166:", b"iso3166: "), (b"<Service>", b"<Service>x"),
                     (b"</Action>", b"x</Action>"), (b"<ConversationId>", b"<ConversationId>x"),
                     (b"</ConversationId>", b"\xc3\xa9</ConversationId>"),
                     (b'xmlns="urn:cse-gateway:envelope:1"',
                      b'xmlns="urn:cse-gateway:envelope:1" xmlns:x="urn:x"'),
                     (b"-", b"-".upper()), (b"</MessageId>", b"A</MessageId>"),
                     (b"\n<", b"\n\xef\xbb\xbf<")]:
        if old in data:
            yield data.replace(old, new, 1)
    yield b"\xef\xbb\xbf" + data
    yield data + b"\n"
    yield data[:-1]
    upper = data.index(b"<MessageId>") + len(b"<MessageId>")
    yield data[:upper] + data[upper:upper + 36].upper() + data[upper + 36:]


def _corpus() -> list[tuple[str, bytes]]:
    rng = random.Random(1805)
    out = list(SEEDS)
    for kind, data in SEEDS[::3]:
        out.extend((kind, mutant) for mutant in _mutants(kind, data, rng))
    return out


def _full(kind: str, data: bytes) -> Callable[[], Any]:
    if kind == "Envelope":
        digest = hashlib.sha256(data).hexdigest()
        return lambda: _parse_envelope_full(data, digest, max_bytes=MAX, source="envelope")
    return lambda: _take_sealed_full([data], max_bytes=MAX, source="Sealed")


def _public(kind: str, data: bytes) -> Callable[[], Any]:
    if kind == "Envelope":
        return lambda: parse_envelope(data, max_bytes=MAX)
    return lambda: take_sealed([data], max_bytes=MAX)


def test_our_envelopes_and_sealed_contents_are_recognised() -> None:
    for kind, data in SEEDS:
        fast = _canonical(data, kind, MAX)
        full = _full(kind, data)()
        assert fast is not None
        if kind == "Envelope":
            assert fast == (full.header, full.payload_der)
        else:
            assert fast == full


def test_mutated_envelopes_give_the_full_paths_outcome() -> None:
    recognised = accepted_long_way = refused = 0
    for kind, data in _corpus():
        fast = _canonical(data, kind, MAX)
        full = _outcome(_full(kind, data))
        if fast is not None:
            recognised += 1
            assert full[0] == "ok", (kind, data[:300])
            value = full[1]
            assert fast == ((value.header, value.payload_der) if kind == "Envelope" else value)
        elif full[0] == "ok":
            accepted_long_way += 1
        else:
            refused += 1
        assert _outcome(_public(kind, data)) == full
    # the corpus exercises all three cases (recognised; valid but only the long way;
    # refused), so this test can fail
    assert recognised > 200
    assert accepted_long_way > 100
    assert refused > 300


@settings(max_examples=400)
@given(st.sampled_from(SEEDS[::2]), st.integers(0, 10**9), st.binary(min_size=0, max_size=3),
       st.integers(0, 3))
def test_random_edits_give_the_full_paths_outcome(
        seed: tuple[str, bytes], where: int, insert: bytes, drop: int) -> None:
    kind, data = seed
    pos = where % len(data)
    mutant = data[:pos] + insert + data[pos + drop:]
    fast = _canonical(mutant, kind, MAX)
    full = _outcome(_full(kind, mutant))
    if fast is not None:
        assert full[0] == "ok"
    assert _outcome(_public(kind, mutant)) == full


def test_size_limit_and_other_buffers_take_the_full_path() -> None:
    kind, data = SEEDS[0]
    assert _canonical(data, kind, len(data) - 1) is None
    assert _outcome(lambda: parse_envelope(data, max_bytes=len(data) - 1))[2] == "TooLarge"
    assert _canonical(bytearray(data), kind, MAX) is None  # type: ignore[arg-type]
    assert _canonical(data, "Sealed", MAX) is None
    big = os.urandom(canonical.MAX_CANONICAL_BYTES)
    header = next(_headers(random.Random(1), 1))
    envelope = build_envelope(header, big)
    assert _canonical(envelope, "Envelope", 1 << 30) is None
    assert parse_envelope(envelope, max_bytes=1 << 30).payload_der == big


@settings(max_examples=300)
@given(st.binary(max_size=700))
def test_base64_lines_are_the_standard_librarys(data: bytes) -> None:
    assert _encode_lines(data) == base64.encodebytes(data)


# --- receipts -----------------------------------------------------------------------------

_TEXTS = ["", "x", " padded ", "the signature does not verify (SignatureInvalid)", "a" * 1000,
          "a" * 1001, "it's 1/2 + (3-4); ok:", "markup <here>", "amp & here", "quote \" here",
          "tab\there", "cr\rhere", "é"]


def _receipt_seeds() -> list[tuple[bool, bytes]]:
    """(written without escaping, the receipt), as ``_receipt_xml`` writes them."""
    rng = random.Random(7)
    out = []
    for i in range(60):
        errors = [(rng.choice(["SchemaInvalid", "SignatureInvalid", "X", "A" * 64]),
                   rng.choice(_TEXTS)) for _ in range(rng.choice([0, 0, 1, 2, 3]))]
        plain = all(_PLAIN.fullmatch(text) for _code, text in errors)
        out.append((plain, _receipt_xml(
            receipt_id=str(rng.choice([
                "0b1e7c44-5a6f-4a53-9c35-0a1d2b3c4d5e", "ffffffff-ffff-4fff-8fff-ffffffffffff"])),
            ref=rng.choice([None, "1b1e7c44-5a6f-4a53-9c35-0a1d2b3c4d5e"]),
            from_party=rng.choice(PARTIES), to_party=rng.choice([None, *PARTIES]),
            received=T0 + timedelta(seconds=rng.randrange(10**8), microseconds=i % 3),
            status="Rejected" if errors else "Delivered", errors=errors,
            digest=hashlib.sha256(bytes([i])).hexdigest())))
    return out


RECEIPTS = [data for _plain, data in _receipt_seeds()]


def _receipt_mutants(data: bytes, rng: random.Random) -> Iterator[bytes]:
    n = len(data)
    for _ in range(8):
        pos = rng.randrange(n)
        yield data[:pos] + rng.choice(_INSERTS) + data[pos:]
        yield data[:pos] + bytes([rng.randrange(256)]) + data[pos + 1:]
        yield data[:pos] + data[pos + rng.randrange(1, 4):]
    received = data.index(b"<Received>") + len(b"<Received>")
    received_end = data.index(b"</Received>")
    for date in _DATES:
        yield data[:received] + date + data[received_end:]
    for old, new in [(b"<Text>", b"<Text>  "), (b"</Text>", b" </Text>"),
                     (b"<Text>", b"<Text>a"), (b"<Code>", b"<Code> "),
                     (b"Delivered", b"delivered"), (b'"sha-256"', b'"sha-1"'),
                     (b"<Status>", b"<Status>\n"), (b"'1.0'", b'"1.0"'),
                     (b"</Receipt>", b"</Receipt>\n"),
                     (b"</Error>", b"</Error><Error><Code>Z</Code></Error>"),
                     (b"<EnvelopeDigest", b"<Error><Code>Z</Code></Error><EnvelopeDigest"),
                     (b"<EnvelopeDigest",
                      b"<Error><Code>Z</Code><Text></Text></Error><EnvelopeDigest")]:
        if old in data:
            yield data.replace(old, new, 1)
    digest = data.index(b'"sha-256">') + len(b'"sha-256">')
    yield data[:digest] + data[digest:digest + 64].upper() + data[digest + 64:]


def test_mutated_receipts_give_the_full_paths_outcome() -> None:
    rng = random.Random(2026)
    corpus = list(RECEIPTS)
    for data in RECEIPTS:
        corpus.extend(_receipt_mutants(data, rng))
    recognised = accepted_long_way = refused = 0
    for data in corpus:
        fast = canonical.receipt_values(data)
        full = _outcome(lambda data=data: _fields_full(data))  # type: ignore[misc]
        if fast is not None:
            recognised += 1
            assert full == ("ok", fast), data
        elif full[0] == "ok":
            accepted_long_way += 1
        else:
            refused += 1
        assert _outcome(lambda data=data: _fields(data)) == full  # type: ignore[misc]
    assert recognised > 200
    assert accepted_long_way > 50
    assert refused > 300


def test_our_plain_receipts_are_recognised() -> None:
    plain = [data for plain, data in _receipt_seeds() if plain]
    assert len(plain) > 30
    for data in plain:
        assert canonical.receipt_values(data) == _fields_full(data)


@pytest.mark.parametrize("kind", ["Envelope", "Sealed"])
def test_empty_base64_takes_the_full_path(kind: str) -> None:
    header = next(_headers(random.Random(3), 1))
    data = (SealedContent(header, b"").to_bytes() if kind == "Sealed"
            else build_envelope(header, b""))
    assert _canonical(data, kind, MAX) is None
    assert _outcome(_public(kind, data)) == _outcome(_full(kind, data))
