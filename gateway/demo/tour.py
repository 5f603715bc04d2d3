"""``gateway demo``: a small real gateway network on 127.0.0.1, a few realistic (synthetic)
transactions through it, and a summary of what happened.

:func:`run_demo` builds the network (:mod:`gateway.demo.network`: four ``gateway run``
processes, mutual-TLS HTTPS, SFTP through OpenSSH), drops the sample files into the
outboxes the way a case system would (write to a temporary name, rename into place), waits
for every receipt, verifies each stored receipt's signature again with
:func:`gateway.protocol.receipts.verify_receipt`, checks the delivered bytes, stops the nodes, signs
an audit checkpoint and runs ``gateway audit verify`` on every node, and returns a
:class:`DemoResult` (``ok`` only when every valid message was delivered with a verified
receipt, the invalid one was rejected and every audit trail verifies).

The messages (all synthetic, from :mod:`gateway.demo.samples`):

1. California -> Texas: an interstate request (CSI/R/FRINF), relayed by the federal hub.
2. Texas -> California: the answer (CSI/P/FSINF), dropped once the request has arrived.
3. California -> Netherlands: a Hague Convention maintenance application, HTTPS direct.
4. Netherlands -> California: its acknowledgement (Annex 2), once the application arrived.
5. California: an invalid request (bad SSN area, a reason code not in the table): refused at
   intake, moved to ``rejected/`` with ``.error.json`` naming codes and paths.

Everything it reports comes from the nodes' own spools, inboxes and audit trails; nothing
is assumed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.demo import samples
from gateway.demo.network import DemoNetwork, DemoNode
from gateway.errors import GatewayError
from gateway.node.config import load_config
from gateway.node.nodekeys import load_node_keys
from gateway.protocol.party import Party
from gateway.protocol.receipts import verify_receipt
from gateway.store.audit import AuditLog
from gateway.store.spool import Message
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State

__all__ = ["DemoResult", "Planned", "plan", "run_demo"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Planned:
    key: str
    what: str
    sender: str  # node name
    recipient: str  # node name
    file: str
    data: bytes
    valid: bool = True
    after: str | None = None  # drop once this message has reached our inbox


def _invalid_request() -> bytes:
    """A California request with two mistakes a case system could make: an SSN in an area
    never issued (666) and a reason code the Valid Transactions Table does not have for a
    request (FSINF answers a CSI request; it does not make one). Values stay synthetic."""
    text = samples.interstate_transaction("0600000", "4800000", function="CSI", action="R",
                                          reason="FRINF", seed=5).decode()
    text = re.sub(r"(<NCPIdentification>.*?<SSN>)\d{3}", r"\g<1>666", text, count=1, flags=re.S)
    text = text.replace("<ActionReason>FRINF<", "<ActionReason>FSINF<", 1)
    return text.encode()


def _answering(answer: bytes, request: bytes, pairs: tuple[tuple[str, str], ...]) -> bytes:
    """``answer`` with each ``(element in answer, element in request)`` pair's text taken
    from the request: an answer repeats the case references of what it answers (so the
    deadline clocks pair them; docs/clocks.md)."""
    text = answer.decode()
    for mine, theirs in pairs:
        found = re.search(rf"<{theirs}>([^<]*)</{theirs}>", request.decode())
        if found:
            text = re.sub(rf"<{mine}>[^<]*</{mine}>", f"<{mine}>{found.group(1)}</{mine}>",
                          text, count=1)
    return text.encode()


def plan() -> list[Planned]:
    """The demo's messages, in the order they are dropped."""
    request = samples.interstate_transaction("0600000", "4800000", function="CSI",
                                             action="R", reason="FRINF", seed=1)
    application = samples.maintenance_application("NL", "0600000", outbound=True, seed=3)
    return [
        Planned("interstate-request", "interstate request CSI/R/FRINF", "ca", "tx",
                "ca-to-tx-request.xml", request),
        Planned("hague-application", "Hague maintenance application (Art. 10(1)(a))", "ca",
                "nl", "ca-to-nl-application.xml", application),
        Planned("invalid-request", "interstate request with two errors", "ca", "tx",
                "ca-invalid-request.xml", _invalid_request(), valid=False),
        Planned("interstate-answer", "interstate answer CSI/P/FSINF", "tx", "ca",
                "tx-to-ca-answer.xml",
                _answering(samples.interstate_transaction(
                    "4800000", "0600000", function="CSI", action="P", reason="FSINF", seed=2),
                    request, (("CaseID", "OtherCaseID"), ("OtherCaseID", "CaseID"))),
                after="interstate-request"),
        Planned("hague-acknowledgement", "Hague acknowledgement (Annex 2)", "nl", "ca",
                "nl-to-ca-acknowledgement.xml",
                _answering(samples.acknowledgement_form("NL", "0600000", outbound=False,
                                                        seed=4),
                           application, (("RequestingReference", "RequestingReference"),)),
                after="hague-application"),
    ]


