"""Operator accounts for the console: a small SQLite file of its own (``[console]
accounts``, mode 0600), apart from the spool, so that a copy of the spool never carries
password hashes.

Roles, each including the one before: ``viewer`` (read every page), ``operator`` (resend,
cancel, ping partners), ``admin`` (sees the accounts page; accounts are managed with
``gateway operators add|list|disable|reset``). Passwords are hashed with argon2id
(argon2-cffi's defaults, RFC 9106's second recommended profile). Every account has a TOTP
secret and must give a code at login, unless it logs in with a TLS client certificate
issued by the console's ``client_ca`` whose subject common name is the account name.
A code works once. After ``max_failures`` failed logins in a row an account is locked
for ``lockout`` seconds.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.console import totp
from gateway.errors import LoginRefused, UsageError

__all__ = ["ROLES", "Account", "Accounts", "Login", "valid_name"]

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
    failures    INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    created_at  REAL NOT NULL
);
"""


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def rank(role: str) -> int:
    return ROLES.index(role)


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    disabled: bool
    failures: int
    locked_until: float | None
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
    def __init__(self, path: Path, *, max_failures: int = 5, lockout: float = 900.0,
                 hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path)
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
        """A new password and TOTP secret; unlocks and re-enables the account."""
        creds = NewCredentials(name, secrets.token_urlsafe(15), totp.new_secret())
        with self._txn() as conn:
            cur = conn.execute("UPDATE operators SET password = ?, totp_secret = ?, "
                               "totp_step = NULL, failures = 0, locked_until = NULL, "
                               "disabled = 0 WHERE name = ?",
                               (self._hasher.hash(creds.password), creds.totp_secret, name))
            if cur.rowcount == 0:
                raise UsageError("no operator with that name", where=name)
        return creds

    def disable(self, name: str) -> None:
        with self._txn() as conn:
            cur = conn.execute("UPDATE operators SET disabled = 1 WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise UsageError("no operator with that name", where=name)

    _ACCOUNT = "SELECT name, role, disabled, failures, locked_until, created_at FROM operators"

    def list(self) -> list[Account]:
        with self._lock:
            rows = self._conn.execute(f"{self._ACCOUNT} ORDER BY name").fetchall()
        return [Account(r[0], r[1], bool(r[2]), r[3], r[4], r[5]) for r in rows]

    def get(self, name: str) -> Account | None:
        """One account by name (the console asks on every request)."""
        with self._lock:
            r = self._conn.execute(f"{self._ACCOUNT} WHERE name = ?", (name,)).fetchone()
        return None if r is None else Account(r[0], r[1], bool(r[2]), r[3], r[4], r[5])

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
        (unknown, locked, disabled, password, code) and ``locked`` (1 when this failure
        locked the account). ``certificate_name``: the common name of a verified client
        certificate, which stands in for the TOTP code when it is this account's name."""
        with self._lock:
            row = self._conn.execute(
                "SELECT name, role, password, totp_secret, totp_step, disabled, failures, "
                "locked_until, created_at FROM operators WHERE name = ?",
                (name,)).fetchone() if valid_name(name) else None
        if row is None:
            self._check_password(self._dummy, password)
            raise LoginRefused("login refused", details={"reason": "unknown"})
        account = Account(row[0], row[1], bool(row[5]), row[6], row[7], row[8])
        if account.locked_until is not None and now < account.locked_until:
            raise LoginRefused("login refused", details={"reason": "locked"})
        if account.disabled:
            raise LoginRefused("login refused", details={"reason": "disabled"})
        if not self._check_password(row[2], password):
            self._failed(name, account, now, "password")
        if certificate_name is not None and certificate_name == name:
            factor, step = "certificate", row[4]
        else:
            step = totp.verify(row[3], code, now, last_step=row[4])
            if step is None:
                self._failed(name, account, now, "code")
            factor = "totp"
        with self._txn() as conn:
            conn.execute("UPDATE operators SET failures = 0, locked_until = NULL, "
                         "totp_step = ? WHERE name = ?", (step, name))
        return Login(account, factor)

    def _check_password(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _failed(self, name: str, account: Account, now: float, reason: str) -> None:
        failures = account.failures + 1
        locked = failures >= self.max_failures
        with self._txn() as conn:
            conn.execute("UPDATE operators SET failures = ?, locked_until = ? WHERE name = ?",
                         (0 if locked else failures, now + self.lockout if locked else None,
                          name))
        raise LoginRefused("login refused", details={"reason": reason, "locked": int(locked)})
