"""``gateway messages list|show|resend|cancel``: the operator's view of the spool.

``resend`` puts a failed or cancelled message back in the queue (same MessageId and
envelope, so the receiver still recognises a duplicate) and removes the copy of a failed
one from the rejected folder (see :meth:`gateway.node.daemon.Gateway.report_failures`);
``cancel`` stops one that has not been delivered. Both are audited with actor
``operator``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from gateway.cli.output import out, out_json, table
from gateway.errors import MessageNotFound, UsageError
from gateway.node.config import load_config
from gateway.node.intake import remove_rejected_copy
from gateway.node.storeopen import AnySpool, open_spool
from gateway.store.spool import Message, from_epoch
from gateway.store.states import Direction, State


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("messages", help="list, show, resend or cancel messages")
    sub = parser.add_subparsers(dest="messages_command", metavar="SUBCOMMAND", required=True)
    lst = sub.add_parser("list", help="list messages")
    lst.add_argument("--state", choices=[s.value for s in State], action="append")
    lst.add_argument("--direction", choices=[d.value for d in Direction])
    lst.add_argument("--partner")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--format", choices=("text", "json"), default="text")
    lst.set_defaults(func=run_list)
    for name, helptext in (("show", "show one message"),
                           ("resend", "queue a failed or cancelled message again"),
                           ("cancel", "cancel a message that is not yet delivered")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("id", help="spool id (number) or MessageId")
        if name == "show":
            cmd.add_argument("--format", choices=("text", "json"), default="text")
        cmd.set_defaults(func={"show": run_show, "resend": run_resend,
                               "cancel": run_cancel}[name])


def _open(args: argparse.Namespace) -> AnySpool:
    return open_spool(load_config(args.config))


def _find(spool: AnySpool, ident: str) -> Message:
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


def _view(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in m.__dict__.items():
        if key in ("created_at", "updated_at", "next_attempt_at", "expires_at"):
            moment = from_epoch(value)
            out[key] = moment.isoformat() if moment else None
        elif key == "intake_key":
            continue
        else:
            out[key] = str(value) if isinstance(value, Direction | State) else value
    return out


def run_list(args: argparse.Namespace) -> int:
    spool = _open(args)
    try:
        states = [State(s) for s in args.state or []]
        direction = Direction(args.direction) if args.direction else None
        found = spool.select(states=states, direction=direction, partner=args.partner,
                             limit=args.limit)
    finally:
        spool.close()
    if args.format == "json":
        out_json([_view(m) for m in found])
        return 0
    rows = [[str(m.id), str(m.direction), str(m.state), m.message_id or "-",
             m.partner or "-", m.action or "-", str(m.attempts), m.error_code or ""]
            for m in found]
    out(table(rows, ["id", "dir", "state", "message id", "partner", "action", "tries",
                     "error"]) if rows else "no messages")
    return 0


def run_show(args: argparse.Namespace) -> int:
    spool = _open(args)
    try:
        message = _find(spool, args.id)
        kinds = [k for k in ("document", "envelope", "receipt", "error")
                 if spool.has_payload(message.id, k)]
    finally:
        spool.close()
    view = _view(message)
    view["payloads"] = kinds
    if args.format == "json":
        out_json(view)
        return 0
    for key, value in view.items():
        out(f"{key + ':':17} {value if value is not None else '-'}")
    return 0


def _operate(args: argparse.Namespace, target_for: dict[Direction, dict[State, State]],
             verb: str) -> int:
    spool = _open(args)
    now = datetime.now(UTC)
    try:
        message = _find(spool, args.id)
        target = target_for.get(message.direction, {}).get(message.state)
        if target is None:
            raise UsageError(f"cannot {verb} a {message.direction} message that is "
                             f"{message.state}")
        changes: dict[str, Any] = {}
        reported = None
        rejected_dir = None
        if verb == "resend":
            config = load_config(args.config)
            changes = {"next_attempt_at": now.timestamp(), "error_code": None,
                       "error_text": None,
                       "expires_at": now.timestamp() + config.retry.expiry}
            reported = spool.payload(message.id, "failure_report")
            rejected_dir = config.rejected
        with spool.transaction(now) as txn:
            done = txn.transition(message.id, target, expect=message.state, changes=changes,
                                  actor="operator")
            if reported is not None:  # it is not failed any more: so the report goes
                txn.drop_payload(message.id, "failure_report")
        if reported is not None and rejected_dir is not None and remove_rejected_copy(
                rejected_dir, message, message.source or f"{message.message_id}.xml"):
            out(f"removed its failure copy {reported.decode(errors='replace')} from "
                f"{rejected_dir}")
    finally:
        spool.close()
    out(f"message {done.id} ({done.message_id}) is now {done.state}")
    return 0


_RESEND = {Direction.OUT: {State.FAILED: State.SEALED, State.CANCELLED: State.SEALED},
           Direction.RELAY: {State.FAILED: State.RECEIVED, State.CANCELLED: State.RECEIVED},
           Direction.RECEIPT: {State.FAILED: State.SEALED, State.CANCELLED: State.SEALED}}
_CANCEL = {
    Direction.OUT: dict.fromkeys((State.SEALED, State.SENT, State.RETRYING), State.CANCELLED),
    Direction.RELAY: dict.fromkeys((State.RECEIVED, State.RETRYING), State.CANCELLED),
    Direction.RECEIPT: dict.fromkeys((State.SEALED, State.RETRYING), State.CANCELLED),
}


def run_resend(args: argparse.Namespace) -> int:
    return _operate(args, _RESEND, "resend")


def run_cancel(args: argparse.Namespace) -> int:
    return _operate(args, _CANCEL, "cancel")
