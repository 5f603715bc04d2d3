"""Messages for an operator: search, detail, resend, cancel.

``gateway messages ...`` and the console's message pages call these and only format the
result. A search is a :class:`~gateway.store.query.MessageQuery` (newest first by
default) and returns a :class:`Page` that says how many matched in all, so an interface
can always say when what it shows is cut and how to see more.

Resend and cancel need a reason from :data:`REASONS` (a code: the audit trail holds no
free text) and the operator's name; both are recorded in the audit event the state change
writes (``resent_by_operator`` / ``cancelled_by_operator``, actor = the operator, detail
``reason`` and, when given, ``ticket``, a reference into the operator's own ticket
system)."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, MessageNotFound, SpoolError, UsageError
from gateway.node.config import Config
from gateway.node.intake import remove_rejected_copy
from gateway.node.routing import decide
from gateway.service.audit import Timeline, timeline
from gateway.service.context import NodeContext
from gateway.store.audit import StoredEvent
from gateway.store.query import MessageQuery
from gateway.store.spool import Message, Spool, from_epoch
from gateway.store.states import Direction, State

__all__ = [
    "ERROR_STATES",
    "REASONS",
    "ActionResult",
    "Attempt",
    "MessageDetail",
    "Page",
    "allowed_actions",
    "cancel",
    "current_error",
    "find_message",
    "message_detail",
    "resend",
    "search",
    "view",
]

#: Why an operator resends or cancels: a code, so the audit trail never holds free text.
REASONS: dict[str, str] = {
    "partner-recovered": "the partner's endpoint works again",
    "configuration-fixed": "our configuration or routing was corrected",
    "certificate-renewed": "a certificate was renewed or registered",
    "sent-in-error": "the message should not have been sent",
    "duplicate": "the message duplicates another one",
    "caseworker-request": "the case worker asked for it",
    "test": "an operator's test",
}
_TICKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}")

#: The states whose error column is the message's current problem; in any other state
#: the error fields are history (a delivered message that was retried once still carries
#: the last temporary error): shown in the detail's timeline, not as its error.
ERROR_STATES = frozenset({State.RETRYING, State.FAILED, State.REJECTED})

_RESEND = {Direction.OUT: {State.FAILED: State.SEALED, State.CANCELLED: State.SEALED},
           Direction.RELAY: {State.FAILED: State.RECEIVED, State.CANCELLED: State.RECEIVED},
           Direction.RECEIPT: {State.FAILED: State.SEALED, State.CANCELLED: State.SEALED}}
_CANCEL = {
    Direction.OUT: dict.fromkeys((State.SEALED, State.SENT, State.RETRYING), State.CANCELLED),
    Direction.RELAY: dict.fromkeys((State.RECEIVED, State.RETRYING), State.CANCELLED),
    Direction.RECEIPT: dict.fromkeys((State.SEALED, State.RETRYING), State.CANCELLED),
}


# --- search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a search and how many matched in all."""

    query: MessageQuery
    items: list[Message]
    total: int

    @property
    def first(self) -> int:
        """1-based position of the first item shown (0 when none)."""
        return self.query.offset + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.query.offset + len(self.items)

    @property
    def cut(self) -> bool:
        """Some matching messages are not on this page."""
        return len(self.items) < self.total

    @property
    def has_next(self) -> bool:
        return self.last < self.total


def search(spool: Spool, query: MessageQuery) -> Page:
    return Page(query, spool.search(query), spool.count(query))


def current_error(m: Message) -> tuple[str | None, str | None]:
    """The error code and text of the message's current state (none once it moved on)."""
    if m.state in ERROR_STATES:
        return m.error_code, m.error_text
    return None, None


def _iso(value: float | None) -> str | None:
    moment = from_epoch(value)
    return moment.isoformat() if moment else None


def view(m: Message) -> dict[str, Any]:
    """A message as plain values (times in ISO 8601); ``error_code``/``error_text`` are
    the current state's (see :func:`current_error`), ``last_error_code`` what was last
    recorded, whatever the state."""
    out: dict[str, Any] = {}
    for key, value in m.__dict__.items():
        if key in ("created_at", "updated_at", "next_attempt_at", "expires_at"):
            out[key] = _iso(value)
        elif key == "intake_key":
            continue
        else:
            out[key] = str(value) if isinstance(value, Direction | State) else value
    out["error_code"], out["error_text"] = current_error(m)
    out["last_error_code"] = m.error_code
    return out


