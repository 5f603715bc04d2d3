"""Worker processes for the daemon's pure computation: the machinery the intake pool
(:mod:`gateway.node.intake_pool`, validate and seal outbox files) and the receive pool
(:mod:`gateway.node.receive_pool`, open and check arriving envelopes) share.

A :class:`WorkerPool` runs module-level functions of one *role* in worker processes of
its own, each with a pipe to the daemon; the daemon keeps everything durable to itself.
A call takes a free worker, writes the pickled call to its pipe and reads the answer, all
in the calling thread (:meth:`WorkerPool.call`; :meth:`WorkerPool.dispatch` runs several
at once from a few threads of the pool). Not ``ProcessPoolExecutor``: its queue-feeder
and management threads cost the daemon two thread hand-offs and about 0.15 ms of CPU a
call, a third of the receive path's hand-over (measured: docs/benchmarks.md, "Worker
processes over a pipe each"). What every role gets from here:

- **Keys.** A worker reads the key directory from disk itself (no private key goes
  through a pipe) and compares it with the fingerprint of the daemon's snapshot
  (:func:`keys_fingerprint`); a worker whose key directory reads differently (changed on
  disk without a reload) loads nothing and every call returns None: the pool is then
  *stale* and the daemon does the work in-process until the next reload.
- **Reload.** :meth:`WorkerPool.recycle` (the daemon's SIGHUP) starts new workers for the
  new snapshot; work already handed to the old ones finishes with the snapshot it started
  with, as in-process work does.
- **A worker that dies** (killed, crashed; seen when its pipe ends, mid-call or at the
  next call) breaks the pool: its other workers are killed, every call in flight comes
  back None and the caller does that work in-process; the next calls go to new workers.
  A worker that does not say it started within :data:`START_TIMEOUT` counts as dead.
  After :data:`MAX_BREAKS` breaks in a row without one call answered in between, the pool
  is given up until the next reload. Nothing is lost or refused for it.
- **Lifetime.** Workers are started with ``spawn`` (the daemon has threads: never plain
  fork), ignore SIGINT, SIGHUP and SIGTERM (sent to the whole group by a terminal or by
  systemd's stop: the daemon answers them and ends its workers itself) and end when the
  daemon closes their pipe (reload, stop, or its exit) or ends, even by ``kill -9``: each
  watches its parent process id.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, ClassVar

from cryptography.hazmat.primitives import serialization

from gateway.documents.csenet.fields import compile_patterns
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
START_TIMEOUT = 120.0  # seconds a worker may take to start before it counts as broken
CLOSE_TIMEOUT = 10.0  # seconds the daemon's stop waits for its workers' calls in hand


def schema_registry(config: Config) -> SchemaRegistry | None:
    """The registry the daemon validates with: the shipped schemas plus the operator's
    schema sets, or None (the default registry) when there are none."""
    if not config.schema_sets:
        return None
    return SchemaRegistry([xsd_root(), *(s.directory for s in config.schema_sets)])


def compiled_registry(config: Config) -> SchemaRegistry | None:
    """:func:`schema_registry`, with every schema and the CSENet field rules' patterns
    compiled now (a worker's start), not in its first calls: measured, the patterns made
    a worker's first transaction cost about 20-70 ms more than the next."""
    registry = schema_registry(config)
    for path in set((registry or default_registry()).roots().values()):
        with contextlib.suppress(GatewayError):
            load_schema(path)
    compile_patterns()
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
    *thread* that started the process, and workers are started from a scheduler, request
    or SIGHUP thread that may end long before the daemon does."""
    while True:
        if os.getppid() != parent:  # the daemon is gone (reparented): end with it
            os._exit(0)
        time.sleep(PARENT_POLL)


def _serve(conn: Connection, kind: str, load: Loader, config: Config,  # noqa: PLR0917
           fingerprint: str, parent: int) -> None:
    """A worker process: read the key directory, check it is the daemon's snapshot, load
    the role and say whether it did (one byte); then answer calls until the daemon
    closes its end of the pipe. A call is a pickled ``(function, arguments)``; its answer
    a pickled ``(True, result)``, or ``(False, exception type name)`` when it raised."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        # the daemon answers these for the whole group (a terminal, systemd's stop) and
        # ends its workers itself, after the call in hand
        signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), name=f"{kind}-parent",
                     daemon=True).start()
    _load(kind, load, config, fingerprint)
    try:
        conn.send_bytes(_LOADED if _loaded else _NOT_LOADED)
        while True:
            conn.send_bytes(_answer(conn.recv_bytes()))
    except (EOFError, OSError):
        return  # the daemon closed the pipe (reload, stop) or is gone


