"""Outbox intake on more than one core: validate and seal in worker processes.

The outbox preparer (:func:`gateway.node.prepare.make_preparer`: validate, describe,
route, seal) costs a few milliseconds of CPU per document and, run in the daemon's
scan thread, competes for the interpreter lock with the sender threads. With
``limits.intake_workers`` > 0, ``gateway run`` hands that work to a pool of worker
processes (:class:`IntakePool`); the scanner keeps everything durable to itself (claims,
spool transactions, audit events, removing files, error files) and the worker only turns
the bytes it was given into a :class:`~gateway.node.intake.Prepared` or
:class:`~gateway.node.intake.Refused`.

The workers' keys, reload, breaks and lifetime are those of every
:class:`~gateway.node.workers.WorkerPool`: a worker holds the daemon's own
:class:`~gateway.node.config.Config` (so it routes exactly as the daemon does) and reads
the key directory itself; a file whose worker died, or that workers with other keys than
the daemon's would have sealed, comes back as "not prepared" (``None``) and the scanner
prepares it in-process. A batch waits for workers that are still starting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from gateway.node.batches import split_evenly
from gateway.node.config import Config
from gateway.node.intake import Prepared, PrepareJob, Preparer, Refused
from gateway.node.nodekeys import NodeKeys
from gateway.node.prepare import make_preparer
from gateway.node.workers import WorkerPool, compiled_registry, keys_fingerprint, schema_registry

__all__ = ["IntakePool", "keys_fingerprint", "schema_registry"]

log = logging.getLogger("gateway.node.intake")

Outcome = Prepared | Refused | None


# --- the worker side (module state of a worker process) ----------------------------

_prepare: Preparer | None = None


def _load_preparer(config: Config, keys: NodeKeys) -> None:
    global _prepare  # noqa: PLW0603 - one preparer per worker process
    _prepare = make_preparer(config, keys, registry=compiled_registry(config))


def _prepare_group(jobs: tuple[PrepareJob, ...]) -> list[Prepared | Refused] | None:
    """Prepare ``jobs`` in this worker; None when it cannot (not the daemon's keys). A
    :class:`Prepared` comes back without its document (the daemon has those bytes)."""
    if _prepare is None:
        return None
    out: list[Prepared | Refused] = []
    for job in jobs:
        outcome = _prepare(job.data, source=job.source, service=job.service, now=job.now,
                           message_id=job.message_id)
        out.append(replace(outcome, document=b"") if isinstance(outcome, Prepared)
                   else outcome)
    return out


# --- the daemon side -----------------------------------------------------------------


class IntakePool(WorkerPool):
    """A pool of intake worker processes (see the module docstring); thread-safe.
    :meth:`submit` is the scanner's batch preparer."""

    kind = "intake"
    items = ("file(s)", "prepared")
    stale_work = "prepares outbox files"
    loader = staticmethod(_load_preparer)
    logger = log

    def submit(self, jobs: Sequence[PrepareJob]) -> Callable[[], list[Outcome]]:
        """Hand ``jobs`` to the workers; the returned function waits and gives one outcome
        per job, in order: None for a job the workers did not prepare (the pool broke, or
        it is not in use), which the caller prepares in-process."""
        generation = self._generation()
        if generation is None or not jobs:
            return lambda: [None] * len(jobs)
        groups = [tuple(g) for g in split_evenly(jobs, self.workers * 2)]  # two per worker
        collect_groups = self.dispatch(generation, _prepare_group, [(g,) for g in groups],
                                       [len(g) for g in groups])

        def collect() -> list[Outcome]:
            outcomes: list[Outcome] = []
            for group, result in zip(groups, collect_groups(), strict=True):
                if result is None:
                    outcomes.extend([None] * len(group))
                    continue
                outcomes.extend(replace(o, document=job.data) if isinstance(o, Prepared)
                                else o for job, o in zip(group, result, strict=True))
            return outcomes

        return collect
