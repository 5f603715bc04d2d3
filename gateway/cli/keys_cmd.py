"""``gateway keys``: generate a node's keys, register partners, list and check certificates.

::

    gateway keys generate --party P --out DIR [--csr | --self-signed]
                          [--sign-algorithm rsa|ecdsa-p256 | --curve p256]
    gateway keys import-partner --party P CERT... [--keys DIR]
    gateway keys list [--keys DIR] [--format text|json]
    gateway keys check [--keys DIR] [--warn-days 30]

``list`` and ``check`` also cover the extra decryption certificates in ``decrypt/`` (role
``decrypt:NAME``); an expired one is reported so that it gets removed.

``--keys`` defaults to the configuration's ``node.keys_dir`` when a configuration is given
(``--config``, ``$GATEWAY_CONFIG`` or ``./gateway.toml``), else ``./keys``. Passphrases
come from ``--passphrase-file`` or ``--passphrase-env``, never from an argument value.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import err, out, out_json, table
from gateway.errors import UsageError
from gateway.node.config import load_config
from gateway.node.keystore import Keystore, generate_node, read_passphrase
from gateway.protocol import certs
from gateway.protocol.party import Party, PartyInvalid
from gateway.service.status import certificates

__all__ = ["register"]


def _passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-file", metavar="FILE",
                       help="passphrase for the private keys (first line of FILE)")
    group.add_argument("--passphrase-env", metavar="VAR",
                       help="passphrase for the private keys (environment variable VAR)")


def _keys_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="key directory (default: the configuration's node.keys_dir, "
                             "else ./keys)")


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="node keys, trust store, partner certificates")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    g = sub.add_parser("generate", help="create this node's keys and certificates",
                       description="Write signing and encryption keys (0600) and "
                                   "certificates issued by a new node CA, or CSRs with --csr.")
    g.add_argument("--party", required=True, metavar="PARTY", help="e.g. fips:0600000")
    g.add_argument("--out", required=True, type=Path, metavar="DIR")
    kind = g.add_mutually_exclusive_group()
    kind.add_argument("--csr", action="store_true",
                      help="write certificate signing requests for a real CA instead")
    kind.add_argument("--self-signed", action="store_true",
                      help="self-signed certificates (each its own trust anchor) instead of "
                           "a node CA")
    algorithm = g.add_mutually_exclusive_group()
    # default None, not "rsa": argparse lets an explicit value equal to the default
    # through the mutually exclusive group
    algorithm.add_argument("--sign-algorithm", choices=("rsa", "ecdsa-p256"),
                           help="signing (and node CA) key; the encryption key stays RSA "
                                "(default rsa)")
    algorithm.add_argument("--curve", choices=("p256",),
                           help="every key on this curve: ECDSA signing and node CA keys, "
                                "an ECDH encryption key (keyUsage keyAgreement)")
    g.add_argument("--rsa-bits", type=int, default=3072, choices=(2048, 3072, 4096))
    g.add_argument("--days", type=int, default=730, help="certificate lifetime (default 730)")
    _passphrase_options(g)
    g.set_defaults(func=run_generate)

    i = sub.add_parser("import-partner", help="register a partner's certificates",
                       description="Validate and register certificates for a partner party. "
                                   "CA certificates join the trust store; the others must "
                                   "chain to it (a self-signed one becomes its own anchor).")
    i.add_argument("--party", required=True, metavar="PARTY")
    i.add_argument("certs", nargs="+", type=Path, metavar="CERT")
    _keys_option(i)
    i.set_defaults(func=run_import)

    ls = sub.add_parser("list", help="list every certificate with its expiry")
    _keys_option(ls)
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(func=run_list)

    c = sub.add_parser("check", help="exit non-zero if anything is expired or expiring",
                       description="Check certificate expiry (and key file permissions); exit "
                                   "1 when anything is expired, expires within --warn-days, "
                                   "or a key file is readable by others.")
    _keys_option(c)
    c.add_argument("--warn-days", type=int, default=30, metavar="N")
    c.set_defaults(func=run_check)


def _keys_dir(args: argparse.Namespace) -> Path:
    if args.keys is not None:
        return Path(args.keys)
    explicit = getattr(args, "config", None) or os.environ.get("GATEWAY_CONFIG")
    if explicit or Path("gateway.toml").is_file():
        return Path(load_config(explicit).node.keys_dir)
    return Path("keys")


def _party(text: str) -> Party:
    try:
        return Party.parse(text)
    except PartyInvalid as exc:
        raise UsageError(f"--party: {exc.message}") from None


def run_generate(args: argparse.Namespace) -> int:
    passphrase = read_passphrase(args.passphrase_file, args.passphrase_env)
    written = generate_node(args.out, _party(args.party), now=datetime.now(UTC),
                            days=args.days, sign_algorithm=args.sign_algorithm or "rsa",
                            curve=args.curve,
                            rsa_bits=args.rsa_bits, passphrase=passphrase, csr=args.csr,
                            self_signed=args.self_signed)
    for path in written:
        line = str(path)
        if path.suffix == ".crt":
            line += f"  sha256 {certs.fingerprint(certs.load_certificates_file(path)[0])}"
        out(line)
    if args.csr:
        err("send sign.csr and encrypt.csr to your CA; save what it issues as sign.crt and "
            "encrypt.crt, and its CA certificate under trust/")
    elif args.self_signed:
        err("give partners sign.crt and encrypt.crt (each is its own trust anchor)")
    else:
        err("give partners ca.crt, sign.crt and encrypt.crt; move ca.key offline")
    return 0


def run_import(args: argparse.Namespace) -> int:
    store = Keystore(_keys_dir(args))
    found = [c for path in args.certs for c in certs.load_certificates_file(path)]
    done = store.import_partner(_party(args.party), found, now=datetime.now(UTC))
    for what, cert, path in done:
        out(f"{what:8} {certs.fingerprint(cert)}  {cert.subject.rfc4514_string()}  -> {path}")
    return 0


def _rows(store: Keystore, now: datetime) -> list[dict[str, Any]]:
    return certificates(store.path, now)


def run_list(args: argparse.Namespace) -> int:
    rows = _rows(Keystore(_keys_dir(args)), datetime.now(UTC))
    if args.format == "json":
        out_json(rows)
        return 0
    if not rows:
        err("no certificates found")
        return 0
    out(table([[r["role"], r["party"], r["subject"], r["fingerprint"][:16], r["not_after"],
                str(r["days_left"])] for r in rows],
              ["ROLE", "PARTY", "SUBJECT", "FINGERPRINT", "NOT AFTER", "DAYS LEFT"]))
    return 0


def run_check(args: argparse.Namespace) -> int:
    store = Keystore(_keys_dir(args))
    if not store.path.is_dir():
        raise UsageError("key directory not found", where=str(store.path))
    now = datetime.now(UTC)
    problems = 0
    rows = _rows(store, now)
    for r in rows:
        where = f"{r['role']} {r['party']} {r['fingerprint'][:16]} ({r['path']})".replace(
            "  ", " ")
        if r["days_left"] < 0:
            hint = ("; remove the pair once no message sealed to it can still arrive"
                    if r["role"].startswith("decrypt:") else "")
            out(f"EXPIRED   {where}: expired {r['not_after']}{hint}")
            problems += 1
        elif r["days_left"] < args.warn_days:
            out(f"EXPIRING  {where}: {r['days_left']} day(s) left, until {r['not_after']}")
            problems += 1
    for path in store.insecure_key_files():
        out(f"INSECURE  {path}: private key readable by group or others (chmod 600)")
        problems += 1
    if problems:
        err(f"{problems} problem(s) among {len(rows)} certificate(s)")
        return 1
    out(f"ok: {len(rows)} certificate(s), none expiring within {args.warn_days} days")
    return 0
