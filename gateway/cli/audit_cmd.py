"""``gateway audit list|show|verify|export``: read, check and export the audit trail.

Every command opens the database read-only: ``--db PATH``, else the configuration's spool
database (global ``--config``, ``$GATEWAY_CONFIG`` or ./gateway.toml). Times are ISO 8601
in UTC (``2026-11-01`` or ``2026-11-01T09:30:00Z``); ``--since`` is inclusive, ``--until``
exclusive.

``verify`` pins the checkpoint signer: with a configuration, checkpoints must be signed by
the node's own signing certificate (``KEYS/sign.crt``) or one given with ``--signer-cert``
/ ``--signer-fingerprint``; ``--any-signer`` opts out (a copied database checked without
the node's keys). A bundle checked without a configuration or pins stays unpinned, as the
output says.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.cli.output import err, out, out_json
from gateway.errors import (
    AuditTampered,
    GatewayError,
    UsageError,
)
from gateway.service.audit import (
    EventFilter,
    intact,
    list_events,
    node_pin,
    record_verification,
    timeline,
)
from gateway.service.context import open_audit, os_user
from gateway.store.audit import (
    DEFAULT_KEEP,
    EVENT_CODES,
    AuditLog,
    KeySigner,
    StoredEvent,
    retention_cutoff,
)
from gateway.store.audit_bundle import bundle_checkpoints, export_bundle, verify_bundle
from gateway.store.audit_chain import VerifyReport, fingerprint
from gateway.store.postgres import open_audit_log

_CSV_COLUMNS = ("seq", "at", "code", "message_id", "case_id", "from_party", "to_party",
                "partner", "transport", "digest", "error_code", "actor", "detail",
                "prev_hash", "hash")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("audit", help="the audit trail: list, show, verify, export")
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", type=Path, metavar="PATH",
                    help="the spool database (default: spool.database from the configuration)")

    ls = sub.add_parser("list", parents=[db], help="list events matching every filter given")
    ls.add_argument("--message", metavar="ID", help="message ID")
    ls.add_argument("--case", metavar="ID", help="case ID")
    ls.add_argument("--partner", metavar="PARTY", help="partner, sender or recipient party")
    ls.add_argument("--code", metavar="CODE", action="append",
                    help=f"event code (repeatable), e.g. {', '.join(list(EVENT_CODES)[:4])}")
    ls.add_argument("--since", metavar="T", type=when, help="from this time (inclusive)")
    ls.add_argument("--until", metavar="T", type=when, help="up to this time (exclusive)")
    ls.add_argument("--limit", metavar="N", type=positive, help="at most N events")
    ls.add_argument("--reverse", action="store_true", help="newest first")
    ls.add_argument("--format", choices=("text", "json", "csv"), default="text")
    ls.set_defaults(func=run_list)

    show = sub.add_parser("show", parents=[db],
                          help="a message's timeline, its receipts and whether they verify")
    show.add_argument("message_id", metavar="MESSAGE_ID")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=run_show)

    verify = sub.add_parser("verify", parents=[db],
                            help="check the hash chain, checkpoint signatures and receipts")
    verify.add_argument("--bundle", type=Path, metavar="ZIP",
                        help="verify an exported evidence bundle instead of the database")
    verify.add_argument("--signer-cert", type=Path, action="append", default=[],
                        metavar="PEM", help="another allowed checkpoint signing certificate "
                        "(repeatable), added to the node's own KEYS/sign.crt, e.g. the one "
                        "it signed with before a key rotation")
    verify.add_argument("--signer-fingerprint", action="append", default=[], metavar="SHA256",
                        help="the same, as the certificate's SHA-256 fingerprint (hex)")
    verify.add_argument("--any-signer", action="store_true",
                        help="do not pin the checkpoint signer: accept the certificate "
                        "stored with each checkpoint (a copied database or bundle "
                        "checked without the node's keys)")
    verify.add_argument("--against", type=Path, action="append", default=[], metavar="ZIP",
                        help="an earlier export kept elsewhere (repeatable): the database "
                        "must still hold its checkpoints (detects a rollback)")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(func=run_verify)

    export = sub.add_parser("export", parents=[db],
                            help="write a self-contained evidence bundle (.zip)")
    export.add_argument("--since", metavar="T", type=when, help="from this time (inclusive)")
    export.add_argument("--until", metavar="T", type=when, help="up to this time (exclusive)")
    export.add_argument("--message", metavar="ID", help="the events of one message")
    export.add_argument("out", type=Path, metavar="OUT", help="the bundle to write (.zip)")
    export.add_argument("--format", choices=("text", "json"), default="text")
    export.set_defaults(func=run_export)

    checkpoint = sub.add_parser("checkpoint", parents=[db],
                                help="sign a checkpoint now with the node's signing key")
    checkpoint.set_defaults(func=run_checkpoint)

    prune = sub.add_parser("prune", parents=[db],
                           help="remove events older than the retention period (dry run "
                           "unless --yes)")
    group = prune.add_mutually_exclusive_group()
    group.add_argument("--keep-days", type=positive, metavar="DAYS",
                       help=f"keep this many days of events (default {DEFAULT_KEEP.days}, "
                       "seven years)")
    group.add_argument("--before", type=when, metavar="T",
                       help="remove events before this time instead")
    prune.add_argument("--yes", action="store_true", help="really remove them")
    prune.set_defaults(func=run_prune)


# --- argument helpers -------------------------------------------------------------------


def when(text: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or date-time (UTC unless an offset is given)."""
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or date-time, e.g. 2026-11-01 or "
            f"2026-11-01T09:30:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def database_path(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return Path(args.db)
    from gateway.node.config import config_path, load_config  # noqa: PLC0415 - only when needed

    if args.config is None and not config_path(None).exists():
        raise UsageError("no --db PATH given and no configuration file found "
                         "(give --db PATH or --config FILE)")
    return load_config(args.config).spool.database


