"""Durable file helpers: atomic replace, exclusive create, temp names, size limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import FileUnreadable, SpoolError, TooLarge
from gateway.store.fsutil import (
    durable_move,
    durable_write,
    is_temporary_name,
    read_file,
    temp_name,
)


def test_durable_write_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "a.xml"
    durable_write(target, b"one")
    durable_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.xml"]  # no temp files left


def test_exclusive_refuses_existing(tmp_path: Path) -> None:
    target = tmp_path / "a.xml"
    durable_write(target, b"one", exclusive=True)
    with pytest.raises(SpoolError, match="already exists"):
        durable_write(target, b"two", exclusive=True)
    assert target.read_bytes() == b"one"
    assert len(list(tmp_path.iterdir())) == 1


def test_write_into_missing_dir_is_a_spool_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError) as info:
        durable_write(tmp_path / "nope" / "a.xml", b"x")
    assert "nope" in str(info.value)


def test_move(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    src = tmp_path / "a"
    src.write_bytes(b"x")
    durable_move(src, tmp_path / "d" / "a")
    assert not src.exists()
    assert (tmp_path / "d" / "a").read_bytes() == b"x"
    src.write_bytes(b"y")
    with pytest.raises(SpoolError):
        durable_move(src, tmp_path / "d" / "a")
    assert src.exists()


def test_names_and_read(tmp_path: Path) -> None:
    assert is_temporary_name(temp_name(tmp_path / "x.xml").name)
    for name in (".hidden", "a.tmp", "a.part"):
        assert is_temporary_name(name)
    assert not is_temporary_name("a.xml")
    f = tmp_path / "f"
    f.write_bytes(b"12345")
    assert read_file(f) == b"12345"
    with pytest.raises(TooLarge):
        read_file(f, max_bytes=4)
    with pytest.raises(FileUnreadable):
        read_file(tmp_path / "absent")
