"""The console's per-account lockout in the store, on every store (SQLite and
PostgreSQL): attempts counted before they are checked, one count for every process on
the store, a lock that ends by time, a count cleared by a login or an unlock, and
consoles racing on one account losing no count and letting no more than the limit
through."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from gateway.store.console_lockouts import CLAIMED, LOCKED, LOCKING, AccountLocks, LockRow
from tests.store.conftest import Store

ALICE = hashlib.sha256(b"alice").hexdigest()
BOB = hashlib.sha256(b"bob").hexdigest()
POLICY = {"limit": 3, "lockout": 300.0}


def test_failures_on_every_process_count_together_and_lock_for_all(store: Store) -> None:
    one, two = AccountLocks(store.open()), AccountLocks(store.open())
    assert one.claim(ALICE, 1000.0, **POLICY) == CLAIMED
    assert one.failed(ALICE, 1000.0, **POLICY) is False
    assert two.claim(ALICE, 1001.0, **POLICY) == CLAIMED  # another node's console
    assert two.failed(ALICE, 1001.0, **POLICY) is False
    assert two.get(ALICE) == LockRow(2, None)
    assert one.claim(ALICE, 1002.0, **POLICY) == CLAIMED
    assert one.failed(ALICE, 1002.0, **POLICY) is True  # the third failure locks
    assert two.get(ALICE) == LockRow(0, 1302.0)
    assert two.get(ALICE).locked(1301.9) is True  # type: ignore[union-attr]
    # locked for every process: refused, nothing counted, the lock not extended
    assert two.claim(ALICE, 1100.0, **POLICY) == LOCKED
    assert AccountLocks(store.open()).claim(ALICE, 1301.0, **POLICY) == LOCKED  # restarted
    assert one.get(ALICE) == LockRow(0, 1302.0)
    assert one.claim(BOB, 1100.0, **POLICY) == CLAIMED  # per account
    # the lock ends by time: the next attempt starts a new count
    assert two.claim(ALICE, 1302.0, **POLICY) == CLAIMED
    assert one.get(ALICE) == LockRow(1, None)


def test_a_login_or_an_unlock_clears_the_count(store: Store) -> None:
    one, two = AccountLocks(store.open()), AccountLocks(store.open())
    for at in (1000.0, 1001.0):
        assert one.claim(ALICE, at, **POLICY) == CLAIMED
        assert one.failed(ALICE, at, **POLICY) is False
    assert two.claim(ALICE, 1002.0, **POLICY) == CLAIMED  # this one logs in
    assert two.clear(ALICE) is True
    assert one.get(ALICE) is None
    for at in (1003.0, 1004.0):  # counting starts again: two failures do not lock
        assert one.claim(ALICE, at, **POLICY) == CLAIMED
        assert one.failed(ALICE, at, **POLICY) is False
    assert two.get(ALICE) == LockRow(2, None)
    for at in (1005.0, 1006.0):
        one.claim(ALICE, at, **POLICY)
        one.failed(ALICE, at, **POLICY)
    assert one.claim(ALICE, 1007.0, **POLICY) == LOCKED
    assert two.clear(ALICE) is True  # an unlock, on another node
    assert one.claim(ALICE, 1008.0, **POLICY) == CLAIMED
    assert two.clear(BOB) is False  # nothing to forget
    assert set(one.all()) == {ALICE}


def test_attempts_under_way_count_and_a_late_failure_locks_nothing_twice(
        store: Store) -> None:
    one, two = AccountLocks(store.open()), AccountLocks(store.open())
    # three attempts claimed at once on two consoles, none checked yet: a fourth is one
    # too many, and locks the account at once
    assert [one.claim(ALICE, 1000.0, **POLICY), two.claim(ALICE, 1000.1, **POLICY),
            one.claim(ALICE, 1000.2, **POLICY)] == [CLAIMED] * 3
    assert two.claim(ALICE, 1000.3, **POLICY) == LOCKING
    assert one.get(ALICE) == LockRow(0, 1300.3)
    # the three fail after the lock: they lock nothing more (one lockout, one event)
    assert [one.failed(ALICE, 1000.5, **POLICY), two.failed(ALICE, 1000.6, **POLICY),
            one.failed(ALICE, 1000.7, **POLICY)] == [False, False, False]
    assert two.get(ALICE) == LockRow(0, 1300.3)
    # a failure whose count a login cleared meanwhile locks nothing
    assert one.claim(BOB, 2000.0, **POLICY) == CLAIMED
    assert two.clear(BOB) is True
    assert one.failed(BOB, 2000.1, **POLICY) is False
    assert one.get(BOB) is None


def test_the_store_keeps_the_hash_the_count_and_the_lock_only(store: Store) -> None:
    locks = AccountLocks(store.open())
    locks.claim(ALICE, 1000.0, **POLICY)
    rows = [tuple(r) for r in store.connect().execute(
        "SELECT * FROM console_account_locks").fetchall()]
    assert rows == [(ALICE, 1, None)]


def test_consoles_racing_on_one_account_lose_no_count(store: Store) -> None:
    """Attempts on one account from three processes at the same moment: every one is
    counted, and no more than ``limit`` get through to a password check."""
    spools = [AccountLocks(store.open()) for _ in range(3)]
    big = {"limit": 1000, "lockout": 300.0}

    def attempt(i: int) -> str:
        locks = spools[i % 3]
        got = locks.claim(ALICE, 1000.0 + i / 1000, **big)
        locks.failed(ALICE, 1000.0 + i / 1000, **big)
        return got

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(attempt, range(60)))
    assert got == [CLAIMED] * 60
    assert spools[0].get(ALICE) == LockRow(60, None)  # not one count lost

    def guess(i: int) -> str:
        return spools[i % 3].claim(BOB, 2000.0 + i / 1000, **POLICY)

    with ThreadPoolExecutor(6) as pool:
        raced = list(pool.map(guess, range(18)))
    # exactly three are checked, the fourth locks the account, the rest meet the lock
    assert (raced.count(CLAIMED), raced.count(LOCKING), raced.count(LOCKED)) == (3, 1, 14)
