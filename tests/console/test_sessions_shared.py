"""Console sessions live in the store: a restarted console, or a second console process
on the same store (``gateway run``'s beside a ``gateway console``), knows them; an expired
one is gone for all of them; ``gateway operators disable`` ends an operator's sessions;
the store holds only a hash of each token. The login rate limit is counted in the store:
one limit for every console on it (SQLite and PostgreSQL), kept across a restart; a page
view writes the session's ``seen_at`` at most once per slack, and an idle session still
ends on time."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest

from gateway.cli import main
from gateway.console.pages import Console
from gateway.console.sessions import RateLimiter
from gateway.errors import SpoolError
from gateway.service.context import NodeContext
from gateway.store.console_sessions import LoginAttempts, SessionStore
from tests.console.conftest import Setup
from tests.console.test_pages import codes, get, login, post, post_login


def restarted(setup: Setup, ctx: NodeContext) -> Console:
    """A console as another process (or the same after a restart) makes it: its own
    connection to the store, nothing in memory."""
    return Console(ctx, setup.config, setup.accounts, clock=setup.clock)


def test_a_session_survives_a_restart_and_is_shared(setup: Setup) -> None:
    first = setup.app()
    token, csrf = login(first, setup, "olga")
    with NodeContext.open(setup.ctx.config.path) as ctx:
        other = restarted(setup, ctx)
        page = get(other, token, "/partners")
        assert page.status == 200
        assert f'name="csrf" value="{csrf}"' in page.body.decode()  # the same CSRF token
        # a form from one console's page is accepted by the other, and its note (shown on
        # the next page) travels with the session
        failed = setup.fixed.failed
        done = post(other, token, f"/messages/{failed}/resend", csrf=csrf, reason="test")
        assert done.status == 303
        note = f"Message {failed} is now sealed (resend: test)."
        assert note in get(first, token, f"/messages/{failed}").body.decode()
        assert note not in get(other, token, f"/messages/{failed}").body.decode()  # shown once
    # only the hash of the token is in the store
    conn = sqlite3.connect(setup.ctx.config.spool.database)
    try:
        rows = conn.execute("SELECT * FROM console_sessions").fetchall()
    finally:
        conn.close()
    assert len(rows) == 1
    assert token not in repr(rows)
    assert csrf not in repr(rows)


def test_an_expired_session_is_gone_for_every_console(setup: Setup) -> None:
    first = setup.app()
    token, _ = login(first, setup, "vic")
    setup.clock.now += setup.config.idle_timeout + 1
    with NodeContext.open(setup.ctx.config.path) as ctx:
        resp = get(restarted(setup, ctx), token, "/")
    assert resp.status == 303
    assert dict(resp.headers)["Location"] == "/login?expired=idle"
    assert dict(get(first, token, "/").headers)["Location"] == "/login"  # removed
    assert SessionStore(setup.ctx.spool).count() == 0


def test_operators_disable_ends_their_sessions(setup: Setup,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = setup.ctx.config.path
    with config.open("a") as f:
        f.write(f'\n[console]\naccounts = "{setup.config.accounts}"\n')
    app = setup.app()
    olga = [login(app, setup, "olga")[0] for _ in range(2)]
    vic, _ = login(app, setup, "vic")
    assert main(["--config", str(config), "operators", "disable", "olga"]) == 0
    assert "2 console session(s) ended" in capsys.readouterr().out
    sessions = SessionStore(setup.ctx.spool)
    assert (sessions.count("olga"), sessions.count("vic")) == (0, 1)
    assert [get(app, t, "/").status for t in (*olga, vic)] == [303, 303, 200]


def test_operators_reset_changes_nothing_when_the_store_cannot_be_opened(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is opened before the account changes: a reset that cannot end the
    sessions or record the event must not leave a new password nobody was shown."""
    config = setup.ctx.config.path
    with config.open("a") as f:
        f.write(f'\n[console]\naccounts = "{setup.config.accounts}"\n')
    before = setup.accounts.totp_secret("olga")

    def unavailable(*args: object, **kwargs: object) -> NodeContext:
        raise SpoolError("spool database error: unavailable")

    monkeypatch.setattr(NodeContext, "open", unavailable)
    assert main(["--config", str(config), "operators", "reset", "olga"]) != 0
    assert setup.accounts.totp_secret("olga") == before


