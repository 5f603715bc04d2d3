"""``gateway config check``: load the configuration and report every problem at once."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.output import out, out_json
from gateway.errors import ConfigError
from gateway.node.config import check_files, load_config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="configuration commands")
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser("check", help="check the configuration file and what it refers to")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        check_files(config)
    except ConfigError as exc:
        if args.format == "json":
            out_json({"ok": False, **exc.to_dict()})
            return exc.exit_code
        raise
    if args.format == "json":
        out_json({"ok": True, "file": str(config.path), "party": config.node.party,
                  "partners": len(config.partners), "routes": len(config.routing.rules)})
    else:
        out(f"{config.path}: OK (node {config.node.party}, {len(config.partners)} partner(s), "
            f"{len(config.routing.rules)} route rule(s), {len(config.outboxes)} outbox(es))")
    return 0
