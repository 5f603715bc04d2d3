"""``gateway clocks``: deadline clocks (open ones soonest due first, overdue marked), the
rules in effect, and the answers no request matches. Reads the audit trail (safe while the
daemon runs); the logic is :mod:`gateway.service.clocks` (the console's Clocks page calls
it too)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from gateway.cli.audit_cmd import open_log
from gateway.cli.output import out, out_json, table
from gateway.errors import UsageError
from gateway.node.clocks import ClockKeeper
from gateway.node.config import config_path, load_config
from gateway.service import clocks as svc

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clocks", help="deadline clocks: open ones soonest due first, overdue marked")
    parser.add_argument("--partner", metavar="PARTY", help="only clocks with this partner")
    parser.add_argument("--rule", metavar="NAME", help="only clocks of this rule")
    parser.add_argument("--owed-by", choices=svc.OWED_BY,
                        help="only answers we owe, or that partners owe us")
    parser.add_argument("--overdue", action="store_true", help="only overdue clocks")
    parser.add_argument("--due-within", type=int, metavar="N",
                        help="only open clocks due within N working days (overdue included)")
    parser.add_argument("--all", action="store_true",
                        help="answered clocks too (on time or late)")
    parser.add_argument("--at", metavar="TIME",
                        help="as of this ISO 8601 time instead of now (e.g. 2026-12-01T09:00Z)")
    parser.add_argument("--rules", action="store_true", help="list the rules in effect")
    parser.add_argument("--unmatched", action="store_true",
                        help="list the answers that match no recorded request")
    parser.add_argument("--db", metavar="PATH", help="spool database (default: from --config)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run_clocks)


def _when(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("--at expects an ISO 8601 time such as 2026-12-01T09:00Z") \
            from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rules(keeper: ClockKeeper, fmt: str) -> int:
    rows = svc.rule_rows(keeper)
    if fmt == "json":
        out_json(rows)
        return 0
    out(table([[r["name"], r["period"], r["owes"], "yes" if r["enabled"] else "no",
                r["citation"]] for r in rows],
              ["rule", "period", "owed by", "enabled", "citation"]))
    return 0


def _unmatched(rows: list[dict[str, Any]], fmt: str) -> int:
    if fmt == "json":
        out_json(rows)
    elif not rows:
        out("every answer matches a recorded request")
    else:
        out(table([[str(r["answered"])[:19], *(str(r[k] or "-") for k in (
                    "partner", "sent_by", "code", "our_case", "their_case", "message_id"))]
                   for r in rows],
                  ["answered", "partner", "sent by", "code", "our case", "their case",
                   "message"]))
    return 0


def run_clocks(args: argparse.Namespace) -> int:
    bare = args.db is not None and args.config is None and not config_path(None).exists()
    keeper = svc.keeper_for(None if bare else load_config(args.config))
    if args.rules:
        return _rules(keeper, args.format)
    now = _when(args.at)
    f = svc.ClockFilter(partner=args.partner, rule=args.rule, owed_by=args.owed_by,
                        overdue=args.overdue, due_within=args.due_within, all=args.all)
    audit = open_log(args)
    try:
        if args.unmatched:
            return _unmatched(svc.unmatched_rows(audit, keeper, now, args.partner),
                              args.format)
        listing = svc.list_clocks(audit, keeper, f, now)
    finally:
        audit.conn.close()
    rows = listing.rows
    if args.format == "json":
        out_json({"at": now.isoformat(), "clocks": rows,
                  "unmatched_answers": listing.unmatched})
        return 0
    if not rows:
        out("no clocks" if args.all else "no open clocks")
    else:
        out(table([[r["due"], "OVERDUE" if r["status"] == "overdue" else r["status"],
                    r["rule"], r["owed_by"], r["partner"], r["our_case"] or "-",
                    r["their_case"] or "-", r["code"],
                    "-" if r["working_days_left"] is None else str(r["working_days_left"])]
                   for r in rows],
                  ["due", "status", "rule", "owed by", "partner", "our case", "their case",
                   "started by", "working days left"]))
    if listing.unmatched:
        out(f"{listing.unmatched} answer(s) match no recorded request")
    return 0
