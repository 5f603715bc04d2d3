"""A local (or mounted) folder as a transport: ``file:///path``.

``send`` writes ``.NAME.part`` (created exclusively), fsyncs it, then links it to
``NAME`` with ``os.link``, which fails when ``NAME`` exists, so nothing is ever overwritten
and a reader never sees a partial file; the temporary name is removed and the directory
fsynced. The temporary name is fixed per blob, so one that a killed sender left behind is
replaced by the next attempt of the same blob instead of staying forever.
``list`` shows complete blobs only (never dot-files), oldest first.
``acknowledge`` removes the file, or moves it to ``done/`` with ``move_to_done=True``.
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from transports.base import check_name, visible_names
from transports.errors import (
    AlreadyExists,
    ConnectFailed,
    NotFound,
    PermissionDenied,
    RemoteFailed,
    RemoteFull,
    TooLarge,
    TransportClosed,
    TransportError,
)

__all__ = ["LocalFolderTransport"]

log = logging.getLogger("gateway.transports.local")

_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV}


class LocalFolderTransport:
    """A ``Transport`` over one directory on this machine."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        move_to_done: bool = False,
        create: bool = False,
        max_fetch: int = 256 * 1024 * 1024,
    ) -> None:
        self.path = Path(path)
        self.max_fetch = int(max_fetch)
        self.endpoint = f"file://{self.path}"
        self.move_to_done = move_to_done
        self._closed = False
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._error(exc, "creating the folder") from exc

    # -- helpers --------------------------------------------------------------------------

    def _error(self, exc: OSError, doing: str) -> TransportError:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        message = f"{doing} failed: {reason}"
        if exc.errno in _FULL:
            return RemoteFull(message, endpoint=self.endpoint)
        if exc.errno in _DENIED:
            return PermissionDenied(message, endpoint=self.endpoint)
        return RemoteFailed(message, endpoint=self.endpoint)

    def _folder(self) -> Path:
        if self._closed:
            raise TransportClosed("transport is closed", endpoint=self.endpoint)
        if not self.path.is_dir():
            # A folder that is not there may be an unmounted share: try again later.
            raise ConnectFailed("the folder does not exist", endpoint=self.endpoint)
        return self.path

    def _fsync_dir(self, folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- Transport ------------------------------------------------------------------------

    def send(self, name: str, data: bytes) -> bytes | None:
        check_name(name, endpoint=self.endpoint)
        folder = self._folder()
        final = folder / name
        temp = folder / f".{name}.part"
        try:
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            except FileExistsError:
                # left by a sender stopped mid-write (one sender per blob at a time)
                log.info("%s: replacing a stale temporary file for %s", self.endpoint, name)
                temp.unlink(missing_ok=True)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                self._link_into_place(temp, final)
            except FileExistsError:
                if self._same_content(final, data):
                    log.info("%s: %s already there with identical bytes", self.endpoint, name)
                    return None
                raise AlreadyExists(
                    f"a different blob named {name} is already there", endpoint=self.endpoint
                ) from None
            self._fsync_dir(folder)
        except OSError as exc:
            raise self._error(exc, f"writing {name}") from exc
        finally:
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                log.warning("%s: could not remove temporary file %s", self.endpoint, temp.name)
        return None

    def _link_into_place(self, temp: Path, final: Path) -> None:
        """``os.link`` (atomic, fails if ``final`` exists); on file systems without hard
        links, check then rename, as OpenSSH's sftp-server does (racy only against another
        writer of the same name at the same instant)."""
        try:
            os.link(temp, final)
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, "exists", str(final)) from None
            os.rename(temp, final)

    def _same_content(self, path: Path, data: bytes) -> bool:
        try:
            if path.stat().st_size != len(data):
                return False
            return path.read_bytes() == data
        except OSError:
            return False

    def list(self) -> builtins.list[str]:
        folder = self._folder()
        entries: builtins.list[tuple[float, str]] = []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        entries.append((info.st_mtime, entry.name))
        except OSError as exc:
            raise self._error(exc, "listing the folder") from exc
        shown = visible_names((n for _, n in entries), endpoint=self.endpoint, log=log)
        return [name for _, name in sorted(entries) if name in shown]

    def fetch(self, name: str) -> bytes:
        check_name(name, endpoint=self.endpoint)
        path = self._folder() / name
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > self.max_fetch:
                    raise TooLarge(
                        f"{name} is {size} bytes; at most {self.max_fetch} fetched",
                        endpoint=self.endpoint,
                    )
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"no blob named {name}", endpoint=self.endpoint) from None
        except OSError as exc:
            raise self._error(exc, f"reading {name}") from exc

    def acknowledge(self, name: str) -> None:
        check_name(name, endpoint=self.endpoint)
        folder = self._folder()
        path = folder / name
        try:
            if self.move_to_done:
                done = folder / "done"
                done.mkdir(exist_ok=True)
                target = done / name
                if target.exists():
                    target = done / f"{name}.{secrets.token_hex(4)}"
                os.rename(path, target)
            else:
                path.unlink()
            self._fsync_dir(folder)
        except FileNotFoundError:
            return  # already acknowledged
        except OSError as exc:
            raise self._error(exc, f"acknowledging {name}") from exc

    def close(self) -> None:
        self._closed = True
