"""``gateway seal`` and ``gateway open``: the protocol by hand, without a configuration.

For scripting and for partners testing their side. Neither keeps state between runs
(duplicate detection belongs to the spool)::

    gateway seal --from P --to Q --sign-key K --sign-cert C --recipient-cert R IN [-o OUT]
    gateway open --decrypt-key K --decrypt-cert C --trust CA.pem [--sender-cert S] IN [-o OUT]

``open`` writes the business document's exact bytes, and nothing at all when it rejects:
exit 0 opened, 1 rejected (the error code is printed), 2 usage error (bad arguments,
unreadable keys or certificates).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.cli.output import err
from gateway.documents.describe import describe
from gateway.documents.validate import validate_bytes
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import (
    FileUnreadable,
    GatewayError,
    InputError,
    KeyMaterialError,
    UnknownDocumentType,
    UsageError,
    XmlError,
)
from gateway.node.keystore import load_private_key, read_passphrase
from gateway.protocol import certs
from gateway.protocol.cms import DecryptionKey, SigningKey
from gateway.protocol.envelope import Header
from gateway.protocol.party import Party, PartyInvalid
from gateway.protocol.seal import OpenPolicy, open_envelope, seal

__all__ = ["register"]


@dataclass(frozen=True)
class _Sender:
    party: Party
    signing_key: SigningKey
    signing_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class _Recipient:
    party: Party
    encryption_key: DecryptionKey
    encryption_cert: x509.Certificate


def _passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", metavar="FILE",
                       help="read the private key's passphrase from FILE (first line)")
    group.add_argument("--passphrase-env", metavar="VAR",
                       help="read the private key's passphrase from environment variable VAR")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "seal", help="sign and encrypt a document into an envelope",
        description="Seal IN (a business document) into a protocol envelope: signed with "
                    "--sign-key, encrypted to --recipient-cert.")
    p.add_argument("--from", dest="from_party", required=True, metavar="PARTY")
    p.add_argument("--to", dest="to_party", required=True, metavar="PARTY")
    p.add_argument("--sign-key", required=True, type=Path, metavar="KEY")
    p.add_argument("--sign-cert", required=True, type=Path, metavar="CERT")
    p.add_argument("--recipient-cert", required=True, type=Path, metavar="CERT")
    p.add_argument("--chain", type=Path, metavar="PEM",
                   help="intermediate certificates to include with the signature")
    p.add_argument("--service", choices=("interstate", "international", "ping"),
                   help="default: from the document type")
    p.add_argument("--action", help="default: the document's root element name")
    p.add_argument("--conversation-id")
    p.add_argument("--ref-to", metavar="MESSAGE_ID")
    p.add_argument("--message-id", help="default: a new random UUID")
    p.add_argument("--no-validate", action="store_true",
                   help="do not validate the document against its schema first")
    p.add_argument("--pkcs1", action="store_true",
                   help="sign with RSASSA-PKCS1-v1_5 instead of RSA-PSS")
    _passphrase_options(p)
    p.add_argument("input", metavar="IN", type=Path)
    p.add_argument("-o", "--output", metavar="OUT", type=Path, help="default: stdout")
    p.set_defaults(func=run_seal)

    o = subparsers.add_parser(
        "open", help="decrypt and verify an envelope, write the document",
        description="Open envelope IN: decrypt with --decrypt-key, verify the signer "
                    "chains to --trust (and is --sender-cert when given), compare the "
                    "headers, write the business document's exact bytes. Writes nothing "
                    "when the envelope is rejected.")
    o.add_argument("--decrypt-key", required=True, type=Path, metavar="KEY")
    o.add_argument("--decrypt-cert", required=True, type=Path, metavar="CERT")
    o.add_argument("--trust", required=True, type=Path, action="append", metavar="CA.pem",
                   help="trusted CA or self-signed certificates (repeatable)")
    o.add_argument("--sender-cert", type=Path, action="append", metavar="CERT",
                   help="accept only this signer certificate for the From party "
                        "(repeatable)")
    o.add_argument("--party", metavar="PARTY",
                   help="this node's party (default: the party URI in --decrypt-cert)")
    o.add_argument("--max-age-hours", type=float, default=24.0,
                   help="reject envelopes created longer ago (default 24)")
    o.add_argument("--max-future-minutes", type=float, default=5.0,
                   help="reject envelopes created further ahead (default 5)")
    o.add_argument("--allow-legacy", action="store_true",
                   help="also accept AES-CBC / PKCS#1 v1.5 key transport (logged)")
    _passphrase_options(o)
    o.add_argument("input", metavar="IN", type=Path)
    o.add_argument("-o", "--output", metavar="OUT", type=Path, help="default: stdout")
    o.set_defaults(func=run_open)


def _usage(exc: GatewayError) -> int:
    err(f"error: {exc.code}: {exc}")
    return 2


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"cannot read ({exc.strerror})", where=str(path)) from None


def _cert(path: Path) -> x509.Certificate:
    return certs.load_certificates_file(path)[0]


def _party(text: str, option: str) -> Party:
    try:
        return Party.parse(text)
    except PartyInvalid as exc:
        raise UsageError(f"{option}: {exc.message}") from None


def _write(output: Path | None, data: bytes) -> None:
    """Write ``data`` to ``output`` atomically (temp file + rename), or to stdout."""
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    directory = output.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _describe(document: bytes, source: str, validate: bool) -> tuple[str | None, str]:
    """(service, action) from the document; validates it unless told not to."""
    if validate:
        report = validate_bytes(document, source=source)
        if not report.valid:
            for issue in report.issues[:20]:
                err(f"{source}:{issue.line or 0}:{issue.column or 0}: {issue.code}: "
                    f"{issue.path or '-'}: {issue.message}")
            raise InputError(f"the document is not valid ({len(report.issues)} issue(s)); "
                             "use --no-validate to seal it anyway", where=source)
    try:
        tree = parse_xml(document, source=source)
    except XmlError:
        if validate:
            raise
        return None, "Document"
    try:
        info = describe(tree)
    except UnknownDocumentType:
        return None, tree.getroot().tag.rpartition("}")[2]
    return info.service, info.name


def run_seal(args: argparse.Namespace) -> int:
    try:
        passphrase = read_passphrase(args.passphrase_file, args.passphrase_env)
        sender = _Sender(
            party=_party(args.from_party, "--from"),
            signing_key=load_private_key(args.sign_key, passphrase),
            signing_cert=_cert(args.sign_cert),
            chain=tuple(certs.load_certificates_file(args.chain)) if args.chain else (),
        )
        recipient_cert = _cert(args.recipient_cert)
        to_party = _party(args.to_party, "--to")
        document = _read(args.input)
    except (KeyMaterialError, FileUnreadable, UsageError) as exc:
        return _usage(exc)
    service, action = _describe(document, str(args.input), not args.no_validate)
    service = args.service or service
    if service is None:
        return _usage(UsageError("the document type is unknown: give --service"))
    header = Header(
        message_id=args.message_id or str(uuid.uuid4()),
        from_party=sender.party, to_party=to_party, service=service,
        action=args.action or action, created=datetime.now(UTC).replace(microsecond=0),
        conversation_id=args.conversation_id, ref_to_message_id=args.ref_to,
    )
    envelope = seal(document, header, sender=sender, recipient_cert=recipient_cert,
                    rsa_pss=not args.pkcs1)
    _write(args.output, envelope)
    err(f"sealed {header.message_id} {header.from_party} -> {header.to_party} "
        f"({header.service}/{header.action}, {len(envelope)} bytes)")
    return 0


def run_open(args: argparse.Namespace) -> int:
    try:
        passphrase = read_passphrase(args.passphrase_file, args.passphrase_env)
        decrypt_cert = _cert(args.decrypt_cert)
        key = load_private_key(args.decrypt_key, passphrase)
        party = (_party(args.party, "--party") if args.party
                 else certs.party_in_san(decrypt_cert))
        if party is None:
            raise UsageError("--decrypt-cert names no party: give --party")
        trust = [c for path in args.trust for c in certs.load_certificates_file(path)]
        senders = [c for path in args.sender_cert or []
                   for c in certs.load_certificates_file(path)]
        data = _read(args.input)
    except (KeyMaterialError, FileUnreadable, UsageError) as exc:
        return _usage(exc)
    node = _Recipient(party=party, encryption_key=key, encryption_cert=decrypt_cert)
    policy = OpenPolicy(max_age=timedelta(hours=args.max_age_hours),
                        max_future=timedelta(minutes=args.max_future_minutes),
                        allow_legacy=args.allow_legacy)
    try:
        # With --sender-cert, only those certificates speak for the From party.
        directory = _SendersFor(senders) if senders else None
        opened = open_envelope(data, node=node, trust=trust, directory=directory,
                               now=datetime.now(UTC), policy=policy)
    except GatewayError as exc:
        if isinstance(exc, UsageError):
            return _usage(exc)
        err(f"rejected: {exc.code}: {exc}")
        return 1
    _write(args.output, opened.document)
    h = opened.header
    err(f"opened {h.message_id} {h.from_party} -> {h.to_party} ({h.service}/{h.action}), "
        f"signer {opened.signer_fingerprint[:16]}, envelope sha256 {opened.envelope_digest}")
    return 0


@dataclass(frozen=True)
class _SendersFor:
    """A directory in which the given certificates speak for whichever party is ``From``."""

    certificates: list[x509.Certificate]

    def certificates_for(self, party: Party) -> list[x509.Certificate]:
        return list(self.certificates)
