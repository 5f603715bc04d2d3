"""``gateway clocks``: deadline clocks (open ones soonest due first, overdue marked), the
rules in effect, and the summary ``gateway status`` shows. Reads the audit trail (safe
while the daemon runs)."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from gateway.cli.audit_cmd import open_log
from gateway.cli.output import out, out_json, table
from gateway.documents.deadlines import Clock, ClockSet
from gateway.errors import GatewayError, UsageError
from gateway.node.clocks import ClockKeeper, ClocksConfig, read_clocks
from gateway.node.config import Config, config_path, load_config

__all__ = ["clock_summary", "register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clocks", help="deadline clocks: open ones soonest due first, overdue marked")
    parser.add_argument("--partner", metavar="PARTY", help="only clocks with this partner")
    parser.add_argument("--rule", metavar="NAME", help="only clocks of this rule")
    parser.add_argument("--owed-by", choices=("us", "partner"),
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


def _row(clock: Clock, now: datetime, today: date) -> dict[str, Any]:
    start, answer = clock.start, clock.answer
    return {
        "rule": clock.rule.name, "citation": clock.rule.citation,
        "status": clock.status(now), "owed_by": "us" if clock.owed_by_us else "partner",
        "partner": clock.partner, "our_case": start.our_case, "their_case": start.their_case,
        "code": start.code, "message_id": start.message_id,
        "started": start.at.isoformat(), "due": clock.due.isoformat(),
        "overdue_at": clock.overdue_at.isoformat(),
        "working_days_left": None if answer else clock.working_days_left(today),
        "answered": answer.at.isoformat() if answer else None,
        "answered_by": answer.message_id if answer else None,
    }


def _select(clocks: ClockSet, args: argparse.Namespace, now: datetime,
            today: date) -> list[Clock]:
    chosen = clocks.open() if not args.all else sorted(
        clocks.clocks, key=lambda c: (c.overdue_at, c.start.at, c.rule.name))
    out_list = []
    for clock in chosen:
        if args.partner and clock.partner != args.partner:
            continue
        if args.rule and clock.rule.name != args.rule:
            continue
        if args.owed_by and clock.owed_by_us != (args.owed_by == "us"):
            continue
        if args.overdue and not clock.overdue(now):
            continue
        if args.due_within is not None and (
                not clock.is_open or clock.working_days_left(today) > args.due_within):
            continue
        out_list.append(clock)
    return out_list


def _rules(keeper: ClockKeeper, fmt: str) -> int:
    if fmt == "json":
        out_json([{"name": r.name, "title": r.title, "citation": r.citation,
                   "source": r.source, "period": str(r.period), "owes": r.owes,
                   "direction": r.direction, "enabled": r.enabled,
                   "start": [p.text for p in r.start], "answer": [p.text for p in r.answer]}
                  for r in keeper.rules])
        return 0
    out(table([[r.name, str(r.period), r.owes, "yes" if r.enabled else "no", r.citation]
               for r in keeper.rules], ["rule", "period", "owed by", "enabled", "citation"]))
    return 0


def _unmatched(clocks: ClockSet, args: argparse.Namespace) -> int:
    rows = [{"answered": o.at.isoformat(), "partner": o.partner,
             "sent_by": "us" if o.outbound else "partner", "code": o.code,
             "our_case": o.our_case, "their_case": o.their_case, "message_id": o.message_id}
            for o in sorted(clocks.unmatched, key=lambda o: o.at)
            if not args.partner or o.partner == args.partner]
    if args.format == "json":
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
    if args.db is not None and args.config is None and not config_path(None).exists():
        keeper = ClockKeeper(ClocksConfig())  # a bare database: the shipped rules, UTC
    else:
        keeper = ClockKeeper(load_config(args.config).clocks)
    if args.rules:
        return _rules(keeper, args.format)
    now = _when(args.at)
    today = now.astimezone(keeper.tz).date()
    audit = open_log(args)
    try:
        clocks = read_clocks(audit, keeper, now)
    finally:
        audit.conn.close()
    if args.rule and args.rule not in {r.name for r in keeper.rules}:
        raise UsageError(f"no clock rule named {args.rule} (gateway clocks --rules lists them)")
    if args.unmatched:
        return _unmatched(clocks, args)
    selected = _select(clocks, args, now, today)
    rows = [_row(c, now, today) for c in selected]
    if args.format == "json":
        out_json({"at": now.isoformat(), "clocks": rows,
                  "unmatched_answers": len(clocks.unmatched)})
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
    if clocks.unmatched:
        out(f"{len(clocks.unmatched)} answer(s) match no recorded request")
    return 0


def clock_summary(config: Config, args: argparse.Namespace,
                  now: datetime) -> dict[str, Any]:
    """Open and overdue clocks by owing side, and the next due date: for ``gateway
    status``."""
    keeper = ClockKeeper(config.clocks)
    try:
        audit = open_log(argparse.Namespace(db=getattr(args, "db", None), config=args.config))
        try:
            clocks = read_clocks(audit, keeper, now)
        finally:
            audit.conn.close()
    except GatewayError as exc:  # the rest of the status is still worth showing
        return {"enabled": True, "error": f"{exc.code}: {exc}"}
    open_ = clocks.open()
    counts: Counter[tuple[str, str]] = Counter()
    for clock in open_:
        side = "us" if clock.owed_by_us else "partner"
        counts[(side, "overdue" if clock.overdue(now) else "open")] += 1
    return {
        "enabled": config.clocks.enabled,
        "open_owed_by_us": counts[("us", "open")] + counts[("us", "overdue")],
        "overdue_owed_by_us": counts[("us", "overdue")],
        "open_owed_by_partners": counts[("partner", "open")] + counts[("partner", "overdue")],
        "overdue_owed_by_partners": counts[("partner", "overdue")],
        "next_due": open_[0].due.isoformat() if open_ else None,
    }