def _answer(call: bytes) -> bytes:
    """The pickled answer to one pickled call (see :func:`_serve`)."""
    try:
        func, args = pickle.loads(call)  # noqa: S301 - from our daemon, over our own pipe
        return pickle.dumps((True, func(*args)), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # the daemon does this call itself
        return pickle.dumps((False, type(exc).__name__))


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


_LOADED, _NOT_LOADED = b"\x01", b"\x00"


# --- the daemon side -----------------------------------------------------------------

_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _end_pools() -> None:
    """At interpreter exit (before :mod:`multiprocessing` joins its children, which it
    registered earlier): end the workers of any pool a daemon did not close."""
    for pool in list(_pools):
        pool.close()


@dataclass(eq=False)
class _Worker:
    """One worker process and the daemon's end of its pipe. Only the thread that took it
    from its generation's free list uses ``conn``."""

    process: BaseProcess
    conn: Connection


@dataclass(eq=False)
class _Generation:
    """One set of worker processes and the key snapshot they were started for. ``live``
    is False once it is replaced, broken, stale or closed: then no call starts on it and
    each worker's pipe is closed as soon as no call holds it (the worker ends)."""

    workers: list[_Worker]
    fingerprint: str
    cond: threading.Condition
    free: list[_Worker] = field(default_factory=list)  # started, and no call holds them
    live: bool = True
    ready: threading.Event = field(default_factory=threading.Event)  # every worker started

    def pids(self) -> list[int]:
        return sorted(w.process.pid for w in self.workers if w.process.pid is not None)


#: what :meth:`WorkerPool._call` can come back with besides ``(True, result)``
_BROKEN = (False, "broken")  # its worker ended mid-call
_GONE = (False, "gone")  # no call was made: the generation is no longer live


class WorkerPool:
    """A pool of worker processes for one role (see the module docstring); thread-safe.
    A subclass names its role and its calls; :meth:`call` (in the caller's thread) and
    :meth:`dispatch` (several at once) run them."""

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
        self._threads: ThreadPoolExecutor | None = None  # runs dispatch()'s calls
        self._retired: list[_Generation] = []  # replaced or broken, workers not yet reaped
        _pools.add(self)

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
            self._retire(old, kill=False)
        if not self._closed:
            self.start()

    def close(self) -> None:
        """Stop the workers (the daemon stops): calls not yet started come back None,
        calls in hand finish; waits for the workers to end."""
        with self._lock:
            self._closed = True
            old, self._current = self._current, None
            threads, self._threads = self._threads, None
        if old is not None:
            self._retire(old, kill=False)
        if threads is not None:
            threads.shutdown(wait=True)
        self._end_retired(CLOSE_TIMEOUT)

    def pids(self) -> list[int]:
        """The current worker processes' ids (tests, the benchmark's CPU accounting)."""
        with self._lock:
            current = self._current
        return [] if current is None else current.pids()

    def _generation(self) -> _Generation | None:
        """The current workers; new ones are started (from this thread) when there are
        none. None when the pool is closed or given up."""
        with self._lock:
            if self._closed or self._given_up:
                return None
            if self._current is not None:
                return self._current
            generation = _Generation([], self._fingerprint, threading.Condition())
            try:
                for _ in range(self.workers):
                    ours, theirs = self._context.Pipe()
                    process = self._context.Process(
                        target=_serve, name=f"gateway-{self.kind}-worker",
                        args=(theirs, self.kind, type(self).loader, self.config,
                              self._fingerprint, os.getpid()))
                    try:
                        process.start()
                    except OSError:
                        ours.close()
                        raise
                    finally:
                        theirs.close()  # the worker's end lives in the worker only
                    generation.workers.append(_Worker(process, ours))
            except OSError as exc:  # no process or pipe to be had (memory, limits)
                self._given_up = True
                failed: OSError | None = exc
            else:
                self._current, failed = generation, None
        if failed is not None:
            self._retire(generation, kill=True)
            self.logger.error("cannot start the %s worker processes (%s); the daemon %s "
                              "itself until the next reload", self.kind,
                              failed.strerror or type(failed).__name__, self.stale_work,
                              extra={"event": f"{self.kind}_pool_broken"})
            return None
        self._warm(generation)
        return generation

    def _warm(self, generation: _Generation) -> None:
        """A thread waits until every worker of ``generation`` says it loaded, then puts
        them on the free list, sets ``generation.ready`` and logs."""
        began = time.monotonic()

        def watch() -> None:
            if self._started(generation, began):
                self.logger.info("%s workers ready: %d processes in %.1f s", self.kind,
                                 self.workers, time.monotonic() - began,
                                 extra={"event": f"{self.kind}_workers_ready"})
                return
            # not handed over (broken, stale, or replaced or closed while starting):
            # nothing else holds these pipes, and closing them ends the workers
            for worker in generation.workers:
                worker.conn.close()

        threading.Thread(target=watch, name=f"{self.kind}-pool-start", daemon=True).start()

    def _started(self, generation: _Generation, began: float) -> bool:
        """Wait until every worker of ``generation`` says it loaded, then put them on its
        free list and set ``generation.ready``: True. False when one ended or hung while
        starting (a break), one does not read the daemon's keys (stale), or the
        generation was retired meanwhile."""
        loaded = []
        for worker in generation.workers:
            left = max(0.0, START_TIMEOUT - (time.monotonic() - began))
            try:
                said = worker.conn.recv_bytes() if worker.conn.poll(left) else None
            except (EOFError, OSError):
                said = None
            if said is None:  # ended (or hung) while starting
                self._broken(generation, 0)
                return False
            loaded.append(said == _LOADED)
        if not all(loaded):
            self._stale(generation)
            return False
        with generation.cond:
            if not generation.live:
                return False
            generation.free.extend(generation.workers)
            generation.ready.set()
            generation.cond.notify_all()
        return True

    def _retire(self, generation: _Generation, *, kill: bool) -> None:
        """``generation`` takes no more calls: its idle workers' pipes are closed now (they
        end), a busy one's when its call returns, a still starting one's by the start
        thread (:meth:`_warm`); ``kill`` ends the busy ones at once too (their calls come
        back None). Waiting callers are woken."""
        with generation.cond:
            generation.live = False
            idle, generation.free = generation.free, []
            generation.cond.notify_all()
        for worker in idle:
            worker.conn.close()
        if kill:
            for worker in generation.workers:
                with contextlib.suppress(OSError):
                    if worker.process.pid is not None and worker.process.exitcode is None:
                        os.kill(worker.process.pid, signal.SIGKILL)
        with self._lock:
            self._retired.append(generation)
        threading.Thread(target=self._reap, args=(generation,), name=f"{self.kind}-pool-end",
                         daemon=True).start()

    def _reap(self, generation: _Generation) -> None:
        """Wait for the workers of a retired ``generation`` to end (no zombies)."""
        for worker in generation.workers:
            worker.process.join()
        with self._lock:
            if generation in self._retired:
                self._retired.remove(generation)

    def _end_retired(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every retired worker to end; kill the rest."""
        with self._lock:
            workers = [w for g in self._retired for w in g.workers]
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join(1.0)

    # --- calls --------------------------------------------------------------------------

    def call(self, generation: _Generation, func: Callable[..., Any], args: tuple[Any, ...]
             ) -> Any:
        """``func(*args)`` in a worker of ``generation``, from this thread (waiting for a
        free worker); None when the workers did not answer (see :meth:`dispatch`)."""
        return self._settle(generation, [self._call(generation, func, args)], (1,))[0]

    def dispatch(self, generation: _Generation, func: Callable[..., Any],
                 calls: Sequence[tuple[Any, ...]], sizes: Sequence[int] = ()
                 ) -> Callable[[], list[Any]]:
        """Hand ``func(*args)`` for each of ``calls`` to the workers of ``generation`` (they
        start now, from threads of this pool); the returned function waits and gives one
        result per call, in order: None for a call the workers did not answer (the pool
        broke, is stale or is being replaced), which the caller does in-process. ``func``
        returns None in a worker without keys. ``sizes``: how many items each call
        carries (for the log line when the pool breaks; one each by default)."""
        with self._lock:
            threads = self._threads
            if threads is None and not self._closed:
                threads = self._threads = ThreadPoolExecutor(
                    max_workers=2 * self.workers, thread_name_prefix=f"{self.kind}-call")
        futures: list[Future[tuple[bool, Any]] | None] = []
        for args in calls:
            try:
                futures.append(None if threads is None else
                               threads.submit(self._call, generation, func, args))
            except RuntimeError:  # closed meanwhile
                futures.append(None)

        def collect() -> list[Any]:
            answers = [_GONE if f is None else f.result() for f in futures]
            return self._settle(generation, answers, sizes or [1] * len(answers))

        return collect

    def _call(self, generation: _Generation, func: Callable[..., Any],
              args: tuple[Any, ...]) -> tuple[bool, Any]:
        """One call on a free worker of ``generation``: ``(True, result)``, ``(False,
        exception type name)``, :data:`_BROKEN` or :data:`_GONE`."""
        try:  # before a worker is taken: a call that cannot be sent costs no worker
            call = pickle.dumps((func, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the daemon does this call itself
            return (False, type(exc).__name__)
        worker = self._take_worker(generation)
        return _GONE if worker is None else self._exchange(generation, worker, call)

    def call_when_free(self, generation: _Generation, func: Callable[..., Any],
                       take: Callable[[], tuple[Any, ...] | None]) -> tuple[bool, Any]:
        """Wait for a free worker of ``generation``, and only then ask ``take`` for the
        arguments of ``func`` (so that a caller can hand over everything that queued
        while it waited); ``take`` returning None gives the worker back. The raw answer,
        as :meth:`_call`'s (for :meth:`_settle`); :data:`_GONE` when no call was made."""
        worker = self._take_worker(generation)
        if worker is None:
            return _GONE
        call: bytes | None = None
        answer: tuple[bool, Any] = _GONE
        try:
            args = take()
            if args is not None:
                call = pickle.dumps((func, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the daemon does this call itself
            answer = (False, type(exc).__name__)
        return self._exchange(generation, worker, call) if call is not None else \
            self._give_back(generation, worker, answer)

    @staticmethod
    def _take_worker(generation: _Generation) -> _Worker | None:
        """A free worker of ``generation`` (waiting for one), or None: it is not live."""
        with generation.cond:
            while generation.live and not generation.free:
                generation.cond.wait()
            return generation.free.pop() if generation.live else None

    def _exchange(self, generation: _Generation, worker: _Worker, call: bytes
                  ) -> tuple[bool, Any]:
        """Send ``call`` to ``worker`` (taken from ``generation``), read its answer and
        give the worker back (or close it: it ended mid-call, or its generation did)."""
        answer: tuple[bool, Any] = _BROKEN
        try:
            worker.conn.send_bytes(call)
            answer = pickle.loads(worker.conn.recv_bytes())  # noqa: S301 - our own worker
        except (EOFError, OSError):
            pass  # the worker ended mid-call
        finally:
            self._give_back(generation, worker, answer)
        return answer

    @staticmethod
    def _give_back(generation: _Generation, worker: _Worker, answer: tuple[bool, Any]
                   ) -> tuple[bool, Any]:
        with generation.cond:
            keep = generation.live and answer is not _BROKEN
            if keep:
                generation.free.append(worker)
                generation.cond.notify()
        if not keep:
            worker.conn.close()
        return answer

    def _settle(self, generation: _Generation, answers: Sequence[tuple[bool, Any]],
                sizes: Sequence[int]) -> list[Any]:
        """The results of ``answers``, None where the workers did not give one; a break or
        a stale worker is handled (and logged) here, once per generation."""
        results: list[Any] = []
        broken = stale = False
        for answer in answers:
            result = None
            if answer is _BROKEN:
                broken = True
            elif answer is not _GONE:
                ok, value = answer
                if ok:
                    result = value
                    stale |= value is None
                else:
                    self.logger.warning("%s worker failed (%s); %s in the daemon instead",
                                        self.kind, value, self.items[1])
            results.append(result)
        if broken:
            self._broken(generation, sum(n for r, n in zip(results, sizes, strict=True)
                                         if r is None))
        elif stale:
            self._stale(generation)
        elif all(r is not None for r in results):
            with self._lock:
                self._breaks = 0
        return results

    def _broken(self, generation: _Generation, redo: int) -> None:
        with self._lock:
            if self._current is not generation:
                return  # already replaced (logged then)
            self._current = None
            self._breaks += 1
            self._given_up = self._breaks >= MAX_BREAKS
            given_up = self._given_up
        self._retire(generation, kill=True)
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
        self._retire(generation, kill=True)
        self.logger.warning(
            "the %s workers do not read the daemon's keys (the key directory changed on "
            "disk without a reload, or cannot be read): the daemon %s itself until the "
            "next reload (SIGHUP)", self.kind, self.stale_work,
            extra={"event": f"{self.kind}_pool_stale"})
