"""Move a node from SQLite to PostgreSQL: ``gateway store copy --from sqlite:PATH --to
postgresql://...``.

Everything is copied as it is, in one transaction on the target: messages (with their
spool ids, which sealed payloads are bound to), payloads (sealed ones stay sealed), the data
keys they are sealed under, and the audit trail (events, checkpoints, stored receipts,
pruning anchor) so the chain and its signed checkpoints verify unchanged. The target must
be empty (migrated, with no message and no audit event); the copy is verified (counts
and the audit chain) before it commits, and recorded by a ``store_copied`` audit event.
Stop the node first: the copy reads the SQLite file as it is at that moment.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from gateway.errors import SpoolError
from gateway.store.audit import AuditLog
from gateway.store.audit_events import AuditEvent
from gateway.store.pg_schema import migrate
from gateway.store.pgconn import PgConn
from gateway.store.postgres import redact_url
from gateway.store.sqlite import SqliteSpool

__all__ = ["CopyResult", "copy_sqlite_to_postgres"]

log = logging.getLogger("gateway.store.copy")

#: (table, columns) in the order they are copied (rows a later table refers to come first)
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("store_keys", ("id", "cert", "wrapped")),
    ("messages", ("id", "message_id", "direction", "state", "source", "intake_key", "partner",
                  "transport", "from_party", "to_party", "service", "action", "case_id",
                  "ref_to", "document_digest", "envelope_digest", "attempts", "created_at",
                  "updated_at", "next_attempt_at", "expires_at", "error_code", "error_text")),
    ("payloads", ("message", "kind", "data")),
    ("audit_events", ("seq", "at", "code", "message_id", "case_id", "from_party", "to_party",
                      "partner", "transport", "digest", "error_code", "actor", "detail",
                      "prev_hash", "hash")),
    ("audit_checkpoints", ("seq", "hash", "count", "at", "algorithm", "signer", "signature",
                           "certificate")),
    ("audit_receipts", ("event_seq", "message_id", "direction", "at", "sha256", "data")),
    ("audit_anchor", ("id", "seq", "hash", "pruned_by")),
)


@dataclass(frozen=True)
class CopyResult:
    rows: dict[str, int]
    audit_ok: bool


def copy_sqlite_to_postgres(source: Path, url: str, now: datetime) -> CopyResult:
    """Copy the SQLite store at ``source`` into the empty PostgreSQL store at ``url``."""
    where = redact_url(url)
    if not source.is_file():
        raise SpoolError("no SQLite store here", where=str(source))
    SqliteSpool(source).close()  # brings an older file's schema up to date (new tables)
    src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        src.close()
        raise SpoolError(f"cannot connect to the target store: {_first(exc)}",
                         where=where) from None
    try:
        migrate(raw)
        return _copy(src, raw, now, where)
    except psycopg.Error as exc:
        raise SpoolError(f"copy failed, nothing was written: {_first(exc)}",
                         where=where) from None
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot read the SQLite store: {exc}", where=str(source)) from None
    finally:
        src.close()
        raw.close()


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _copy(src: sqlite3.Connection, raw: psycopg.Connection[Any], now: datetime,
          where: str) -> CopyResult:
    counts: dict[str, int] = {}
    with raw.transaction():
        for table in ("messages", "audit_events"):
            if raw.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]:  # type: ignore[index]  # noqa: S608
                raise SpoolError(f"the target store is not empty ({table} has rows): copy "
                                 "into a new database", where=where)
        with raw.cursor() as cur:
            for table, columns in TABLES:
                names = ", ".join(columns)
                rows = src.execute(f"SELECT {names} FROM {table}").fetchall()  # noqa: S608
                if rows:
                    marks = ", ".join("%s" for _ in columns)
                    cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
                                    [tuple(bytes(v) if isinstance(v, memoryview) else v
                                           for v in row) for row in rows])
                counts[table] = len(rows)
        raw.execute("SELECT setval(pg_get_serial_sequence('messages', 'id'), "
                    "GREATEST((SELECT max(id) FROM messages), 1))")
        for table, _ in TABLES:
            got = raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]  # noqa: S608
            if got != counts[table]:
                raise SpoolError(f"copy check failed: {table} has {got} rows, "
                                 f"expected {counts[table]}", where=where)
        audit = AuditLog(PgConn(raw), create=False)
        report = audit.verify()
        if not report.ok:
            raise SpoolError(f"the copied audit trail does not verify ({report.problems[0]}); "
                             "nothing was written", where=where)
        audit.append(AuditEvent("store_copied", now, actor="operator",
                                detail={"messages": counts["messages"],
                                        "events": counts["audit_events"]}))
    log.info("copied the SQLite store into %s: %s", where, counts)
    return CopyResult(rows=counts, audit_ok=report.ok)
