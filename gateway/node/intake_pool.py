"""Outbox intake on more than one core: validate and seal in worker processes.

The outbox preparer (:func:`gateway.node.outbound.make_preparer`: validate, describe,
route, seal) costs a few milliseconds of CPU per document and, run in the daemon's
scan thread, competes for the interpreter lock with the sender threads. With
``limits.intake_workers`` > 0, ``gateway run`` hands that work to a pool of worker
processes (:class:`IntakePool`); the scanner keeps everything durable to itself (claims,
spool transactions, audit events, removing files, error files) and the worker only turns
the bytes it was given into a :class:`~gateway.node.intake.Prepared` or
:class:`~gateway.node.intake.Refused`.

- **What a worker holds.** The daemon's own :class:`~gateway.node.config.Config` (a value,
  handed over when the worker starts, so it routes exactly as the daemon does) and the key
  directory, which the worker reads from disk itself: no private key goes through a pipe.
  The daemon passes a fingerprint of its key snapshot (:func:`keys_fingerprint`); a worker
  whose key directory reads differently (changed on disk without a reload) prepares
  nothing, and the daemon prepares in-process until the next reload.
- **Reload.** :meth:`IntakePool.recycle` (the daemon's SIGHUP) starts new workers with the
  new snapshot; work already handed to the old ones finishes with the snapshot it
  started with, as in-process work does.
- **A worker that dies** (killed, crashed) breaks the pool: every file in flight comes
  back as "not prepared" (``None``) and the scanner prepares it in-process; the next
  batch goes to new workers. After three breaks in a row without one batch prepared in
  between, the pool is given up until the next reload. Nothing is lost or refused for it.
- **Lifetime.** Workers are started with ``spawn`` (the daemon has threads: never plain
  fork), ignore SIGINT, SIGHUP and SIGTERM (sent to the whole group by a terminal or by
  systemd's stop: the daemon answers them and ends its workers itself) and end when the
  daemon ends, even by ``kill -9``: each watches its parent process id.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives import serialization

from gateway.documents.schemas import SchemaRegistry, default_registry, load_schema
from gateway.errors import GatewayError
from gateway.node.config import Config
from gateway.node.intake import Prepared, PrepareJob, Preparer, Refused
from gateway.node.nodekeys import NodeKeys, load_node_keys
from gateway.node.outbound import make_preparer
from gateway.resources import xsd_root

__all__ = ["IntakePool", "keys_fingerprint", "schema_registry"]

log = logging.getLogger("gateway.node.intake")

Outcome = Prepared | Refused | None
MAX_BREAKS = 3  # consecutive breaks before the pool is given up until the next reload
PARENT_POLL = 0.5  # seconds between a worker's checks that the daemon still lives
START_TIMEOUT = 120.0  # seconds to wait for a worker's start before no longer logging it


def schema_registry(config: Config) -> SchemaRegistry | None:
    """The registry the daemon validates with: the shipped schemas plus the operator's
    schema sets, or None (the default registry) when there are none."""
    if not config.schema_sets:
        return None
    return SchemaRegistry([xsd_root(), *(s.directory for s in config.schema_sets)])


def keys_fingerprint(keys: NodeKeys) -> str:
    """A digest of everything in a key snapshot that preparing reads: this node's party,
    certificates and signing public key, every partner's registered and encryption
    certificates, the trust anchors. Two snapshots with the same fingerprint seal and
    route alike."""
    der = serialization.Encoding.DER
    h = hashlib.sha256()

    def add(label: str, *parts: bytes) -> None:
        h.update(label.encode())
        for part in parts:
            h.update(len(part).to_bytes(8, "big") + part)

    identity = keys.identity
    add("party", str(identity.party).encode())
    add("sign", identity.signing_cert.public_bytes(der), identity.signing_key.public_key()
        .public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo))
    add("encrypt", identity.encryption_cert.public_bytes(der))
    add("chain", *(c.public_bytes(der) for c in identity.chain))
    add("trust", *(c.public_bytes(der) for c in keys.trust))
    for party in sorted(keys.encryption, key=str):
        add(f"enc:{party}", *(c.public_bytes(der) for c in keys.encryption[party]))
    for party in sorted(keys.directory.entries, key=str):
        add(f"dir:{party}", *(c.public_bytes(der) for c in keys.directory.entries[party]))
    add("max", str(keys.max_bytes).encode())
    return h.hexdigest()


# --- the worker side (module state of a worker process) ----------------------------

_prepare: Preparer | None = None


def _watch_parent(parent: int) -> None:
    """End this worker when the daemon is gone. Polled, not ``PR_SET_PDEATHSIG`` (what
    :mod:`gateway.demo.lifetime` uses for the demo's children): that signal follows the
    *thread* that started the process, and the executor may start workers from a
    scheduler or SIGHUP thread that ends long before the daemon does."""
    while True:
        if os.getppid() != parent:  # the daemon is gone (reparented): end with it
            os._exit(0)
        time.sleep(PARENT_POLL)


def _init_worker(config: Config, fingerprint: str, parent: int, started: Any) -> None:
    """A worker's start: read the key directory, check it is the daemon's snapshot,
    compile the schemas, build the preparer; then release ``started`` (a semaphore)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        # the daemon answers these for the whole group (a terminal, systemd's stop) and
        # ends its workers itself, after the chunk in hand
        signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), name="intake-parent",
                     daemon=True).start()
    try:
        _load(config, fingerprint)
    finally:
        started.release()


