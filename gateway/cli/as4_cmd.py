"""``gateway as4``: AS4 messages and receipts by hand, for operators and auditors.

Each command takes what other tools save: a raw MIME message (boundary on the first line),
a MIME entity with its headers, an HTTP capture (headers, blank line, body) or a bare SOAP
envelope::

    gateway as4 inspect FILE [--format json]
    gateway as4 open FILE --decrypt-key KEY.pem --trust CERT.pem -o DIR
    gateway as4 verify-receipt RECEIPT [--request REQUEST] [--trust CERT.pem]

``inspect`` verifies nothing and never prints payload content. ``open`` verifies the
signature against ``--trust``, decrypts, decompresses and writes each payload into DIR;
on any failure (unsigned, a missing part, a bad digest, a wrong key ...) it exits 1 with
the reason and writes nothing. ``verify-receipt`` checks the receipt's signature against
``--trust`` or, without it, the certificate the receipt carries (said so in the output),
and with ``--request`` that its NonRepudiationInformation equals what the request signed.
Exit 0 good, 1 refused, 2 usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.cli.output import err, out, out_json
from gateway.errors import (
    As4Error,
    FileUnreadable,
    GatewayError,
    KeyMaterialError,
    UsageError,
)
from gateway.node.keystore import load_private_key, read_passphrase
from gateway.protocol import certs
from gateway.protocol.as4 import dsig, ebms, mime, ns, receipt, soap, xenc
from gateway.protocol.as4.message import open_parsed

__all__ = ["register"]

_EXTENSIONS = {
    "application/xml": ".xml",
    "text/xml": ".xml",
    "application/pdf": ".pdf",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "text/plain": ".txt",
    "application/json": ".json",
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("as4", help="inspect, open and check AS4 (eDelivery) messages",
                              description="AS4 messages and receipts by hand.")
    sub = p.add_subparsers(dest="as4_command", metavar="COMMAND", required=True)

    i = sub.add_parser("inspect", help="headers, parties, service, algorithms, parts",
                       description="Describe an AS4 message or signal without verifying it.")
    i.add_argument("file", metavar="FILE", type=Path)
    i.add_argument("--format", choices=("text", "json"), default="text")
    i.set_defaults(func=run_inspect)

    o = sub.add_parser("open", help="verify, decrypt, decompress, write the payloads",
                       description="Verify FILE's signature against --trust, decrypt with "
                                   "--decrypt-key, decompress, and write each payload into "
                                   "DIR. Writes nothing when anything fails.")
    o.add_argument("file", metavar="FILE", type=Path)
    o.add_argument("--decrypt-key", type=Path, metavar="KEY.pem",
                   help="our private key (PEM), needed when the payloads are encrypted")
    o.add_argument("--trust", required=True, type=Path, action="append", metavar="CERT.pem",
                   help="the sender's certificate or its CA (repeatable)")
    o.add_argument("-o", "--output", required=True, type=Path, metavar="DIR")
    _common(o)
    group = o.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", metavar="FILE",
                       help="read the key's passphrase from FILE (first line)")
    group.add_argument("--passphrase-env", metavar="VAR",
                       help="read the key's passphrase from environment variable VAR")
    o.set_defaults(func=run_open)

    r = sub.add_parser("verify-receipt", help="check a receipt's signature (and its NRI)",
                       description="Verify RECEIPT's signature against --trust, or the "
                                   "certificate it carries; with --request, also that its "
                                   "NonRepudiationInformation equals what REQUEST signed.")
    r.add_argument("receipt", metavar="RECEIPT", type=Path)
    r.add_argument("--request", type=Path, metavar="REQUEST")
    r.add_argument("--trust", type=Path, action="append", metavar="CERT.pem",
                   help="the partner's certificate or its CA (repeatable)")
    _common(r)
    r.set_defaults(func=run_verify_receipt)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", metavar="TIME",
                        help="check certificate validity at this ISO 8601 time (default now)")
    parser.add_argument("--allow-sha1", action="store_true",
                        help="accept SHA-1 signatures and digests (weak; partners that "
                             "still need it)")
    parser.add_argument("--allow-cbc", action="store_true",
                        help="accept AES-CBC content encryption (weak)")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"cannot read ({exc.strerror})", where=str(path)) from None


def _at(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("--at is not an ISO 8601 time", where="--at") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _policy(args: argparse.Namespace) -> ns.AlgorithmPolicy:
    return ns.AlgorithmPolicy(allow_sha1=args.allow_sha1, allow_cbc=args.allow_cbc)


def _trust(paths: list[Path] | None) -> list[x509.Certificate] | None:
    if not paths:
        return None
    return [c for path in paths for c in certs.load_certificates_file(path)]


def _usage(exc: GatewayError) -> int:
    err(f"error: {exc.code}: {exc}")
    return 2


def _refused(exc: GatewayError) -> int:
    ebms_code = f" ({exc.ebms_code})" if isinstance(exc, As4Error) else ""
    err(f"rejected: {exc.code}{ebms_code}: {exc}")
    return 1


# --- inspect ----------------------------------------------------------------------------


def _short(uri: str) -> str:
    """The algorithm's name: the URI's fragment, or its last path step."""
    uri = uri.rstrip("#/")
    for sep in ("#", "/"):
        if sep in uri:
            return uri.rsplit(sep, 1)[-1]
    return uri


def _algorithms(envelope: soap.Envelope) -> dict[str, Any]:
    info: dict[str, Any] = {}
    security = envelope.security
    signature = security.find(f"{{{ns.DS}}}Signature") if security is not None else None
    if signature is not None:
        method = signature.find(f"{{{ns.DS}}}SignedInfo/{{{ns.DS}}}SignatureMethod")
        c14n = signature.find(f"{{{ns.DS}}}SignedInfo/{{{ns.DS}}}CanonicalizationMethod")
        refs = dsig.signed_references(signature)
        info["signature"] = _short(method.get("Algorithm", "")) if method is not None else None
        info["canonicalization"] = _short(c14n.get("Algorithm", "")) if c14n is not None else None
        info["digests"] = sorted({_short(r.digest_method) for r in refs})
        info["signed"] = [r.uri for r in refs]
        key_info = signature.find(f"{{{ns.DS}}}KeyInfo")
        reference_kind = "none"
        if key_info is not None:
            for path, kind in ((f".//{{{ns.WSSE}}}Reference", "BinarySecurityToken"),
                               (f".//{{{ns.DS}}}X509IssuerSerial", "IssuerSerial"),
                               (f".//{{{ns.WSSE}}}KeyIdentifier", "KeyIdentifier")):
                if key_info.find(path) is not None:
                    reference_kind = kind
                    break
        info["token"] = reference_kind
    else:
        info["signature"] = None
    encryption = xenc.describe_encryption(envelope)
    if encryption is not None:
        info["key_transport"] = _short(encryption.key_transport)
        info["oaep_digest"] = _short(encryption.oaep_digest)
        info["mgf"] = _short(encryption.mgf)
        info["content_encryption"] = sorted({_short(c) for c in encryption.content_ciphers})
        info["encrypted"] = [f"cid:{c}" for c in encryption.cids]
    return info


def _party(party: ebms.Party) -> dict[str, Any]:
    return {"id": party.party_id, "type": party.party_type, "role": party.role}


def describe(data: bytes) -> dict[str, Any]:
    """What an AS4 message or signal says about itself (nothing verified)."""
    message = mime.parse_message(data)
    envelope = soap.parse_envelope(message.soap)
    result: dict[str, Any] = {
        "content_type": message.content_type,
        "soap": "1.2" if envelope.soap_ns == ns.SOAP12 else "1.1",
    }
    if message.http_headers:
        result["http_headers"] = sorted(message.http_headers)
    if envelope.messaging.find(f"{{{ns.EB}}}UserMessage") is not None:
        user = ebms.parse_user_message(envelope.messaging, check=False)
        result.update({
            "kind": "UserMessage",
            "message_id": user.message_id,
            "timestamp": user.timestamp,
            "ref_to_message_id": user.ref_to_message_id,
            "from": _party(user.sender),
            "to": _party(user.receiver),
            "service": {"value": user.service, "type": user.service_type},
            "action": user.action,
            "conversation_id": user.conversation_id,
            "agreement": {"value": user.agreement, "type": user.agreement_type,
                          "pmode": user.pmode},
            "properties": {name: (value if name in ("originalSender", "finalRecipient")
                                  else "…") for name, value in user.properties},
            "payloads": [{"href": p.href, **dict(p.properties)} for p in user.parts],
        })
    else:
        signal = ebms.parse_signal(envelope.messaging)
        result.update({
            "kind": "Receipt" if signal.is_receipt else "Error" if signal.errors else "Signal",
            "message_id": signal.message_id,
            "timestamp": signal.timestamp,
            "ref_to_message_id": signal.ref_to_message_id,
            "errors": [{"code": e.code, "severity": e.severity, "short": e.short}
                       for e in signal.errors],
            "nri": [r.uri for r in receipt.nri_references(envelope)],
        })
    result["algorithms"] = _algorithms(envelope)
    result["parts"] = [{"content_id": p.content_id, "content_type": p.content_type,
                        "bytes": len(p.content)} for p in message.attachments]
    return result


def _text(info: dict[str, Any]) -> None:
    out(f"kind:            {info['kind']} (SOAP {info['soap']})")
    out(f"content type:    {info['content_type']}")
    if info.get("http_headers"):
        out(f"http headers:    {', '.join(info['http_headers'])}")
    out(f"message id:      {info['message_id']}")
    out(f"timestamp:       {info['timestamp']}")
    if info.get("ref_to_message_id"):
        out(f"ref to:          {info['ref_to_message_id']}")
    if info["kind"] == "UserMessage":
        for side in ("from", "to"):
            party = info[side]
            out(f"{side + ':':<17}{party['id']} (type {party['type'] or '-'}, "
                f"role {party['role']})")
        service = info["service"]
        out(f"service:         {service['value']} (type {service['type'] or '-'})")
        out(f"action:          {info['action']}")
        out(f"conversation:    {info['conversation_id']}")
        agreement = info["agreement"]
        if agreement["value"]:
            out(f"agreement:       {agreement['value']} (pmode {agreement['pmode'] or '-'})")
        for name, value in info["properties"].items():
            out(f"property:        {name} = {value}")
        for payload in info["payloads"]:
            extra = ", ".join(f"{k} {v}" for k, v in payload.items() if k != "href")
            out(f"payload:         {payload['href'] or '(SOAP Body)'}: {extra}")
    else:
        for error in info["errors"]:
            out(f"error:           {error['code']} {error['short'] or ''} ({error['severity']})")
        for uri in info["nri"]:
            out(f"nri:             {uri}")
    algorithms = info["algorithms"]
    if algorithms.get("signature"):
        out(f"signature:       {algorithms['signature']}, digests "
            f"{', '.join(algorithms['digests'])}, c14n {algorithms['canonicalization']}, "
            f"token {algorithms['token']}")
        for uri in algorithms["signed"]:
            out(f"signed:          {uri}")
    else:
        out("signature:       none")
    if "key_transport" in algorithms:
        out(f"encryption:      {', '.join(algorithms['content_encryption'])}, key "
            f"{algorithms['key_transport']} (digest {algorithms['oaep_digest']}, "
            f"mgf {algorithms['mgf']})")
    else:
        out("encryption:      none")
    for part in info["parts"]:
        out(f"part:            cid:{part['content_id']} {part['content_type']} "
            f"{part['bytes']} bytes")


def run_inspect(args: argparse.Namespace) -> int:
    try:
        data = _read(args.file)
    except FileUnreadable as exc:
        return _usage(exc)
    try:
        info = describe(data)
    except GatewayError as exc:
        return _refused(exc)
    if args.format == "json":
        out_json(info)
    else:
        _text(info)
    return 0


# --- open -------------------------------------------------------------------------------


def _name(index: int, cid: str, mime_type: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", cid.split("@", 1)[0])[:60].strip("._") or "body"
    extension = _EXTENSIONS.get(mime_type.split(";", 1)[0].strip(), ".bin")
    return f"{index:02d}-{stem}{extension}"


def _write_all(directory: Path, files: list[tuple[str, bytes]]) -> None:
    """Write every file or none: into a temporary folder beside DIR, then moved in."""
    for name, _ in files:
        if (directory / name).exists():
            raise UsageError("the output folder already holds a file of that name",
                             where=str(directory / name))
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".as4-open.", dir=parent))
    try:
        for name, content in files:
            with open(staging / name, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        directory.mkdir(parents=True, exist_ok=True)
        for name, _ in files:
            os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_open(args: argparse.Namespace) -> int:
    try:
        key: rsa.RSAPrivateKey | None = None
        if args.decrypt_key:
            passphrase = read_passphrase(args.passphrase_file, args.passphrase_env)
            loaded = load_private_key(args.decrypt_key, passphrase)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise KeyMaterialError("the decryption key must be an RSA key",
                                       where=str(args.decrypt_key))
            key = loaded
        trusted = _trust(args.trust)
        now = _at(args.at)
        data = _read(args.file)
    except (KeyMaterialError, FileUnreadable, UsageError) as exc:
        return _usage(exc)
    try:
        message = mime.parse_message(data)
        opened = open_parsed(message, decrypt_key=key, trusted=trusted, now=now,
                             policy=_policy(args))
    except GatewayError as exc:
        return _refused(exc)
    files = [(_name(i + 1, p.cid, p.mime_type), p.content) for i, p in enumerate(opened.payloads)]
    try:
        _write_all(args.output, files)
    except UsageError as exc:
        return _usage(exc)
    user = opened.user_message
    signer = opened.signature.certificate
    out(f"opened {user.message_id}: {user.sender.party_id} -> {user.receiver.party_id} "
        f"({user.service}/{user.action}), signed by {certs.describe(signer)} "
        f"[{_short(opened.signature.signature_method)}], "
        f"{'encrypted' if opened.encryption else 'not encrypted'}")
    for (name, content), payload in zip(files, opened.payloads, strict=True):
        out(f"  {name}  {payload.mime_type}  {len(content)} bytes  "
            f"sha256 {hashlib.sha256(content).hexdigest()}")
    return 0


# --- verify-receipt ---------------------------------------------------------------------


def _request_references(data: bytes) -> tuple[str, tuple[dsig.Reference, ...]]:
    """The request's MessageId and the references its signature lists (as sent)."""
    message = mime.parse_message(data)
    envelope = soap.parse_envelope(message.soap, source="request")
    user = ebms.parse_user_message(envelope.messaging)
    security = envelope.security
    signature = security.find(f"{{{ns.DS}}}Signature") if security is not None else None
    if signature is None:
        raise UsageError("the request is not signed: there is nothing to match",
                         where="--request")
    return user.message_id, dsig.signed_references(signature)


def run_verify_receipt(args: argparse.Namespace) -> int:
    try:
        trusted = _trust(args.trust)
        now = _at(args.at)
        data = _read(args.receipt)
        request = _read(args.request) if args.request else None
    except (FileUnreadable, UsageError) as exc:
        return _usage(exc)
    try:
        message_id, references = (_request_references(request) if request is not None
                                  else (None, None))
        verified = receipt.verify_receipt(data, trusted=trusted, now=now,
                                          signed_references=references,
                                          ref_to_message_id=message_id,
                                          policy=_policy(args))
    except UsageError as exc:
        return _usage(exc)
    except GatewayError as exc:
        return _refused(exc)
    signer = verified.signature.certificate
    how = ("trusted by --trust" if verified.signature.trusted
           else "the certificate the receipt carries (not checked against any trust)")
    out(f"receipt {verified.message_id} for {verified.ref_to_message_id}: signature "
        f"verified [{_short(verified.signature.signature_method)}], signed by "
        f"{certs.describe(signer)}, {how}")
    if verified.nri_matched:
        out(f"non-repudiation: {len(verified.nri)} references match what the request signed")
    else:
        out(f"non-repudiation: {len(verified.nri)} references (no --request to match)")
    return 0
