"""``gateway status``: counts by state and partner, oldest pending age, expiring
certificates. Reads the spool directly (safe while the daemon runs: SQLite WAL); the
logic is :func:`gateway.service.status.node_status` (the console's dashboard calls it too)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from gateway.cli.output import out, out_json, table
from gateway.service.clocks import clock_status
from gateway.service.context import NodeContext
from gateway.service.status import node_status


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="message counts, oldest pending, "
                                   "certificates near expiry")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with NodeContext.open(args.config) as ctx:
        config = ctx.config
        result = node_status(ctx, now)
        clocks = clock_status(ctx, now) if config.clocks.enabled else None
    result["clocks"] = clocks
    if args.format == "json":
        out_json(result)
        return 0
    out(f"node {result['node']}")
    rows = [[c["direction"], c["state"], c["partner"] or "-", str(c["count"])]
            for c in result["counts"]]
    out(table(rows, ["direction", "state", "partner", "count"]) if rows else "no messages")
    age = result["oldest_pending_seconds"]
    out(f"oldest pending: {'none' if age is None else f'{age} s'}")
    out(f"failed in the last 24 h: {result['failed_last_24h']}")
    if result["keys_error"]:
        out(f"keys: {result['keys_error']}")
    for item in result["certificates_expiring"]:
        days = item["days_left"]
        out(f"certificate {item['certificate']} "
            + (f"expires in {days} days" if days >= 0 else f"EXPIRED {-days} days ago"))
    if clocks is not None and "error" in clocks:
        out(f"clocks: {clocks['error']}")
    elif clocks is not None:
        out(f"clocks: {clocks['open_owed_by_us']} owed by us "
            f"({clocks['overdue_owed_by_us']} overdue), {clocks['open_owed_by_partners']} "
            f"owed by partners ({clocks['overdue_owed_by_partners']} overdue); next due "
            f"{clocks['next_due'] or '-'} (gateway clocks)")
    return 0