def _load(config: Config, fingerprint: str) -> None:
    global _prepare  # noqa: PLW0603 - one preparer per worker process
    try:
        keys = load_node_keys(config)
    except GatewayError as exc:
        log.warning("intake worker cannot read the key directory: %s", exc.code)
        return
    if keys_fingerprint(keys) != fingerprint:
        return  # not the daemon's snapshot: prepare nothing (the daemon does)
    registry = schema_registry(config)
    for path in set((registry or default_registry()).roots().values()):
        with contextlib.suppress(GatewayError):
            load_schema(path)  # compiled now, not in the first batch
    _prepare = make_preparer(config, keys, registry=registry)


def _ready() -> bool:
    """Whether this worker prepares (its keys are the daemon's)."""
    return _prepare is not None


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


@dataclass
class _Generation:
    """One set of worker processes and the key snapshot they were started for."""

    executor: ProcessPoolExecutor
    fingerprint: str
    started: Any  # a multiprocessing semaphore each worker releases once it has started


class IntakePool:
    """A pool of intake worker processes (see the module docstring); thread-safe.
    :meth:`submit` is the scanner's batch preparer."""

    def __init__(self, config: Config, keys: NodeKeys, *, workers: int) -> None:
        self.config = config
        self.workers = max(1, workers)
        self._fingerprint = keys_fingerprint(keys)
        self._lock = threading.Lock()
        self._current: _Generation | None = None
        self._closed = False
        self._breaks = 0
        self._given_up = False
        self._context = multiprocessing.get_context("spawn")

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers now, from this thread, and let each read its keys; logs when
        they are ready. Returns at once (preparing waits for the workers it needs)."""
        with self._lock:
            generation = self._generation()
        if generation is None:
            return
        began = time.monotonic()
        # one call per worker makes the executor start them all now, from this thread
        warm = [generation.executor.submit(_ready) for _ in range(self.workers)]

        def watch() -> None:
            wait(warm)
            if any(f.exception() is not None for f in warm):
                self._broken(generation, 0)
                return
            if not all(f.result() for f in warm):
                self._stale(generation)
                return
            for _ in range(self.workers):  # every worker, not only those that answered
                if not generation.started.acquire(timeout=START_TIMEOUT):
                    return
            with self._lock:
                current = self._current is generation
            if current:
                log.info("intake workers ready: %d processes in %.1f s", self.workers,
                         time.monotonic() - began, extra={"event": "intake_workers_ready"})

        threading.Thread(target=watch, name="intake-pool-start", daemon=True).start()

    def recycle(self, keys: NodeKeys) -> None:
        """New workers for the key snapshot ``keys`` (the daemon reloaded); the old ones
        finish what they were given and end."""
        with self._lock:
            old, self._current = self._current, None
            self._fingerprint = keys_fingerprint(keys)
            self._breaks, self._given_up = 0, False
        if old is not None:
            old.executor.shutdown(wait=False)
        if not self._closed:
            self.start()

    def close(self) -> None:
        """Stop the workers (the daemon stops); waits for them to end."""
        with self._lock:
            self._closed = True
            old, self._current = self._current, None
        if old is not None:
            old.executor.shutdown(wait=True, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' ids (tests, the benchmark's CPU accounting)."""
        with self._lock:
            current = self._current
        if current is None:
            return []
        processes = getattr(current.executor, "_processes", None) or {}
        return sorted(int(pid) for pid in processes)

    def _generation(self) -> _Generation | None:
        """The current workers, started if needed (hold ``_lock``)."""
        if self._closed or self._given_up:
            return None
        if self._current is None:
            started = self._context.Semaphore(0)
            executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=self._context,
                initializer=_init_worker,
                initargs=(self.config, self._fingerprint, os.getpid(), started))
            self._current = _Generation(executor, self._fingerprint, started)
        return self._current

    # --- preparing ----------------------------------------------------------------------

    def submit(self, jobs: Sequence[PrepareJob]) -> Callable[[], list[Outcome]]:
        """Hand ``jobs`` to the workers; the returned function waits and gives one outcome
        per job, in order: None for a job the workers did not prepare (the pool broke, or
        it is not in use), which the caller prepares in-process."""
        with self._lock:
            generation = self._generation()
        if generation is None or not jobs:
            return lambda: [None] * len(jobs)
        size = max(1, -(-len(jobs) // (self.workers * 2)))  # about two groups per worker
        groups = [tuple(jobs[i:i + size]) for i in range(0, len(jobs), size)]
        futures: list[Future[list[Prepared | Refused] | None] | None] = []
        refused = False  # the pool broke before this batch (a worker died while idle)
        for group in groups:
            try:
                futures.append(generation.executor.submit(_prepare_group, group))
            except BrokenProcessPool:
                futures.append(None)
                refused = True
            except RuntimeError:  # recycled or closed meanwhile
                futures.append(None)

        def collect() -> list[Outcome]:
            outcomes: list[Outcome] = []
            broken, stale = refused, False
            for group, future in zip(groups, futures, strict=True):
                result: list[Prepared | Refused] | None = None
                if future is not None:
                    try:
                        result = future.result()
                        stale |= result is None
                    except BrokenProcessPool:
                        broken = True
                    except Exception as exc:  # prepared in-process instead
                        log.warning("intake worker failed (%s); preparing in the daemon",
                                    type(exc).__name__)
                if result is None:
                    outcomes.extend([None] * len(group))
                    continue
                outcomes.extend(replace(o, document=job.data) if isinstance(o, Prepared)
                                else o for job, o in zip(group, result, strict=True))
            if broken:
                self._broken(generation, sum(o is None for o in outcomes))
            elif stale:
                self._stale(generation)
            elif all(o is not None for o in outcomes):
                with self._lock:
                    self._breaks = 0
            return outcomes

        return collect

    def _broken(self, generation: _Generation, redo: int) -> None:
        with self._lock:
            if self._current is not generation:
                return  # already replaced (logged then)
            self._current = None
            self._breaks += 1
            self._given_up = self._breaks >= MAX_BREAKS
            given_up = self._given_up
        generation.executor.shutdown(wait=False, cancel_futures=True)
        if given_up:
            log.error("intake worker processes keep ending unexpectedly; %d file(s) in "
                      "flight are prepared in the daemon, and so is everything until the "
                      "next reload", redo, extra={"event": "intake_pool_broken"})
        else:
            log.warning("an intake worker process ended unexpectedly; %d file(s) in flight "
                        "are prepared in the daemon, new workers take the next ones", redo,
                        extra={"event": "intake_pool_broken"})

    def _stale(self, generation: _Generation) -> None:
        with self._lock:
            if self._current is not generation:
                return
            self._current = None
            self._given_up = True
        generation.executor.shutdown(wait=False, cancel_futures=True)
        log.warning("the intake workers do not read the daemon's keys (the key directory "
                    "changed on disk without a reload, or cannot be read): the daemon "
                    "prepares outbox files itself until the next reload (SIGHUP)",
                    extra={"event": "intake_pool_stale"})