def _store_url(args: argparse.Namespace) -> str | None:
    """The configuration's PostgreSQL store, when there is no ``--db`` and one is set."""
    if args.db is not None:
        return None
    from gateway.node.config import config_path, load_config  # noqa: PLC0415 - only when needed

    if args.config is None and not config_path(None).exists():
        return None
    return load_config(args.config).store.url


def open_log(args: argparse.Namespace) -> AuditLog:
    url = _store_url(args)
    if url is not None:
        return open_audit_log(url, read_only=True)
    return open_audit(database_path(args))


def open_log_for_writing(args: argparse.Namespace) -> AuditLog:
    url = _store_url(args)
    if url is not None:
        return open_audit_log(url, read_only=False)
    return open_audit(database_path(args), write=True)


def node_signer(args: argparse.Namespace) -> KeySigner:
    """The node's signing key and certificate, from the configuration's key directory."""
    from gateway.node.config import load_config  # noqa: PLC0415 - only when needed
    from gateway.node.nodekeys import load_node_keys  # noqa: PLC0415

    identity = load_node_keys(load_config(args.config)).identity
    return KeySigner(identity.signing_key, identity.signing_cert)


def operator() -> str:
    """The actor for audit events written by a CLI action: the operator's OS user."""
    return os_user()


#: Certificates checkpoints must be signed by: fingerprint -> where it came from.
Pins = dict[str, str]


def pins(args: argparse.Namespace) -> Pins | None:
    """The checkpoint signers to require, or None when ``--any-signer`` (or, for a bundle
    checked where there is no node configuration and nothing else is given) leaves them
    unpinned. With a configuration the node's own signing certificate (``KEYS/sign.crt``)
    is always pinned; ``--signer-cert``/``--signer-fingerprint`` add more."""
    explicit = explicit_pins(args)
    if args.any_signer:
        if explicit:
            raise UsageError("--any-signer excludes --signer-cert and --signer-fingerprint")
        return None
    found, missing = node_pins(args)
    for fp, source in explicit.items():
        found.setdefault(fp, source)
    if found:
        return found
    if missing is not None:
        raise UsageError(f"{missing}: checkpoints cannot be pinned to the node's signing "
                         "certificate (give --signer-cert PEM, or --any-signer to accept "
                         "whichever certificate is stored with each checkpoint)")
    if args.bundle is not None:
        return None  # offline, no node configuration: as before, said in the output
    raise UsageError("no node configuration, so the checkpoint signer cannot be pinned to "
                     "the node's signing certificate: give --config FILE, --signer-cert "
                     "PEM, or --any-signer to accept whichever certificate is stored with "
                     "each checkpoint")


def explicit_pins(args: argparse.Namespace) -> Pins:
    found: Pins = {}
    for path in args.signer_cert:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read certificate ({exc.strerror})",
                             where=str(path)) from None
        try:
            cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data \
                else x509.load_der_x509_certificate(data)
        except ValueError:
            raise UsageError("not a PEM or DER certificate", where=str(path)) from None
        found.setdefault(fingerprint(cert), f"--signer-cert {path}")
    for fp in args.signer_fingerprint:
        cleaned = fp.replace(":", "").lower()
        if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
            raise UsageError("--signer-fingerprint: expected a SHA-256 fingerprint in hex")
        found.setdefault(cleaned, "--signer-fingerprint")
    return found


