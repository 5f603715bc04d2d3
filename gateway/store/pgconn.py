"""A PostgreSQL connection that speaks like the ``sqlite3`` one the spool and the audit
trail were written for, so both stores share their SQL (:class:`PgConn`).

What it translates: ``?`` placeholders become ``%s``; ``BEGIN IMMEDIATE`` (SQLite's "take
the write lock now") is ``BEGIN`` at ``READ COMMITTED`` (the lock a writer needs, the
audit chain's, is :meth:`PgConn.lock_chain`); a bare ``BEGIN`` (a consistent read, as
:meth:`gateway.store.audit.AuditLog.snapshot` uses it) is ``REPEATABLE READ``; rows are
tuples that also map column names to values (``dict(row)`` works, as with
``sqlite3.Row``). It adds :meth:`PgConn.lock_chain`: the transaction-scoped advisory lock
that serialises appends to the deployment's one audit chain.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import RowMaker

__all__ = ["CHAIN_LOCK", "DB_ERRORS", "PgConn", "Row", "row_factory"]

#: ``pg_advisory_xact_lock`` key of the audit chain's head (any constant unique to us)
CHAIN_LOCK = 0x6367775F61756474  # "cgw_audt"

#: Errors of either database driver (callers translate them into gateway errors)
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


class Row(tuple[Any, ...]):
    """A result row: a tuple, and a mapping from column names (``keys()``, ``row["x"]``)."""

    _names: tuple[str, ...]

    def keys(self) -> tuple[str, ...]:
        return self._names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)


def row_factory(cursor: Any) -> RowMaker[Row]:
    names = tuple(c.name for c in cursor.description or ())

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


def _translate(sql: str, params: Sequence[Any]) -> str:
    head = sql.strip().upper()
    if head == "BEGIN IMMEDIATE":
        return "BEGIN ISOLATION LEVEL READ COMMITTED"
    if head == "BEGIN":
        return "BEGIN ISOLATION LEVEL REPEATABLE READ"
    if not params:
        return sql  # sent as it is: no placeholders to fill
    return sql.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A psycopg 3 connection in autocommit mode (transactions are explicit ``BEGIN`` ...
    ``COMMIT``, as in the SQLite store) with the ``sqlite3.Connection`` calls the store
    uses."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any], *, owned: bool = False) -> None:
        self.raw = raw
        self._chain_locked = False
        self._owned = owned  # a connection of its own (not the pool's): closed with us

    def __del__(self) -> None:
        if getattr(self, "_owned", False) and not self.raw.closed:
            with contextlib.suppress(Exception):
                self.raw.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        text = _translate(sql, params)
        head = text.lstrip()[:8].upper()
        if head.startswith(("COMMIT", "ROLLBACK", "BEGIN")):
            self._chain_locked = False
        cursor = self.raw.cursor(row_factory=row_factory)
        cursor.execute(text, tuple(params) if params else None)
        return cursor

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """One statement for each set of parameters (psycopg sends them together)."""
        with self.raw.cursor() as cursor:
            cursor.executemany(sql.replace("%", "%%").replace("?", "%s"), params)

    def executescript(self, script: str) -> None:
        self.raw.execute(script.encode())

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def lock_chain(self) -> None:
        """Wait for the audit chain's head (held until this transaction ends); once per
        transaction. Only inside a transaction."""
        if not self._chain_locked:
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
            self._chain_locked = True

    def tables(self) -> set[str]:
        rows = self.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                            "current_schema()").fetchall()
        return {str(r[0]) for r in rows}

    def close(self) -> None:
        self.raw.close()
