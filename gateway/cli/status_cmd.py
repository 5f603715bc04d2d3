"""``gateway status``: counts by state and partner, oldest pending age, expiring
certificates. Reads the spool directly (safe while the daemon runs: SQLite WAL)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from gateway.cli.clocks_cmd import clock_summary
from gateway.cli.output import out, out_json, table
from gateway.errors import GatewayError
from gateway.node.config import load_config
from gateway.node.nodekeys import load_node_keys
from gateway.node.storeopen import open_spool
from gateway.protocol.certs import fingerprint
from gateway.store.states import PENDING


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="message counts, oldest pending, "
                                   "certificates near expiry")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = datetime.now(UTC)
    spool = open_spool(config)
    try:
        counts = spool.counts()
        oldest = spool.oldest(sorted(PENDING))
    finally:
        spool.close()
    expiring: list[dict[str, Any]] = []
    key_error = None
    try:
        keys = load_node_keys(config)
        found = [("sign", keys.identity.signing_cert),
                 ("encrypt", keys.identity.encryption_cert)]
        # the extra decryption keys (KEYS/decrypt/), named by certificate fingerprint as
        # `gateway keys list` shows them
        found += [(f"decrypt:{fingerprint(c)[:16]}", c) for _, c in keys.identity.decryption]
        found += [(f"partner {p}", c) for p, cs in keys.encryption.items() for c in cs]
        for what, cert in found:
            days = (cert.not_valid_after_utc - now).total_seconds() / 86400
            if days <= config.security.cert_warn_days:
                expiring.append({"certificate": what, "days_left": round(days, 1)})
    except GatewayError as exc:
        key_error = f"{exc.code}: {exc}"
    clocks = clock_summary(config, args, now) if config.clocks.enabled else None
    result = {
        "node": config.node.party,
        "counts": [{"direction": d, "state": s, "partner": p, "count": n}
                   for d, s, p, n in counts],
        "oldest_pending_seconds": None if oldest is None else round(now.timestamp() - oldest),
        "certificates_expiring": expiring,
        "keys_error": key_error,
        "clocks": clocks,
    }
    if args.format == "json":
        out_json(result)
        return 0
    out(f"node {config.node.party}")
    rows = [[d, s, p or "-", str(n)] for d, s, p, n in counts]
    out(table(rows, ["direction", "state", "partner", "count"]) if rows else "no messages")
    age = result["oldest_pending_seconds"]
    out(f"oldest pending: {'none' if age is None else f'{age} s'}")
    if key_error:
        out(f"keys: {key_error}")
    for item in expiring:
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