@dataclass
class Tracked:
    planned: Planned
    dropped_at: float | None = None
    message_id: str | None = None
    state: str = "waiting"  # not dropped yet
    route: str = ""
    transport: str = ""
    delivered_at: float | None = None
    arrived: bool = False  # the document is in the recipient's inbox, byte for byte
    relay_state: str = ""
    receipt: dict[str, Any] = field(default_factory=dict)
    rejection: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        if not self.planned.valid:
            return bool(self.rejection)
        return self.state in ("failed", "cancelled") or (self.state == "delivered"
                                                          and self.arrived)

    def row(self) -> dict[str, Any]:
        p = self.planned
        seconds = (None if self.dropped_at is None or self.delivered_at is None
                   else round(self.delivered_at - self.dropped_at, 2))
        return {"key": p.key, "file": p.file, "document": p.what, "from": p.sender,
                "to": p.recipient, "message_id": self.message_id, "route": self.route,
                "transport": self.transport, "status": self.state,
                "delivered_in_inbox": self.arrived, "seconds": seconds,
                "receipt_verified": self.receipt.get("verified", False),
                "receipt": self.receipt}


@dataclass
class DemoResult:
    ok: bool
    directory: Path
    wall_seconds: float
    fallback: str | None
    links: list[dict[str, str]]
    nodes: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    problems: list[str]
    try_next: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "dir": str(self.directory), "wall_seconds": self.wall_seconds,
                "fallback": self.fallback, "links": self.links, "nodes": self.nodes,
                "messages": self.messages, "rejected": self.rejected, "problems": self.problems,
                "try_next": self.try_next}


def _drop(node: DemoNode, name: str, data: bytes) -> None:
    """Write as a case system should: a temporary name (ignored by intake), then rename."""
    temporary = node.outbox / f".{name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, node.outbox / name)


