"""``gateway messages list|show|resend|cancel``: the operator's view of the spool.

The logic is :mod:`gateway.service.messages` (the console calls the same functions); this
module parses arguments and prints. ``list`` shows the newest first, one page at a time
(``--limit``, default 50; ``--offset`` for the next page; filters narrow it), and says
when the list is cut and how to see the rest. ``resend`` and ``cancel`` need
``--reason CODE`` and are audited with the operator's OS user as actor."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from gateway.cli.audit_cmd import when
from gateway.cli.output import err, out, out_json, table
from gateway.service import messages as svc
from gateway.service.context import NodeContext, os_user
from gateway.store.query import SORT_COLUMNS, MessageQuery
from gateway.store.spool import from_epoch
from gateway.store.states import Direction, State

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected 1..{MAX_LIMIT}, got {text!r}")
    return value


def _offset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("messages", help="list, show, resend or cancel messages")
    sub = parser.add_subparsers(dest="messages_command", metavar="SUBCOMMAND", required=True)
    lst = sub.add_parser("list", help="list messages, newest first, one page at a time")
    lst.add_argument("--state", choices=[s.value for s in State], action="append")
    lst.add_argument("--direction", choices=[d.value for d in Direction])
    lst.add_argument("--partner", metavar="PARTY")
    lst.add_argument("--message", metavar="ID", help="MessageId (or one it answers)")
    lst.add_argument("--conversation", metavar="ID",
                     help="a message and every message answering it")
    lst.add_argument("--case", metavar="ID", help="case id")
    lst.add_argument("--action", metavar="TYPE", help="document type, e.g. "
                     "InterstateTransaction")
    lst.add_argument("--error", metavar="CODE", help="error code, e.g. BreakerOpen")
    lst.add_argument("--since", metavar="T", type=when, help="created at or after")
    lst.add_argument("--until", metavar="T", type=when, help="created before")
    lst.add_argument("--sort", choices=SORT_COLUMNS, default="id")
    lst.add_argument("--oldest-first", action="store_true", help="ascending order")
    lst.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, metavar="N",
                     help=f"at most N messages (default {DEFAULT_LIMIT}, up to {MAX_LIMIT})")
    lst.add_argument("--offset", type=_offset, default=0, metavar="N",
                     help="skip the first N (the next page: --offset N+limit)")
    lst.add_argument("--format", choices=("text", "json"), default="text")
    lst.set_defaults(func=run_list)
    for name, helptext in (("show", "show one message: timeline, attempts, route, next "
                                    "attempt"),
                           ("resend", "queue a failed or cancelled message again"),
                           ("cancel", "cancel a message that is not yet delivered")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("id", help="spool id (number) or MessageId")
        if name == "show":
            cmd.add_argument("--format", choices=("text", "json"), default="text")
        else:
            cmd.add_argument("--reason", required=True, choices=list(svc.REASONS),
                             help="why (recorded in the audit trail): "
                             + "; ".join(f"{k}: {v}" for k, v in svc.REASONS.items()))
            cmd.add_argument("--ticket", metavar="REF",
                             help="a reference in your ticket system, recorded with it")
        cmd.set_defaults(func={"show": run_show, "resend": run_resend,
                               "cancel": run_cancel}[name])


def _query(args: argparse.Namespace) -> MessageQuery:
    return MessageQuery(
        message_id=args.message, conversation=args.conversation, case_id=args.case,
        partner=args.partner, direction=Direction(args.direction) if args.direction else None,
        states=[State(s) for s in args.state or []], action=args.action,
        error_code=args.error, since=args.since, until=args.until, sort=args.sort,
        descending=not args.oldest_first, offset=args.offset, limit=args.limit)


def run_list(args: argparse.Namespace) -> int:
    with NodeContext.open(args.config) as ctx:
        page = svc.search(ctx.spool, _query(args))
    if args.format == "json":
        out_json([svc.view(m) for m in page.items])
        if page.cut:
            err(_more(page))
        return 0
    rows = []
    for m in page.items:
        code, _ = svc.current_error(m)
        created = from_epoch(m.created_at)
        rows.append([str(m.id), f"{created:%Y-%m-%d %H:%M:%S}" if created else "-",
                     str(m.direction), str(m.state), m.message_id or "-", m.partner or "-",
                     m.action or "-", str(m.attempts), code or ""])
    if not rows:
        out("no messages" + (" match" if page.total == 0 else f" past {page.query.offset}"))
        return 0
    out(table(rows, ["id", "created (UTC)", "dir", "state", "message id", "partner",
                     "action", "tries", "error"]))
    order = "oldest" if args.oldest_first else "newest"
    if page.cut:
        out(_more(page))
    else:
        out(f"{page.total} message(s), {order} first")
    return 0


def _more(page: svc.Page) -> str:
    q = page.query
    order = "newest" if q.descending else "oldest"
    text = (f"showing {page.first}-{page.last} of {page.total} messages, {order} first "
            f"(sorted by {q.sort}); ")
    if page.has_next:
        text += f"next page: --offset {page.last}; "
    return text + (f"more per page: --limit N (up to {MAX_LIMIT}); or narrow with --state, "
                   "--partner, --since, --message, --case, --error")


def run_show(args: argparse.Namespace) -> int:
    with NodeContext.open(args.config) as ctx:
        detail = svc.message_detail(ctx, args.id, datetime.now(UTC))
    if args.format == "json":
        out_json(detail.to_dict())
        return 0
    view = svc.view(detail.message)
    view["payloads"] = detail.payloads
    for key, value in view.items():
        out(f"{key + ':':17} {value if value is not None else '-'}")
    out(f"{'route:':17} {detail.route or '-'}")
    if detail.transports:
        out(f"{'transports:':17} {', '.join(detail.transports)}")
    when_ = detail.next_attempt.isoformat() if detail.next_attempt else "-"
    out(f"{'next attempt:':17} {when_} ({detail.next_reason})")
    if detail.actions:
        out(f"{'operator may:':17} {', '.join(detail.actions)}")
    for a in detail.attempts:
        out(f"attempt {a.number} at {a.at:%Y-%m-%d %H:%M:%S}: {a.outcome}"
            + (f" {a.error_code}" if a.error_code else "")
            + (f" via {a.transport}" if a.transport else ""))
    if detail.timeline is not None:
        out(f"timeline ({len(detail.timeline.events)} audit event(s)):")
        for e in detail.timeline.events:
            ev = e.event
            extra = ",".join(f"{k}={v}" for k, v in sorted(ev.detail.items()))
            out(f"  {ev.at:%Y-%m-%d %H:%M:%S.%f}"[:25] + f"  {ev.code:<21} {ev.actor:<10} "
                f"{ev.error_code or ''} {extra}".rstrip())
        for r in detail.timeline.receipts:
            out(f"receipt {r['direction']} at {r['at']}: {r['signature']['status']}"
                + (f": {r['signature']['reason']}" if r["signature"].get("reason") else ""))
    return 0


def _act(args: argparse.Namespace, verb: str) -> int:
    action = svc.resend if verb == "resend" else svc.cancel
    with NodeContext.open(args.config) as ctx:
        result = action(ctx, args.id, operator=os_user(), reason=args.reason,
                        ticket=args.ticket)
        if result.removed_copy:
            out(f"removed its failure copy {result.removed_copy} from {ctx.config.rejected}")
    done = result.message
    out(f"message {done.id} ({done.message_id}) is now {done.state}")
    return 0


def run_resend(args: argparse.Namespace) -> int:
    return _act(args, "resend")


def run_cancel(args: argparse.Namespace) -> int:
    return _act(args, "cancel")
