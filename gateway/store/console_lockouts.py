"""The console's per-account lockout, kept in the store (SQLite or PostgreSQL) so that
every console process on the same store (``gateway run``'s and a ``gateway console``
beside it, on one node or on every node sharing a PostgreSQL store) counts the same
failed logins and honours the same lock.

A ``console_account_locks`` row holds what the lockout needs and nothing else: the
SHA-256 of the account name (made by :mod:`gateway.console.accounts`; the same name on
every node gives the same key), the count of login attempts since the last successful
login, unlock or lock (``failures``: failed ones, and ones still being checked), and the
end of the lock in force (``locked_until``, epoch seconds, or NULL). A successful login
or an unlock deletes the row. On SQLite the table is made when missing (like the
spool's own); on PostgreSQL by migration 5 (``gateway store migrate``; the daemon
migrates on start).

An attempt is counted *before* its password is checked (:meth:`AccountLocks.claim`), so
at most ``limit`` attempts on one account can be under way or failed at once, whichever
console they reach: an attacker gets ``limit`` guesses per lock, however many requests
they send at the same moment. Every method that writes is one write transaction: on
PostgreSQL each takes the audit chain's lock first
(:meth:`gateway.store.pgconn.PgConn.lock_chain`), on SQLite the database's write lock, so
two consoles counting at the same moment cannot lose a count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.store.console_sessions import _ensure_table, _Store, _write

__all__ = ["CLAIMED", "LOCKED", "LOCKING", "LOCKS_SCHEMA", "AccountLocks", "LockRow"]

LOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_account_locks (
    name_hash    TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until DOUBLE PRECISION
);
"""

#: what :meth:`AccountLocks.claim` answers
CLAIMED = "claimed"  # the attempt is counted: go on and check it
LOCKED = "locked"    # a lock is in force: refused, nothing counted
LOCKING = "locking"  # ``limit`` attempts were already counted: this one locks the account


@dataclass(frozen=True)
class LockRow:
    failures: int
    locked_until: float | None

    def locked(self, now: float) -> bool:
        """Whether the lock is in force at ``now`` (it ends by time)."""
        return self.locked_until is not None and now < self.locked_until


def _row(found: Any) -> LockRow | None:
    if found is None:
        return None
    return LockRow(int(found[0]), None if found[1] is None else float(found[1]))


class AccountLocks:
    """The ``console_account_locks`` table of a spool. Keys are hashes of account names;
    times are epoch seconds (each console's own clock: keep the nodes' clocks in step)."""

    def __init__(self, spool: _Store) -> None:
        self.spool = spool
        _ensure_table(spool, "console_account_locks", LOCKS_SCHEMA)

    def claim(self, key: str, now: float, *, limit: int, lockout: float) -> str:
        """Count one login attempt on ``key`` before it is checked. :data:`CLAIMED`: it
        is counted (a lock that has ended is forgotten first); :data:`LOCKED`: a lock is
        in force, nothing is written (a refused attempt does not extend it);
        :data:`LOCKING`: ``limit`` attempts are already counted (failed, or still being
        checked elsewhere), so the account is locked for ``lockout`` seconds now."""
        with _write(self.spool) as conn:
            row = _row(conn.execute("SELECT failures, locked_until FROM "
                                    "console_account_locks WHERE name_hash = ?",
                                    (key,)).fetchone())
            if row is not None and row.locked(now):
                return LOCKED
            failures = 0 if row is None or row.locked_until is not None else row.failures
            if failures >= limit:
                conn.execute("UPDATE console_account_locks SET failures = 0, "
                             "locked_until = ? WHERE name_hash = ?", (now + lockout, key))
                return LOCKING
            if row is None:
                conn.execute("INSERT INTO console_account_locks (name_hash, failures, "
                             "locked_until) VALUES (?, 1, NULL)", (key,))
            else:
                conn.execute("UPDATE console_account_locks SET failures = ?, "
                             "locked_until = NULL WHERE name_hash = ?", (failures + 1, key))
        return CLAIMED

    def failed(self, key: str, now: float, *, limit: int, lockout: float) -> bool:
        """A claimed attempt failed (it stays counted). Returns True when this failure
        locks the account: ``limit`` attempts are counted and no lock was set since the
        attempt was claimed (by another failure, or a claim). An attempt whose count was
        cleared meanwhile (a successful login, an unlock) locks nothing."""
        with _write(self.spool) as conn:
            row = _row(conn.execute("SELECT failures, locked_until FROM "
                                    "console_account_locks WHERE name_hash = ?",
                                    (key,)).fetchone())
            if row is None or row.locked_until is not None or row.failures < limit:
                return False
            conn.execute("UPDATE console_account_locks SET failures = 0, locked_until = ? "
                         "WHERE name_hash = ?", (now + lockout, key))
        return True

    def clear(self, key: str) -> bool:
        """Forget the count and any lock of ``key`` (a successful login, an unlock, a
        reset); returns whether there was a row."""
        with _write(self.spool) as conn:
            return bool(conn.execute("DELETE FROM console_account_locks WHERE "
                                     "name_hash = ?", (key,)).rowcount)

    def get(self, key: str) -> LockRow | None:
        """The count and lock of ``key`` as stored (read outside any write transaction)."""
        found = self.spool._rows("SELECT failures, locked_until FROM console_account_locks "
                                 "WHERE name_hash = ?", (key,))
        return _row(found[0]) if found else None

    def all(self) -> dict[str, LockRow]:
        """Every row, by key (one per account with a count or a lock)."""
        found = self.spool._rows("SELECT name_hash, failures, locked_until FROM "
                                 "console_account_locks", ())
        return {str(r[0]): LockRow(int(r[1]), None if r[2] is None else float(r[2]))
                for r in found}
