"""Parties, the envelope and Sealed documents, and the ``gateway seal`` / ``gateway open``
commands (exit codes, nothing written on rejection)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cli import main
from gateway.errors import EnvelopeInvalid, TooLarge
from gateway.protocol.envelope import (
    Header,
    SealedContent,
    b64_lines,
    build_envelope,
    format_time,
    parse_envelope,
    parse_sealed,
    parse_time,
)
from gateway.protocol.party import Party, PartyInvalid
from tests.support.security import Node, pair

# --- parties ------------------------------------------------------------------------------


def test_party_parse_and_helpers() -> None:
    p = Party.parse("fips:0601300")
    assert (str(p), p.is_fips, p.state, p.county, p.dirname) == (
        "fips:0601300", True, "06", "06013", "fips_0601300")
    nl = Party.parse("iso3166:NL")
    assert (nl.country, nl.is_fips, nl.uri) == ("NL", False, "urn:cse-gateway:party:iso3166:NL")
    assert Party.parse("iso3166:DE-BY").country == "DE"
    with pytest.raises(PartyInvalid):
        _ = nl.state


@pytest.mark.parametrize("text", ["", "fips", "fips:060000", "fips:06000000", "iso3166:nl",
                                  "iso3166:NLD", "oid:1.2.3", "fips:O600000", "fips:"])
def test_party_parse_refuses(text: str) -> None:
    with pytest.raises(PartyInvalid):
        Party.parse(text)


# --- envelope -----------------------------------------------------------------------------

A, B = Party.parse("fips:0600000"), Party.parse("iso3166:NL")


def test_header_normalises_values() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    h = Header("0F8FAD5B-D9CB-469F-A165-70867728950E", A, B, "interstate", "X", t)
    assert h.message_id == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert h.created == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    with pytest.raises(EnvelopeInvalid):
        Header.new(from_party=A, to_party=B, service="fax", action="X", created=t)
    with pytest.raises(EnvelopeInvalid):
        Header.new(from_party=A, to_party=B, service="ping", action="X",
                   created=datetime(2026, 1, 1))


def test_time_format_round_trip() -> None:
    t = datetime(1, 1, 1, 0, 0, 0, 5, tzinfo=UTC)
    assert format_time(t) == "0001-01-01T00:00:00.000005Z"
    assert parse_time(format_time(t)) == t
    with pytest.raises(EnvelopeInvalid):
        parse_time("2026-01-01T00:00:00")


def test_envelope_parse_refuses_bad_input() -> None:
    h = Header.new(from_party=A, to_party=B, service="ping", action="Ping",
                   created=datetime.now(UTC))
    good = build_envelope(h, b"\x30\x00")
    assert parse_envelope(good).header == h
    for bad in (b"", b"<x/>", b"<!DOCTYPE x><x/>",
                good.replace(b"<Payload>", b"<Payload>!!"),
                good.replace(b"<From>", b"<From>x")):
        with pytest.raises(EnvelopeInvalid):
            parse_envelope(bad)
    with pytest.raises(TooLarge):
        parse_envelope(good, max_bytes=100)


def test_payload_whitespace_is_ignored() -> None:
    h = Header.new(from_party=A, to_party=B, service="ping", action="Ping",
                   created=datetime.now(UTC))
    der = bytes(range(200))
    text = base64.b64encode(der)
    spaced = b"\r\n  ".join(text[i:i + 10] for i in range(0, len(text), 10))
    data = build_envelope(h, der).replace(base64.encodebytes(der), spaced)
    assert parse_envelope(data).payload_der == der


@given(st.lists(st.binary(max_size=200_000), max_size=4))
def test_b64_lines_matches_the_standard_library(chunks: list[bytes]) -> None:
    joined = b"".join(chunks)
    assert b"".join(b64_lines(chunks)) == base64.encodebytes(joined)


@given(document=st.binary(max_size=3000),
       created=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                            timezones=st.just(UTC)))
def test_sealed_round_trip_and_exact_length(document: bytes, created: datetime) -> None:
    h = Header.new(from_party=A, to_party=B, service="international", action="Doc",
                   created=created)
    content = SealedContent(h, document)
    data = content.to_bytes()
    assert len(data) == content.length
    assert parse_sealed(data) == (h, document)
    assert parse_envelope(build_envelope(h, b"\x30\x00")).header == h


# --- the commands -------------------------------------------------------------------------


@pytest.fixture
def nodes(tmp_path: Path) -> tuple[Node, Node]:
    return pair(tmp_path)


def _seal(a: Node, b: Node, doc: Path, out: Path, *extra: str) -> int:
    return main(["seal", "--from", str(a.party), "--to", str(b.party),
                 "--sign-key", str(a.path / "sign.key"), "--sign-cert", str(a.path / "sign.crt"),
                 "--recipient-cert", str(b.path / "encrypt.crt"), *extra, str(doc),
                 "-o", str(out)])


def _open(b: Node, trust: Path, env: Path, out: Path, *extra: str) -> int:
    return main(["open", "--decrypt-key", str(b.path / "encrypt.key"),
                 "--decrypt-cert", str(b.path / "encrypt.crt"), "--trust", str(trust),
                 *extra, str(env), "-o", str(out)])


def test_cli_seal_open_round_trip(nodes: tuple[Node, Node], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    doc, env, out = tmp_path / "doc.xml", tmp_path / "env.xml", tmp_path / "out.xml"
    doc.write_bytes(b"<Note xmlns='urn:x'>TESTPERSON</Note>\n")
    assert _seal(a, b, doc, env, "--service", "interstate", "--no-validate",
                 "--conversation-id", "conv-1") == 0
    header = parse_envelope(env.read_bytes()).header
    assert (header.action, header.conversation_id) == ("Note", "conv-1")
    assert _open(b, a.path / "ca.crt", env, out, "--sender-cert", str(a.path / "sign.crt")) == 0
    assert out.read_bytes() == doc.read_bytes()
    assert header.message_id in capsys.readouterr().err


def test_cli_open_rejection_writes_nothing(nodes: tuple[Node, Node], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    doc, env, out = tmp_path / "doc.xml", tmp_path / "env.xml", tmp_path / "out.xml"
    doc.write_bytes(b"<Note xmlns='urn:x'>TESTPERSON</Note>\n")
    assert _seal(a, b, doc, env, "--service", "interstate", "--no-validate") == 0
    capsys.readouterr()
    # signer not the given --sender-cert
    assert _open(b, a.path / "ca.crt", env, out, "--sender-cert", str(b.path / "sign.crt")) == 1
    assert "rejected: SignerNotRegistered" in capsys.readouterr().err
    # untrusted: the signer's CA is not in --trust
    assert _open(b, b.path / "ca.crt", env, out) == 1
    assert "rejected: CertificateUntrusted" in capsys.readouterr().err
    # tampered
    data = env.read_bytes()
    env.write_bytes(data.replace(b"<Action>Note<", b"<Action>Nota<"))
    assert _open(b, a.path / "ca.crt", env, out) == 1
    assert "rejected: HeaderMismatch" in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_cli_usage_errors_exit_2(nodes: tuple[Node, Node], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    doc, env, out = tmp_path / "doc.xml", tmp_path / "env.xml", tmp_path / "out.xml"
    doc.write_bytes(b"<Note xmlns='urn:x'/>")
    assert _seal(a, b, doc, env, "--service", "interstate", "--no-validate") == 0
    (b.path / "encrypt.key").chmod(0o644)
    assert _open(b, a.path / "ca.crt", env, out) == 2
    assert "KeyFileInsecure" in capsys.readouterr().err
    (b.path / "encrypt.key").chmod(0o600)
    assert _open(b, tmp_path / "missing.pem", env, out) == 2
    with pytest.raises(SystemExit) as info:
        main(["open", str(env)])
    assert info.value.code == 2
    assert not out.exists()


def test_cli_seal_validates_unless_told_not_to(nodes: tuple[Node, Node], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    doc, env = tmp_path / "doc.xml", tmp_path / "env.xml"
    doc.write_bytes(b"<Unknown xmlns='urn:not-a-schema'/>")
    assert _seal(a, b, doc, env) == 1
    assert not env.exists()
    capsys.readouterr()
