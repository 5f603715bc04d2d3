"""Every console page and guard, in process (Console.handle on Request values), on fixed
data: login with TOTP, lockout, rate limit, cookies and headers, roles, CSRF, session
timeouts, search and paging, detail, resend/cancel with a reason, audit verify/export."""

from __future__ import annotations

import io
import zipfile

import pytest

from gateway.console import totp
from gateway.console.pages import Console
from gateway.console.web import COOKIE, Request, Response
from gateway.store.states import State
from tests.console.conftest import Setup


def code(setup: Setup, name: str, offset: int = 0) -> str:
    return totp.code_at(setup.secrets[name][1], totp.step_of(setup.clock.now) + offset)


def post_login(app: Console, setup: Setup, name: str, *, password: str | None = None,
               otp: str | None = None, client: str = "127.0.0.1") -> Response:
    form = {"name": [name], "password": [password or setup.secrets[name][0]],
            "code": [otp if otp is not None else code(setup, name)]}
    return app.handle(Request("POST", "/login", form=form, client=client))


def login(app: Console, setup: Setup, name: str) -> tuple[str, str]:
    """(session cookie, csrf token) of a fresh login."""
    resp = post_login(app, setup, name)
    assert resp.status == 303, resp.body[:500]
    cookie = dict(resp.headers)["Set-Cookie"]
    token = cookie.split(";")[0].split("=", 1)[1]
    page = get(app, token, "/")
    csrf = page.body.decode().split('name="csrf" value="')[1].split('"')[0]
    setup.clock.now += 31  # the next login of the same account needs the next code
    return token, csrf


def get(app: Console, token: str, path: str) -> Response:
    target, _, _qs = path.partition("?")
    req = Request.parse("GET", path, cookie_header=f"{COOKIE}={token}")
    assert req.path == target
    return app.handle(req)


def post(app: Console, token: str, path: str, **form: str) -> Response:
    return app.handle(Request("POST", path, form={k: [v] for k, v in form.items()},
                              cookies={COOKIE: token}, origin="http://127.0.0.1:8600",
                              host="127.0.0.1:8600"))


def codes(setup: Setup, code_: str) -> list[tuple[str, dict[str, object]]]:
    with setup.ctx.audit() as log:
        return [(e.event.actor, dict(e.event.detail)) for e in log.query(code=code_)]


