"""``gateway run``: the daemon, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.node.config import load_config
from gateway.node.daemon import run
from gateway.node.logs import configure


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the gateway daemon (stop with SIGTERM)")
    parser.set_defaults(func=run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure(config.logging, verbose=args.verbose)
    return run(config)
