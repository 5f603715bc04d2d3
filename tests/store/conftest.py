"""The store contract: the spool and audit tests that are about behaviour run on every
store, SQLite and PostgreSQL alike (``store`` / ``db`` fixtures, parametrized). Tests
about SQLite itself (its locking, its connection modes) keep using SQLite alone."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.store.sqlite import SqliteSpool

STORES = [pytest.param("sqlite", id="sqlite"),
          pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration)]


@dataclass
class Store:
    """One empty store for one test: ``open()`` gives another spool on it (as another
    process would have), ``connect()`` a raw connection for :class:`AuditLog`."""

    kind: str
    where: str  # the SQLite file or the PostgreSQL URL
    opened: list[Any] = field(default_factory=list)

    def open(self, **options: Any) -> Any:
        if self.kind == "sqlite":
            spool: Any = SqliteSpool(Path(self.where), **options)
        else:
            from gateway.store.postgres import PostgresSpool

            options.setdefault("holder", f"node-{len(self.opened)}")
            spool = PostgresSpool(self.where, **options)
        self.opened.append(spool)
        return spool

    def connect(self) -> Any:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.where, isolation_level=None, timeout=30,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            self.opened.append(conn)
            return conn
        import psycopg

        from gateway.store.pg_schema import migrate
        from gateway.store.pgconn import PgConn

        raw = psycopg.connect(self.where, autocommit=True)
        migrate(raw)
        pg = PgConn(raw)
        self.opened.append(pg)
        return pg

    def close(self) -> None:
        for thing in reversed(self.opened):
            thing.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store("sqlite", str(tmp_path / "spool" / "gateway.db"))
        (tmp_path / "spool").mkdir()
    else:
        s = Store("postgresql", request.getfixturevalue("pg_url"))
    yield s
    s.close()


@pytest.fixture
def spool(store: Store) -> Any:
    """A spool on a fresh store of each kind."""
    return store.open()


@pytest.fixture
def conn(store: Store) -> Any:
    """A raw connection to a fresh store of each kind (for :class:`AuditLog`)."""
    return store.connect()


Opener = Callable[[], Any]
