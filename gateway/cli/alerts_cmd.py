"""``gateway alerts test``: send one test alert on every configured channel (e-mail,
webhook), recorded as an ``alert_sent`` audit event like every alert."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from gateway.cli.output import err, out
from gateway.errors import UsageError
from gateway.node.alerts import Alert, AlertEngine, Delivery
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("alerts", help="alert delivery ([alerts] in the config)")
    sub = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    test = sub.add_parser("test", help="send one test alert on every configured channel")
    test.set_defaults(func=run_test)


def run_test(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not config.alerts.enabled:
        raise UsageError("no alert channel is configured: add [alerts.email] or "
                         "[alerts.webhook]", where=str(config.path))
    now = datetime.now(UTC)
    spool = SqliteSpool(config.spool.database)
    try:
        engine = AlertEngine(config.alerts, spool, node=config.node.party,
                             clock=lambda: datetime.now(UTC))
        delivery = Delivery(config.node.party, "test", (Alert(
            "test", now.isoformat(timespec="seconds"),
            "test alert from gateway alerts test", {"node": config.node.party}),), None)
        ok = engine.deliver(delivery, now)
    finally:
        spool.close()
    names = ", ".join(c.name for c in engine.channels)
    if not ok:
        err(f"test alert not delivered by any channel ({names}); see the errors above")
        return 1
    out(f"test alert sent ({names})")
    return 0
