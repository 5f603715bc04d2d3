"""Server-side sessions and login rate limits for the console.

A session is a random token (the ``__Host-`` cookie's value) kept in the store
(:mod:`gateway.store.console_sessions`) by its SHA-256 only, with the operator, role,
second factor and two clocks: it ends after ``idle`` seconds without a request and
``absolute`` seconds after login, whichever comes first. Because it lives in the store, a
restarted console keeps its sessions, and every console process on the same store
(``gateway run``'s and a ``gateway console`` beside it) knows them. Logging out ends one
session; disabling or resetting an operator (``gateway operators disable|reset``) ends
all of theirs.

A page view reads the session; it writes the new ``seen_at`` only when the stored one is
at least :attr:`Sessions.slack` old (``min(60 s, idle / 10)``), so an active operator
costs the store one write a minute, not one per page. The idle check uses the stored
time, so the slack can only end a session early, never late: it ends between
``idle - slack`` and ``idle`` after its last request (between 14 and 15 minutes with the
default 15-minute ``idle_timeout``). The absolute clock is exact.

The CSRF token is derived from the session token (HMAC-SHA256 keyed by it), so it is
never stored and reveals nothing about the token; it stays the same for the session's
life. Login attempts are limited per client address (``per_minute`` in any 60 s window),
counted in the store (:class:`gateway.store.console_sessions.LoginAttempts`), so the limit
is one for every console process on the store and survives a restart; the store keeps
a SHA-256 of the address, not the address. This is on top of the per-account lockout of
:mod:`gateway.console.accounts`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from gateway.store.console_sessions import LoginAttempts, SessionRow, SessionStore

__all__ = ["TOUCH_SLACK", "RateLimiter", "Session", "Sessions"]

#: Seconds a session's stored ``seen_at`` may lag its last request (at most; less when
#: ``idle / 10`` is smaller)
TOUCH_SLACK = 60.0


@dataclass(frozen=True)
class Session:
    key: str  # SHA-256 of the token: how the store knows it
    operator: str
    role: str
    csrf: str
    created: float
    seen: float
    factor: str
    flash: tuple[str, ...] = ()  # notes left for this page by the previous request


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _csrf(token: str) -> str:
    return hmac.new(token.encode(), b"gateway-console-csrf", hashlib.sha256).hexdigest()


def _session(row: SessionRow, token: str) -> Session:
    return Session(row.token_hash, row.operator, row.role, _csrf(token), row.created_at,
                   row.seen_at, row.factor, row.flash)


class Sessions:
    def __init__(self, store: SessionStore, *, idle: float, absolute: float) -> None:
        self.store = store
        self.idle = idle
        self.absolute = absolute
        self.slack = min(TOUCH_SLACK, idle / 10)

    def create(self, operator: str, role: str, factor: str, now: float) -> tuple[str, Session]:
        """A new session (the expired ones of anyone are cleared on the way)."""
        self.store.purge(now, idle=self.idle, absolute=self.absolute)
        token = secrets.token_urlsafe(32)
        row = self.store.create(_key(token), operator, role, factor, now)
        return token, _session(row, token)

    def get(self, token: str | None, now: float) -> tuple[Session | None, str | None]:
        """The live session for ``token`` (its idle clock restarted, give or take
        :attr:`slack`), or None and why: "idle" or "absolute" when it just expired (it is
        removed), None when unknown."""
        if not token:
            return None, None
        row, expired = self.store.touch(_key(token), now, idle=self.idle,
                                        absolute=self.absolute, slack=self.slack)
        return (None, expired) if row is None else (_session(row, token), None)

    def flash(self, session: Session, text: str) -> None:
        """A note shown on the session's next page."""
        self.store.add_flash(session.key, text)

    def shown(self, session: Session) -> None:
        """Its notes were shown: drop them."""
        if session.flash:
            self.store.clear_flash(session.key)

    def end(self, token: str | None) -> bool:
        return bool(token) and self.store.delete(_key(token or ""))

    def end_all(self, operator: str) -> int:
        return self.store.delete_operator(operator)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(session.csrf, given)


class RateLimiter:
    """At most ``per_minute`` login attempts per key (the client address) in any
    60-second window, counted in the store for every console process on it. A refused
    attempt is not counted. The store sees only a SHA-256 of the key: a pseudonym that
    lets attempts be counted, not a secret (the audit trail records the address)."""

    WINDOW = 60.0

    def __init__(self, attempts: LoginAttempts, per_minute: int) -> None:
        self.attempts = attempts
        self.per_minute = per_minute

    @staticmethod
    def key(key: str) -> str:
        """What the store keeps for ``key``."""
        return hashlib.sha256(b"gateway-console-login\0" + key.encode()).hexdigest()

    def allow(self, key: str, now: float) -> bool:
        return self.attempts.allow(self.key(key), now, limit=self.per_minute,
                                   window=self.WINDOW)