class _Watcher:
    """Reads the nodes' spools, inboxes and rejected folders (safe while they run)."""

    def __init__(self, net: DemoNetwork) -> None:
        self.net = net
        self.spools: dict[str, SqliteSpool] = {}

    def spool(self, node: DemoNode) -> SqliteSpool | None:
        if node.name not in self.spools:
            if not node.database.exists():
                return None
            self.spools[node.name] = SqliteSpool(node.database)
        return self.spools[node.name]

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()
        self.spools.clear()

    def outgoing(self, t: Tracked) -> Message | None:
        spool = self.spool(self.net.nodes[t.planned.sender])
        if spool is None:
            return None
        for m in spool.select(direction=Direction.OUT, limit=1000):
            if m.source and Path(m.source).name == t.planned.file:
                return m
        return None

    @staticmethod
    def sent_via(node: DemoNode, message_id: str | None) -> str | None:
        """The transport URL of the audit trail's ``sent`` event (a message delivered with
        the receipt in the HTTPS answer keeps no transport on its spool row)."""
        if not message_id:
            return None
        with _read_only_audit(node.database) as audit:
            for stored in audit.query(message_id=message_id, code="sent"):
                if stored.event.transport:
                    return stored.event.transport
        return None

    def relayed(self, node: DemoNode, message_id: str) -> Message | None:
        spool = self.spool(node)
        if spool is None:
            return None
        return spool.find(Direction.RELAY, message_id)

    def update(self, t: Tracked, progress: Progress) -> None:
        p = t.planned
        sender, recipient = self.net.nodes[p.sender], self.net.nodes[p.recipient]
        if not p.valid:
            report = sender.rejected / f"{p.file}.error.json"
            if not t.rejection and report.exists() and (sender.rejected / p.file).exists():
                with contextlib.suppress(ValueError):
                    t.rejection = json.loads(report.read_text(encoding="utf-8"))
                    t.state = "rejected"
                    progress(f"  {p.file}: REJECTED at intake -> {sender.name}/rejected/ "
                             f"({', '.join(_codes(t.rejection))})")
            return
        m = self.outgoing(t)
        if m is None:
            return
        t.message_id = m.message_id
        hops = [p.sender]
        transports = [_scheme(m.transport or self.sent_via(sender, m.message_id))]
        if m.partner and m.partner != recipient.party:
            hop = self.net.node(m.partner)
            hops.append(hop.name)
            relay = self.relayed(hop, m.message_id or "")
            transports.append(_scheme(relay.transport) if relay is not None else "?")
            if relay is not None and str(relay.state) != t.relay_state:
                t.relay_state = str(relay.state)
                if relay.state is State.RELAYED:
                    progress(f"  {p.file}: {hop.name} relayed it unopened over "
                             f"{_scheme(relay.transport)}")
        hops.append(p.recipient)
        t.route = " -> ".join(hops)
        t.transport = " -> ".join(transports)
        if str(m.state) != t.state:
            extra = f" (error {m.error_code})" if m.error_code else ""
            if m.state is State.SENT and len(hops) > 2:
                extra += f" (first hop: {hops[1]} over {transports[0]})"
            elif m.state is State.DELIVERED:
                extra += f" (signed receipt from {p.recipient} verified)"
            progress(f"  {p.file}: {t.state} -> {m.state}{extra}")
            t.state = str(m.state)
            if m.state is State.DELIVERED:
                t.delivered_at = time.monotonic()
        if not t.arrived and m.message_id:
            for inbox in recipient.inbox.glob(f"*{m.message_id}*"):
                if inbox.read_bytes() == p.data:
                    t.arrived = True
                    progress(f"  {p.file}: in {recipient.name}/inbox/{inbox.name}, "
                             "byte-identical to what was dropped")


def _scheme(url: str | None) -> str:
    return url.split("://", 1)[0] if url and "://" in url else "?"


def _codes(report: dict[str, Any]) -> list[str]:
    errors = report.get("errors") or []
    return sorted({str(e.get("code")) for e in errors if isinstance(e, dict)})


@contextlib.contextmanager
def _read_only_audit(database: Path) -> Iterator[AuditLog]:
    conn = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    try:
        yield AuditLog(conn, create=False)
    finally:
        conn.close()