def find_message(spool: Spool, ident: str) -> Message:
    """A message by spool id (digits) or MessageId; when several records share a
    MessageId (sent and received, or a relay), the outbound or relay one if unique."""
    if ident.isdigit():
        return spool.get(int(ident))
    found = spool.find_any(ident)
    if not found:
        raise MessageNotFound("no message with that id", details={"id": ident[:64]})
    if len(found) > 1:
        live = [m for m in found if m.direction in (Direction.OUT, Direction.RELAY)]
        if len(live) == 1:
            return live[0]
        raise UsageError(f"{len(found)} messages share that MessageId: give the spool id "
                         f"({', '.join(str(m.id) for m in found)})")
    return found[0]


# --- detail ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    number: int
    at: datetime
    transport: str | None = None
    outcome: str = "in progress"
    error_code: str | None = None


@dataclass(frozen=True)
class MessageDetail:
    message: Message
    payloads: list[str]
    timeline: Timeline | None
    attempts: list[Attempt]
    route: str | None
    transports: list[str]
    next_attempt: datetime | None
    next_reason: str
    actions: list[str] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)  # from the error report
    rejected_copy: str | None = None  # where the document was put back (rejected/)

    def to_dict(self) -> dict[str, Any]:
        return {
            **view(self.message), "payloads": self.payloads, "route": self.route,
            "transports": self.transports,
            "next_attempt": self.next_attempt.isoformat() if self.next_attempt else None,
            "next_reason": self.next_reason, "actions": self.actions,
            "issues": self.issues, "rejected_copy": self.rejected_copy,
            "attempts": [{"number": a.number, "at": a.at.isoformat(),
                          "transport": a.transport, "outcome": a.outcome,
                          "error_code": a.error_code} for a in self.attempts],
            "events": [] if self.timeline is None else [
                e.to_dict() for e in self.timeline.events],
            "receipts": [] if self.timeline is None else self.timeline.receipts,
        }


def attempts_of(events: list[StoredEvent]) -> list[Attempt]:
    """Each send attempt from the timeline: when, over which transport, how it ended."""
    found: list[Attempt] = []
    for e in events:
        ev = e.event
        if ev.code == "sending":
            number = ev.detail.get("attempt")
            found.append(Attempt(int(number) if isinstance(number, int) else len(found) + 1,
                                 ev.at, ev.transport))
        elif found and found[-1].outcome == "in progress":
            last = found[-1]
            if ev.code == "send_failed":
                found[-1] = Attempt(last.number, last.at, ev.transport or last.transport,
                                    "failed", ev.error_code)
            elif ev.code in ("sent", "delivered", "relayed", "receipt_sent"):
                found[-1] = Attempt(last.number, last.at, ev.transport or last.transport,
                                    ev.code)
    return found


def next_attempt(config: Config, m: Message, now: datetime) -> tuple[datetime | None, str]:
    """When the gateway will next act on ``m`` by itself, and why (or why never)."""
    due = from_epoch(m.next_attempt_at)
    if m.state is State.RETRYING:
        return due, (f"attempt {m.attempts} failed ({m.error_code or 'error'}); retried "
                     f"with backoff until it expires at {_iso(m.expires_at) or 'never'}")
    if m.state is State.SEALED or (m.state is State.RECEIVED and m.direction is Direction.RELAY):
        return due or now, "queued: sent by the next dispatch"
    if m.state is State.SENDING:
        return None, "an attempt is in progress"
    if m.state is State.SENT:
        at = from_epoch(m.updated_at + config.retry.receipt_timeout)
        return at, "waiting for the receipt; sent again if none has arrived by then"
    if m.state in (State.RECEIVED, State.DELIVERING):
        return None, "being opened and delivered"
    if m.state is State.FAILED:
        return None, (f"none: failed for good ({m.error_code or 'error'}); an operator may "
                      "resend it")
    if m.state is State.CANCELLED:
        return None, "none: cancelled by an operator, who may resend it"
    return None, f"none: {m.state}, nothing left to do"


def allowed_actions(m: Message) -> list[str]:
    return [name for name, table in (("resend", _RESEND), ("cancel", _CANCEL))
            if m.state in table.get(m.direction, {})]


