"""``gateway demo``: run a small gateway network on 127.0.0.1 and show messages flowing.

Exit 0 only when every valid message was delivered with a verified receipt, the invalid
one was rejected, and every node's audit trail verifies; 1 otherwise."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from gateway.cli.output import err, out, out_json, table
from gateway.demo.network import DemoNetwork
from gateway.demo.tour import DemoResult, command_name, default_directory, run_demo


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a four-node gateway network on 127.0.0.1 and show messages flow",
        description="Builds two state gateways, a federal hub and a foreign Central "
        "Authority on 127.0.0.1 (real keys, mutual-TLS HTTPS, SFTP through OpenSSH sshd), "
        "sends synthetic transactions through them and prints what happened.")
    parser.add_argument("--dir", type=Path, metavar="DIR",
                        help="where to build the nodes (default: a new demo-YYYYMMDD-HHMMSS "
                        "folder in the current directory); kept afterwards")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as JSON (progress goes to stderr)")
    parser.add_argument("--no-sshd", action="store_true",
                        help="do not use OpenSSH: the SFTP link falls back to local folders")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the network running after the demo's messages (drop "
                        "your own files into DIR/<node>/outbox/); Ctrl-C stops and verifies")
    parser.add_argument("--timeout", type=float, default=45.0, metavar="SECONDS",
                        help="how long to wait for every receipt (default 45)")
    parser.set_defaults(func=run_demo_cmd)


def run_demo_cmd(args: argparse.Namespace) -> int:
    directory = args.dir or default_directory()
    progress = err if args.json else out
    result = run_demo(directory, progress=progress, timeout=args.timeout,
                      use_sshd=not args.no_sshd, verbosity=args.verbose,
                      hold=partial(keep_running, progress) if args.keep_running else None)
    if args.json:
        out_json(result.to_dict())
    else:
        summary(result)
    return 0 if result.ok else 1


def start_demo_console(progress: Callable[[str], None], net: DemoNetwork) -> Callable[[], None]:
    """The operator console over California's node on a free port of 127.0.0.1, with a
    throw-away operator account; returns what stops it."""
    from gateway.console.accounts import Accounts  # noqa: PLC0415 - only for the demo
    from gateway.console.server import start_console  # noqa: PLC0415
    from gateway.node.console_config import ConsoleConfig  # noqa: PLC0415
    from gateway.service.context import NodeContext  # noqa: PLC0415
    from gateway.store.console_lockouts import AccountLocks  # noqa: PLC0415

    ca = net.nodes["ca"]
    folder = ca.config_path.parent / "console"
    config = ConsoleConfig(port=0, accounts=folder / "accounts.db")
    ctx = NodeContext.open(ca.config_path)
    accounts = Accounts(config.accounts, AccountLocks(ctx.spool))
    creds = (accounts.reset("demo") if accounts.get("demo") is not None
             else accounts.add("demo", "operator", time.time()))
    secret_file = folder / "demo-totp-secret"
    secret_file.write_text(creds.totp_secret + "\n")
    secret_file.chmod(0o600)
    running = start_console(ctx, config, accounts=accounts)
    progress("")
    progress(f"Operator console for ca: {running.url}")
    progress(f"  log in as: demo   password: {creds.password}")
    progress(f"  one-time code: {command_name()} operators code --secret-file {secret_file}")
    progress(f"  (or add the TOTP secret {creds.totp_secret} to an authenticator app)")

    def stop() -> None:
        running.stop()
        ctx.close()

    return stop


def keep_running(progress: Callable[[str], None], net: DemoNetwork) -> None:
    """Wait for Ctrl-C (or SIGTERM) with the network and the console up, saying what to
    try meanwhile."""
    ca, tx = net.nodes["ca"], net.nodes["tx"]
    stop_console = start_demo_console(progress, net)
    progress("")
    progress(f"The network is still running. In another terminal, from {Path.cwd()}:")
    progress(f"  cp tests/samples/valid/interstate-transaction.xml {ca.outbox}/")
    progress(f"  {command_name()} --config {ca.config_path} messages list")
    progress(f"  ls {tx.inbox}")
    progress("Press Ctrl-C to stop the nodes, verify every audit trail and see the summary.")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
    finally:
        stop_console()


def summary(r: DemoResult) -> None:
    out()
    if r.fallback:
        out(f"NOTE: {r.fallback}")
    rows = [[m["file"], m["route"], m["transport"], m["status"],
             "yes" if m["receipt_verified"] else "NO",
             "-" if m["seconds"] is None else f"{m['seconds']:.1f}s"] for m in r.messages]
    out(table(rows, ["message", "route", "transport", "status", "receipt verified", "took"]))
    out()
    for rej in r.rejected:
        codes = ", ".join(rej["codes"]) or "NOT REJECTED"
        out(f"rejected: {rej['file']} (at {rej['node']}): {codes}")
        for e in rej["errors"]:
            where = f"line {e['line']}" if e.get("line") else ""
            out(f"  {e.get('code')}: {e.get('path', '')} {where}".rstrip())
        out(f"  details: {rej['error_file']}")
    out()
    rows = [[n["name"], n["party"], "OK" if n["audit"]["ok"] else "FAILED",
             str(n["audit"].get("events", "?")), str(n["audit"].get("receipts", "?")),
             str(n["exit_code"])] for n in r.nodes]
    out(table(rows, ["node", "party", "audit verify", "events", "receipts", "exit"]))
    out()
    for problem in r.problems:
        out(f"PROBLEM: {problem}")
    out(f"{'ALL GOOD' if r.ok else 'FAILED'} in {r.wall_seconds:.1f} s. The nodes are in "
        f"{r.directory}; try:")
    for line in r.try_next:
        out(f"  {line}")