def node_pins(args: argparse.Namespace) -> tuple[Pins, str | None]:
    """The node's own signing certificate (see :func:`gateway.service.audit.node_pin`)."""
    return node_pin(_keys_dir(args))


# --- list -------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    log = open_log(args)
    page = list_events(log, EventFilter(message_id=args.message, case_id=args.case,
                                        partner=args.partner, codes=tuple(args.code or ()),
                                        since=args.since, until=args.until),
                       limit=args.limit, descending=args.reverse)
    emit_events(page.events, args.format)
    if page.more:
        err(f"the list is cut at {args.limit} event(s): raise --limit, narrow it with "
            "--message/--case/--partner/--code/--since/--until, or --reverse for the newest")
    return 0


def emit_events(events: Iterable[StoredEvent], fmt: str) -> None:
    if fmt == "json":
        first = True
        out("[")
        for e in events:
            out(("  " if first else ", ") + json.dumps(e.to_dict(), sort_keys=False))
            first = False
        out("]")
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for e in events:
            d = e.to_dict()
            d["detail"] = json.dumps(d["detail"], sort_keys=True, separators=(",", ":"))
            writer.writerow(["" if d[c] is None else d[c] for c in _CSV_COLUMNS])
            if buf.tell() > 1 << 16:
                out(buf.getvalue().rstrip("\n"))
                buf.seek(0)
                buf.truncate()
        if buf.tell():
            out(buf.getvalue().rstrip("\n"))
    else:
        out(f"{'SEQ':>8}  {'TIME (UTC)':<23}  {'CODE':<21}  {'MESSAGE':<36}  {'CASE':<15}  "
            f"{'PARTNER':<25}  {'VIA':<5}  {'ERROR':<20}  {'ACTOR':<8}  DETAIL")
        for e in events:
            out(text_line(e))


def text_line(e: StoredEvent, *, status: str = "") -> str:
    ev = e.event
    at = ev.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    parties = ev.partner or (f"{ev.from_party or '?'}->{ev.to_party or '?'}"
                             if ev.from_party or ev.to_party else "-")
    detail = ",".join(f"{k}={v}" for k, v in sorted(ev.detail.items())) or "-"
    if ev.digest:
        detail = f"digest={ev.digest[:16]}" + ("" if detail == "-" else f",{detail}")
    line = (f"{e.seq:>8}  {at:<23}  {ev.code:<21}  {ev.message_id or '-':<36}  "
            f"{ev.case_id or '-':<15}  {parties:<25}  {ev.transport or '-':<5}  "
            f"{ev.error_code or '-':<20}  {ev.actor:<8}  {detail}")
    return f"{line}  {status}" if status else line


# --- show -------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    log = open_log(args)
    from gateway.node.config import config_path  # noqa: PLC0415 - only when needed

    configured = config_path(args.config)
    tl = timeline(log, args.message_id, _keys_dir(args),
                  config_path=configured if configured.exists() else None)
    events, checked = tl.events, tl.receipts
    if args.format == "json":
        out_json({"message_id": args.message_id,
                  "events": [{**e.to_dict(), "intact": intact(e)} for e in events],
                  "receipts": checked})
        return 0
    out(f"message {args.message_id}: {len(events)} event(s), {len(checked)} receipt(s)")
    for e in events:
        out(text_line(e, status="" if intact(e) else "ALTERED (hash mismatch)"))
    for r in checked:
        out(f"receipt {r['direction']} at {r['at']} ({r['bytes']} bytes, sha256 {r['sha256']})")
        out(f"  stored bytes: {r['integrity']}")
        out(f"  signature: {r['signature']['status']}"
            + (f": {r['signature']['reason']}" if r["signature"].get("reason") else ""))
    if any(not intact(e) for e in events):
        out("some events do not match their hashes: run `gateway audit verify`")
    return 0


def _keys_dir(args: argparse.Namespace) -> Path | None:
    from gateway.node.config import config_path, load_config  # noqa: PLC0415

    if args.config is None and not config_path(None).exists():
        return None
    return load_config(args.config).node.keys_dir


