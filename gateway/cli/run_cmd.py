"""``gateway run``: the daemon, until SIGTERM or SIGINT; with ``[console]`` configured,
the operator console too (showing the daemon's live breaker states)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.output import err
from gateway.node.config import load_config
from gateway.node.daemon import Gateway, run


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the gateway daemon (stop with SIGTERM)")
    parser.set_defaults(func=run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.console is None:
        return run(config)
    from gateway.console.server import start_console  # noqa: PLC0415 - only when configured
    from gateway.service.context import NodeContext  # noqa: PLC0415

    running_gateway: list[Gateway] = []

    def breakers() -> dict[str, str]:
        if not running_gateway:
            return {}
        board = running_gateway[0].breakers
        return {p.party: str(board.state(p.party).mode) for p in config.partners}

    with NodeContext.open(args.config) as ctx:
        console = start_console(ctx, config.console, live_breakers=breakers)

        def ready(gateway: Gateway) -> None:  # the daemon runs and handles SIGTERM now
            running_gateway.append(gateway)
            err(f"console: {console.url}")

        try:
            return run(config, ready=ready)
        finally:
            console.stop()
