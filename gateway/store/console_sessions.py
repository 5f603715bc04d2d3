"""The operator console's sessions and login attempts, kept in the store (SQLite or
PostgreSQL) so that a restarted console, and every console process on the same store
(``gateway run``'s and a ``gateway console`` beside it, on one node or on several nodes
sharing a PostgreSQL store), know the same sessions and count the same login attempts.

A ``console_sessions`` row holds the SHA-256 of the session token (the ``__Host-``
cookie's value; the token itself is never stored), the operator, role and second factor
of the login, its two clocks (``created_at``, ``seen_at``) and the notes waiting to be
shown on the next page (``flash``: identifiers, states and reason codes, never personal
data). A ``console_login_attempts`` row is one login attempt: the SHA-256 of what the
console's rate limit counts by (a pseudonym of the client address, made by
:mod:`gateway.console.sessions`; never a password) and its time; rows older than the
limit's window are deleted as attempts are counted. On SQLite the tables are made when
missing (like the spool's own); on PostgreSQL by migrations 3 and 4 (``gateway store
migrate``; the daemon migrates on start)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.errors import SpoolError

__all__ = ["ATTEMPTS_SCHEMA", "SCHEMA", "LoginAttempts", "SessionRow", "SessionStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY,
    operator   TEXT NOT NULL,
    role       TEXT NOT NULL,
    factor     TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    seen_at    DOUBLE PRECISION NOT NULL,
    flash      TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS console_sessions_operator ON console_sessions(operator);
"""

ATTEMPTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_login_attempts (
    key_hash TEXT NOT NULL,
    at       DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS console_login_attempts_key ON console_login_attempts(key_hash, at);
CREATE INDEX IF NOT EXISTS console_login_attempts_at ON console_login_attempts(at);
"""

_COLUMNS = "token_hash, operator, role, factor, created_at, seen_at, flash"


class _Txn(Protocol):
    conn: Any


class _Store(Protocol):
    """What this module needs of a spool: a write transaction with a DB-API connection
    (``?`` parameters on both stores: :class:`gateway.store.pgconn.PgConn`), and the
    reads outside any write transaction that every store shares
    (:meth:`gateway.store.spool.SpoolReads._rows`)."""

    def transaction(self, now: datetime) -> Any: ...

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]: ...


@contextmanager
def _write(spool: _Store) -> Iterator[Any]:
    with spool.transaction(datetime.now(UTC)) as txn:
        yield txn.conn


def _ensure_table(spool: _Store, table: str, schema: str) -> None:
    """Create ``table`` on SQLite when missing; on PostgreSQL the migrations made it."""
    with _write(spool) as conn:
        if getattr(conn, "dialect", "sqlite") == "postgresql":
            if table not in conn.tables():
                raise SpoolError(f"the store has no {table} table (run gateway store "
                                 "migrate)")
        else:
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)


@dataclass(frozen=True)
class SessionRow:
    token_hash: str
    operator: str
    role: str
    factor: str
    created_at: float
    seen_at: float
    flash: tuple[str, ...]


def _row(values: Any) -> SessionRow:
    return SessionRow(str(values[0]), str(values[1]), str(values[2]), str(values[3]),
                      float(values[4]), float(values[5]), tuple(json.loads(values[6])))


class SessionStore:
    """The ``console_sessions`` table of a spool. Every write is one short transaction
    (:meth:`touch` reads first and writes only when it must); times are epoch seconds."""

    def __init__(self, spool: _Store) -> None:
        self.spool = spool
        _ensure_table(spool, "console_sessions", SCHEMA)

    def _conn(self) -> AbstractContextManager[Any]:
        return _write(self.spool)

    def create(self, token_hash: str, operator: str, role: str, factor: str,
               now: float) -> SessionRow:
        row = SessionRow(token_hash, operator, role, factor, now, now, ())
        with self._conn() as conn:
            conn.execute(f"INSERT INTO console_sessions ({_COLUMNS}) "  # noqa: S608
                         "VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (token_hash, operator, role, factor, now, now, "[]"))
        return row

    def touch(self, token_hash: str, now: float, *, idle: float, absolute: float,
              slack: float = 0.0) -> tuple[SessionRow | None, str | None]:
        """The live session as stored, or None and why: "idle" or "absolute" when it has
        expired (it is removed), None when there is no such session. The session is read
        outside any write transaction; its idle clock is restarted (``seen_at = now``,
        one write) only when the stored ``seen_at`` is ``slack`` seconds old or more, so a
        session seen often costs one write per ``slack``. The idle check uses the stored
        ``seen_at``, which is never more than ``slack`` behind the last request: a
        session ends between ``idle - slack`` and ``idle`` after its last request, never
        later; the absolute clock (``created_at``) never moves."""
        found = self.spool._rows(f"SELECT {_COLUMNS} FROM console_sessions "  # noqa: S608
                                 "WHERE token_hash = ?", (token_hash,))
        if not found:
            return None, None
        row = _row(found[0])
        expired = ("idle" if now - row.seen_at > idle else
                   "absolute" if now - row.created_at > absolute else None)
        if expired is not None:
            with self._conn() as conn:  # unless another console has just seen it live
                conn.execute("DELETE FROM console_sessions WHERE token_hash = ? AND "
                             "(seen_at < ? OR created_at < ?)",
                             (token_hash, now - idle, now - absolute))
            return None, expired
        if now - row.seen_at >= slack:
            with self._conn() as conn:  # never moves the clock back (another console's)
                conn.execute("UPDATE console_sessions SET seen_at = ? WHERE token_hash = ? "
                             "AND seen_at < ?", (now, token_hash, now))
        return row, None

    def add_flash(self, token_hash: str, text: str) -> None:
        """A note for the session's next page (e.g. after a redirect)."""
        with self._conn() as conn:
            found = conn.execute("SELECT flash FROM console_sessions WHERE token_hash = ?",
                                 (token_hash,)).fetchone()
            if found is not None:
                notes = [*json.loads(found[0]), text][-10:]
                conn.execute("UPDATE console_sessions SET flash = ? WHERE token_hash = ?",
                             (json.dumps(notes), token_hash))

    def clear_flash(self, token_hash: str) -> None:
        """The notes were shown."""
        with self._conn() as conn:
            conn.execute("UPDATE console_sessions SET flash = '[]' WHERE token_hash = ?",
                         (token_hash,))

    def delete(self, token_hash: str) -> bool:
        with self._conn() as conn:
            return bool(conn.execute("DELETE FROM console_sessions WHERE token_hash = ?",
                                     (token_hash,)).rowcount)

    def delete_operator(self, operator: str) -> int:
        """End every session of ``operator`` (disabled, reset); returns how many."""
        with self._conn() as conn:
            return int(conn.execute("DELETE FROM console_sessions WHERE operator = ?",
                                    (operator,)).rowcount)

    def purge(self, now: float, *, idle: float, absolute: float) -> int:
        """Remove the sessions that have expired; returns how many."""
        with self._conn() as conn:
            return int(conn.execute("DELETE FROM console_sessions WHERE seen_at < ? OR "
                                    "created_at < ?", (now - idle, now - absolute)).rowcount)

    def count(self, operator: str | None = None) -> int:
        with self._conn() as conn:
            if operator is None:
                found = conn.execute("SELECT count(*) FROM console_sessions").fetchone()
            else:
                found = conn.execute("SELECT count(*) FROM console_sessions WHERE "
                                     "operator = ?", (operator,)).fetchone()
        return int(found[0])


class LoginAttempts:
    """The ``console_login_attempts`` table of a spool: a sliding-window count of login
    attempts per key, shared by every process on the store. Times are epoch seconds."""

    def __init__(self, spool: _Store) -> None:
        self.spool = spool
        _ensure_table(spool, "console_login_attempts", ATTEMPTS_SCHEMA)

    def allow(self, key_hash: str, now: float, *, limit: int, window: float) -> bool:
        """Whether one more attempt under ``key_hash`` fits: fewer than ``limit`` in the
        ``window`` seconds up to ``now``. If it fits it is recorded; a refused one is not
        (it does not extend the wait). Attempts older than ``window`` (of every key) are
        deleted on the way. One write transaction: on PostgreSQL every write transaction
        first takes the audit chain's lock (:meth:`gateway.store.pgconn.PgConn.lock_chain`),
        on SQLite the database's write lock, so two consoles cannot both take the last
        place."""
        with _write(self.spool) as conn:
            conn.execute("DELETE FROM console_login_attempts WHERE at <= ?", (now - window,))
            found = conn.execute("SELECT count(*) FROM console_login_attempts WHERE "
                                 "key_hash = ? AND at > ?", (key_hash, now - window)).fetchone()
            if int(found[0]) >= limit:
                return False
            conn.execute("INSERT INTO console_login_attempts (key_hash, at) VALUES (?, ?)",
                         (key_hash, now))
        return True

    def count(self, key_hash: str | None = None) -> int:
        """Attempts kept (of one key, or of all)."""
        if key_hash is None:
            rows = self.spool._rows("SELECT count(*) FROM console_login_attempts", ())
        else:
            rows = self.spool._rows("SELECT count(*) FROM console_login_attempts WHERE "
                                    "key_hash = ?", (key_hash,))
        return int(rows[0][0])
