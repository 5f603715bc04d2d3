"""Retry timing and the circuit breaker: pure functions on fixed clocks and seeded RNGs."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from gateway.node.config import BreakerPolicy, RetryPolicy
from gateway.node.retry import (
    Breaker,
    BreakerBoard,
    BreakerMode,
    after_failure,
    allow,
    backoff_delay,
    record_failure,
    record_success,
)

POLICY = RetryPolicy(base=2.0, factor=2.0, max_delay=60.0, jitter=0.0, expiry=3600.0)


def test_exponential_then_capped() -> None:
    rng = random.Random(1)
    assert [backoff_delay(POLICY, n, rng) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(POLICY, 10_000, rng) == 60.0  # no overflow


@given(st.integers(1, 50), st.floats(0.0, 0.99), st.integers(0, 2**32))
def test_jitter_stays_within_bounds(attempt: int, jitter: float, seed: int) -> None:
    policy = RetryPolicy(base=1.0, factor=3.0, max_delay=100.0, jitter=jitter, expiry=10.0)
    nominal = min(100.0, 3.0 ** (attempt - 1))
    delay = backoff_delay(policy, attempt, random.Random(seed))
    assert 0.0 <= delay <= 100.0
    assert nominal * (1 - jitter) - 1e-9 <= delay <= nominal * (1 + jitter) + 1e-9


def test_jitter_spreads_retries() -> None:
    policy = RetryPolicy(base=10.0, factor=2.0, max_delay=100.0, jitter=0.2, expiry=10.0)
    rng = random.Random(7)
    delays = {round(backoff_delay(policy, 1, rng), 6) for _ in range(50)}
    assert len(delays) > 40
    assert min(delays) >= 8.0
    assert max(delays) <= 12.0


def test_after_failure() -> None:
    rng = random.Random(0)
    d = after_failure(POLICY, attempts=1, expires_at=1000.0, now=100.0, retryable=True, rng=rng)
    assert (d.retry, d.at, d.reason) == (True, 102.0, "retry")
    d = after_failure(POLICY, attempts=9, expires_at=110.0, now=100.0, retryable=True, rng=rng)
    assert d.at == 110.0  # never scheduled past the expiry
    d = after_failure(POLICY, attempts=1, expires_at=100.0, now=100.0, retryable=True, rng=rng)
    assert (d.retry, d.reason) == (False, "expired")
    d = after_failure(POLICY, attempts=1, expires_at=1e9, now=100.0, retryable=False, rng=rng)
    assert (d.retry, d.reason) == (False, "permanent")


def test_breaker_opens_probes_and_closes() -> None:
    policy = BreakerPolicy(failure_threshold=3, reset_after=30.0)
    b = Breaker()
    for t in (1.0, 2.0):
        b = record_failure(b, policy, t)
        assert b.mode is BreakerMode.CLOSED
    b = record_failure(b, policy, 3.0)
    assert b.mode is BreakerMode.OPEN
    ok, b = allow(b, policy, 32.9)
    assert not ok
    ok, b = allow(b, policy, 33.0)
    assert ok
    assert b.mode is BreakerMode.HALF_OPEN
    ok, _ = allow(b, policy, 33.1)
    assert not ok  # one probe at a time
    reopened = record_failure(b, policy, 34.0)
    assert reopened.mode is BreakerMode.OPEN
    assert reopened.opened_at == 34.0
    assert record_success(b) == Breaker()


def test_board_isolates_partners() -> None:
    board = BreakerBoard(BreakerPolicy(failure_threshold=1, reset_after=10.0))
    board.failure("fips:4800000", 0.0)
    assert not board.allow("fips:4800000", 5.0)
    assert board.allow("fips:3600000", 5.0)
    assert board.blocked(5.0) == ["fips:4800000"]
    assert board.allow("fips:4800000", 10.0)  # the probe
    assert board.blocked(10.0) == ["fips:4800000"]  # while it is in flight
    board.success("fips:4800000")
    assert board.blocked(11.0) == []
    assert board.state("fips:4800000").mode is BreakerMode.CLOSED
