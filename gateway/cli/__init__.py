"""``gateway`` command line: a thin dispatcher over command modules.

Each module in ``COMMAND_MODULES`` (under ``gateway/cli/``) defines
``register(subparsers) -> None``, which adds its sub-command(s) with
``set_defaults(func=run)``, where ``run(args: argparse.Namespace) -> int`` returns the exit
code. Errors are :class:`~gateway.errors.GatewayError`: printed as ``error: CODE: message``
and turned into the class's exit code; never a traceback (set ``GATEWAY_DEBUG=1`` to get
one for an unexpected error).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from gateway import __version__
from gateway.cli.output import err
from gateway.errors import GatewayError

# Add a command by adding its module here (gateway/cli/<name>.py).
COMMAND_MODULES: tuple[str, ...] = (
    "init_cmd",
    "partner_cmd",
    "config_cmd",
    "route_cmd",
    "run_cmd",
    "health_cmd",
    "status_cmd",
    "messages_cmd",
    "validate_cmd",
    "audit_cmd",
    "clocks_cmd",
    "keys_cmd",
    "seal_cmd",
    "csenet_cmd",
    "as4_cmd",
    "demo_cmd",
    "console_cmd",
    "operators_cmd",
    "store_cmd",
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message (its default), never a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway", description="CSE Gateway: secure child support messaging")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $GATEWAY_CONFIG, else ./gateway.toml)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"gateway.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = func(args)
    except GatewayError as exc:
        err(f"error: {exc.code}: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        if os.environ.get("GATEWAY_DEBUG"):
            traceback.print_exc()
        err(f"error: InternalError: unexpected {type(exc).__name__} (set GATEWAY_DEBUG=1 "
            "for a traceback)")
        return 70
    return code
