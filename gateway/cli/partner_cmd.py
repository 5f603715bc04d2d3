"""``gateway partner``: exchange what two nodes need to talk, as one file each way.

::

    gateway partner export [-o FILE] [--endpoint URL] [--tls-ca FILE] [--name NAME]
    gateway partner import FILE [--yes] [--route PATTERN]... [--no-route]
                                [--client-cert FILE --client-key FILE]
    gateway partner ping PARTY [--format text|json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import confirm, err, out, out_json, table
from gateway.errors import FileUnreadable, UsageError
from gateway.node.config import load_config
from gateway.node.partners import Bundle, build_bundle, parse_bundle, plan_import
from gateway.protocol import certs
from gateway.service.context import NodeContext, os_user
from gateway.service.partners import ping_partner

__all__ = ["register"]


def register(subparsers: Any) -> None:
    partner = subparsers.add_parser("partner", help="export this node's bundle, import a "
                                                    "partner's")
    sub = partner.add_subparsers(dest="partner_command", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="write the bundle a partner imports",
                       description="Write one file with this node's party, endpoint, "
                                   "message certificates and TLS CA (nothing secret).")
    e.add_argument("-o", "--out", type=Path, metavar="FILE",
                   help="where to write it (default: PARTY.partner.json; never overwritten)")
    e.add_argument("--endpoint", metavar="URL",
                   help="the URL partners post to (default: from the listener's port and "
                        "the server certificate's first name)")
    e.add_argument("--tls-ca", type=Path, metavar="FILE",
                   help="the CA of our TLS certificates (default: tls/ca.crt)")
    e.add_argument("--name", metavar="NAME", help="a label for people (default: the party)")
    e.set_defaults(func=run_export)

    i = sub.add_parser("import", help="register a partner's bundle and add it to the config",
                       description="Show the bundle's fingerprints, ask for confirmation, "
                                   "register its certificates, pin its TLS CA, and add the "
                                   "partner and its routes to gateway.toml (comments kept). "
                                   "Restart the daemon afterwards.")
    i.add_argument("file", type=Path, metavar="FILE")
    i.add_argument("--yes", action="store_true",
                   help="do not ask (scripts: compare the fingerprints beforehand)")
    routes = i.add_mutually_exclusive_group()
    routes.add_argument("--route", action="append", metavar="PATTERN",
                        help="a destination pattern this partner serves (repeat; default: "
                             "fips:SS for a state gateway fips:SS00000, iso3166:CC for a "
                             "country; e.g. 'default' for a hub)")
    routes.add_argument("--no-route", action="store_true",
                        help="only the partner itself (its implicit exact route)")
    i.add_argument("--client-cert", type=Path, metavar="FILE",
                   help="our TLS client certificate for this partner (default: tls/client.crt)")
    i.add_argument("--client-key", type=Path, metavar="FILE")
    i.set_defaults(func=run_import)

    p = sub.add_parser("ping", help="check that a partner answers, over each of its transports",
                       description="Send no document: over HTTPS to a CSE gateway a signed "
                                   "ping answered by a signed receipt (verified), to an AS4 "
                                   "access point a signed, encrypted ebMS test message "
                                   "answered by a signed receipt (verified; never "
                                   "delivered), over SFTP or to a "
                                   "folder a connection that lists it. Exit 0 when every "
                                   "transport answered, 1 otherwise. Recorded in the audit "
                                   "trail (partner_pinged) with your OS user.")
    p.add_argument("party", metavar="PARTY", help="the partner, as configured (e.g. "
                   "fips:4800000)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run_ping)


def _show(bundle: Bundle) -> None:
    out(f"party     {bundle.party}  ({bundle.name})")
    out(f"endpoint  {bundle.endpoint}")
    for role, cert in bundle.fingerprints():
        out(f"{role:9} sha256 {certs.fingerprint(cert)}  "
            f"until {cert.not_valid_after_utc:%Y-%m-%d}  {cert.subject.rfc4514_string()}")


def run_export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    bundle = build_bundle(config, endpoint=args.endpoint, tls_ca=args.tls_ca, name=args.name)
    target: Path = args.out or Path(f"{bundle.party.dirname}.partner.json")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError("refusing to overwrite an existing file", where=str(target)) from None
    except OSError as exc:
        raise UsageError(f"cannot write ({exc.strerror})", where=str(target)) from None
    with os.fdopen(fd, "wb") as f:
        f.write(bundle.to_bytes())
    _show(bundle)
    out(f"wrote {target}")
    err("send it to the partner; read them these fingerprints over a second channel")
    return 0


def run_import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"cannot read ({exc.strerror})", where=str(args.file)) from None
    bundle = parse_bundle(data, where=str(args.file))
    routes = [] if args.no_route else args.route
    plan = plan_import(config, bundle, now=datetime.now(UTC), routes=routes,
                       client_cert=args.client_cert, client_key=args.client_key)
    _show(bundle)
    out(f"routes    {', '.join(plan.routes) or '(only the party itself)'}")
    for skipped in plan.skipped_routes:
        err(f"note: {skipped} is already routed; not changed")
    if not args.yes and not confirm(
            f"Do these fingerprints match what {bundle.party} told you? Import"):
        err("not imported")
        return 1
    for line in plan.apply(datetime.now(UTC)):
        out(line)
    err("restart the daemon to use the new partner (e.g. systemctl restart cse-gateway)")
    return 0


def run_ping(args: argparse.Namespace) -> int:
    with NodeContext.open(args.config) as ctx:
        results = ping_partner(ctx, args.party, operator=os_user(), now=datetime.now(UTC))
    if args.format == "json":
        out_json([dataclasses.asdict(r) for r in results])
    else:
        out(table([[r.url, r.check, "ok" if r.ok else str(r.code), f"{r.latency_ms} ms",
                    r.reason] for r in results],
                  ["transport", "check", "result", "latency", "what it showed"]))
    return 0 if results and all(r.ok for r in results) else 1
