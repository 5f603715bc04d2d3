"""``gateway health``: ask this node's HTTPS listener whether it is up (exit 0 or 1)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli.output import out
from gateway.node.config import load_config
from gateway.node.health import check_listener

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "health", help="GET /healthz on this node's HTTPS listener (exit 0 when it answers)",
        description="Connect to the configured listener over mutual TLS (presenting "
                    "tls/client.crt, or the first HTTPS partner transport's certificate), "
                    "accept only its configured server certificate, GET /healthz.")
    p.add_argument("--client-cert", type=Path, metavar="FILE")
    p.add_argument("--client-key", type=Path, metavar="FILE")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")
    p.set_defaults(func=run_health)


def run_health(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    url = check_listener(config, client_cert=args.client_cert, client_key=args.client_key,
                         timeout=args.timeout)
    out(f"ok: {url}")
    return 0
