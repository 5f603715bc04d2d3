"""``gateway store migrate|purge|copy``: the store's schema, payload retention, and moving
a node from SQLite to PostgreSQL (:mod:`gateway.store.copy`).

``purge`` removes the payloads of finished messages (see :mod:`gateway.store.retention`);
``--dry-run`` only counts, ``--before TIME`` replaces the configured ages.

SQLite creates its tables when the spool is first opened; a PostgreSQL store
(``[store] url``) is migrated with numbered, recorded migrations (running it again does
nothing). ``--url`` names a PostgreSQL database without a configuration file."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.cli.output import out
from gateway.errors import UsageError
from gateway.node.config import load_config
from gateway.node.storeopen import AnySpool, open_spool, store_where
from gateway.store.copy import copy_sqlite_to_postgres
from gateway.store.postgres import PostgresSpool, redact_url
from gateway.store.retention import purge_payloads


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("store", help="the store's schema, retention, copies")
    sub = parser.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)
    mig = sub.add_parser("migrate", help="create or update the store's schema (idempotent)")
    mig.add_argument("--url", metavar="URL",
                     help="a postgresql:// database (default: the configuration's store)")
    mig.set_defaults(func=run_migrate)
    pur = sub.add_parser("purge", help="remove the payloads of finished messages "
                         "(store.keep_payloads, store.keep_receipts)")
    pur.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    pur.add_argument("--before", type=_moment, metavar="TIME",
                     help="finished before this time (ISO 8601 date or time, UTC), "
                          "instead of the configured ages")
    pur.set_defaults(func=run_purge)
    cp = sub.add_parser("copy", help="copy a SQLite store into a new PostgreSQL store")
    cp.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH",
                    help="the SQLite spool database (stop its node first)")
    cp.add_argument("--to", dest="target", required=True, metavar="URL",
                    help="an empty postgresql:// database")
    cp.set_defaults(func=run_copy)


def run_copy(args: argparse.Namespace) -> int:
    source = args.source.removeprefix("sqlite:")
    if not args.target.startswith(("postgresql://", "postgres://")):
        raise UsageError("--to must be a postgresql:// URL")
    result = copy_sqlite_to_postgres(Path(source), args.target, datetime.now(UTC))
    counts = ", ".join(f"{n} {table}" for table, n in result.rows.items())
    out(f"copied into {redact_url(args.target)}: {counts}; audit chain verified")
    return 0


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 date or time, got {text!r}") \
            from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_purge(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = datetime.now(UTC)
    if args.before is not None:
        if args.before > now:
            raise UsageError("--before is in the future")
        bulk = receipts = args.before
    else:
        bulk = now - timedelta(seconds=config.store.keep_payloads)
        receipts = now - timedelta(seconds=config.store.keep_receipts)
    spool = open_spool(config, create=False)
    try:
        result = purge_payloads(spool, now, payloads_before=bulk, receipts_before=receipts,
                                dry_run=args.dry_run, actor="operator")
    finally:
        spool.close()
    verb = "would remove" if args.dry_run else "removed"
    out(f"{verb} {result.payloads} payloads ({result.bytes} bytes) of {result.messages} "
        f"finished messages (documents and envelopes finished before {bulk:%Y-%m-%d %H:%M}, "
        f"receipts and error reports before {receipts:%Y-%m-%d %H:%M} UTC)")
    return 0


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
