"""Payload retention: what a finished message keeps, and for how long.

A message is finished when no step will read its payloads again: ``out`` delivered,
cancelled, rejected, or failed and reported (its ``failure_report`` marker stored);
``in`` delivered or rejected; ``relay`` relayed, failed or cancelled; ``receipt`` sent,
failed or cancelled. Its documents and envelopes (``document``, ``envelope``) are removed
once it has been finished longer than ``keep_payloads``; its receipts and error reports
(``receipt``, ``error``) after ``keep_receipts`` (the receipt answers a late duplicate, so
it is usually kept longer). The message row, its digests and the audit trail stay (the
audit trail has its own retention, ``audit.keep_events``). Each purge that removes
anything is an audit event (``payloads_purged``) in the same transaction.

Works on any store (the SQL is shared); a node of a shared store runs it under the
``payload-retention`` role so only one node purges at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from gateway.store.audit_chain import format_time
from gateway.store.spool import Spool, to_epoch

__all__ = ["BULK_KINDS", "KEPT_KINDS", "PurgeResult", "purge_payloads"]

log = logging.getLogger("gateway.store.retention")

#: payload kinds removed after ``keep_payloads``
BULK_KINDS = ("document", "envelope")
#: payload kinds removed after ``keep_receipts`` (``failure_report`` is a marker, kept)
KEPT_KINDS = ("receipt", "error")

_FINISHED = (
    "((direction = 'out' AND state IN ('delivered', 'cancelled', 'rejected')) OR "
    "(direction = 'out' AND state = 'failed' AND EXISTS (SELECT 1 FROM payloads f WHERE "
    "f.message = messages.id AND f.kind = 'failure_report')) OR "
    "(direction = 'in' AND state IN ('delivered', 'rejected')) OR "
    "(direction = 'relay' AND state IN ('relayed', 'failed', 'cancelled')) OR "
    "(direction = 'receipt' AND state IN ('sent', 'failed', 'cancelled')))"
)


@dataclass(frozen=True)
class PurgeResult:
    messages: int  # finished messages that lost at least one payload
    payloads: int  # payloads removed (or that would be, for a dry run)
    bytes: int
    dry_run: bool


def _where(kinds: tuple[str, ...]) -> str:
    """Payloads of ``kinds`` of messages finished before a cutoff (parameters: the kinds,
    then the cutoff)."""
    marks = ", ".join("?" for _ in kinds)
    return (f"kind IN ({marks}) AND message IN (SELECT id FROM messages WHERE "  # noqa: S608
            f"updated_at < ? AND {_FINISHED})")


def purge_payloads(spool: Spool, now: datetime, *, payloads_before: datetime,
                   receipts_before: datetime, dry_run: bool = False,
                   actor: str = "daemon") -> PurgeResult:
    """Remove the payloads of messages finished before the cutoffs (or count them, with
    ``dry_run``); one transaction, audited as ``payloads_purged`` when anything went."""
    parts = ((BULK_KINDS, to_epoch(payloads_before)), (KEPT_KINDS, to_epoch(receipts_before)))
    with spool.transaction(now) as txn:
        selected = " UNION ALL ".join(
            f"SELECT message, kind, length(data) FROM payloads WHERE {_where(kinds)}"  # noqa: S608
            for kinds, _ in parts)
        params = [value for kinds, cutoff in parts for value in (*kinds, cutoff)]
        rows = txn.conn.execute(selected, params).fetchall()
        messages = len({int(r[0]) for r in rows})
        size = sum(int(r[2]) for r in rows)
        if dry_run or not rows:
            return PurgeResult(messages, len(rows), size, dry_run)
        for kinds, cutoff in parts:
            txn.conn.execute(f"DELETE FROM payloads WHERE {_where(kinds)}",  # noqa: S608
                             (*kinds, cutoff))
        txn.audit("payloads_purged", None, actor=actor,
                  detail={"messages": messages, "payloads": len(rows), "bytes": size,
                          "payloads_before": format_time(payloads_before),
                          "receipts_before": format_time(receipts_before)})
    log.info("retention removed %d payloads (%d bytes) of %d finished messages", len(rows),
             size, messages)
    return PurgeResult(messages, len(rows), size, dry_run)
