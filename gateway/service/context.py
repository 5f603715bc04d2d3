"""The node an interface works on: its configuration, spool and audit trail.

:class:`NodeContext` is opened once by an interface (a CLI command, the console) and
passed to the service functions. The spool is shared by the threads of a process; the
audit trail is read through its own read-only connection per call (:meth:`audit`), so a
console serving several requests at once never shares an SQLite cursor."""

from __future__ import annotations

import getpass
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import AuditError, UsageError
from gateway.node.config import Config, load_config
from gateway.node.storeopen import AnySpool, open_spool
from gateway.store.audit import AuditLog
from gateway.store.postgres import open_audit_log

__all__ = ["NodeContext", "open_audit", "os_user"]


def os_user() -> str:
    """The actor for an action taken from the command line: the operator's OS user."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid-{os.getuid()}"


def open_audit(path: Path, *, write: bool = False) -> AuditLog:
    """The audit trail in the database at ``path`` (read-only unless ``write``)."""
    if not path.is_file():
        raise UsageError("no database file here", where=str(path))
    try:
        if write:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30,
                                   check_same_thread=False)
        return AuditLog(conn, create=False)
    except sqlite3.Error as exc:
        raise AuditError(f"cannot open the database: {exc}", where=str(path)) from None


@dataclass
class NodeContext:
    """A node's configuration and spool, for the service functions."""

    config: Config
    spool: AnySpool

    @classmethod
    def open(cls, config_file: Path | str | None = None) -> NodeContext:
        """The configured store: SQLite at ``spool.database`` or PostgreSQL at
        ``store.url`` (:func:`gateway.node.storeopen.open_spool`)."""
        config = load_config(config_file)
        return cls(config, open_spool(config))

    @property
    def keys_dir(self) -> Path:
        return self.config.node.keys_dir

    @contextmanager
    def audit(self, *, write: bool = False) -> Iterator[AuditLog]:
        """A view of the audit trail (read-only unless ``write``), closed afterwards."""
        url = self.config.store.url
        log = (open_audit_log(url, read_only=not write) if url is not None
               else open_audit(self.config.spool.database, write=write))
        try:
            yield log
        finally:
            log.conn.close()

    def close(self) -> None:
        self.spool.close()

    def __enter__(self) -> NodeContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
