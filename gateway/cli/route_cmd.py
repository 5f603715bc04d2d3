"""``gateway route explain FILE``: where a document would go, without sending anything."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli.output import out, out_json
from gateway.documents.csenet import read_file as read_csenet
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


def _is_xml(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def run_explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    data = read_file(args.file, max_bytes=config.limits.max_message_bytes)
    if not _is_xml(data):
        return _explain_csenet(args, config, data)
    info = describe(parse_xml(data, source=str(args.file), huge_text=True))
    if info.destination is None:
        raise RoutingError("the document names no destination party", where=str(args.file))
    result = _explain(config, info.destination, file=str(args.file), document=info.name,
                      service=info.service)
    if args.format == "json":
        out_json(result)
        return 0
    out(f"file:        {args.file}")
    out(f"document:    {info.name} ({info.service})")
    _print_route(result)
    return 0


def _explain_csenet(args: argparse.Namespace, config: Any, data: bytes) -> int:
    """One route per transaction of a CSENet file (routed by Other-FIPS)."""
    results: list[dict[str, Any]] = []
    for item in read_csenet(data):
        if item.transaction is None:
            results.append({"file": str(args.file), "position": item.position,
                            "document": "CSENet", "error": str(item.issues[0])})
            continue
        header = item.transaction.header
        result = _explain(config, header.destination, file=str(args.file),
                          document=f"CSENet {header.function} {header.action} "
                                   f"{header.reason or '-'}".rstrip(),
                          service="interstate")
        result["position"] = item.position
        results.append(result)
    if args.format == "json":
        out_json(results)
        return 0
    for result in results:
        out(f"file:        {args.file} (transaction {result['position']})")
        out(f"document:    {result['document']}")
        if "error" in result:
            out(f"error:       {result['error']}")
            continue
        _print_route(result)
    return 0 if all("error" not in r for r in results) else 1


def _explain(config: Any, destination: str, **facts: Any) -> dict[str, Any]:
    decision = decide(config.routing, destination)
    result: dict[str, Any] = {**facts, "destination": destination, "local": decision.local}
    if not decision.local and decision.rule is not None and decision.partner is not None:
        partner = config.partner(decision.partner)
        result.update(
            partner=partner.party, partner_name=partner.name,
            rule=str(decision.rule.pattern), rule_kind=decision.rule.pattern.kind.name.lower(),
            rule_source=decision.rule.source,
            transports=[t.url for t in partner.transports])
    return result


def _print_route(result: dict[str, Any]) -> None:
    out(f"destination: {result['destination']}")
    if result["local"]:
        out("route:       this node (would be delivered locally)")
        return
    out(f"rule:        {result['rule_kind']} '{result['rule']}' ({result['rule_source']})")
    out(f"partner:     {result['partner']} ({result['partner_name']})")
    transports = result["transports"]
    out(f"transport:   {transports[0] if transports else '(none)'}")
    for fallback in transports[1:]:
        out(f"  fallback:  {fallback}")
