"""What each console page shows and does. :class:`Console` turns a
:class:`~gateway.console.web.Request` into a :class:`~gateway.console.web.Response`:
login and sessions, the role and CSRF checks of every state-changing request, then a page
that calls :mod:`gateway.service` and renders a template. Every login, failed login,
lockout, refusal and action is an audit event (codes in docs/audit.md).

Pages: ``/`` dashboard, ``/messages`` (search, paging, sorting; ``/messages.csv``),
``/messages/ID`` (detail; ``POST .../resend`` and ``.../cancel``), ``/partners``
(``POST /partners/ping``), ``/certificates``, ``/audit`` (``POST /audit/verify``,
``/audit/export``), ``/clocks``,
``/operators`` (admin), ``/login``, ``POST /logout``."""

from __future__ import annotations

import csv
import io
import logging
import re
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from gateway.console.accounts import Accounts, rank
from gateway.console.sessions import RateLimiter, Session, Sessions
from gateway.console.web import COOKIE, Request, Response, redirect
from gateway.errors import GatewayError, LoginRefused, MessageNotFound, UsageError
from gateway.node.console_config import ConsoleConfig
from gateway.service import audit as audit_svc
from gateway.service import clocks as clock_svc
from gateway.service import messages as msg_svc
from gateway.service import partners as partner_svc
from gateway.service.context import NodeContext
from gateway.service.status import audit_state, certificates, node_status, partner_health
from gateway.store.console_sessions import LoginAttempts, SessionStore
from gateway.store.query import SORT_COLUMNS, MessageQuery
from gateway.store.spool import from_epoch
from gateway.store.states import Direction, State

__all__ = ["CSV_CAP", "Console"]

log = logging.getLogger("gateway.console")

CSV_CAP = 5000  # rows in one CSV export
PAGE_SIZES = (25, 50, 100, 200)
AUDIT_PAGE = 100
_STATIC = Path(__file__).parent / "static"
_MESSAGE_PATH = re.compile(r"/messages/([A-Za-z0-9._:@-]{1,200})(?:/(resend|cancel))?")