def check_receipt(net: DemoNetwork, t: Tracked) -> dict[str, Any]:
    """Verify the receipt the sender stored for ``t`` once more, independently of the
    daemon: signature, signer registered for the recipient, digest of what was sent."""
    sender = net.nodes[t.planned.sender]
    recipient = net.nodes[t.planned.recipient]
    config = load_config(sender.config_path)
    spool = SqliteSpool(config.spool.database)
    try:
        message = spool.find(Direction.OUT, t.message_id or "")
    finally:
        spool.close()
    if message is None or not message.envelope_digest:
        return {"verified": False, "reason": "no sent envelope recorded"}
    keys = load_node_keys(config)
    with _read_only_audit(config.spool.database) as audit:
        stored = [r for r in audit.receipts(t.message_id) if r.direction == "received"]
    if not stored:
        return {"verified": False, "reason": "no receipt stored in the audit trail"}
    try:
        verified = verify_receipt(stored[-1].data, expected_signer=Party.parse(recipient.party),
                                  sent_envelope_digest=message.envelope_digest,
                                  trust=keys.trust, directory=keys.directory,
                                  now=stored[-1].at)
    except GatewayError as exc:
        return {"verified": False, "reason": f"{exc.code}: {exc.message}"}
    return {"verified": verified.status == "Delivered", "status": verified.status,
            "receipt_id": verified.receipt_id, "signed_by": recipient.party,
            "signer_certificate": verified.signer_fingerprint[:16],
            "envelope_digest": message.envelope_digest[:16]}


