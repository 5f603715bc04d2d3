"""``gateway route explain FILE``: where a document would go, without sending anything."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli.output import out, out_json
from gateway.documents.describe import describe
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import RoutingError
from gateway.node.config import load_config
from gateway.node.routing import decide
from gateway.store.fsutil import read_file


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("route", help="routing commands")
    sub = parser.add_subparsers(dest="route_command", metavar="SUBCOMMAND", required=True)
    explain = sub.add_parser("explain", help="show the destination, matching rule and "
                             "transport for a document (sends nothing)")
    explain.add_argument("file", type=Path)
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.set_defaults(func=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    data = read_file(args.file, max_bytes=config.limits.max_message_bytes)
    info = describe(parse_xml(data, source=str(args.file), huge_text=True))
    if info.destination is None:
        raise RoutingError("the document names no destination party", where=str(args.file))
    decision = decide(config.routing, info.destination)
    result: dict[str, Any] = {
        "file": str(args.file), "document": info.name, "service": info.service,
        "destination": info.destination, "local": decision.local,
    }
    if not decision.local and decision.rule is not None and decision.partner is not None:
        partner = config.partner(decision.partner)
        result.update(
            partner=partner.party, partner_name=partner.name,
            rule=str(decision.rule.pattern), rule_kind=decision.rule.pattern.kind.name.lower(),
            rule_source=decision.rule.source,
            transports=[t.url for t in partner.transports])
    if args.format == "json":
        out_json(result)
        return 0
    out(f"file:        {args.file}")
    out(f"document:    {info.name} ({info.service})")
    out(f"destination: {info.destination}")
    if decision.local:
        out("route:       this node (would be delivered locally)")
        return 0
    out(f"rule:        {result['rule_kind']} '{result['rule']}' ({result['rule_source']})")
    out(f"partner:     {result['partner']} ({result['partner_name']})")
    transports = result["transports"]
    out(f"transport:   {transports[0] if transports else '(none)'}")
    for fallback in transports[1:]:
        out(f"  fallback:  {fallback}")
    return 0