def test_the_login_rate_limit_is_one_for_every_console_and_survives_a_restart(
        setup: Setup) -> None:
    first = setup.app()
    with NodeContext.open(setup.ctx.config.path) as ctx:
        other = restarted(setup, ctx)
        # login_rate = 20: ten attempts at each console use up the address's minute
        for app in (first, other) * 10:  # (an unknown name: no account is locked)
            assert post_login(app, setup, "nobody", password="x", otp="123456",
                              client="10.0.0.9").status == 401
        for app in (first, other):
            refused = post_login(app, setup, "ada", client="10.0.0.9")
            assert refused.status == 429
            assert b"Too many login attempts: wait a minute." in refused.body
        assert post_login(other, setup, "nobody", password="x", otp="123456").status \
            == 401  # per address
    with NodeContext.open(setup.ctx.config.path) as ctx:  # a restart remembers them
        again = restarted(setup, ctx)
        assert post_login(again, setup, "ada", client="10.0.0.9").status == 429
        # each refusal is one audit event, written by the console that refused
        limited = [d for _, d in codes(setup, "console_login_failed")
                   if d["reason"] == "rate_limited"]
        assert limited == [{"reason": "rate_limited", "client": "10.0.0.9"}] * 3
        setup.clock.now += 60  # the attempts of a minute ago expire
        assert post_login(again, setup, "ada", client="10.0.0.9").status == 303
        assert LoginAttempts(ctx.spool).count() == 1  # the expired ones are deleted
    with closing(sqlite3.connect(setup.ctx.config.spool.database)) as conn:
        kept = conn.execute("SELECT * FROM console_login_attempts").fetchall()
    assert kept == [(RateLimiter.key("10.0.0.9"), setup.clock.now)]
    assert "10.0.0.9" not in repr(kept)  # a hash of the address, not the address


@pytest.mark.integration
def test_the_login_rate_limit_is_shared_on_postgresql(pg_url: str) -> None:
    from gateway.store.postgres import PostgresSpool

    spools = [PostgresSpool(pg_url, holder=f"node-{i}") for i in range(3)]
    try:
        one, two = (RateLimiter(LoginAttempts(s), 4) for s in spools[:2])
        assert [lim.allow("192.0.2.7", 1000.0 + i)
                for i, lim in enumerate((one, two, one, two, one, two))] == \
            [True, True, True, True, False, False]
        assert one.allow("192.0.2.8", 1006.0) is True
        restarted_ = RateLimiter(LoginAttempts(spools[2]), 4)
        assert restarted_.allow("192.0.2.7", 1059.0) is False
        assert restarted_.allow("192.0.2.7", 1060.0) is True  # 1000's attempt expired
        # consoles racing for the last places: exactly the limit gets through
        racers = [RateLimiter(LoginAttempts(s), 5) for s in spools]
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda i: racers[i % 3].allow("192.0.2.9", 2000.0 + i / 100),
                                range(18)))
        assert got.count(True) == 5
    finally:
        for spool in spools:
            spool.close()


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


@pytest.fixture
def watch(setup: Setup) -> Iterator[sqlite3.Connection]:
    """A connection of its own on the spool: ``PRAGMA data_version`` changes when any
    other connection commits a change."""
    with closing(sqlite3.connect(setup.ctx.config.spool.database)) as conn:
        yield conn


def test_page_views_write_the_session_once_per_slack(setup: Setup,
                                                     watch: sqlite3.Connection) -> None:
    app = setup.app()
    assert app.sessions.slack == 60  # min(60 s, idle_timeout 600 s / 10)
    token, _ = login(app, setup, "vic")  # its last page view wrote seen_at; 31 s later:

    def seen() -> float:
        return float(watch.execute("SELECT seen_at FROM console_sessions").fetchone()[0])

    written = seen()
    before = _data_version(watch)
    for _ in range(5):  # 31..55 s after the last write: read, nothing written
        assert get(app, token, "/messages").status == 200
        setup.clock.now += 6
    assert (_data_version(watch), seen()) == (before, written)
    setup.clock.now += 5  # 60 s: this view writes
    assert get(app, token, "/messages").status == 200
    assert (_data_version(watch) != before, seen()) == (True, setup.clock.now)
    last_write = setup.clock.now
    setup.clock.now += 59
    assert get(app, token, "/messages").status == 200  # the last request: not written
    # idle runs from the stored time: 541 s after its last request (less than
    # idle_timeout, not less than idle_timeout - slack) the session has ended
    setup.clock.now = last_write + setup.config.idle_timeout + 1
    resp = get(app, token, "/messages")
    assert dict(resp.headers)["Location"] == "/login?expired=idle"
