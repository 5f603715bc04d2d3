"""The node at a glance: counts by state and partner, the oldest pending message,
partner health, certificates and their expiry, the audit trail's state.
``gateway status``, ``gateway keys list`` and the console's dashboard, partners and
certificates pages call these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.node.keystore import Keystore
from gateway.node.nodekeys import load_node_keys
from gateway.protocol.certs import fingerprint
from gateway.service.audit import last_verification
from gateway.service.context import NodeContext
from gateway.store.audit import AuditLog
from gateway.store.query import MessageQuery
from gateway.store.states import PENDING, State

__all__ = ["PartnerHealth", "certificates", "expiring_certificates", "node_status",
           "partner_health"]

#: Audit codes that prove a partner answered (a success for its health).
_SUCCESS = ("sent", "delivered", "relayed", "receipt_received", "receipt_sent")


def expiring_certificates(ctx: NodeContext, now: datetime, days: float | None = None
                          ) -> tuple[list[dict[str, Any]], str | None]:
    """The daemon's own and partners' encryption certificates that expire within ``days``
    (default ``security.cert_warn_days``), and why the keys could not be read, if so."""
    limit = ctx.config.security.cert_warn_days if days is None else days
    expiring: list[dict[str, Any]] = []
    try:
        keys = load_node_keys(ctx.config)
    except GatewayError as exc:
        return [], f"{exc.code}: {exc}"
    found = [("sign", keys.identity.signing_cert), ("encrypt", keys.identity.encryption_cert)]
    # the extra decryption keys (KEYS/decrypt/), named by certificate fingerprint as
    # `gateway keys list` shows them
    found += [(f"decrypt:{fingerprint(c)[:16]}", c) for _, c in keys.identity.decryption]
    found += [(f"partner {p}", c) for p, cs in keys.encryption.items() for c in cs]
    for what, cert in found:
        left = (cert.not_valid_after_utc - now).total_seconds() / 86400
        if left <= limit:
            expiring.append({"certificate": what, "days_left": round(left, 1)})
    return expiring, None


def node_status(ctx: NodeContext, now: datetime) -> dict[str, Any]:
    """What ``gateway status`` prints and the dashboard shows."""
    spool = ctx.spool
    counts = spool.counts()
    oldest = spool.oldest(sorted(PENDING))
    expiring, key_error = expiring_certificates(ctx, now)
    failed_24h = spool.count(MessageQuery(states=[State.FAILED],
                                          changed_since=now - timedelta(hours=24)))
    return {
        "node": ctx.config.node.party,
        "counts": [{"direction": d, "state": s, "partner": p, "count": n}
                   for d, s, p, n in counts],
        "oldest_pending_seconds": None if oldest is None else round(now.timestamp() - oldest),
        "failed_last_24h": failed_24h,
        "certificates_expiring": expiring,
        "keys_error": key_error,
    }


def audit_state(log: AuditLog) -> dict[str, Any]:
    """The last signed checkpoint and the last recorded verification, if any (from the
    console, ``gateway audit verify`` or the daemon's scheduled check: ``last_verify``,
    the ``audit_verified`` event)."""
    cp = log.last_checkpoint()
    tail_seq, _ = log.tail()
    return {"last_seq": tail_seq,
            "last_checkpoint_seq": cp.seq if cp else None,
            "last_checkpoint_at": cp.at if cp else None,
            "unsigned_tail": tail_seq - (cp.seq if cp else 0),
            "last_verify": last_verification(log)}


@dataclass(frozen=True)
class PartnerHealth:
    party: str
    name: str
    transports: list[str]
    routes: list[str]
    last_success: datetime | None
    last_failure: datetime | None
    last_error: str | None
    failures_since_success: int
    breaker: str  # "closed", "open", "failing" or what a live daemon says
    pending: int


def partner_health(ctx: NodeContext, log: AuditLog, now: datetime,
                   live_breakers: dict[str, str] | None = None) -> list[PartnerHealth]:
    """Each configured partner: its transports, the routes that lead to it (what
    ``route explain`` would name), its last success and failure from the audit trail and
    its breaker. The breaker lives in the daemon's memory: ``live_breakers`` gives it when
    the console runs inside ``gateway run``; otherwise it is read from the trail: "open"
    when the last failure since the last success was ``BreakerOpen``, "failing" after
    other failures, else "closed"."""
    out: list[PartnerHealth] = []
    pending_by: dict[str, int] = {}
    for _, state, partner, n in ctx.spool.counts():
        if State(state) in PENDING:
            pending_by[partner] = pending_by.get(partner, 0) + n
    for p in ctx.config.partners:
        routes = [f"{r.pattern} ({r.source})" for r in ctx.config.routing.rules
                  if r.partner == p.party]
        ok = next(iter(log.query(partner=p.party, code=_SUCCESS, limit=1, descending=True)),
                  None)
        since = ok.event.at if ok else None
        failures = list(log.query(partner=p.party, code="send_failed", since=since,
                                  limit=200, descending=True))
        if since is not None:
            failures = [f for f in failures if f.seq > ok.seq]  # type: ignore[union-attr]
        last = failures[0] if failures else None
        breaker = "closed"
        if last is not None:
            breaker = "open" if last.event.error_code == "BreakerOpen" else "failing"
        if live_breakers is not None and p.party in live_breakers:
            breaker = live_breakers[p.party]
        out.append(PartnerHealth(
            p.party, p.name, [t.url for t in p.transports], routes, since,
            last.event.at if last else None, last.event.error_code if last else None,
            len(failures), breaker, pending_by.get(p.party, 0)))
    return out


def certificates(keys_dir: Path, now: datetime) -> list[dict[str, Any]]:
    """Every own, trusted and partner certificate in the key directory with its role,
    party, fingerprint and expiry (``gateway keys list``, the console's certificates)."""
    return [
        {
            "role": e.role,
            "party": str(e.party) if e.party else "",
            "subject": e.cert.subject.rfc4514_string(),
            "fingerprint": e.fingerprint,
            "not_after": e.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "days_left": int(e.days_left(now) // 1),
            "path": str(e.path),
        }
        for e in Keystore(keys_dir).entries()
    ]
