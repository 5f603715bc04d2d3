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
- **Envelopes that wait travel together.** A request thread that finds every worker
  busy queues its envelope; whichever thread gets the next free worker hands it the
  queue's oldest envelopes in one call (its share: the queue divided among the workers,
  at most :data:`GATHER_MAX`) and gives each waiting thread its own result. A worker then
  works through several envelopes while its caches are warm, and the pipe is crossed
  once for them: on this project's test machine the same examination costs about 1.5x
  more CPU one envelope per wake-up (docs/benchmarks.md, "Why the pipeline costs more
  than its parts"). No envelope waits for others to arrive: a call takes what is already
  queued. The envelopes of one batch request (or of one pull) are shared among the
  workers, one call each, at once (:meth:`ReceivePool.examine_many`): a batch alone
  keeps every core busy.
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

import functools
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.node.batches import split_evenly
from gateway.node.config import Config
from gateway.node.examine import Examined, Examiner
from gateway.node.nodekeys import NodeKeys
from gateway.node.workers import WorkerPool, _Generation, compiled_registry
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


def _examine_all(items: list[tuple[ParsedEnvelope, datetime]]) -> list[Examined] | None:
    """:func:`_examine` for each of ``items``, in order; None when this worker cannot."""
    if _examiner is None or _keys is None:
        return None
    return [_examiner.examine(parsed, _keys, now) for parsed, now in items]


# --- the daemon side -----------------------------------------------------------------

#: at most this many queued envelopes go to a worker in one call
GATHER_MAX = 8
#: the answer of a gathered call that raised in the daemon (each envelope in-process)
_FAILED = (False, "error in the daemon")


class _Waiting:
    """One envelope queued for a worker, and its result once a call has answered it."""

    __slots__ = ("answered", "now", "parsed", "result", "taken")

    def __init__(self, parsed: ParsedEnvelope, now: datetime) -> None:
        self.parsed = parsed
        self.now = now
        self.taken = False  # a call holds it (under the pool's queue lock)
        self.answered = threading.Event()
        self.result: Examined | None = None


class ReceivePool(WorkerPool):
    """A pool of receive worker processes (see the module docstring); thread-safe.
    :meth:`examine` and :meth:`examine_many` are :class:`~gateway.node.inbound.Inbound`'s
    :class:`~gateway.node.examine.ExaminePool`."""

    kind = "receive"
    items = ("envelope(s)", "opened")
    stale_work = "opens arriving envelopes"
    loader = staticmethod(_load_examiner)
    logger = log

    def __init__(self, config: Config, keys: NodeKeys, *, workers: int) -> None:
        super().__init__(config, keys, workers=workers)
        self._queue: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self.calls = 0  # calls made by examine() and examine_many(), and the envelopes
        self.envelopes = 0

    def examine(self, parsed: ParsedEnvelope, now: datetime) -> Examined | None:
        """``parsed`` examined by a worker, from this thread (in one call with the other
        envelopes waiting then, see the module docstring), or None: examine it
        in-process."""
        generation = self._generation()
        if generation is None or not generation.ready.is_set():
            return None
        mine = _Waiting(parsed, now)
        with self._queue_lock:
            self._queue.append(mine)
        while not mine.taken:  # read without the lock: only ever set to True
            batch: list[_Waiting] = []
            answer = _FAILED
            try:
                answer = self.call_when_free(generation, _examine_all,
                                             functools.partial(self._take_share, batch))
            finally:  # whatever happens here, every thread whose envelope it took hears
                if batch:
                    self._answer(generation, batch, answer)
            with self._queue_lock:
                if not mine.taken and not generation.live:  # replaced, broken, closed
                    self._queue.remove(mine)
                    return None  # examined in-process
        mine.answered.wait()
        return mine.result

    def examine_many(self, items: list[tuple[ParsedEnvelope, datetime]]
                     ) -> list[Examined | None] | None:
        """Each of ``items`` (a batch request's envelopes, a pull's batch) examined by the
        workers, in order: split into one share per worker (consecutive envelopes, sizes
        differing by at most one), each share in one call, the calls at once. None for
        each envelope of a share the workers did not answer, or for the whole batch when
        the workers are not in use: those are examined in-process."""
        generation = self._generation()
        if generation is None or not generation.ready.is_set():
            return None
        shares = split_evenly(items, self.workers)
        with self._queue_lock:
            self.calls += len(shares)
            self.envelopes += len(items)
        collect = self.dispatch(generation, _examine_all, [(list(share),) for share in shares],
                                [len(share) for share in shares])
        results: list[Examined | None] = []
        for share, got in zip(shares, collect(), strict=True):
            answered = got is not None and len(got) == len(share)  # else: not this call's
            results.extend(got if answered else [None] * len(share))
        return results

    def _take_share(self, batch: list[_Waiting]
                    ) -> tuple[list[tuple[ParsedEnvelope, datetime]]] | None:
        """For a call on a worker that just became free: move this worker's share of the
        queue (its oldest envelopes) into ``batch`` and give the call's arguments; None
        when nothing waits (another call took this thread's envelope)."""
        with self._queue_lock:
            share = min(GATHER_MAX, -(-len(self._queue) // self.workers))
            batch.extend(self._queue[:share])
            del self._queue[:share]
            for waiting in batch:
                waiting.taken = True
            if batch:
                self.calls += 1
                self.envelopes += len(batch)
        return ([(w.parsed, w.now) for w in batch],) if batch else None

    def close(self) -> None:
        super().close()
        if self.calls:
            log.info("receive workers: %d envelopes in %d calls", self.envelopes, self.calls)

    def _answer(self, generation: _Generation, batch: list[_Waiting],
                answer: tuple[bool, Any]) -> None:
        """Give each envelope of ``batch`` its result from ``answer`` (None for all when
        the call failed: each is examined in-process by its own thread)."""
        results: list[Examined] | None = None
        try:
            results = self._settle(generation, [answer], (len(batch),))[0]
            if results is not None and len(results) != len(batch):
                results = None  # not this call's answer: examined in-process
        finally:
            for i, waiting in enumerate(batch):
                waiting.result = results[i] if results is not None else None
                waiting.answered.set()

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
