"""``gateway csenet check|to-xml|from-xml``: CSENet 2000 files on the command line.

- ``check FILE``: every framing, layout and federal-edit error, one line each
  (``FILE:TRANSACTION: BLOCK FIELD columns A-B: CODE RULE: message``, never a value), then
  a summary line; exit 1 if any transaction is refused.
- ``to-xml FILE [-o OUT]``: a transaction as its XML form (``urn:cse-gateway:interstate:2``);
  a file with several transactions needs ``--position N``.
- ``from-xml FILE [-o OUT]``: an XML transaction back to its CSENet line.

Output goes to stdout unless ``-o`` names a file (written durably). ``--newline`` is the
framing setting (``any``, ``lf``, ``crlf``); ``--today`` fixes the date the "not in the
future" edits compare with (default: today's date on this machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from gateway.cli.output import out, out_json
from gateway.documents.csenet import NEWLINES, Framing, check, check_file
from gateway.documents.csenet.codec import HeaderKind
from gateway.documents.csenet.issues import CsenetIssue
from gateway.documents.csenet.xmlform import from_xml, to_xml
from gateway.errors import CsenetInvalid, FileUnreadable, UsageError
from gateway.store.fsutil import durable_write, read_file

MAX_XML_BYTES = 4 << 20


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("csenet", help="CSENet 2000 files: check, convert to and "
                                   "from the XML form")
    sub = parser.add_subparsers(dest="csenet_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--newline", choices=NEWLINES, default="any",
                       help="accepted line endings (framing setting; default any)")
        p.add_argument("--today", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                       help="the date 'not in the future' edits use (default: today)")

    check_p = sub.add_parser("check", help="every error in a CSENet file (exit 1 if any)")
    check_p.add_argument("file", type=Path)
    check_p.add_argument("--format", choices=("text", "json"), default="text")
    check_p.add_argument("--received", action="store_true",
                         help="the file holds received transactions (121-byte headers)")
    common(check_p)
    check_p.set_defaults(func=run_check)

    to_p = sub.add_parser("to-xml", help="a CSENet transaction as XML")
    to_p.add_argument("file", type=Path)
    to_p.add_argument("-o", "--output", type=Path, metavar="OUT")
    to_p.add_argument("--position", type=int, metavar="N",
                      help="which transaction of the file (1-based; needed when it holds "
                           "several)")
    common(to_p)
    to_p.set_defaults(func=run_to_xml)

    from_p = sub.add_parser("from-xml", help="an XML transaction as a CSENet line")
    from_p.add_argument("file", type=Path)
    from_p.add_argument("-o", "--output", type=Path, metavar="OUT")
    common(from_p)
    from_p.set_defaults(func=run_from_xml)


def _today(args: argparse.Namespace) -> dt.date:
    return args.today or dt.date.today()


def _line(source: str, issue: CsenetIssue) -> str:
    return f"{source}:{issue.position}: {issue.where().split(': ', 1)[1]}: {issue.code} " \
           f"{issue.rule}: {issue.message}"


def _open(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise FileUnreadable("file not found", where=str(path)) from None
    except OSError as exc:
        raise FileUnreadable(f"cannot read the file ({exc.strerror})", where=str(path)) from None


def run_check(args: argparse.Namespace) -> int:
    framing = Framing(args.newline)
    kind: HeaderKind = "from-server" if args.received else "to-server"
    total = rejected = 0
    errors: list[dict[str, Any]] = []
    with _open(args.file) as stream:
        for item in check_file(stream, today=_today(args), framing=framing, kind=kind):
            total += 1
            if item.issues:
                rejected += 1
            for issue in item.issues:
                if args.format == "json":
                    errors.append(issue.to_dict())
                else:
                    out(_line(str(args.file), issue))
    if args.format == "json":
        out_json({"file": str(args.file), "transactions": total, "valid": total - rejected,
                  "rejected": rejected, "errors": errors})
    else:
        out(f"{args.file}: {total} transaction(s), {total - rejected} valid, "
            f"{rejected} refused")
    return 1 if rejected else 0


def _write(args: argparse.Namespace, data: bytes) -> None:
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        durable_write(args.output, data, mode=0o640)


def _refuse(source: str, issues: list[CsenetIssue]) -> int:
    for issue in issues:
        out(_line(source, issue))
    return 1


def run_to_xml(args: argparse.Namespace) -> int:
    framing = Framing(args.newline)
    chosen = None
    count = 0
    with _open(args.file) as stream:
        for item in check_file(stream, today=_today(args), framing=framing):
            count += 1
            if args.position is None or item.position == args.position:
                chosen = chosen or item
    if args.position is None and count > 1:
        raise UsageError(f"the file holds {count} transactions: choose one with --position",
                         where=str(args.file))
    if chosen is None:
        raise UsageError("no transaction at that position" if count else "the file is empty",
                         where=str(args.file))
    if chosen.transaction is None or chosen.issues:
        return _refuse(str(args.file), list(chosen.issues))
    _write(args, to_xml(chosen.transaction))
    return 0


def run_from_xml(args: argparse.Namespace) -> int:
    data = read_file(args.file, max_bytes=MAX_XML_BYTES)
    try:
        txn = from_xml(data, source=str(args.file))
    except CsenetInvalid as exc:
        if not exc.issues:
            raise
        return _refuse(str(args.file), list(exc.issues))
    issues = check(txn, today=_today(args))
    if issues:
        return _refuse(str(args.file), issues)
    _write(args, txn.to_bytes() + Framing(args.newline).terminator)
    return 0
