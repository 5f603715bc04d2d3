"""``gateway validate [--schema XSD] [--format text|json] FILE...``.

Exit 0 when every file is valid, 1 when any is invalid, unreadable or missing, 2 for usage
or configuration errors. Text: one line per error, ``FILE:LINE:COL: CODE: PATH: message``
(an unknown line or column prints as 0, an unknown path as ``-``). JSON: a list with one
object per file (``file``, ``valid``, ``errors``).

Operator schema sets come from the configuration (``[[schema_sets]]``) when one is given
with ``--config``, ``$GATEWAY_CONFIG`` or ``./gateway.toml``; without any, the shipped
schemas are used.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from gateway.cli.output import out, out_json
from gateway.documents.schemas import SchemaRegistry, default_registry, registry_with_sets
from gateway.documents.validate import Report, validate_file
from gateway.documents.xmlsafe import DEFAULT_MAX_BYTES
from gateway.errors import UsageError
from gateway.node.config import load_config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate", help="validate documents against their schemas and rules",
        description="Validate XML documents. The schema is chosen from the root element "
                    "unless --schema names an entry XSD.")
    parser.add_argument("--schema", metavar="XSD", type=Path,
                        help="validate against this entry XSD (and its .sch, if any)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="N",
                        help=f"refuse documents larger than N bytes (default {DEFAULT_MAX_BYTES})")
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path)
    parser.set_defaults(func=run)


def _registry(args: argparse.Namespace) -> SchemaRegistry:
    explicit = getattr(args, "config", None) or os.environ.get("GATEWAY_CONFIG")
    if not explicit and not Path("gateway.toml").is_file():
        return default_registry()
    config = load_config(explicit)
    sets = getattr(config, "schema_sets", ())
    return registry_with_sets(sets) if sets else default_registry()


def _text_line(report: Report) -> list[str]:
    return [
        f"{report.source}:{issue.line or 0}:{issue.column or 0}: {issue.code}: "
        f"{issue.path or '-'}: {issue.message}"
        for issue in report.issues
    ]


def run(args: argparse.Namespace) -> int:
    if args.max_bytes < 1:
        raise UsageError("--max-bytes must be a positive number of bytes")
    registry = None if args.schema is not None else _registry(args)
    reports = [
        validate_file(path, registry=registry, schema=args.schema, max_bytes=args.max_bytes)
        for path in args.files
    ]
    if args.format == "json":
        out_json([report.to_dict() for report in reports])
    else:
        for report in reports:
            for line in _text_line(report):
                out(line)
    return 0 if all(report.valid for report in reports) else 1
