"""Worker processes for the daemon's pure computation: the machinery the intake pool
(:mod:`gateway.node.intake_pool`, validate and seal outbox files) and the receive pool
(:mod:`gateway.node.receive_pool`, open and check arriving envelopes) share.

A :class:`WorkerPool` runs module-level functions of one *role* in a
``ProcessPoolExecutor``; the daemon keeps everything durable to itself. What every role
gets from here:

- **Keys.** A worker reads the key directory from disk itself (no private key goes
  through a pipe) and compares it with the fingerprint of the daemon's snapshot
  (:func:`keys_fingerprint`); a worker whose key directory reads differently (changed on
  disk without a reload) loads nothing and every call returns None: the pool is then
  *stale* and the daemon does the work in-process until the next reload.
- **Reload.** :meth:`WorkerPool.recycle` (the daemon's SIGHUP) starts new workers for the
  new snapshot; work already handed to the old ones finishes with the snapshot it started
  with, as in-process work does.
- **A worker that dies** (killed, crashed) breaks the pool: every call in flight comes
  back None and the caller does that work in-process; the next calls go to new workers.
  After :data:`MAX_BREAKS` breaks in a row without one call answered in between, the pool
  is given up until the next reload. Nothing is lost or refused for it.
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
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cryptography.hazmat.primitives import serialization

from gateway.documents.schemas import SchemaRegistry, default_registry, load_schema
from gateway.errors import GatewayError
from gateway.node.config import Config
from gateway.node.nodekeys import NodeKeys, load_node_keys
from gateway.resources import xsd_root

__all__ = ["Loader", "WorkerPool", "compiled_registry", "keys_fingerprint", "schema_registry"]

log = logging.getLogger("gateway.node.workers")

#: What a role does in a worker once its keys are the daemon's: keep what its calls need
#: in module state (a module-level function, so that it is handed over by name).
Loader = Callable[[Config, NodeKeys], None]

MAX_BREAKS = 3  # consecutive breaks before the pool is given up until the next reload
PARENT_POLL = 0.5  # seconds between a worker's checks that the daemon still lives
START_TIMEOUT = 120.0  # seconds to wait for a worker's start before no longer logging it


def schema_registry(config: Config) -> SchemaRegistry | None:
    """The registry the daemon validates with: the shipped schemas plus the operator's
    schema sets, or None (the default registry) when there are none."""
    if not config.schema_sets:
        return None
    return SchemaRegistry([xsd_root(), *(s.directory for s in config.schema_sets)])


def compiled_registry(config: Config) -> SchemaRegistry | None:
    """:func:`schema_registry`, with every schema compiled now (a worker's start), not in
    its first call."""
    registry = schema_registry(config)
    for path in set((registry or default_registry()).roots().values()):
        with contextlib.suppress(GatewayError):
            load_schema(path)
    return registry


def keys_fingerprint(keys: NodeKeys) -> str:
    """A digest of everything in a key snapshot that the workers read: this node's party,
    certificates and signing public key, the certificates of its extra decryption keys,
    every partner's registered and encryption certificates, the trust anchors. Two
    snapshots with the same fingerprint seal, route and open alike."""
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
    add("decrypt", *(cert.public_bytes(der) for _, cert in identity.decryption))
    add("chain", *(c.public_bytes(der) for c in identity.chain))
    add("trust", *(c.public_bytes(der) for c in keys.trust))
    for party in sorted(keys.encryption, key=str):
        add(f"enc:{party}", *(c.public_bytes(der) for c in keys.encryption[party]))
    for party in sorted(keys.directory.entries, key=str):
        add(f"dir:{party}", *(c.public_bytes(der) for c in keys.directory.entries[party]))
    add("max", str(keys.max_bytes).encode())
    return h.hexdigest()


# --- the worker side (module state of a worker process) ----------------------------

_loaded = False


def _watch_parent(parent: int) -> None:
    """End this worker when the daemon is gone. Polled, not ``PR_SET_PDEATHSIG`` (what
    :mod:`gateway.demo.lifetime` uses for the demo's children): that signal follows the
    *thread* that started the process, and the executor may start workers from a
    scheduler, request or SIGHUP thread that ends long before the daemon does."""
    while True:
        if os.getppid() != parent:  # the daemon is gone (reparented): end with it
            os._exit(0)
        time.sleep(PARENT_POLL)


def _init_worker(kind: str, load: Loader, config: Config,  # noqa: PLR0917 - initargs
                 fingerprint: str, parent: int, started: Any) -> None:
    """A worker's start: read the key directory, check it is the daemon's snapshot, load
    the role; then release ``started`` (a semaphore)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        # the daemon answers these for the whole group (a terminal, systemd's stop) and
        # ends its workers itself, after the call in hand
        signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), name=f"{kind}-parent",
                     daemon=True).start()
    try:
        _load(kind, load, config, fingerprint)
    finally:
        started.release()


def _load(kind: str, load: Loader, config: Config, fingerprint: str) -> None:
    global _loaded  # noqa: PLW0603 - one role per worker process
    try:
        keys = load_node_keys(config)
    except GatewayError as exc:
        log.warning("%s worker cannot read the key directory: %s", kind, exc.code)
        return
    if keys_fingerprint(keys) != fingerprint:
        return  # not the daemon's snapshot: load nothing (the daemon does the work)
    load(config, keys)
    _loaded = True


def _ready() -> bool:
    """Whether this worker works (its keys are the daemon's)."""
    return _loaded