# --- verify -----------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        if args.db is not None or args.against:
            raise UsageError("--bundle verifies a bundle alone: no --db or --against")
        pinned = pins(args)
        report = verify_bundle(args.bundle, pinned=pinned)
        what = str(args.bundle)
    else:
        log = open_log(args)
        pinned = pins(args)
        known = [cp for bundle in args.against for cp in bundle_checkpoints(bundle)]
        report = log.verify(pinned=pinned, known=known)
        what = "audit trail"
    recorded = _record(args, report) if args.bundle is None and args.db is None else None
    if args.format == "json":
        out_json({**report.to_dict(), "pinned_to": [
            {"fingerprint": fp, "source": source} for fp, source in (pinned or {}).items()],
            "recorded_seq": recorded})
        return 0 if report.ok else 1
    print_report(what, report, pinned)
    if recorded is not None:
        out(f"recorded as event {recorded} (audit_verified)")
    if report.ok:
        out("OK")
        return 0
    first = report.problems[0]
    raise AuditTampered(f"does not verify: first bad event is {first.seq} ({first.kind})",
                        where=what)


def _record(args: argparse.Namespace, report: VerifyReport) -> int | None:
    """Record the verification of the node's own trail (not of a ``--db`` copy or a
    bundle, which stay untouched) as an ``audit_verified`` event, so the console's
    dashboard shows every verify; a trail this user cannot write is only reported."""
    try:
        log = open_log_for_writing(args)
        try:
            return record_verification(log, report, actor=operator(), via="cli",
                                       now=datetime.now(UTC))
        finally:
            log.conn.close()
    except GatewayError as exc:
        err(f"note: the verification was not recorded in the trail ({exc.code}: {exc})")
        return None


def print_report(what: str, r: VerifyReport, pinned: Pins | None) -> None:
    span = f"seq {r.first_seq}..{r.last_seq}" if r.first_seq is not None else "empty"
    out(f"{what}: {r.events:,} event(s) ({span}), {r.checkpoints} checkpoint(s), "
        f"{r.receipts} receipt(s)")
    if pinned is None:
        out("checkpoint signer NOT pinned: each signature is checked against the "
            "certificate stored with it (give --config or --signer-cert to require known "
            "certificates)")
    else:
        for fp, source in pinned.items():
            out(f"checkpoint signer pinned: {fp} ({source})")
    if r.last_checkpoint_seq is None:
        out("no signed checkpoint: the events are protected by the hash chain only")
    elif r.unsigned_tail:
        out(f"last checkpoint at seq {r.last_checkpoint_seq}; the {r.unsigned_tail} event(s) "
            "after it are protected by the hash chain only")
    for fp in r.signers:
        status = ("not pinned" if pinned is None else "pinned" if fp in pinned
                  else "NOT one of the pinned certificates")
        out(f"checkpoints signed by {fp}: {status}")
    for p in r.problems:
        err(str(p))
    if r.truncated_report:
        err("(more problems not listed)")


# --- export -----------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    if args.since is None and args.until is None and args.message is None:
        raise UsageError("say what to export: --since/--until and/or --message")
    log = open_log(args)
    summary = export_bundle(log, args.out, since=args.since, until=args.until,
                            message_id=args.message, now=datetime.now(UTC))
    if args.format == "json":
        out_json(summary.to_dict())
        return 0
    out(f"wrote {summary.path}: events {summary.first_seq}..{summary.last_seq} "
        f"({summary.events}), {summary.checkpoints} checkpoint(s), {summary.receipts} "
        "receipt(s)")
    if summary.signed_through is None or summary.signed_through < summary.last_seq:
        out(f"note: events after seq {summary.signed_through or summary.first_seq - 1} are not "
            "covered by a signed checkpoint yet; export again after the next checkpoint")
    return 0


# --- checkpoint and prune (write; need the node's signing key) -------------------------


def run_checkpoint(args: argparse.Namespace) -> int:
    signer = node_signer(args)
    log = open_log_for_writing(args)
    cp = log.checkpoint(signer, datetime.now(UTC), actor=operator())
    out(f"checkpoint at seq {cp.seq} ({cp.hash}) signed by {cp.signer}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    before = args.before or retention_cutoff(
        now, timedelta(days=args.keep_days) if args.keep_days else DEFAULT_KEEP)
    log = open_log_for_writing(args) if args.yes else open_log(args)
    through, count = log.prunable(before)
    if count == 0:
        out(f"nothing to prune: no events before {before:%Y-%m-%dT%H:%M:%SZ}")
        return 0
    if not args.yes:
        out(f"would remove {count:,} event(s) through seq {through} (before "
            f"{before:%Y-%m-%dT%H:%M:%SZ}) and their checkpoints and receipts; export them "
            "first if they must be kept, then run again with --yes")
        return 0
    removed = log.prune(before, node_signer(args), now, actor=operator())
    out(f"removed {removed:,} event(s) through seq {through}; the chain now starts at seq "
        f"{through + 1}, anchored by a signed checkpoint")
    return 0