def message_detail(ctx: NodeContext, ident: str, now: datetime) -> MessageDetail:
    """Everything about one message an operator may see: its row, which payloads are
    kept (their names, never their content), the audit timeline with receipts checked,
    each attempt, the route and transports, and the next attempt with its reason."""
    m = find_message(ctx.spool, ident)
    kept = ctx.spool.payload_kinds(m.id)
    payloads: list[str] = [k for k in ("document", "envelope", "receipt", "error",
                                       "failure_report") if k in kept]
    tl = None
    if m.message_id:
        try:
            with ctx.audit() as log:
                tl = timeline(log, m.message_id, ctx.keys_dir)
        except MessageNotFound:
            tl = None
    route = None
    transports: list[str] = []
    if m.direction in (Direction.OUT, Direction.RELAY, Direction.RECEIPT) and m.to_party:
        try:
            route = decide(ctx.config.routing, m.to_party).describe()
        except GatewayError as exc:
            route = f"no route today: {exc.code}"
    if m.partner:
        try:
            transports = [t.url for t in ctx.config.partner(m.partner).transports]
        except KeyError:
            transports = []
    at, why = next_attempt(ctx.config, m, now)
    copy = None
    if m.source and m.state in (State.REJECTED, State.FAILED):
        candidate = ctx.config.rejected / Path(m.source).name
        copy = str(candidate) if candidate.exists() else None
    try:
        report = ctx.spool.payload(m.id, "error") if "error" in payloads else None
    except SpoolError:  # sealed at rest and the spool was opened without the node's keys:
        report = None   # the same value-free report is beside the copy in rejected/
    if report is None and copy is not None:
        with contextlib.suppress(OSError):
            report = Path(copy + ".error.json").read_bytes()
    issues = error_issues(report)
    return MessageDetail(m, payloads, tl, attempts_of(tl.events if tl else []), route,
                         transports, at, why, allowed_actions(m), issues, copy)


def error_issues(report: bytes | None) -> list[dict[str, Any]]:
    """Each error of a stored error report (the same value-free report as
    ``rejected/NAME.error.json``): code, line, column, element path, message."""
    if not report:
        return []
    try:
        errors = json.loads(report).get("errors") or []
    except (ValueError, AttributeError):
        return []
    keep = ("code", "line", "column", "path", "message")
    return [{k: e.get(k) for k in keep} for e in errors if isinstance(e, dict)][:200]


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    message: Message
    removed_copy: str | None = None  # the failure copy taken out of rejected/, if any


def _check_reason(reason: str, ticket: str | None) -> dict[str, str]:
    if reason not in REASONS:
        raise UsageError(f"a reason is required, one of: {', '.join(REASONS)}")
    detail = {"reason": reason}
    if ticket:
        if not _TICKET.fullmatch(ticket):
            raise UsageError("a ticket reference is letters, digits and ._:/#- (at most 64), "
                             "no spaces")
        detail["ticket"] = ticket
    return detail


def _operate(ctx: NodeContext, ident: str, verb: str, *, operator: str, reason: str,
             ticket: str | None, now: datetime) -> ActionResult:
    detail = _check_reason(reason, ticket)
    spool = ctx.spool
    message = find_message(spool, ident)
    table = _RESEND if verb == "resend" else _CANCEL
    target = table.get(message.direction, {}).get(message.state)
    if target is None:
        raise UsageError(f"cannot {verb} a {message.direction} message that is "
                         f"{message.state}")
    changes: dict[str, Any] = {}
    reported = None
    if verb == "resend":
        changes = {"next_attempt_at": now.timestamp(), "error_code": None, "error_text": None,
                   "expires_at": now.timestamp() + ctx.config.retry.expiry}
        reported = spool.payload(message.id, "failure_report")
    with spool.transaction(now) as txn:
        done = txn.transition(message.id, target, expect=message.state, changes=changes,
                              actor=operator, detail=detail)
        if reported is not None:  # it is not failed any more: so the report goes
            txn.drop_payload(message.id, "failure_report")
    removed = None
    if reported is not None and remove_rejected_copy(
            ctx.config.rejected, message, message.source or f"{message.message_id}.xml"):
        removed = reported.decode(errors="replace")
    return ActionResult(done, removed)


def resend(ctx: NodeContext, ident: str, *, operator: str, reason: str,
           ticket: str | None = None, now: datetime | None = None) -> ActionResult:
    """Queue a failed or cancelled message again (same MessageId and envelope, so the
    receiver still recognises a duplicate); a failed one's copy in rejected/ is removed."""
    return _operate(ctx, ident, "resend", operator=operator, reason=reason, ticket=ticket,
                    now=now or datetime.now(UTC))


def cancel(ctx: NodeContext, ident: str, *, operator: str, reason: str,
           ticket: str | None = None, now: datetime | None = None) -> ActionResult:
    """Stop a message that is not yet delivered."""
    return _operate(ctx, ident, "cancel", operator=operator, reason=reason, ticket=ticket,
                    now=now or datetime.now(UTC))
