"""Dead letters: an outbound message that failed for good goes back where the state system
looks for bad files (the rejected folder, under its outbox name, with ``NAME.error.json``
beside it), as an intake refusal does, and stays in the spool for ``gateway messages show``
and ``resend``. The daemon runs :func:`report_failures` as its ``failure-reports`` job."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from gateway.errors import GatewayError
from gateway.node.batches import together_or_alone
from gateway.node.intake import failure_report, write_rejected_copy
from gateway.store.spool import Message, Spool
from gateway.store.states import Direction, State

__all__ = ["report_failures"]

log = logging.getLogger("gateway.node.dead_letters")


def report_failures(spool: Spool, rejected: Path, clock: Callable[[], datetime],
                    limit: int = 200) -> int:
    """Put each outbound message that failed for good (up to ``limit``, not reported yet)
    into ``rejected``: its document under its outbox name, with ``NAME.error.json`` (stage
    "delivery", code, reason). Marked done in the spool (payload ``failure_report`` and a
    ``failure_reported`` audit event) only after the files are durable, so a crash in
    between writes them again. The messages one run finds are reported together (their
    reasons in one transaction, their files, then one transaction marking them done);
    when that fails, each is reported alone (repeating is safe), so one that cannot be
    reported holds up no other. Returns how many were reported."""
    failed = spool.without_payload(State.FAILED, Direction.OUT, "failure_report", limit)
    return together_or_alone(failed, lambda batch: _report(spool, rejected, clock(), batch),
                             GatewayError, refused_alone=_unreported)


def _unreported(message: Message, exc: Exception) -> None:
    code = exc.code if isinstance(exc, GatewayError) else type(exc).__name__
    log.error("could not report failed message %s: %s", message.message_id, code)


def _report(spool: Spool, rejected: Path, now: datetime, failed: Sequence[Message]) -> int:
    """:func:`report_failures` for ``failed``, all or none marked done; raises the first
    :class:`GatewayError`."""
    with spool.transaction(now) as txn:
        for message in failed:
            txn.put_payload(message.id, "error", failure_report(message, now))
    written = []
    for message in failed:
        name = message.source or f"{message.message_id}.xml"
        written.append((message, name, write_rejected_copy(spool, rejected, message, name)))
    with spool.transaction(now) as txn:
        for message, _, target in written:
            txn.put_payload(message.id, "failure_report", target.name.encode())
            txn.audit("failure_reported", message,
                      error_code=(message.error_code or "Failed")[:60])
    for message, name, target in written:
        log.warning("failed %s (%s): document and reason put in %s", name,
                    message.error_code, target,
                    extra={"event": "failure_reported", "message_id": message.message_id,
                           "partner": message.partner, "error_code": message.error_code,
                           "state": "failed"})
    return len(written)
