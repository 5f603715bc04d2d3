"""The SQLite spool: one database file per node, shared by the threads of one process.

SQLite in WAL mode with ``synchronous=FULL`` (a committed transaction survives a power
cut) and ``busy_timeout`` so several processes (the daemon, the CLI) can share the file.
The threads of the daemon share one connection, and their write transactions share
commits (:mod:`gateway.store.groupcommit`). The SQL of the reads and of a transaction is
the shared one of :mod:`gateway.store.spool` (:class:`SpoolReads`, :class:`Txn`);
:mod:`gateway.store.postgres` is the other store.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.errors import SpoolError
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import CommitGroups
from gateway.store.spool import AuditSink, SpoolReads, Txn

__all__ = ["SqliteSpool"]

log = logging.getLogger("gateway.store.spool")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT,
    direction       TEXT NOT NULL,
    state           TEXT NOT NULL,
    source          TEXT,
    intake_key      TEXT UNIQUE,
    partner         TEXT,
    transport       TEXT,
    from_party      TEXT,
    to_party        TEXT,
    service         TEXT,
    action          TEXT,
    case_id         TEXT,
    ref_to          TEXT,
    document_digest TEXT,
    envelope_digest TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    next_attempt_at REAL,
    expires_at      REAL,
    error_code      TEXT,
    error_text      TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_mid
    ON messages(direction, message_id) WHERE message_id IS NOT NULL AND state != 'rejected';
CREATE INDEX IF NOT EXISTS messages_due ON messages(state, next_attempt_at);
CREATE INDEX IF NOT EXISTS messages_mid_any ON messages(message_id);
CREATE TABLE IF NOT EXISTS store_keys (
    id       TEXT PRIMARY KEY,
    cert     TEXT NOT NULL,
    wrapped  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS payloads (
    message  INTEGER NOT NULL REFERENCES messages(id),
    kind     TEXT NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY (message, kind)
);
"""


def _tune(conn: sqlite3.Connection, timeout: float) -> None:
    """The settings every connection to the spool uses.

    ``temp_store=MEMORY``: SQLite keeps a statement journal (and any sort or temporary
    table) in a temporary file by default, created and unlinked under ``/var/tmp`` about
    once per commit here, since a group commit runs its members in savepoints. A file
    created is an inode allocated, and on ext4 without a journal each allocation scans
    past every inode deleted in the last seconds (``recently_deleted``): measured, 587
    temporary files for 1,050 messages and about 0.2 ms of system CPU per message on the
    receiving side's writes alone. These journals hold one statement's undo, so memory
    is the right place for them."""
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    conn.execute("PRAGMA temp_store=MEMORY")


class SqliteSpool(SpoolReads):
    """The SQLite spool. Thread-safe: the threads of one process share one connection,
    one statement or transaction at a time (a lock); other processes (the CLI, another
    daemon) use their own connections and meet SQLite's locking and ``busy_timeout``.

    One connection instead of one per thread: SQLite's page cache is per connection, and
    a write by one connection invalidates what the others cached, so with the daemon's
    send, receive and scan threads each on its own connection most pages were read back
    from the file after every commit (measured: 0.5-0.9 ms more CPU per message with 8
    threads than with one). The writes were serialised by a lock already; reads now wait
    for a transaction in progress to commit instead of reading the snapshot before it."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._groups = CommitGroups(self._translate)
        self._lock = self._groups.lock
        self._shared: sqlite3.Connection | None = None
        self._audit: AuditSink | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool directory ({exc.strerror})",
                             where=str(self.path.parent)) from None
        with self._lock, self._translate():
            self._conn().executescript(_SCHEMA)

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise SpoolError(f"spool database error: {exc}", where=str(self.path)) from None

    def _conn(self) -> sqlite3.Connection:
        """The shared connection (opened on first use, under the lock); statements on it go
        through ``self._groups`` (:meth:`transaction`, :meth:`_rows`)."""
        if self._shared is not None:
            return self._shared
        with self._lock, self._translate():
            if self._shared is not None:  # opened by another thread meanwhile
                return self._shared
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            _tune(conn, self.timeout)
            conn.execute("PRAGMA foreign_keys=ON")
            self._audit = AuditSink(conn)
            self._shared = conn
        return conn

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._conn()
        with self._groups.reading(conn), self._translate():
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._shared is not None:
                self._groups.idle(self._shared)
            self._groups.log_totals(log)
            conn, self._shared, self._audit = self._shared, None, None
            if conn is not None:
                conn.close()

    @contextmanager
    def transaction(self, now: datetime) -> Iterator[Txn]:
        """A write transaction: commits on success (durably, before the ``with`` block
        exits), rolls back on any exception (which propagates; sqlite errors become
        :class:`SpoolError`). Transactions of this process's threads that queue for the
        connection at the same time share one commit (:mod:`gateway.store.groupcommit`):
        each is still all or nothing, and none returns before the shared commit. Threads
        of this process queue on the lock (woken at once) rather than in SQLite's busy
        handler, which sleeps in growing steps; other processes meet ``busy_timeout``."""
        conn = self._conn()
        with self._groups.member(conn):
            assert self._audit is not None  # noqa: S101 - set with the connection
            txn = Txn(conn, self._audit, now, self.sealer)
            yield txn
            txn.flush()

    # --- what a shared store coordinates (one node owns this one) ----------------------

    def claim_intake(self, intake_key: str, now: datetime) -> bool:
        """Whether this node may take the outbox file ``intake_key``: always (the intake
        key's unique constraint still refuses a second record)."""
        return True

    def leader(self, role: str, now: datetime) -> bool:
        """Whether this node does ``role`` (checkpoints, retention): the only node does."""
        return True

    @contextmanager
    def audit_log(self) -> Iterator[AuditLog]:
        """The audit trail on a connection of its own (long reads such as a verification
        must not hold the spool's write lock)."""
        with self._translate():
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            _tune(conn, self.timeout)
        try:
            yield AuditLog(conn)
        finally:
            conn.close()
