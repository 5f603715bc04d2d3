"""Malformed input never escapes as anything but a GatewayError: byte flips, truncations and
insertions in the payload (anyone can encrypt to a node) and in the signed layer (any
partner can sign anything)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.protocol import cms
from gateway.protocol.envelope import Header, SealedContent, build_envelope, parse_envelope
from gateway.protocol.receipts import verify_receipt
from gateway.protocol.seal import open_envelope, seal
from tests.support.security import NOW, Node, make_node, register

EDITS = st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "insert"]), st.floats(0, 1),
              st.integers(1, 255)),
    min_size=1, max_size=4)


def _edit(data: bytes, edits: list[tuple[str, float, int]]) -> bytes:
    for kind, where, value in edits:
        at = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "flip" and data:
            data = data[:at] + bytes([data[at] ^ value]) + data[at + 1:]
        elif kind == "cut":
            data = data[:at] + data[at + value:]
        else:
            data = data[:at] + bytes([value]) * (value % 7 + 1) + data[at:]
    return data


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Node, Node, bytes, bytes]:
    base: Path = tmp_path_factory.mktemp("fuzz")
    a, b = make_node(base, "fips:0600000"), make_node(base, "iso3166:NL")
    register(a, b)
    register(b, a)
    h = Header.new(from_party=a.party, to_party=b.party, service="interstate",
                   action="X", created=NOW)
    envelope = seal(b"<x>TESTPERSON</x>", h, sender=a.identity,
                    recipient_cert=b.identity.encryption_cert)
    signed = cms.sign(SealedContent(h, b"<x/>"), key=a.identity.signing_key,
                      cert=a.identity.signing_cert, signing_time=NOW).to_bytes()
    return a, b, envelope, signed


@given(edits=EDITS)
def test_payload_edits_are_refused_cleanly(nodes: tuple[Node, Node, bytes, bytes],
                                           edits: list[tuple[str, float, int]]) -> None:
    _, b, envelope, _ = nodes
    parsed = parse_envelope(envelope)
    changed = _edit(parsed.payload_der, edits) or b"\x00"
    data = build_envelope(parsed.header, changed)
    try:
        opened = open_envelope(data, node=b.identity, trust=b.store.trust(),
                               directory=b.store, now=NOW)
    except GatewayError:
        return
    # only edits that cancel out (or touch bytes outside what GCM authenticates and the
    # decoder reads) may open, and then to the same document
    assert opened.document == b"<x>TESTPERSON</x>"


@given(edits=EDITS)
def test_signed_layer_edits_are_refused_cleanly(nodes: tuple[Node, Node, bytes, bytes],
                                                edits: list[tuple[str, float, int]]) -> None:
    _, _, _, signed = nodes
    changed = _edit(signed, edits)
    try:
        cms.verify(changed)
    except GatewayError:
        return
    # an edit that kept the signature valid (e.g. inside an unsigned certificate field)
    # must still yield the original content
    assert cms.verify(changed).content == cms.verify(signed).content


@given(edits=EDITS)
def test_envelope_edits_are_refused_cleanly(nodes: tuple[Node, Node, bytes, bytes],
                                            edits: list[tuple[str, float, int]]) -> None:
    _, b, envelope, _ = nodes
    try:
        opened = open_envelope(_edit(envelope, edits), node=b.identity,
                               trust=b.store.trust(), directory=b.store,
                               now=NOW + timedelta(seconds=1))
    except GatewayError:
        return
    assert opened.document == b"<x>TESTPERSON</x>"  # e.g. whitespace inside the base64


@given(edits=EDITS)
def test_receipt_edits_are_refused_cleanly(nodes: tuple[Node, Node, bytes, bytes],
                                           edits: list[tuple[str, float, int]]) -> None:
    a, b, _, signed = nodes
    h = Header.new(from_party=b.party, to_party=a.party, service="receipt",
                   action="Receipt", created=NOW)
    data = build_envelope(h, _edit(signed, edits) or b"\x00")
    with pytest.raises(GatewayError):  # not a Receipt even when the signature survives
        verify_receipt(data, expected_signer=b.party, sent_envelope_digest="0" * 64,
                       trust=a.store.trust(), directory=a.store, now=NOW)
