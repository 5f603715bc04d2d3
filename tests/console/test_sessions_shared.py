"""Console sessions live in the store: a restarted console, or a second console process
on the same store (``gateway run``'s beside a ``gateway console``), knows them; an expired
one is gone for all of them; ``gateway operators disable`` ends an operator's sessions;
the store holds only a hash of each token."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.cli import main
from gateway.console.pages import Console
from gateway.errors import SpoolError
from gateway.service.context import NodeContext
from gateway.store.console_sessions import SessionStore
from tests.console.conftest import Setup
from tests.console.test_pages import get, login, post


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