def test_login_with_totp_sets_a_host_cookie_and_audits(setup: Setup) -> None:
    app = setup.app()
    page = app.handle(Request("GET", "/login"))
    headers = dict(page.all_headers())
    assert page.status == 200
    assert "script-src" not in headers["Content-Security-Policy"]  # no script at all
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert b"<script" not in page.body
    assert post_login(app, setup, "olga", password="wrong").status == 401
    assert post_login(app, setup, "olga", otp="000000").status == 401
    assert post_login(app, setup, "nobody", password="x", otp="123456").status == 401
    resp = post_login(app, setup, "olga")
    assert resp.status == 303
    cookie = dict(resp.headers)["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attr in ("Path=/", "Secure", "HttpOnly", "SameSite=Strict"):
        assert attr in cookie
    assert "Domain" not in cookie
    # the same code a second time is refused (a code works once)
    assert post_login(app, setup, "olga").status == 401
    assert ("olga", {"role": "operator", "factor": "totp", "client": "127.0.0.1"}) in \
        codes(setup, "console_login")
    failed = codes(setup, "console_login_failed")
    assert ("olga", {"reason": "password", "client": "127.0.0.1"}) in failed
    assert ("olga", {"reason": "code", "client": "127.0.0.1"}) in failed
    assert ("unknown", {"reason": "unknown", "client": "127.0.0.1"}) in failed


def test_lockout_and_rate_limit(setup: Setup) -> None:
    app = setup.app()
    for _ in range(3):
        assert post_login(app, setup, "vic", password="wrong").status == 401
    assert codes(setup, "console_lockout") == [("vic", {"seconds": 300})]
    assert post_login(app, setup, "vic").status == 401  # right password, but locked
    assert ("vic", {"reason": "locked", "client": "127.0.0.1"}) in \
        codes(setup, "console_login_failed")
    setup.clock.now += 301
    assert post_login(app, setup, "vic").status == 303
    for _ in range(20):
        post_login(app, setup, "ada", password="wrong", client="10.0.0.9")
    assert post_login(app, setup, "ada", client="10.0.0.9").status == 429
    assert ("unknown", {"reason": "rate_limited", "client": "10.0.0.9"}) in \
        codes(setup, "console_login_failed")


def test_every_page_renders_for_a_viewer(setup: Setup) -> None:
    app = setup.app()
    token, _ = login(app, setup, "vic")
    assert app.handle(Request("GET", "/")).status == 303  # no session: to the login
    for path in ("/", "/messages", f"/messages/{setup.fixed.failed}", "/partners",
                 "/certificates", "/audit", "/messages.csv", "/static/console.css", "/clocks",
                 f"/messages/{setup.fixed.delivered_after_breaker}"):
        resp = get(app, token, path)
        assert resp.status == 200, (path, resp.body[:300])
    assert get(app, token, "/operators").status == 403
    assert get(app, token, "/messages/99999").status == 404
    dash = get(app, token, "/").body.decode()
    assert 'href="/messages?direction=out&amp;state=failed&amp;partner=fips%3A4800000"' in dash
    partners = get(app, token, "/partners").body.decode()
    assert "memory://ops-b" in partners
    assert "fips:48" in partners
    admin, _ = login(app, setup, "ada")
    listing = get(app, admin, "/operators").body.decode()
    assert "olga" in listing
    assert "operator" in listing


def test_search_paging_and_detail(setup: Setup) -> None:
    app = setup.app()
    token, _ = login(app, setup, "vic")
    page = get(app, token, "/messages?per=25").body.decode()
    assert "Showing 1–8 of 8" in page
    page = get(app, token, "/messages?state=failed").body.decode()
    assert "Showing 1–1 of 1" in page
    assert "TlsHandshakeFailed" in page
    two = get(app, token, "/messages?per=25&page=1&case=CASE-0001").body.decode()
    assert "Showing 1–1 of 1" in two
    detail = get(app, token, f"/messages/{setup.fixed.delivered_after_breaker}").body.decode()
    assert "BreakerOpen" in detail  # in the attempts and the timeline ...
    now_row = detail.split('id="error-now">')[1].split("</td>")[0]
    assert now_row == "none"  # ... but not as its current error
    assert "resend_form" not in detail
    assert 'id="resend-form"' not in detail
    retrying = get(app, token, f"/messages/{setup.fixed.retrying}").body.decode()
    assert 'id="cancel-form"' in retrying
    assert "ConnectionRefused" in retrying
    csv_ = get(app, token, "/messages.csv")
    assert csv_.body.decode().splitlines()[0].startswith("id,created_at")
    assert dict(csv_.headers)["X-Total-Count"] == "8"


def test_resend_needs_operator_role_reason_and_csrf(setup: Setup) -> None:
    app = setup.app()
    failed = setup.fixed.failed
    viewer, vcsrf = login(app, setup, "vic")
    resp = post(app, viewer, f"/messages/{failed}/resend", csrf=vcsrf,
                reason="partner-recovered")
    assert resp.status == 403
    assert b"a viewer cannot resend" in resp.body
    assert ("vic", {"reason": "role", "action": "resend"}) in codes(setup, "console_refused")
    token, csrf = login(app, setup, "olga")
    # no CSRF token, a wrong one, or another origin: refused and audited
    assert post(app, token, f"/messages/{failed}/resend", reason="test").status == 403
    assert post(app, token, f"/messages/{failed}/resend", csrf="x" * 43,
                reason="test").status == 403
    foreign = app.handle(Request("POST", f"/messages/{failed}/resend",
                                 form={"csrf": [csrf], "reason": ["test"]},
                                 cookies={COOKIE: token}, origin="https://evil.example",
                                 host="127.0.0.1:8600"))
    assert foreign.status == 403
    assert sum(1 for a, d in codes(setup, "console_refused") if d.get("reason") == "csrf") == 3
    assert setup.ctx.spool.get(failed).state is State.FAILED
    # no reason: not done, said on the page
    resp = post(app, token, f"/messages/{failed}/resend", csrf=csrf, reason="")
    assert resp.status == 303
    assert "reason is required" in get(app, token, f"/messages/{failed}").body.decode()
    resp = post(app, token, f"/messages/{failed}/resend", csrf=csrf,
                reason="partner-recovered", ticket="INC-7")
    assert resp.status == 303
    assert setup.ctx.spool.get(failed).state is State.SEALED
    assert codes(setup, "resent_by_operator") == [
        ("olga", {"reason": "partner-recovered", "ticket": "INC-7"})]
    audit = get(app, token, "/audit?code=resent_by_operator").body.decode()
    assert "olga" in audit
    assert "reason=partner-recovered" in audit


def test_session_idle_and_absolute_expiry_and_logout(setup: Setup) -> None:
    app = setup.app()
    token, _ = login(app, setup, "vic")
    setup.clock.now += 560  # (login() moved it on by 31 s after the last request)
    assert get(app, token, "/").status == 200
    setup.clock.now += 601
    resp = get(app, token, "/")
    assert resp.status == 303
    assert dict(resp.headers)["Location"] == "/login?expired=idle"
    assert b"without activity" in app.handle(Request.parse("GET", "/login?expired=idle")).body
    token, _ = login(app, setup, "vic")
    for _ in range(7):  # active all along, but the absolute limit (3600 s) ends it
        setup.clock.now += 550
        last = get(app, token, "/")
    assert last.status == 303
    assert dict(last.headers)["Location"] == "/login?expired=absolute"
    token, csrf = login(app, setup, "vic")
    assert post(app, token, "/logout", csrf=csrf).status == 303
    assert get(app, token, "/").status == 303
    token, _ = login(app, setup, "olga")
    setup.accounts.disable("olga")  # `gateway operators disable` ends its sessions
    assert get(app, token, "/").status == 303
    token, csrf = login(app, setup, "vic")
    assert post(app, token, "/logout", csrf=csrf).status == 303
    assert get(app, token, "/").status == 303
    assert [a for a, _ in codes(setup, "console_logout")] == ["vic", "vic"]


def test_audit_verify_and_export(setup: Setup) -> None:
    app = setup.app()
    token, csrf = login(app, setup, "vic")
    page = post(app, token, "/audit/verify", csrf=csrf).body.decode()
    assert "<b>OK</b>" in page
    assert codes(setup, "audit_verified")[0][0] == "vic"
    assert "by vic (console): OK" in get(app, token, "/").body.decode()
    assert get(app, token, "/audit/export").status == 400
    bundle = get(app, token, "/audit/export?message=msg-00004")
    assert bundle.status == 200
    assert bundle.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(bundle.body)) as zf:
        assert "manifest.json" in zf.namelist()
    assert codes(setup, "audit_exported")[0][0] == "vic"


