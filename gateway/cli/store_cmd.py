"""``gateway store migrate``: create or bring up to date the store's schema.

SQLite creates its tables when the spool is first opened; a PostgreSQL store
(``[store] url``) is migrated with numbered, recorded migrations (running it again does
nothing). ``--url`` names a PostgreSQL database without a configuration file."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.output import out
from gateway.errors import UsageError
from gateway.node.config import load_config
from gateway.node.storeopen import AnySpool, open_spool, store_where
from gateway.store.postgres import PostgresSpool, redact_url


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("store", help="the store's schema, retention, copies")
    sub = parser.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)
    mig = sub.add_parser("migrate", help="create or update the store's schema (idempotent)")
    mig.add_argument("--url", metavar="URL",
                     help="a postgresql:// database (default: the configuration's store)")
    mig.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    if args.url is not None:
        if not args.url.startswith(("postgresql://", "postgres://")):
            raise UsageError("--url must be a postgresql:// URL")
        spool: AnySpool = PostgresSpool(args.url, holder="gateway-store-migrate")
        where = redact_url(args.url)
    else:
        config = load_config(args.config)
        spool = open_spool(config)  # creates or migrates the schema
        where = store_where(config)
    try:
        if isinstance(spool, PostgresSpool):
            versions = spool.schema_versions()
            out(f"store {where}: schema version {max(versions)} "
                f"(migrations applied: {', '.join(map(str, versions))})")
        else:
            out(f"store {where}: SQLite, schema created when the spool is opened")
    finally:
        spool.close()
    return 0
