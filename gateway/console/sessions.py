"""Server-side sessions and login rate limits for the console.

A session is a random token (the ``__Host-`` cookie's value) kept in the store
(:mod:`gateway.store.console_sessions`) by its SHA-256 only, with the operator, role,
second factor and two clocks: it ends after ``idle`` seconds without a request and
``absolute`` seconds after login, whichever comes first. Because it lives in the store, a
restarted console keeps its sessions, and every console process on the same store
(``gateway run``'s and a ``gateway console`` beside it) knows them. Logging out ends one
session; disabling or resetting an operator (``gateway operators disable|reset``) ends
all of theirs.

The CSRF token is derived from the session token (HMAC-SHA256 keyed by it), so it is
never stored and reveals nothing about the token; it stays the same for the session's
life. Login attempts are limited per client address (``per_minute`` in any 60 s window,
per console process), on top of the per-account lockout of
:mod:`gateway.console.accounts`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass

from gateway.store.console_sessions import SessionRow, SessionStore

__all__ = ["RateLimiter", "Session", "Sessions"]


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

    def create(self, operator: str, role: str, factor: str, now: float) -> tuple[str, Session]:
        """A new session (the expired ones of anyone are cleared on the way)."""
        self.store.purge(now, idle=self.idle, absolute=self.absolute)
        token = secrets.token_urlsafe(32)
        row = self.store.create(_key(token), operator, role, factor, now)
        return token, _session(row, token)

    def get(self, token: str | None, now: float) -> tuple[Session | None, str | None]:
        """The live session for ``token`` (its idle clock restarted), or None and why:
        "idle" or "absolute" when it just expired (it is removed), None when unknown."""
        if not token:
            return None, None
        row, expired = self.store.touch(_key(token), now, idle=self.idle,
                                        absolute=self.absolute)
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
    """At most ``per_minute`` events per key in any 60-second window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and now - hits[0] >= 60:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return False
            hits.append(now)
            return True
