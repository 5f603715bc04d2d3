"""Partners for an operator: ping one (``gateway partner ping``, the console's partners
page). What a ping checks over each kind of transport is in :mod:`gateway.node.ping`;
this runs it over every transport of the partner (push, then pull) and records each
result as a ``partner_pinged`` audit event naming the operator."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.errors import UsageError
from gateway.node.nodekeys import NodeKeys, load_node_keys
from gateway.node.ping import PingResult, ping_transport
from gateway.service.context import NodeContext

__all__ = ["PingResult", "ping_partner"]


def ping_partner(ctx: NodeContext, party: str, *, operator: str, now: datetime,
                 keys: NodeKeys | None = None,
                 extra: Mapping[str, Mapping[str, Any]] | None = None) -> list[PingResult]:
    """Ping ``party`` over each of its configured transports; one result per transport,
    in the configuration's order. ``keys``: the node's keys when the caller holds them
    (the daemon's console), else they are read from the key directory. ``extra``:
    per-scheme transport options (tests: the in-memory network)."""
    partner = next((p for p in ctx.config.partners if p.party == party), None)
    if partner is None:
        raise UsageError("no partner with this party in the configuration", where=party)
    keys = keys or load_node_keys(ctx.config)
    results = [ping_transport(keys, partner, tc, now=now,
                              extra=dict((extra or {}).get(tc.scheme, {})))
               for tc in (*partner.transports, *partner.pull)]
    with ctx.spool.transaction(now) as txn:
        for r in results:
            txn.audit("partner_pinged", actor=operator, partner=party,
                      transport=r.url.split(":", 1)[0], error_code=r.code,
                      detail={"ok": int(r.ok), "check": r.check, "latency_ms": r.latency_ms,
                              "endpoint": r.url[:128]})
    return results
