"""``gateway console``: the operator console alone, against the node's spool (the daemon
may run at the same time; ``gateway run`` starts it too when ``[console]`` is set)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any

from gateway.cli.output import out
from gateway.console.server import start_console
from gateway.errors import UsageError
from gateway.node.console_config import ConsoleConfig
from gateway.service.context import NodeContext


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("console", help="serve the operator console in the "
                                   "browser (until Ctrl-C or SIGTERM)")
    parser.add_argument("--port", type=int, help="listen on this port instead of "
                        "console.port (0: any free port)")
    parser.set_defaults(func=run_console)


def console_config(ctx: NodeContext) -> ConsoleConfig:
    if ctx.config.console is None:
        raise UsageError("no [console] section in the configuration (see "
                         "docs/configuration.md)", where=str(ctx.config.path))
    return ctx.config.console


def run_console(args: argparse.Namespace) -> int:
    with NodeContext.open(args.config) as ctx:
        config = console_config(ctx)
        if args.port is not None:
            config = ConsoleConfig(**{**config.__dict__, "port": args.port})
        stop = threading.Event()
        with contextlib.suppress(ValueError):  # not the main thread (tests)
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        running = start_console(ctx, config)
        out(f"console: {running.url} (Ctrl-C to stop)")
        sys.stdout.flush()  # a supervisor reading our output sees it now
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
    return 0