# --- the daemon side -----------------------------------------------------------------


@dataclass
class _Generation:
    """One set of worker processes and the key snapshot they were started for."""

    executor: ProcessPoolExecutor
    fingerprint: str
    started: Any  # a multiprocessing semaphore each worker releases once it has started
    ready: threading.Event = field(default_factory=threading.Event)  # every worker started


class WorkerPool:
    """A pool of worker processes for one role (see the module docstring); thread-safe.
    A subclass names its role and its calls; :meth:`dispatch` runs them."""

    #: the role, in log lines and events ("intake workers ready", ``intake_pool_broken``)
    kind: ClassVar[str]
    #: what the role's calls work on and what the daemon does with them when the workers
    #: do not, for the log lines: "file(s)", "prepared"
    items: ClassVar[tuple[str, str]]
    #: what the daemon does itself while the workers do not read its keys
    stale_work: ClassVar[str]
    logger: ClassVar[logging.Logger] = log

    @staticmethod
    def loader(config: Config, keys: NodeKeys) -> None:
        """The role's :data:`Loader` (a subclass names a module-level function)."""
        raise NotImplementedError

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
        they are ready. Returns at once (a call waits for the workers it needs)."""
        self._generation()

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
        """The current workers; new ones are started (from this thread) when there are
        none. None when the pool is closed or given up."""
        with self._lock:
            if self._closed or self._given_up:
                return None
            generation = self._current
            if generation is None:
                started = self._context.Semaphore(0)
                executor = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=self._context,
                    initializer=_init_worker,
                    initargs=(self.kind, type(self).loader, self.config, self._fingerprint,
                              os.getpid(), started))
                generation = self._current = _Generation(executor, self._fingerprint,
                                                         started)
            else:
                return generation
        self._warm(generation)
        return generation

    def _warm(self, generation: _Generation) -> None:
        """Make the executor start every worker now; a thread waits for them, sets
        ``generation.ready`` and logs."""
        began = time.monotonic()
        try:
            # one call per worker makes the executor start them all now, from this thread
            warm = [generation.executor.submit(_ready) for _ in range(self.workers)]
        except (BrokenProcessPool, RuntimeError):
            return  # closed or broken meanwhile: the next call starts new workers

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
                generation.ready.set()
                self.logger.info("%s workers ready: %d processes in %.1f s", self.kind,
                                 self.workers, time.monotonic() - began,
                                 extra={"event": f"{self.kind}_workers_ready"})

        threading.Thread(target=watch, name=f"{self.kind}-pool-start", daemon=True).start()

    # --- calls --------------------------------------------------------------------------

    def dispatch(self, generation: _Generation, func: Callable[..., Any],
                 calls: Sequence[tuple[Any, ...]], sizes: Sequence[int] = ()
                 ) -> Callable[[], list[Any]]:
        """Hand ``func(*args)`` for each of ``calls`` to the workers of ``generation``; the
        returned function waits and gives one result per call, in order: None for a call
        the workers did not answer (the pool broke, is stale or is being replaced), which
        the caller does in-process. ``func`` returns None in a worker without keys.
        ``sizes``: how many items each call carries (for the log line when the pool
        breaks; one each by default)."""
        futures: list[Future[Any] | None] = []
        refused = False  # the pool broke before these calls (a worker died while idle)
        for args in calls:
            try:
                futures.append(generation.executor.submit(func, *args))
            except BrokenProcessPool:
                futures.append(None)
                refused = True
            except RuntimeError:  # recycled or closed meanwhile
                futures.append(None)

        def collect() -> list[Any]:
            results: list[Any] = []
            broken, stale = refused, False
            for future in futures:
                result = None
                if future is not None:
                    try:
                        result = future.result()
                        stale |= result is None
                    except BrokenProcessPool:
                        broken = True
                    except Exception as exc:  # done in-process instead
                        self.logger.warning("%s worker failed (%s); %s in the daemon instead",
                                            self.kind, type(exc).__name__, self.items[1])
                results.append(result)
            if broken:
                self._broken(generation, sum(
                    n for r, n in zip(results, sizes or [1] * len(results), strict=True)
                    if r is None))
            elif stale:
                self._stale(generation)
            elif all(r is not None for r in results):
                with self._lock:
                    self._breaks = 0
            return results

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
        things, done = self.items
        if given_up:
            self.logger.error(
                "%s worker processes keep ending unexpectedly; %d %s in flight are %s in "
                "the daemon, and so is everything until the next reload", self.kind, redo,
                things, done, extra={"event": f"{self.kind}_pool_broken"})
        else:
            self.logger.warning(
                "one of the %s worker processes ended unexpectedly; %d %s in flight are %s in "
                "the daemon, new workers take the next ones", self.kind, redo, things, done,
                extra={"event": f"{self.kind}_pool_broken"})
            self._restarted()

    def _restarted(self) -> None:
        """After a break: start new workers now (a pool that waits for its workers starts
        them with its next call instead)."""

    def _stale(self, generation: _Generation) -> None:
        with self._lock:
            if self._current is not generation:
                return
            self._current = None
            self._given_up = True
        generation.executor.shutdown(wait=False, cancel_futures=True)
        self.logger.warning(
            "the %s workers do not read the daemon's keys (the key directory changed on "
            "disk without a reload, or cannot be read): the daemon %s itself until the "
            "next reload (SIGHUP)", self.kind, self.stale_work,
            extra={"event": f"{self.kind}_pool_stale"})
