"""The operator console's sessions, kept in the store (SQLite or PostgreSQL) so that a
restarted console, and every console process on the same store (``gateway run``'s and a
``gateway console`` beside it), know the same sessions.

A row holds the SHA-256 of the session token (the ``__Host-`` cookie's value; the token
itself is never stored), the operator, role and second factor of the login, its two
clocks (``created_at``, ``seen_at``) and the notes waiting to be shown on the next page
(``flash``: identifiers, states and reason codes, never personal data). On SQLite the
table is made when missing (like the spool's own); on PostgreSQL by migration 3
(``gateway store migrate``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.errors import SpoolError

__all__ = ["SCHEMA", "SessionRow", "SessionStore"]

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

_COLUMNS = "token_hash, operator, role, factor, created_at, seen_at, flash"


class _Txn(Protocol):
    conn: Any


class _Store(Protocol):
    """What this module needs of a spool: a write transaction with a DB-API connection
    (``?`` parameters on both stores: :class:`gateway.store.pgconn.PgConn`)."""

    def transaction(self, now: datetime) -> Any: ...


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
    """The ``console_sessions`` table of a spool. Every method is one short transaction;
    times are epoch seconds."""

    def __init__(self, spool: _Store) -> None:
        self.spool = spool
        with self._conn() as conn:
            if getattr(conn, "dialect", "sqlite") == "postgresql":
                if "console_sessions" not in conn.tables():
                    raise SpoolError("the store has no console_sessions table (run gateway "
                                     "store migrate)")
            else:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        with self.spool.transaction(datetime.now(UTC)) as txn:
            yield txn.conn

    def create(self, token_hash: str, operator: str, role: str, factor: str,
               now: float) -> SessionRow:
        row = SessionRow(token_hash, operator, role, factor, now, now, ())
        with self._conn() as conn:
            conn.execute(f"INSERT INTO console_sessions ({_COLUMNS}) "  # noqa: S608
                         "VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (token_hash, operator, role, factor, now, now, "[]"))
        return row

    def touch(self, token_hash: str, now: float, *, idle: float,
              absolute: float) -> tuple[SessionRow | None, str | None]:
        """The live session (its idle clock restarted at ``now``), or
        None and why: "idle" or "absolute" when it has just expired (it is removed), None
        when there is no such session."""
        with self._conn() as conn:
            found = conn.execute(f"SELECT {_COLUMNS} FROM console_sessions "  # noqa: S608
                                 "WHERE token_hash = ?", (token_hash,)).fetchone()
            if found is None:
                return None, None
            row = _row(found)
            expired = ("idle" if now - row.seen_at > idle else
                       "absolute" if now - row.created_at > absolute else None)
            if expired is not None:
                conn.execute("DELETE FROM console_sessions WHERE token_hash = ?",
                             (token_hash,))
                return None, expired
            conn.execute("UPDATE console_sessions SET seen_at = ? WHERE token_hash = ?",
                         (now, token_hash))
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
