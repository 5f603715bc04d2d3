"""The console's sessions in the store, on every store (SQLite and PostgreSQL): only a
hash of the token is kept, the idle and absolute timeouts, notes for the next page, and
ending one session or all of an operator's."""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.store.console_sessions import SessionStore
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