def _gateway_cli(node: DemoNode, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("GATEWAY_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "gateway", "--config", str(node.config_path),
                           *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def audit_node(node: DemoNode) -> dict[str, Any]:
    """``gateway audit checkpoint`` (sign the chain head with the node key), then ``gateway
    audit verify --signer-cert keys/sign.crt`` — the operator's own commands."""
    checkpoint = _gateway_cli(node, "audit", "checkpoint")
    verify = _gateway_cli(node, "audit", "verify", "--signer-cert",
                          str(node.keys / "sign.crt"), "--format", "json")
    result: dict[str, Any] = {"ok": False, "checkpoint_exit": checkpoint.returncode,
                              "verify_exit": verify.returncode}
    try:
        report = json.loads(verify.stdout)
    except ValueError:
        result["error"] = (verify.stderr or verify.stdout).strip()[-300:]
        return result
    result.update(ok=verify.returncode == 0 and checkpoint.returncode == 0 and bool(
        report.get("ok")), events=report.get("events"), checkpoints=report.get("checkpoints"),
        receipts=report.get("receipts"), problems=report.get("problems", []))
    if checkpoint.returncode != 0:
        result["error"] = checkpoint.stderr.strip()[-300:]
    return result


def _exchange(net: DemoNetwork, tracked: list[Tracked], watcher: _Watcher, *,
              progress: Progress, timeout: float, problems: list[str]) -> None:
    """Drop each file when its turn comes; follow every message until done or timeout."""
    progress("dropping sample transactions into the outboxes (synthetic data only)")
    by_key = {t.planned.key: t for t in tracked}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in tracked:
            p = t.planned
            if t.dropped_at is None and (p.after is None or by_key[p.after].arrived):
                _drop(net.nodes[p.sender], p.file, p.data)
                t.dropped_at, t.state = time.monotonic(), "dropped"
                progress(f"  {p.file}: dropped in {p.sender}/outbox/ ({p.what}, "
                         f"{p.sender} -> {p.recipient})")
        for t in tracked:
            if t.dropped_at is not None and not t.done:
                watcher.update(t, progress)
        if all(t.done for t in tracked):
            return
        time.sleep(0.1)
    problems += [f"{t.planned.file}: not finished after {timeout:.0f} s (state {t.state})"
                 for t in tracked if not t.done]


def run_demo(directory: Path, *, progress: Progress, timeout: float = 45.0,
             use_sshd: bool = True, verbosity: int = 1,
             hold: Callable[[DemoNetwork], None] | None = None) -> DemoResult:
    """Build and run the network, send the messages, check everything, stop everything.
    ``hold`` (``gateway demo --keep-running``) is called with the network still running
    once the demo's own messages are done; the nodes stop when it returns."""
    started = time.monotonic()
    net = DemoNetwork(directory, progress=progress, use_sshd=use_sshd, verbosity=verbosity)
    tracked = [Tracked(p) for p in plan()]
    problems: list[str] = []
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if previous is not None:
        with contextlib.suppress(ValueError):  # not the main thread: leave it alone
            signal.signal(signal.SIGTERM, on_term)
    watcher = _Watcher(net)
    exits: dict[str, int | None] = {}
    try:
        net.build()
        try:
            net.start()
            _exchange(net, tracked, watcher, progress=progress, timeout=timeout,
                      problems=problems)
        except GatewayError as exc:  # a node did not start: report it like any problem
            problems.append(f"{exc.code}: {exc}")
            progress(f"FAILED: {exc.code}: {exc}")
        for t in tracked:
            if t.planned.valid and t.state == "delivered":
                t.receipt = check_receipt(net, t)
        if hold is not None:
            hold(net)
    finally:
        watcher.close()
        exits = net.stop()
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous)
    progress("nodes stopped; signing an audit checkpoint and verifying every audit trail")
    with ThreadPoolExecutor(max_workers=4) as pool:
        audits = dict(zip(net.nodes, pool.map(audit_node, net.nodes.values()), strict=True))
    nodes = []
    for name, node in net.nodes.items():
        nodes.append({"name": name, "party": node.party, "title": node.title,
                      "config": str(node.config_path), "log": str(node.log_file),
                      "exit_code": exits.get(name), "audit": audits[name]})
        if exits.get(name) != 0:
            problems.append(f"node {name} exited with {exits.get(name)}")
        if not audits[name]["ok"]:
            problems.append(f"audit verify failed on {name}")
    for t in tracked:
        if t.planned.valid:
            if t.state != "delivered" or not t.arrived:
                problems.append(f"{t.planned.file}: {t.state}, "
                                f"{'in' if t.arrived else 'not in'} the recipient's inbox")
            elif not t.receipt.get("verified"):
                problems.append(f"{t.planned.file}: receipt not verified "
                                f"({t.receipt.get('reason')})")
        elif not t.rejection:
            problems.append(f"{t.planned.file}: was not rejected")
    rejected = [{"file": t.planned.file, "node": t.planned.sender,
                 "error_file": str(net.nodes[t.planned.sender].rejected
                                   / f"{t.planned.file}.error.json"),
                 "codes": _codes(t.rejection),
                 "errors": [{k: e.get(k) for k in ("code", "line", "path", "message")
                             if k in e} for e in t.rejection.get("errors", [])
                            if isinstance(e, dict)]}
                for t in tracked if not t.planned.valid]
    ca, gw = net.nodes["ca"].config_path, command_name()
    try_next = [
        f"{gw} --config {ca} audit list",
        f"{gw} --config {ca} audit show {tracked[0].message_id or 'MESSAGE_ID'}",
        f"{gw} --config {ca} messages list",
        f"{gw} --config {ca} status",
        f"{gw} --config {net.nodes['hub'].config_path} audit verify",
    ]
    return DemoResult(ok=not problems, directory=net.dir,
                      wall_seconds=round(time.monotonic() - started, 1),
                      fallback=net.fallback, nodes=nodes,
                      links=[{"from": net.node(k.src).name, "to": net.node(k.dst).name,
                              "transport": k.kind, "url": k.url} for k in net.links],
                      messages=[t.row() for t in tracked if t.planned.valid],
                      rejected=rejected, problems=problems, try_next=try_next)


def command_name() -> str:
    """How to run ``gateway`` from here: the script beside this Python (``.venv/bin/gateway``
    relative to the current directory when it is under it), else ``python -m gateway``."""
    script = Path(sys.executable).parent / "gateway"
    if not script.exists():
        return f"{sys.executable} -m gateway"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def default_directory(now: dt.datetime | None = None) -> Path:
    """A new folder under the current directory: ``demo-YYYYMMDD-HHMMSS`` (ignored by
    git)."""
    moment = now or dt.datetime.now(dt.UTC)
    return Path.cwd() / f"demo-{moment:%Y%m%d-%H%M%S}"
