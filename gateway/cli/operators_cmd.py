"""``gateway operators add|list|disable|reset|unlock``: the console's operator accounts.

``add`` and ``reset`` print the new password and TOTP secret once (with an
``otpauth://`` URI for an authenticator app); they are stored only as an argon2id hash
and in the accounts file (mode 0600). ``list`` shows each account's lock and failed
logins and ``unlock`` (and ``reset``) clears them: both read and write them in the
node's store, which every console on it shares (every node's, on a shared PostgreSQL
store). Each change is an audit event in the node's trail (actor: the OS user). ``code``
prints the current one-time code for a TOTP secret (what an authenticator app shows;
for the demo's throw-away login and for scripts)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import out, out_json, table
from gateway.console import totp
from gateway.console.accounts import ROLES, Accounts
from gateway.errors import UsageError
from gateway.service.context import NodeContext, os_user
from gateway.store.console_lockouts import AccountLocks
from gateway.store.console_sessions import SessionStore


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("operators", help="the console's operator accounts")
    sub = parser.add_subparsers(dest="operators_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add", help="create an account; prints its password and TOTP "
                         "secret once")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer")
    add.add_argument("--format", choices=("text", "json"), default="text")
    add.set_defaults(func=run_add)
    ls = sub.add_parser("list", help="every account, its role and status")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(func=run_list)
    dis = sub.add_parser("disable", help="refuse every login of an account")
    dis.add_argument("name")
    dis.set_defaults(func=run_disable)
    reset = sub.add_parser("reset", help="a new password and TOTP secret; unlocks and "
                           "enables the account")
    reset.add_argument("name")
    reset.add_argument("--format", choices=("text", "json"), default="text")
    reset.set_defaults(func=run_reset)
    unlock = sub.add_parser("unlock", help="end an account's lockout and forget its failed "
                            "logins (on every console of the store)")
    unlock.add_argument("name")
    unlock.set_defaults(func=run_unlock)
    code = sub.add_parser("code", help="the current one-time code for a TOTP secret")
    code.add_argument("--secret-file", type=Path, required=True, metavar="FILE",
                      help="a file holding the base32 secret")
    code.set_defaults(func=run_code)


def _accounts(ctx: NodeContext) -> Accounts:
    config = ctx.config
    if config.console is None:
        raise UsageError("no [console] section in the configuration", where=str(config.path))
    return Accounts(config.console.accounts, AccountLocks(ctx.spool))


@contextmanager
def _opened(args: argparse.Namespace) -> Iterator[tuple[NodeContext, Accounts]]:
    """The node (its audit trail, console sessions and account locks) and the accounts,
    both opened before anything is read or changed: a store that cannot be opened fails
    the command before a new password is made that would never be shown."""
    with NodeContext.open(args.config) as ctx:
        accounts = _accounts(ctx)
        try:
            yield ctx, accounts
        finally:
            accounts.close()


def _record(ctx: NodeContext, code: str, name: str, **detail: str) -> None:
    with ctx.spool.transaction(datetime.now(UTC)) as txn:
        txn.audit(code, actor=os_user(), detail={"operator": name, **detail})


def _credentials(args: argparse.Namespace, creds: Any, role: str | None) -> None:
    if args.format == "json":
        out_json({"name": creds.name, "role": role, "password": creds.password,
                  "totp_secret": creds.totp_secret, "otpauth": creds.otpauth})
        return
    out(f"operator:    {creds.name}" + (f" ({role})" if role else ""))
    out(f"password:    {creds.password}")
    out(f"TOTP secret: {creds.totp_secret}")
    out(f"otpauth URI: {creds.otpauth}")
    out("Give these to the operator once, by a safe channel; they are not shown again.")


def run_add(args: argparse.Namespace) -> int:
    with _opened(args) as (ctx, accounts):
        creds = accounts.add(args.name, args.role, time.time())
        _record(ctx, "operator_added", args.name, role=args.role)
    _credentials(args, creds, args.role)
    return 0


def run_list(args: argparse.Namespace) -> int:
    with _opened(args) as (_, accounts):  # the locks are in the store
        found = accounts.list()
    now = time.time()
    rows: list[dict[str, Any]] = [{"name": a.name, "role": a.role,
             "status": "disabled" if a.disabled else "locked" if a.locked_until
             and a.locked_until > now else "active", "failed_logins": a.failures}
            for a in found]
    if args.format == "json":
        out_json(rows)
        return 0
    out(table([[r["name"], r["role"], r["status"], str(r["failed_logins"])] for r in rows],
              ["name", "role", "status", "failed logins"]) if rows else "no operators")
    return 0


def _end_sessions(ctx: NodeContext, name: str) -> int:
    """End the operator's console sessions, which every console reads from the store."""
    return SessionStore(ctx.spool).delete_operator(name)


def run_disable(args: argparse.Namespace) -> int:
    with _opened(args) as (ctx, accounts):
        accounts.disable(args.name)
        ended = _end_sessions(ctx, args.name)
        _record(ctx, "operator_disabled", args.name)
    out(f"operator {args.name} disabled; {ended} console session(s) ended")
    return 0


def run_reset(args: argparse.Namespace) -> int:
    with _opened(args) as (ctx, accounts):
        creds = accounts.reset(args.name)
        _end_sessions(ctx, args.name)  # the old password and code opened them
        _record(ctx, "operator_reset", args.name)
    _credentials(args, creds, None)
    return 0


def run_unlock(args: argparse.Namespace) -> int:
    with _opened(args) as (ctx, accounts):
        cleared = accounts.unlock(args.name)
        _record(ctx, "operator_unlocked", args.name)
    out(f"operator {args.name} unlocked" if cleared else
        f"operator {args.name} was not locked and had no failed logins")
    return 0


def run_code(args: argparse.Namespace) -> int:
    try:
        secret = args.secret_file.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the secret ({exc.strerror})",
                         where=str(args.secret_file)) from None
    out(totp.code_at(secret, totp.step_of(time.time())))
    return 0
