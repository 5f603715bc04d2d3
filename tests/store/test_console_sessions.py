"""The console's sessions and login attempts in the store, on every store (SQLite and
PostgreSQL): only a hash of the token is kept, the idle and absolute timeouts, a touch
that writes once per slack, notes for the next page, ending one session or all of an
operator's; login attempts counted once for every process on the store, kept across a
restart and expired after their window."""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.store.console_sessions import LoginAttempts, SessionStore
from tests.store.conftest import Store

KEY = hashlib.sha256(b"a token").hexdigest()


def test_sessions_are_shared_through_the_store(store: Store) -> None:
    first = SessionStore(store.open())
    first.create(KEY, "olga", "operator", "totp", 1000.0)
    other = SessionStore(store.open())  # another console process on the same store
    row, why = other.touch(KEY, 1010.0, idle=60, absolute=3600)
    assert why is None
    assert row is not None
    assert (row.operator, row.role, row.factor, row.created_at) == ("olga", "operator",
                                                                     "totp", 1000.0)
    first.add_flash(KEY, "Message 7 is now sealed (resend: test).")
    row, _ = other.touch(KEY, 1020.0, idle=60, absolute=3600)
    assert row is not None
    assert row.flash == ("Message 7 is now sealed (resend: test).",)
    other.clear_flash(KEY)
    row, _ = first.touch(KEY, 1030.0, idle=60, absolute=3600)
    assert row is not None
    assert row.flash == ()
    assert row.seen_at == 1020.0


def test_idle_and_absolute_expiry_remove_the_session(store: Store) -> None:
    sessions = SessionStore(store.open())
    sessions.create(KEY, "olga", "operator", "totp", 1000.0)
    assert sessions.touch(KEY, 1050.0, idle=60, absolute=120)[1] is None
    assert sessions.touch(KEY, 1100.0, idle=60, absolute=120)[1] is None
    row, why = sessions.touch(KEY, 1121.0, idle=60, absolute=120)
    assert (row, why) == (None, "absolute")
    assert sessions.touch(KEY, 1122.0, idle=60, absolute=120) == (None, None)  # gone
    sessions.create(KEY, "olga", "operator", "totp", 2000.0)
    assert sessions.touch(KEY, 2061.0, idle=60, absolute=120) == (None, "idle")
    assert sessions.count() == 0


def test_end_one_all_of_an_operator_and_purge(store: Store) -> None:
    sessions = SessionStore(store.open())
    keys: dict[str, Any] = {}
    for i, name in enumerate(("olga", "olga", "vic")):
        keys[f"{name}{i}"] = hashlib.sha256(f"t{i}".encode()).hexdigest()
        sessions.create(keys[f"{name}{i}"], name, "operator", "totp", 1000.0 + i)
    assert sessions.delete(keys["vic2"]) is True
    assert sessions.delete(keys["vic2"]) is False
    assert sessions.delete_operator("olga") == 2
    assert sessions.count() == 0
    sessions.create(KEY, "vic", "viewer", "totp", 1000.0)
    sessions.create(hashlib.sha256(b"new").hexdigest(), "vic", "viewer", "totp", 5000.0)
    assert sessions.purge(5010.0, idle=600, absolute=3600) == 1
    assert sessions.count("vic") == 1


def test_only_the_hash_of_the_token_is_stored(store: Store) -> None:
    sessions = SessionStore(store.open())
    sessions.create(KEY, "olga", "operator", "totp", 1000.0)
    conn = store.connect()
    rows = [tuple(r) for r in conn.execute("SELECT * FROM console_sessions").fetchall()]
    assert rows
    assert all("a token" not in str(v) for row in rows for v in row)
    assert rows[0][0] == KEY


def test_touch_writes_once_per_slack_and_idle_ends_on_the_stored_time(store: Store) -> None:
    sessions = SessionStore(store.open())
    other = SessionStore(store.open())
    twin = hashlib.sha256(b"another token").hexdigest()
    for key in (KEY, twin):
        sessions.create(key, "olga", "operator", "totp", 1000.0)
    limits = {"idle": 600, "absolute": 3600, "slack": 60}
    for at in (1010.0, 1030.0, 1059.5):  # within the slack: read, nothing written
        for key in (KEY, twin):
            row, why = (sessions if at < 1030 else other).touch(key, at, **limits)
            assert why is None
            assert row is not None
            assert row.seen_at == 1000.0
    for key in (KEY, twin):
        assert other.touch(key, 1060.0, **limits)[0] is not None  # slack reached: written
        row, _ = sessions.touch(key, 1119.0, **limits)  # the last request: not written
        assert row is not None
        assert row.seen_at == 1060.0
    # idle (600 s) runs from the stored 1060: the session ends about 541 s after its last
    # request (1119): never later than idle, never more than the slack earlier
    assert sessions.touch(KEY, 1660.0, **limits)[1] is None
    assert other.touch(twin, 1660.5, **limits) == (None, "idle")
    assert sessions.count() == 1


def test_login_attempts_are_one_limit_for_every_process(store: Store) -> None:
    first, second = LoginAttempts(store.open()), LoginAttempts(store.open())
    a, b = hashlib.sha256(b"client a").hexdigest(), hashlib.sha256(b"client b").hexdigest()
    limit = {"limit": 3, "window": 60.0}
    assert [first.allow(a, 1000.0, **limit), second.allow(a, 1001.0, **limit),
            first.allow(a, 1002.0, **limit)] == [True, True, True]
    assert second.allow(a, 1003.0, **limit) is False  # the other process counted them
    assert first.allow(a, 1004.0, **limit) is False   # refused ones are not counted
    assert second.allow(b, 1004.0, **limit) is True   # per key
    assert first.count(a) == 3
    # a restarted process (a new spool, nothing in memory) still sees them
    restarted = LoginAttempts(store.open())
    assert restarted.allow(a, 1059.0, **limit) is False
    # attempts expire after the window: 1000 is gone at 1060, the others still count
    assert restarted.allow(a, 1060.0, **limit) is True
    assert restarted.allow(a, 1060.5, **limit) is False
    assert restarted.allow(a, 1065.0, **limit) is True  # 1001, 1002 expired; 1004 refused
    assert first.count() == 2  # what has expired (of every key) is deleted
