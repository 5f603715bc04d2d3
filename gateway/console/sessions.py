"""Server-side sessions and login rate limits for the console.

A session is a random token (the ``__Host-`` cookie's value; only its SHA-256 is kept)
mapped to the operator, role, a CSRF token and two clocks: it ends after ``idle``
seconds without a request and ``absolute`` seconds after login, whichever comes first.
Sessions live in the console process's memory: a restart logs everyone out.

Login attempts are limited per client address (``per_minute`` in any 60 s window), on top
of the per-account lockout of :mod:`gateway.console.accounts`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["RateLimiter", "Session", "Sessions"]


@dataclass
class Session:
    operator: str
    role: str
    csrf: str
    created: float
    seen: float
    factor: str
    flash: list[str] = field(default_factory=list)


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, *, idle: float, absolute: float) -> None:
        self.idle = idle
        self.absolute = absolute
        self._lock = threading.Lock()
        self._by_key: dict[str, Session] = {}

    def create(self, operator: str, role: str, factor: str, now: float) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(operator, role, secrets.token_urlsafe(32), now, now, factor)
        with self._lock:
            self._by_key[_key(token)] = session
        return token, session

    def get(self, token: str | None, now: float) -> tuple[Session | None, str | None]:
        """The live session for ``token`` (its idle clock restarted), or None and why:
        "idle" or "absolute" when it just expired (it is removed), None when unknown."""
        if not token:
            return None, None
        key = _key(token)
        with self._lock:
            session = self._by_key.get(key)
            if session is None:
                return None, None
            if now - session.seen > self.idle:
                del self._by_key[key]
                return None, "idle"
            if now - session.created > self.absolute:
                del self._by_key[key]
                return None, "absolute"
            session.seen = now
            return session, None

    def end(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            return self._by_key.pop(_key(token), None)

    def end_all(self, operator: str) -> int:
        with self._lock:
            doomed = [k for k, s in self._by_key.items() if s.operator == operator]
            for k in doomed:
                del self._by_key[k]
        return len(doomed)

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
