"""Operator accounts for the console: a small SQLite file of its own (``[console]
accounts``, mode 0600), apart from the spool, so that a copy of the spool never carries
password hashes.

Roles, each including the one before: ``viewer`` (read every page), ``operator`` (resend,
cancel, ping partners), ``admin`` (sees the accounts page; accounts are managed with
``gateway operators add|list|disable|reset|unlock``). Passwords are hashed with argon2id
(argon2-cffi's defaults, RFC 9106's second recommended profile). Every account has a TOTP
secret and must give a code at login, unless it logs in with a TLS client certificate
issued by the console's ``client_ca`` whose subject common name is the account name.
A code works once. After ``max_failures`` failed logins in a row an account is locked
for ``lockout`` seconds.

The failed-login count and the lock are not in this file but in the node's store
(:mod:`gateway.store.console_lockouts`), under a SHA-256 of the account name: every
console on the store counts them together, so on nodes sharing a PostgreSQL store an
account locked on one node's console is locked on all of them, and an attacker gets
``max_failures`` guesses per lock in all, not per node. Each attempt is counted before
its password is checked, so attempts sent at the same moment to several consoles are
counted too. (The file's ``failures`` and ``locked_until`` columns, where earlier
versions counted, are no longer read or written.)
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.console import totp
from gateway.errors import LoginRefused, UsageError
from gateway.store.console_lockouts import CLAIMED, LOCKING, AccountLocks, LockRow

__all__ = ["ROLES", "Account", "Accounts", "Login", "lock_key", "valid_name"]

ROLES = ("viewer", "operator", "admin")
_NAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    password    TEXT NOT NULL,
    totp_secret TEXT NOT NULL,
    totp_step   INTEGER,
    disabled    INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,  -- unused: the count is in the store
    locked_until REAL,                       -- unused: the lock is in the store
    created_at  REAL NOT NULL
);
"""


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def rank(role: str) -> int:
    return ROLES.index(role)


def lock_key(name: str) -> str:
    """What the store keeps for an account's count and lock: a SHA-256 of its name (the
    same on every node), a pseudonym that lets attempts be counted, not a secret."""
    return hashlib.sha256(b"gateway-console-account\0" + name.encode()).hexdigest()


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    disabled: bool
    failures: int  # login attempts counted since the last login, unlock or lock (store)
    locked_until: float | None  # the end of the last lock (store); in force until then
    created_at: float


@dataclass(frozen=True)
class Login:
    """A successful login: who, and how the second factor was given."""

    account: Account
    factor: str  # "totp" or "certificate"


@dataclass(frozen=True)
class NewCredentials:
    """What ``add`` and ``reset`` hand out once: the password and the TOTP secret."""

    name: str
    password: str
    totp_secret: str

    @property
    def otpauth(self) -> str:
        return totp.otpauth_uri(self.totp_secret, self.name)


