"""Receiving on more than one core: open and check arriving envelopes in worker processes.

The receiving daemon's HTTPS request threads all run
:meth:`~gateway.node.inbound.Inbound.accept` under one interpreter lock, and about half
of its CPU per message is computation that needs no store
(:meth:`~gateway.node.examine.Examiner.examine`: decrypt, verify, validate, case id, clock
events, CSENet conversion, the signed receipt). With ``limits.receive_workers`` > 0,
``gateway run`` hands that to a pool of worker processes (:class:`ReceivePool`).

- **What crosses the pipe.** The daemon reads the envelope (to route it, find a duplicate,
  answer a ping or a receipt) and hands the :class:`~gateway.protocol.envelope.ParsedEnvelope`
  (header, digest, the CMS bytes) and its ``now`` to a worker; the worker answers an
  :class:`~gateway.node.examine.Examined`: the receipt, and the delivered document or the
  error. The document in clear only travels over this pipe between the daemon's own
  processes; a worker writes nothing.
- **What stays in the daemon.** Everything durable, in the same order as without
  workers: the fsynced temporary file in the inbox, the transaction that records the
  arrival with its outcome (a copy that arrives twice is still caught there), the rename,
  ``delivered``, the answer, every audit event. Relays, receipts, pings, recovery after a
  crash and AS4 messages are not handed over (rare, or not this path).
- **When the workers do not answer** (still starting, a worker died, keys that are not
  the daemon's, given up after repeated breaks, closed): the envelope is examined
  in-process, with the same outcome; nothing is lost or refused for it. Unlike the intake
  pool, a call never waits for workers that are starting: a request thread is holding a
  sender's connection, so it works in-process until every worker is ready, and new
  workers are started as soon as a worker dies.

Keys, reload, breaks and lifetime are those of every
:class:`~gateway.node.workers.WorkerPool`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from gateway.node.config import Config
from gateway.node.examine import Examined, Examiner
from gateway.node.nodekeys import NodeKeys
from gateway.node.workers import WorkerPool, compiled_registry
from gateway.protocol.envelope import ParsedEnvelope

__all__ = ["ReceivePool"]

log = logging.getLogger("gateway.node.inbound")

# --- the worker side (module state of a worker process) ----------------------------

_examiner: Examiner | None = None
_keys: NodeKeys | None = None


def _load_examiner(config: Config, keys: NodeKeys) -> None:
    global _examiner, _keys  # noqa: PLW0603 - one examiner per worker process
    _examiner = Examiner(config, registry=compiled_registry(config))
    _keys = keys


def _examine(parsed: ParsedEnvelope, now: datetime) -> Examined | None:
    """Examine ``parsed`` in this worker; None when it cannot (not the daemon's keys)."""
    if _examiner is None or _keys is None:
        return None
    return _examiner.examine(parsed, _keys, now)


# --- the daemon side -----------------------------------------------------------------


class ReceivePool(WorkerPool):
    """A pool of receive worker processes (see the module docstring); thread-safe.
    :meth:`examine` is :class:`~gateway.node.inbound.Inbound`'s
    :class:`~gateway.node.examine.ExaminePool`."""

    kind = "receive"
    items = ("envelope(s)", "opened")
    stale_work = "opens arriving envelopes"
    loader = staticmethod(_load_examiner)
    logger = log

    def examine(self, parsed: ParsedEnvelope, now: datetime) -> Examined | None:
        """``parsed`` examined by a worker, from this thread, or None: examine it
        in-process."""
        generation = self._generation()
        if generation is None or not generation.ready.is_set():
            return None
        result: Examined | None = self.call(generation, _examine, (parsed, now))
        return result

    def submit(self, parsed: ParsedEnvelope, now: datetime
               ) -> Callable[[], Examined | None]:
        """:meth:`examine` started now in a thread of the pool; the returned function
        waits for its :class:`Examined`, or None."""
        generation = self._generation()
        if generation is None or not generation.ready.is_set():
            return lambda: None
        collect = self.dispatch(generation, _examine, [(parsed, now)])

        def one() -> Examined | None:
            result: Examined | None = collect()[0]
            return result

        return one

    def ready(self) -> bool:
        """Whether envelopes go to workers now (every worker of the current set started)."""
        with self._lock:
            current = self._current
        return current is not None and current.ready.is_set()

    def _restarted(self) -> None:
        self.start()  # meanwhile, envelopes are examined in-process