def _when(value: Any) -> str:
    """A time for people: UTC, to the second."""
    if value is None:
        return "-"
    moment = from_epoch(value) if isinstance(value, int | float) else value
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _day(text: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError("a time is YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Console:
    """The console application (no sockets: see :mod:`gateway.console.server`)."""

    def __init__(self, ctx: NodeContext, config: ConsoleConfig, accounts: Accounts, *,
                 clock: Callable[[], float] = time.time,
                 live_breakers: Callable[[], dict[str, str]] | None = None) -> None:
        self.ctx = ctx
        self.config = config
        self.accounts = accounts
        self.clock = clock
        self.live_breakers = live_breakers
        self.sessions = Sessions(SessionStore(ctx.spool), idle=config.idle_timeout,
                                 absolute=config.absolute_timeout)
        self.limiter = RateLimiter(LoginAttempts(ctx.spool), config.login_rate)
        self.env = Environment(loader=PackageLoader("gateway.console", "templates"),
                               autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["when"] = _when

    # --- plumbing -------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def render(self, template: str, req: Request, session: Session | None, *,
               status: int = 200, **values: Any) -> Response:
        flash = list(session.flash) if session else []
        if session:
            self.sessions.shown(session)
        html = self.env.get_template(template).render(
            req=req, session=session, node=self.ctx.config.node.party, flash=flash,
            can_act=session is not None and rank(session.role) >= rank("operator"),
            is_admin=session is not None and session.role == "admin", **values)
        return Response(status, html.encode("utf-8"))

    def audit(self, code: str, *, actor: str, **values: Any) -> None:
        """An audit event in the node's trail (committed at once)."""
        with self.ctx.spool.transaction(self.now()) as txn:
            txn.audit(code, actor=actor, **values)

    def _cookie(self, token: str, *, clear: bool = False) -> tuple[str, str]:
        value = "" if clear else token
        attrs = "Path=/; Secure; HttpOnly; SameSite=Strict"
        if clear:
            attrs += "; Max-Age=0"
        return ("Set-Cookie", f"{COOKIE}={value}; {attrs}")

    def _same_origin(self, req: Request) -> bool:
        if req.origin is None:
            return True  # not sent by every browser for every form; the CSRF token decides
        scheme = "https" if req.tls else "http"
        return req.host is not None and req.origin == f"{scheme}://{req.host}"

    # --- dispatch -------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        try:
            return self._dispatch(req)
        except MessageNotFound:
            return self._error(req, 404, "No such message.")
        except UsageError as exc:
            return self._error(req, 400, exc.message)
        except GatewayError as exc:
            log.warning("console: %s on %s", exc.code, req.path)
            return self._error(req, 500, f"{exc.code}: the gateway could not do this.")

    def _error(self, req: Request, status: int, text: str) -> Response:
        session, _ = self.sessions.get(req.cookies.get(COOKIE), self.clock())
        return self.render("error.html", req, session, status=status, text=text)

    def _dispatch(self, req: Request) -> Response:
        if req.path == "/static/console.css":
            return Response(200, (_STATIC / "console.css").read_bytes(),
                            "text/css; charset=utf-8")
        if req.path == "/login":
            return self.login(req)
        token = req.cookies.get(COOKIE)
        session, expired = self.sessions.get(token, self.clock())
        if session is not None:
            account = self.accounts.get(session.operator)
            if account is None or account.disabled:  # disabled since: its sessions end
                self.sessions.end(token)
                session, expired = None, None
        if session is None:
            if req.method == "POST" and req.path != "/logout":
                return self._error(req, 403, "Your session has ended: log in again.")
            return redirect("/login" + (f"?expired={expired}" if expired else ""))
        if req.method == "POST":
            if not self._same_origin(req) or not Sessions.csrf_ok(session, req.field("csrf")):
                self.audit("console_refused", actor=session.operator,
                           detail={"reason": "csrf", "path": req.path[:100]})
                return self._error(req, 403, "Refused: the form was not sent by this "
                                   "console (CSRF check). Reload the page and try again.")
            if req.path == "/logout":
                self.sessions.end(token)
                self.audit("console_logout", actor=session.operator)
                return Response(303, b"", headers=[("Location", "/login"),
                                                   self._cookie("", clear=True)])
        routes: dict[tuple[str, str], Callable[[Request, Session], Response]] = {
            ("GET", "/"): self.dashboard, ("GET", "/messages"): self.messages,
            ("GET", "/messages.csv"): self.messages_csv, ("GET", "/partners"): self.partners,
            ("POST", "/partners/ping"): self.ping,
            ("GET", "/certificates"): self.certificates, ("GET", "/audit"): self.audit_page,
            ("POST", "/audit/verify"): self.audit_verify,
            ("GET", "/audit/export"): self.audit_export, ("GET", "/operators"): self.operators,
            ("GET", "/clocks"): self.clocks,
        }
        page = routes.get((req.method, req.path))
        if page is not None:
            return page(req, session)
        match = _MESSAGE_PATH.fullmatch(req.path)
        if match and req.method == "GET" and match.group(2) is None:
            return self.message(req, session, match.group(1))
        if match and req.method == "POST" and match.group(2):
            return self.act(req, session, match.group(1), match.group(2))
        return self._error(req, 404, "No such page.")

    # --- login ----------------------------------------------------------------------

    def login(self, req: Request) -> Response:
        if req.method == "GET":
            expired = req.arg("expired")
            note = {"idle": "Your session ended after a time without activity.",
                    "absolute": "Your session reached its maximum length."}.get(expired)
            return self.render("login.html", req, None, note=note,
                               certificate=req.certificate_name)
        if not self._same_origin(req):
            return self.render("login.html", req, None, status=403,
                               note="Refused: the form was not sent by this console.")
        now = self.clock()
        if not self.limiter.allow(req.client, now):
            self.audit("console_login_failed", actor="unknown",
                       detail={"reason": "rate_limited", "client": req.client[:64]})
            return self.render("login.html", req, None, status=429,
                               note="Too many login attempts: wait a minute.")
        name = (req.field("name") or "").strip()
        try:
            done = self.accounts.authenticate(name, req.field("password") or "",
                                              req.field("code") or "", now,
                                              certificate_name=req.certificate_name)
        except LoginRefused as exc:
            reason = str(exc.details.get("reason", "refused"))
            actor = "unknown" if reason == "unknown" else name  # a name that is no account
            # may be a mistyped password: it is not recorded
            self.audit("console_login_failed", actor=actor,
                       detail={"reason": reason, "client": req.client[:64]})
            if exc.details.get("locked"):
                self.audit("console_lockout", actor=actor,
                           detail={"seconds": int(self.config.lockout)})
            return self.render("login.html", req, None, status=401,
                               note="Login refused: check the name, password and code.",
                               certificate=req.certificate_name)
        token, _ = self.sessions.create(done.account.name, done.account.role,
                                              done.factor, now)
        self.audit("console_login", actor=done.account.name,
                   detail={"role": done.account.role, "factor": done.factor,
                           "client": req.client[:64]})
        return Response(303, b"", headers=[("Location", "/"), self._cookie(token)])

    # --- pages ----------------------------------------------------------------------

    def dashboard(self, req: Request, session: Session) -> Response:
        now = self.now()
        status = node_status(self.ctx, now)
        with self.ctx.audit() as trail:
            health = partner_health(self.ctx, trail, now, self._breakers())
            trail_state = audit_state(trail)
        certs = [c for c in certificates(self.ctx.keys_dir, now) if c["days_left"] <= 30]
        return self.render("dashboard.html", req, session, status_=status,
                           open_breakers=[h for h in health if h.breaker != "closed"],
                           certs=certs, trail=trail_state, verified=trail_state["last_verify"])

    def _breakers(self) -> dict[str, str] | None:
        return self.live_breakers() if self.live_breakers else None

    def _query(self, req: Request, *, limit: int, offset: int = 0) -> MessageQuery:
        direction = req.arg("direction")
        states = [State(s) for s in req.args("state") if s in State.__members__.values()]
        sort = req.arg("sort", "id")
        return MessageQuery(
            message_id=req.arg("message") or None, conversation=req.arg("conversation") or None,
            case_id=req.arg("case") or None, partner=req.arg("partner") or None,
            direction=Direction(direction) if direction in Direction.__members__.values()
            else None, states=states, action=req.arg("action") or None,
            error_code=req.arg("error") or None, since=_day(req.arg("since")),
            until=_day(req.arg("until")), sort=sort if sort in SORT_COLUMNS else "id",
            descending=req.arg("order", "desc") != "asc", offset=offset, limit=limit)

    def messages(self, req: Request, session: Session) -> Response:
        per = int(req.arg("per", "50")) if req.arg("per", "50").isdigit() else 50
        per = per if per in PAGE_SIZES else 50
        page_no = max(1, int(req.arg("page", "1")) if req.arg("page", "1").isdigit() else 1)
        page = msg_svc.search(self.ctx.spool, self._query(req, limit=per,
                                                          offset=(page_no - 1) * per))
        rows = [(m, msg_svc.current_error(m)[0]) for m in page.items]
        return self.render("messages.html", req, session, page=page, rows=rows,
                           page_no=page_no, per=per, states=[s.value for s in State],
                           directions=[d.value for d in Direction], sorts=SORT_COLUMNS,
                           partners=[p.party for p in self.ctx.config.partners],
                           csv_cap=CSV_CAP)

    def messages_csv(self, req: Request, session: Session) -> Response:
        page = msg_svc.search(self.ctx.spool, self._query(req, limit=CSV_CAP))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        columns = ["id", "created_at", "updated_at", "direction", "state", "message_id",
                   "ref_to", "case_id", "partner", "from_party", "to_party", "action",
                   "attempts", "error_code", "next_attempt_at"]
        writer.writerow(columns)
        for m in page.items:
            v = msg_svc.view(m)
            writer.writerow(["" if v.get(c) is None else v[c] for c in columns])
        headers = [("Content-Disposition", 'attachment; filename="messages.csv"'),
                   ("X-Total-Count", str(page.total))]
        if page.cut:
            headers.append(("X-Rows-Cut", f"{len(page.items)} of {page.total}"))
        return Response(200, buf.getvalue().encode(), "text/csv; charset=utf-8", headers)

    def message(self, req: Request, session: Session, ident: str) -> Response:
        detail = msg_svc.message_detail(self.ctx, ident, self.now())
        return self.render("message.html", req, session, d=detail, m=detail.message,
                           error=msg_svc.current_error(detail.message),
                           reasons=msg_svc.REASONS)

    def act(self, req: Request, session: Session, ident: str, verb: str) -> Response:
        if rank(session.role) < rank("operator"):
            self.audit("console_refused", actor=session.operator,
                       detail={"reason": "role", "action": verb})
            return self._error(req, 403, f"Refused: a {session.role} cannot {verb} "
                               "messages (the operator role can).")
        action = msg_svc.resend if verb == "resend" else msg_svc.cancel
        try:
            result = action(self.ctx, ident, operator=session.operator,
                            reason=req.field("reason") or "",
                            ticket=(req.field("ticket") or "").strip() or None, now=self.now())
        except UsageError as exc:
            self.sessions.flash(session, f"Not done: {exc.message}")
            return redirect(f"/messages/{quote(ident)}")
        m = result.message
        self.sessions.flash(session, f"Message {m.id} is now {m.state} ({verb}: "
                                     f"{req.field('reason')}).")
        return redirect(f"/messages/{m.id}")

    def partners(self, req: Request, session: Session, *,
                 pinged: dict[str, Any] | None = None) -> Response:
        with self.ctx.audit() as trail:
            health = partner_health(self.ctx, trail, self.now(), self._breakers())
        return self.render("partners.html", req, session, partners=health,
                           live=self.live_breakers is not None, pinged=pinged)

    def ping(self, req: Request, session: Session) -> Response:
        """Ping a partner over each of its transports (what ``gateway partner ping`` does)
        and show the results on the partners page."""
        if rank(session.role) < rank("operator"):
            self.audit("console_refused", actor=session.operator,
                       detail={"reason": "role", "action": "ping"})
            return self._error(req, 403, f"Refused: a {session.role} cannot ping partners "
                               "(the operator role can).")
        party = (req.field("partner") or "").strip()
        results = partner_svc.ping_partner(self.ctx, party, operator=session.operator,
                                           now=datetime.now(UTC))
        return self.partners(req, session, pinged={
            "party": party, "ok": all(r.ok for r in results), "results": results})

    def certificates(self, req: Request, session: Session) -> Response:
        return self.render("certificates.html", req, session,
                           certs=certificates(self.ctx.keys_dir, self.now()))

    def _event_filter(self, req: Request) -> audit_svc.EventFilter:
        return audit_svc.EventFilter(
            message_id=req.arg("message") or None, case_id=req.arg("case") or None,
            partner=req.arg("partner") or None, codes=tuple(req.args("code")),
            since=_day(req.arg("since")), until=_day(req.arg("until")))

    def audit_page(self, req: Request, session: Session, *,
                   report: Any = None) -> Response:
        page_no = max(1, int(req.arg("page", "1")) if req.arg("page", "1").isdigit() else 1)
        with self.ctx.audit() as trail:
            page = audit_svc.list_events(trail, self._event_filter(req), limit=AUDIT_PAGE,
                                         offset=(page_no - 1) * AUDIT_PAGE, descending=True)
            events = list(page.events)
        return self.render("audit.html", req, session, events=events, page=page,
                           page_no=page_no, report=report)

    def audit_verify(self, req: Request, session: Session) -> Response:
        pinned, _ = audit_svc.node_pin(self.ctx.keys_dir)
        with self.ctx.audit(write=True) as trail:
            report = audit_svc.verify_trail(trail, pinned or None)
            audit_svc.record_verification(trail, report, actor=session.operator,
                                          via="console", now=self.now())
        return self.audit_page(req, session, report=report)

    def audit_export(self, req: Request, session: Session) -> Response:
        f = self._event_filter(req)
        if f.message_id is None and f.since is None and f.until is None:
            raise UsageError("say what to export: a message ID, or a since/until range")
        with tempfile.TemporaryDirectory() as tmp, self.ctx.audit() as trail:
            out = Path(tmp) / "audit-bundle.zip"
            summary = audit_svc.export_events(trail, out, now=self.now(), since=f.since,
                                              until=f.until, message_id=f.message_id)
            data = out.read_bytes()
        self.audit("audit_exported", actor=session.operator,
                   detail={"events": summary.events, "first_seq": summary.first_seq,
                           "last_seq": summary.last_seq})
        return Response(200, data, "application/zip",
                        [("Content-Disposition", 'attachment; filename="audit-bundle.zip"')])

    def operators(self, req: Request, session: Session) -> Response:
        if session.role != "admin":
            self.audit("console_refused", actor=session.operator,
                       detail={"reason": "role", "action": "operators"})
            return self._error(req, 403, "Refused: only an admin sees the accounts.")
        now = self.clock()
        return self.render("operators.html", req, session, accounts=self.accounts.list(),
                           now=now, lockout=timedelta(seconds=self.config.lockout))

    def clocks(self, req: Request, session: Session) -> Response:
        """Deadline clocks (:mod:`gateway.service.clocks`, as ``gateway clocks``)."""
        due, owed = req.arg("due_within"), req.arg("owed_by")
        f = clock_svc.ClockFilter(
            partner=req.arg("partner") or None, rule=req.arg("rule") or None,
            owed_by=owed if owed in clock_svc.OWED_BY else None,
            overdue=req.arg("overdue") == "1",
            due_within=int(due) if due.isdigit() and len(due) < 5 else None,
            all=req.arg("all") == "1")
        keeper = clock_svc.keeper_for(self.ctx.config)
        with self.ctx.audit() as trail:
            listing = clock_svc.list_clocks(trail, keeper, f, self.now())
        partners = sorted({*listing.partners, *(p.party for p in self.ctx.config.partners)})
        return self.render("clocks.html", req, session, listing=listing, f=f,
                           partners=partners, rules=[r.name for r in keeper.rules],
                           owed_by=clock_svc.OWED_BY)