class Accounts:
    """The accounts file at ``path``, with the failed-login counts and locks in ``locks``
    (the node's store)."""

    def __init__(self, path: Path, locks: AccountLocks, *, max_failures: int = 5,
                 lockout: float = 900.0, hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path)
        self.locks = locks
        self.max_failures = max_failures
        self.lockout = lockout
        # argon2id with argon2-cffi's defaults (t=3, m=64 MiB, p=4); tests pass cheaper ones
        self._hasher = hasher or PasswordHasher()
        self._lock = threading.Lock()
        # a hash to check unknown names against, so they take as long as known ones
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False, timeout=30)
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot open the operator accounts: {exc}",
                             where=str(self.path)) from None

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- administration -------------------------------------------------------------

    def add(self, name: str, role: str, now: float) -> NewCredentials:
        if not valid_name(name):
            raise UsageError("an operator name is 2-32 lowercase letters, digits and ._- "
                             "starting with a letter")
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
        creds = NewCredentials(name, secrets.token_urlsafe(15), totp.new_secret())
        with self._txn() as conn:
            if conn.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
                raise UsageError("an operator with that name exists", where=name)
            conn.execute("INSERT INTO operators (name, role, password, totp_secret, "
                         "created_at) VALUES (?, ?, ?, ?, ?)",
                         (name, role, self._hasher.hash(creds.password), creds.totp_secret,
                          now))
        return creds

    def reset(self, name: str) -> NewCredentials:
        """A new password and TOTP secret; unlocks (on every console of the store) and
        re-enables the account."""
        creds = NewCredentials(name, secrets.token_urlsafe(15), totp.new_secret())
        self.locks.clear(lock_key(name))  # first: a store that fails changes nothing here
        with self._txn() as conn:
            cur = conn.execute("UPDATE operators SET password = ?, totp_secret = ?, "
                               "totp_step = NULL, disabled = 0 WHERE name = ?",
                               (self._hasher.hash(creds.password), creds.totp_secret, name))
            if cur.rowcount == 0:
                raise UsageError("no operator with that name", where=name)
        return creds

    def disable(self, name: str) -> None:
        with self._txn() as conn:
            cur = conn.execute("UPDATE operators SET disabled = 1 WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise UsageError("no operator with that name", where=name)

    def unlock(self, name: str) -> bool:
        """End the account's lock and forget its failed logins, on every console of the
        store; returns whether there was a count or a lock to forget."""
        with self._lock:
            known = self._conn.execute("SELECT 1 FROM operators WHERE name = ?",
                                       (name,)).fetchone()
        if not known:
            raise UsageError("no operator with that name", where=name)
        return self.locks.clear(lock_key(name))

    _ACCOUNT = "SELECT name, role, disabled, created_at FROM operators"

    @staticmethod
    def _account(r: Any, lock: LockRow | None) -> Account:
        return Account(r[0], r[1], bool(r[2]), lock.failures if lock else 0,
                       lock.locked_until if lock else None, r[3])

    def list(self) -> list[Account]:
        with self._lock:
            rows = self._conn.execute(f"{self._ACCOUNT} ORDER BY name").fetchall()
        locks = self.locks.all()
        return [self._account(r, locks.get(lock_key(r[0]))) for r in rows]

    def get(self, name: str) -> Account | None:
        """One account by name (the console asks on every request)."""
        with self._lock:
            r = self._conn.execute(f"{self._ACCOUNT} WHERE name = ?", (name,)).fetchone()
        return None if r is None else self._account(r, self.locks.get(lock_key(name)))

    def totp_secret(self, name: str) -> str | None:
        """For tests and the demo's throw-away login only."""
        with self._lock:
            row = self._conn.execute("SELECT totp_secret FROM operators WHERE name = ?",
                                     (name,)).fetchone()
        return None if row is None else str(row[0])

    # --- login ----------------------------------------------------------------------

    def authenticate(self, name: str, password: str, code: str, now: float, *,
                     certificate_name: str | None = None) -> Login:
        """Check a login. Raises :class:`LoginRefused` with ``details``: ``reason``
        (unknown, locked, disabled, password, code) and ``locked`` (1 when this attempt
        locked the account: it failed with ``max_failures`` attempts counted, or came
        when that many were counted already, some still being checked elsewhere).
        ``certificate_name``: the common name of a verified client certificate, which
        stands in for the TOTP code when it is this account's name."""
        with self._lock:
            row = self._conn.execute(
                "SELECT name, role, password, totp_secret, totp_step, disabled, created_at "
                "FROM operators WHERE name = ?",
                (name,)).fetchone() if valid_name(name) else None
        if row is None:
            self._check_password(self._dummy, password)
            raise LoginRefused("login refused", details={"reason": "unknown"})
        key = lock_key(name)
        if row[5]:  # disabled: nothing is counted
            lock = self.locks.get(key)
            locked = lock is not None and lock.locked(now)
            raise LoginRefused("login refused",
                               details={"reason": "locked" if locked else "disabled"})
        # counted before it is checked, on the store every console shares
        claim = self.locks.claim(key, now, limit=self.max_failures, lockout=self.lockout)
        if claim != CLAIMED:
            details: dict[str, object] = {"reason": "locked"}
            if claim == LOCKING:
                details["locked"] = 1
            raise LoginRefused("login refused", details=details)
        if not self._check_password(row[2], password):
            self._failed(key, now, "password")
        if certificate_name is not None and certificate_name == name:
            factor, step = "certificate", row[4]
        else:
            step = totp.verify(row[3], code, now, last_step=row[4])
            if step is None:
                self._failed(key, now, "code")
            factor = "totp"
        self.locks.clear(key)
        with self._txn() as conn:
            conn.execute("UPDATE operators SET totp_step = ? WHERE name = ?", (step, name))
        return Login(Account(row[0], row[1], False, 0, None, row[6]), factor)

    def _check_password(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _failed(self, key: str, now: float, reason: str) -> None:
        locked = self.locks.failed(key, now, limit=self.max_failures, lockout=self.lockout)
        raise LoginRefused("login refused", details={"reason": reason, "locked": int(locked)})
