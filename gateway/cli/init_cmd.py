"""``gateway init``: a new node in one folder, and what to do next.

::

    gateway init DIR --party fips:SSCCCLL [--listen HOST:PORT] [--hostname NAME]...
                     [--agency-tls] [--store URL] [--rsa-bits 3072]
"""

from __future__ import annotations

import argparse
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import err, out
from gateway.errors import UsageError
from gateway.node.config import check_files, load_config
from gateway.node.provision import init_node, parse_listen
from gateway.protocol import certs
from gateway.protocol.party import Party, PartyInvalid

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "init", help="lay out a new node: keys, TLS certificates, gateway.toml, folders",
        description="Create a node folder: signing and encryption keys under a node CA, a "
                    "TLS CA with server and client certificates for mutual TLS (or, with "
                    "--agency-tls, instructions to use the agency's own), a commented "
                    "gateway.toml that passes `config check`, and the outbox, inbox, "
                    "rejected and spool folders, all owner-only. Refuses a folder that is "
                    "not empty.")
    p.add_argument("dir", type=Path, metavar="DIR", help="the node folder (new or empty)")
    p.add_argument("--party", required=True, metavar="PARTY",
                   help="this node's party: fips:SSCCCLL or iso3166:CC[-ID]")
    p.add_argument("--listen", default="0.0.0.0:8443", metavar="HOST:PORT",
                   help="HTTPS listener address (default 0.0.0.0:8443)")
    p.add_argument("--hostname", action="append", default=[], metavar="NAME",
                   help="a name partners connect to, put in the server certificate (repeat "
                        "for more; the first is advertised; default: the listen address, "
                        "or this machine's FQDN when listening on all addresses)")
    p.add_argument("--agency-tls", action="store_true",
                   help="no TLS CA: use the agency's own server and client certificates "
                        "(the listener is left commented out with instructions)")
    p.add_argument("--store", metavar="URL", help="store URL ([store] url)")
    p.add_argument("--rsa-bits", type=int, default=3072, choices=(2048, 3072, 4096),
                   help="RSA key size of the message keys (default 3072)")
    p.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    try:
        party = Party.parse(args.party)
    except PartyInvalid as exc:
        raise UsageError(f"--party: {exc.message}") from None
    listen = parse_listen(args.listen)
    result = init_node(args.dir, party, now=datetime.now(UTC), listen=listen,
                       hostnames=args.hostname, agency_tls=args.agency_tls, store=args.store,
                       rsa_bits=args.rsa_bits)
    config = load_config(result.config)
    check_files(config)
    root = result.root
    out(f"node {party} initialised in {root}")
    for path in result.written:
        line = f"  {path.relative_to(root)}"
        if path.suffix == ".crt":
            line += f"  sha256 {certs.fingerprint(certs.load_certificates_file(path)[0])}"
        out(line)
    out(f"configuration checked: {result.config}: OK")
    cfg = shlex.quote(str(result.config))
    steps = []
    if args.agency_tls:
        steps.append("Put the agency's TLS certificates in tls/ (server.crt, server.key, "
                     "client.crt, client.key, client-ca.pem) and uncomment [listeners.https] "
                     f"in {result.config}.")
    else:
        steps.append(f"Partners will reach this node at {result.endpoint} (the server "
                     "certificate names: --hostname to change).")
    steps += [
        f"Move {root / 'keys' / 'ca.key'}"
        + ("" if args.agency_tls else f" and {root / 'tls' / 'ca.key'}")
        + " offline: they only issue certificates.",
        f"Send your bundle to each partner: gateway --config {cfg} partner export "
        f"-o {party.dirname}.partner.json",
        f"Import each partner's bundle: gateway --config {cfg} partner import "
        "THEIRS.partner.json (compare the fingerprints with them by phone)",
        f"Run: gateway --config {cfg} run   (under systemd: packaging/cse-gateway.service; "
        "docs/operations.md)",
    ]
    if listen[1] < 1024 and not args.agency_tls:
        steps.append(f"Port {listen[1]} is below 1024: under systemd give the service "
                     "CAP_NET_BIND_SERVICE (CapabilityBoundingSet= and AmbientCapabilities= "
                     "in packaging/cse-gateway.service), or listen on 8443 and forward.")
    out("")
    out("next steps:")
    for i, step in enumerate(steps, 1):
        out(f"  {i}. {step}")
    if args.store:
        err("note: the store URL is in [store]; see docs/configuration.md")
    return 0
