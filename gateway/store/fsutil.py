"""Durable file operations: the one helper every part of the gateway uses to write files.

A durable write is: write a temporary file in the target's directory, ``fsync`` it,
``os.replace`` it over the target (atomic on POSIX within one file system), then ``fsync``
the directory so the rename itself survives a power cut. A reader therefore sees either the
old file or the complete new one, never a partial file.

Temporary files are named ``.NAME.~<host>-<pid>-<random>.tmp``: hidden and ``*.tmp``, so the
gateway's own outbox/inbox scanners (and well-behaved state systems) ignore them, and the
name says which process on which machine wrote it. A process killed between writing a
temporary file and recording it leaves a complete copy behind; :func:`remove_orphaned_temps`
removes every such file whose writer is gone and that no record names (the daemon runs it
when it starts, after crash recovery), so nothing the gateway wrote outlives a crash
unless a record names it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Collection
from pathlib import Path

from gateway.errors import FileUnreadable, SpoolError, TooLarge

__all__ = [
    "commit_temp",
    "durable_move",
    "durable_write",
    "fsync_dir",
    "is_temporary_name",
    "orphaned_temps",
    "read_file",
    "remove_orphaned_temps",
    "temp_name",
    "write_temp",
]

_TEMP_SUFFIXES = (".tmp", ".part")


#: Which machine wrote a temporary file: a short digest of the host name (not the name).
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_OURS = re.compile(r"^\..+\.~([0-9a-f]{8})-([0-9]+)-[0-9a-f]{12}\.tmp$")
# Written by releases before the host and pid were in the name: always orphans once the
# daemon has recovered (their writer is the stopped process being recovered from).
_LEGACY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def temp_name(target: Path) -> Path:
    """A hidden, unique ``*.tmp`` path beside ``target``, naming this host and process."""
    return target.with_name(
        f".{target.name}.~{HOST_TAG}-{os.getpid()}-{secrets.token_hex(6)}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def orphaned_temps(directory: Path, keep: Collection[str] = ()) -> list[Path]:
    """The gateway's temporary files in ``directory`` whose writing process is gone (on
    this host; other hosts' files are left to them) and whose names are not in ``keep``
    (the temporary files records still name). A file of a live process is never listed:
    it may be about to be recorded."""
    found = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SpoolError(f"cannot list folder ({exc.strerror})", where=str(directory)) from None
    for name in names:
        if name in keep:
            continue
        ours = _OURS.match(name)
        if ours:
            if ours.group(1) == HOST_TAG and not _alive(int(ours.group(2))):
                found.append(Path(directory) / name)
        elif _LEGACY.match(name):
            found.append(Path(directory) / name)
    return found


def remove_orphaned_temps(directory: Path, keep: Collection[str] = ()) -> list[str]:
    """Remove :func:`orphaned_temps`; returns the names removed."""
    removed = []
    for path in orphaned_temps(directory, keep):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise SpoolError(f"cannot remove a temporary file ({exc.strerror})",
                             where=str(path)) from None
        removed.append(path.name)
    if removed:
        fsync_dir(Path(directory))
    return removed


def is_temporary_name(name: str) -> bool:
    """True for names scanners must ignore: hidden files, ``*.tmp`` and ``*.part``."""
    return name.startswith(".") or name.endswith(_TEMP_SUFFIXES)


def fsync_dir(directory: Path) -> None:
    """Make a rename/creation/removal inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(target: Path, data: bytes, *, mode: int = 0o640, exclusive: bool = False) -> None:
    """Write ``data`` to ``target`` atomically and durably (temp + fsync + replace + fsync dir).

    ``exclusive=True`` refuses to replace an existing ``target`` (uses ``os.link``, which
    fails if the name exists, instead of ``os.replace``), so two writers racing for the same
    name cannot both succeed. Raises :class:`SpoolError` on any OS error, naming the path.
    """
    target = Path(target)
    tmp = write_temp(target, data, mode=mode)
    try:
        if exclusive:
            os.link(tmp, target)
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
        fsync_dir(target.parent)
    except FileExistsError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise SpoolError("file already exists", where=str(target)) from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise SpoolError(f"cannot write file ({exc.strerror})", where=str(target)) from None


def write_temp(target: Path, data: bytes, *, mode: int = 0o640) -> Path:
    """First half of a two-phase durable write: the data in a fsynced hidden temporary file
    beside ``target``; returns its path. :func:`commit_temp` renames it into place."""
    target = Path(target)
    tmp = temp_name(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise SpoolError(f"cannot write file ({exc.strerror})", where=str(target)) from None
    return tmp


def commit_temp(tmp: Path, target: Path) -> None:
    """Second half: rename ``tmp`` over ``target`` and fsync the directory."""
    try:
        os.replace(tmp, target)
        fsync_dir(Path(target).parent)
    except OSError as exc:
        raise SpoolError(f"cannot rename file into place ({exc.strerror})",
                         where=str(target)) from None


def durable_move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (same file system) and fsync both directories.

    Refuses to overwrite an existing ``target``.
    """
    source, target = Path(source), Path(target)
    try:
        os.link(source, target)
        os.unlink(source)
    except FileExistsError:
        raise SpoolError("file already exists", where=str(target)) from None
    except OSError as exc:
        raise SpoolError(f"cannot move file ({exc.strerror})", where=str(source)) from None
    fsync_dir(target.parent)
    if source.parent.resolve() != target.parent.resolve():
        fsync_dir(source.parent)


def read_file(path: Path, *, max_bytes: int | None = None) -> bytes:
    """Read a whole file: :class:`FileUnreadable` instead of OSError, :class:`TooLarge` over
    ``max_bytes``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if max_bytes is None:
                return handle.read()
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise FileUnreadable(f"cannot read file ({exc.strerror})", where=str(path)) from None
    if len(data) > max_bytes:
        raise TooLarge(f"file is larger than the limit of {max_bytes} bytes",
                       where=str(path), details={"limit": max_bytes})
    return data
