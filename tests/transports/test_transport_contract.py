"""The contract every pull-capable transport keeps (memory, local folder, SFTP).

The HTTPS transport is push-only; its share of the contract is in test_https_client.py.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from transports import Transport, TransportError
from transports.errors import AlreadyExists, InvalidName, NotFound, TransportClosed

if TYPE_CHECKING:
    from conftest import Pair

BLOB = b"<Envelope>" + bytes(range(256)) * 40 + b"</Envelope>"


def test_is_a_transport(pair: Pair) -> None:
    assert isinstance(pair.sender, Transport)
    assert pair.sender.endpoint


def test_send_then_list_and_fetch_gives_identical_bytes(pair: Pair) -> None:
    assert pair.sender.send("msg-1.xml", BLOB) is None
    assert pair.receiver.list() == ["msg-1.xml"]
    assert pair.receiver.fetch("msg-1.xml") == BLOB


def test_names_and_order_preserved(pair: Pair) -> None:
    names = [f"m{i}_A-b.c@d+e=f.xml" for i in range(5)]
    for i, name in enumerate(names):
        pair.sender.send(name, b"x%d" % i)
    assert sorted(pair.receiver.list()) == sorted(names)
    for i, name in enumerate(names):
        assert pair.receiver.fetch(name) == b"x%d" % i


def test_empty_and_large_blobs(pair: Pair) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    pair.sender.send("empty", b"")
    pair.sender.send("big", big)
    assert pair.receiver.fetch("empty") == b""
    assert pair.receiver.fetch("big") == big


def test_acknowledge_removes(pair: Pair) -> None:
    pair.sender.send("a", b"1")
    pair.sender.send("b", b"2")
    pair.receiver.acknowledge("a")
    assert pair.receiver.list() == ["b"]
    with pytest.raises(NotFound) as info:
        pair.receiver.fetch("a")
    assert info.value.code == "NotFound"
    assert info.value.retryable is False


def test_acknowledge_twice_is_harmless(pair: Pair) -> None:
    pair.sender.send("a", b"1")
    pair.receiver.acknowledge("a")
    pair.receiver.acknowledge("a")
    assert pair.receiver.list() == []


def test_fetch_leaves_the_blob_until_acknowledged(pair: Pair) -> None:
    pair.sender.send("a", b"1")
    assert pair.receiver.fetch("a") == b"1"
    assert pair.receiver.list() == ["a"]


def test_duplicate_name_with_different_bytes_is_refused(pair: Pair) -> None:
    pair.sender.send("dup.xml", b"first")
    with pytest.raises(AlreadyExists) as info:
        pair.sender.send("dup.xml", b"second")
    assert info.value.code == "AlreadyExists"
    assert info.value.retryable is False
    assert pair.receiver.fetch("dup.xml") == b"first"
    assert pair.receiver.list() == ["dup.xml"]


def test_resending_identical_bytes_is_idempotent(pair: Pair) -> None:
    pair.sender.send("same.xml", BLOB)
    pair.sender.send("same.xml", BLOB)
    assert pair.receiver.list() == ["same.xml"]
    assert pair.receiver.fetch("same.xml") == BLOB


def test_no_temporary_or_hidden_file_is_listed(pair: Pair) -> None:
    for i in range(3):
        pair.sender.send(f"n{i}", b"data")
    if pair.plant is not None:
        pair.plant(".partial.part", b"half")
        pair.plant(".hidden", b"h")
        assert pair.folder is not None
        (pair.folder / "subdir").mkdir()
    assert sorted(pair.receiver.list()) == ["n0", "n1", "n2"]
    if pair.folder is not None:
        # nothing left behind by the sender either
        leftovers = [p.name for p in pair.folder.iterdir() if p.name.endswith(".part")]
        assert leftovers == [".partial.part"]


def test_a_temporary_file_left_by_a_killed_sender_is_replaced(pair: Pair) -> None:
    """A sender killed mid-upload leaves ``.NAME.part``; the next attempt of the same blob
    replaces it, so nothing the crash left stays in the folder."""
    if pair.plant is None:
        pytest.skip("this backend has no folder")
    pair.plant(".again.xml.part", BLOB[:10])
    pair.sender.send("again.xml", BLOB)
    assert pair.receiver.fetch("again.xml") == BLOB
    assert pair.folder is not None
    assert sorted(p.name for p in pair.folder.iterdir()) == ["again.xml"]


@pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "../x", "x" * 201, "sp ace", "é"])
def test_bad_names_are_refused(pair: Pair, bad: str) -> None:
    with pytest.raises(InvalidName) as info:
        pair.sender.send(bad, b"x")
    assert info.value.retryable is False
    with pytest.raises(InvalidName):
        pair.receiver.fetch(bad)


def test_close_is_idempotent_and_final(pair: Pair) -> None:
    pair.sender.send("a", b"1")
    pair.sender.close()
    pair.sender.close()
    with pytest.raises(TransportClosed) as info:
        pair.sender.send("b", b"2")
    assert isinstance(info.value, TransportError)
    assert info.value.code == "TransportClosed"
    assert pair.receiver.list() == ["a"]


def test_errors_name_the_endpoint_not_the_content(pair: Pair) -> None:
    secret = b"SSN 987654321 TESTPERSON"
    pair.sender.send("s", secret)
    with pytest.raises(TransportError) as info:
        pair.sender.send("s", secret + b"!")
    text = str(info.value)
    assert pair.sender.endpoint in text
    assert "987654321" not in text
    assert "TESTPERSON" not in text


def test_badly_named_files_are_not_listed_but_reported(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    if pair.plant is None:
        return  # memory: nobody can put a badly named blob there
    pair.plant("bad name.xml", b"x")
    pair.plant(".tmp.part", b"x")
    pair.sender.send("good.xml", b"y")
    with caplog.at_level("WARNING", logger="gateway.transports"):
        assert pair.receiver.list() == ["good.xml"]
    warnings = [r for r in caplog.records if "not valid blob names" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 file" in warnings[0].getMessage()