def test_dashboard_shows_a_verify_from_the_command_line(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    import getpass

    from gateway.cli import main

    app = setup.app()
    token, _ = login(app, setup, "vic")
    assert "Last verify: never recorded" in get(app, token, "/").body.decode()
    assert main(["--config", str(setup.ctx.config.path), "audit", "verify"]) == 0
    assert "recorded as event" in capsys.readouterr().out
    page = get(app, token, "/").body.decode()
    assert f"by {getpass.getuser()} (cli): OK" in page


def test_ping_a_partner_needs_the_operator_role_and_csrf(setup: Setup) -> None:
    app = setup.app()
    viewer, viewer_csrf = login(app, setup, "vic")
    refused = post(app, viewer, "/partners/ping", csrf=viewer_csrf, partner="fips:4800000")
    assert refused.status == 403
    assert "cannot ping partners" in refused.body.decode()
    assert ("vic", {"reason": "role", "action": "ping"}) in codes(setup, "console_refused")
    token, csrf = login(app, setup, "olga")
    assert post(app, token, "/partners/ping", partner="fips:4800000").status == 403  # no CSRF
    assert codes(setup, "partner_pinged") == []
    # B's transports: an in-memory mailbox (listed) and a folder that does not exist
    page = post(app, token, "/partners/ping", csrf=csrf, partner="fips:4800000")
    assert page.status == 200
    html = page.body.decode()
    assert "Ping fips:4800000" in html
    assert "memory://ops-b" in html
    assert "connected and listed the folder (0 file(s) waiting)" in html
    assert "file:///nonexistent" in html
    assert "ConnectFailed" in html
    assert "the folder does not exist" in html
    pinged = codes(setup, "partner_pinged")
    assert [(actor, d["ok"], d["check"]) for actor, d in pinged] == [
        ("olga", 1, "session"), ("olga", 0, "session")]
    assert post(app, token, "/partners/ping", csrf=csrf, partner="fips:9900000").status == 400
