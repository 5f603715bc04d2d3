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


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_temp_names_say_which_host_and_process_wrote_them(tmp_path: Path) -> None:
    import os

    from gateway.store.fsutil import HOST_TAG

    name = temp_name(tmp_path / "a.xml").name
    assert name.startswith(f".a.xml.~{HOST_TAG}-{os.getpid()}-")
    assert name.endswith(".tmp")
    assert is_temporary_name(name)


def test_orphaned_temps_are_those_of_dead_writers_no_record_names(tmp_path: Path) -> None:
    from gateway.store.fsutil import HOST_TAG, orphaned_temps, remove_orphaned_temps

    dead = _dead_pid()
    orphan = tmp_path / f".doc1.xml.~{HOST_TAG}-{dead}-{'a' * 12}.tmp"
    named = tmp_path / f".doc2.xml.~{HOST_TAG}-{dead}-{'b' * 12}.tmp"
    legacy = tmp_path / f".doc3.xml.{'c' * 12}.tmp"  # written before names carried the pid
    other_host = tmp_path / f".doc4.xml.~00000000-{dead}-{'d' * 12}.tmp"
    mine = temp_name(tmp_path / "doc5.xml")  # a live writer: may be about to record it
    state_system = tmp_path / ".doc6.xml.tmp"  # not ours: a state system's own temp file
    for path in (orphan, named, legacy, other_host, mine, state_system):
        path.write_bytes(b"<doc/>")
    if HOST_TAG == "00000000":  # pragma: no cover - a host whose tag is all zeros
        other_host.unlink()
    assert sorted(p.name for p in orphaned_temps(tmp_path, keep={named.name})) == \
        sorted([orphan.name, legacy.name])
    assert sorted(remove_orphaned_temps(tmp_path, keep={named.name})) == \
        sorted([orphan.name, legacy.name])
    assert not orphan.exists()
    assert not legacy.exists()
    assert named.exists()
    assert mine.exists()
    assert state_system.exists()
    assert orphaned_temps(tmp_path / "missing") == []
