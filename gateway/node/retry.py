"""Retry timing and the per-partner circuit breaker (pure: values in, values out).

- :func:`backoff_delay`: exponential backoff ``base * factor**(attempt-1)`` capped at
  ``max_delay``, with +/- ``jitter`` (a fraction) drawn from an injected RNG, so many
  messages that failed together do not all come back at the same instant.
- :func:`after_failure`: what to do after a failed attempt: retry at a time, or give up
  (permanent error, or the message's expiry has passed) with a reason.
- :class:`Breaker`: closed -> open after ``failure_threshold`` consecutive failures; open
  refuses sends to that partner for ``reset_after`` seconds; then half-open lets one probe
  through: success closes it, failure opens it again. A dead partner therefore costs one
  probe per ``reset_after``, not a timeout per message, and never slows the others.

Times are epoch seconds (floats) passed in by the caller; nothing here reads a clock.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace
from enum import StrEnum

from gateway.node.config import BreakerPolicy, RetryPolicy

__all__ = [
    "Breaker",
    "BreakerBoard",
    "BreakerMode",
    "RetryDecision",
    "after_failure",
    "allow",
    "backoff_delay",
    "record_failure",
    "record_success",
]


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    exponent = max(0, attempt - 1)
    try:
        raw = policy.base * policy.factor ** exponent
    except OverflowError:
        raw = policy.max_delay
    delay = min(policy.max_delay, raw)
    if policy.jitter:
        delay *= 1.0 + policy.jitter * (2.0 * rng.random() - 1.0)
    return max(0.0, min(policy.max_delay, delay))


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    at: float | None  # epoch seconds of the next attempt when retry is True
    reason: str  # "retry", "permanent" or "expired"


def after_failure(policy: RetryPolicy, *, attempts: int, expires_at: float, now: float,
                  retryable: bool, rng: random.Random) -> RetryDecision:
    """Decide after a failed attempt. The last retry is scheduled no later than the expiry;
    once the expiry has passed the message fails."""
    if not retryable:
        return RetryDecision(False, None, "permanent")
    if now >= expires_at:
        return RetryDecision(False, None, "expired")
    at = min(now + backoff_delay(policy, attempts, rng), expires_at)
    return RetryDecision(True, at, "retry")


class BreakerMode(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Breaker:
    mode: BreakerMode = BreakerMode.CLOSED
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False  # a half-open probe is in flight


def allow(breaker: Breaker, policy: BreakerPolicy, now: float) -> tuple[bool, Breaker]:
    """May a send to this partner start now? Returns the answer and the new state."""
    if breaker.mode is BreakerMode.CLOSED:
        return True, breaker
    if breaker.mode is BreakerMode.OPEN:
        assert breaker.opened_at is not None  # noqa: S101 - invariant of OPEN
        if now - breaker.opened_at >= policy.reset_after:
            return True, replace(breaker, mode=BreakerMode.HALF_OPEN, probing=True)
        return False, breaker
    if breaker.probing:  # half-open: one probe at a time
        return False, breaker
    return True, replace(breaker, probing=True)


def record_success(breaker: Breaker) -> Breaker:
    return Breaker()


def record_failure(breaker: Breaker, policy: BreakerPolicy, now: float) -> Breaker:
    if breaker.mode is BreakerMode.HALF_OPEN:
        return Breaker(BreakerMode.OPEN, breaker.failures + 1, now, False)
    failures = breaker.failures + 1
    if failures >= policy.failure_threshold:
        return Breaker(BreakerMode.OPEN, failures, now, False)
    return replace(breaker, failures=failures)


class BreakerBoard:
    """The daemon's breakers, one per partner (thread-safe shell around the pure core)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._states: dict[str, Breaker] = {}

    def allow(self, partner: str, now: float) -> bool:
        with self._lock:
            ok, new = allow(self._states.get(partner, Breaker()), self.policy, now)
            self._states[partner] = new
            return ok

    def blocked(self, now: float) -> list[str]:
        """Partners whose breaker is open and not yet due for a probe."""
        with self._lock:
            return [p for p, b in self._states.items()
                    if (b.mode is BreakerMode.OPEN and b.opened_at is not None
                        and now - b.opened_at < self.policy.reset_after)
                    or (b.mode is BreakerMode.HALF_OPEN and b.probing)]

    def success(self, partner: str) -> bool:
        """Record a success; True when this closed an open (or half-open) breaker."""
        with self._lock:
            old = self._states.get(partner, Breaker())
            self._states[partner] = record_success(old)
            return old.mode is not BreakerMode.CLOSED

    def failure(self, partner: str, now: float) -> bool:
        """Record a failure; True when this opened the breaker (from closed)."""
        with self._lock:
            old = self._states.get(partner, Breaker())
            new = record_failure(old, self.policy, now)
            self._states[partner] = new
            return old.mode is BreakerMode.CLOSED and new.mode is BreakerMode.OPEN

    def state(self, partner: str) -> Breaker:
        with self._lock:
            return self._states.get(partner, Breaker())
