"""Group commit: the write transactions of a process's threads share one commit.

The daemon's threads (senders, HTTPS handlers, the outbox scan) each record their own
small transaction: a claim, a receipt, an arrival. Committing each on its own costs one
WAL write and one fsync per transaction, and most of the CPU a small SQLite transaction
takes. Here a transaction that finds other writers queued behind it does not commit: the
next one joins the same database transaction, and the last of a run of queued writers
commits them all at once.

What does not change for a caller of :meth:`CommitGroups.member`:

- **all or nothing per member**: each member runs inside its own ``SAVEPOINT``; an
  exception in its body rolls back that member alone (and propagates), the others are
  unaffected;
- **durable before it returns**: a member's ``with`` block does not exit until the commit
  that holds its changes has completed (fsync included), so nothing is answered,
  acknowledged or renamed on the strength of a change that is not on disk. If that
  commit fails, every member of the group raises the error and none of their changes
  stay (as when a single commit fails);
- **reads see committed data only**: a read from another thread commits an open group
  first (the connection is shared, so it would otherwise see changes still waiting for
  their commit); a read from inside a member's body sees that member's own changes.

A group never waits for company: it commits as soon as no other thread is queued for the
connection (or it has ``max_members``), so a lone writer commits exactly as before and
latency grows only by the bodies of writers that were already waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from gateway.errors import GatewayError, SpoolError

__all__ = ["CommitGroups"]


class _Group:
    """One database transaction shared by members; ``done`` is set once it committed
    (``error`` None) or failed."""

    def __init__(self) -> None:
        self.members = 0
        self.done = threading.Event()
        self.error: GatewayError | None = None

    def wait(self) -> None:
        self.done.wait()
        if self.error is not None:
            raise self.error


class CommitGroups:
    """Group commit over one connection shared by threads (SQLite with
    ``isolation_level`` None, or the PostgreSQL store's write connection).
    ``translate()`` wraps every statement: it turns driver errors into
    :class:`~gateway.errors.SpoolError`. Use :meth:`member` for a write transaction,
    :meth:`reading` around a read, and :meth:`idle` before closing the connection."""

    def __init__(self, translate: Callable[[], AbstractContextManager[None]], *,
                 max_members: int = 64,
                 on_begin: Callable[[Any], None] | None = None) -> None:
        self.lock = threading.RLock()
        self._translate = translate
        #: run right after a group's ``BEGIN IMMEDIATE``, outside any member's savepoint
        #: (the PostgreSQL store takes its audit chain's lock there)
        self._on_begin = on_begin
        self.max_members = max_members
        self._count_lock = threading.Lock()
        self._queued = 0                    # writers between arriving and taking the lock
        self._group: _Group | None = None   # the open database transaction, if any
        self._body: int | None = None       # the thread running a member's body
        #: commits made, and members they held (for tests and benchmarks)
        self.commits = 0
        self.committed_members = 0

    # --- entry points ---------------------------------------------------------------

    @contextmanager
    def member(self, conn: Any) -> Iterator[None]:
        """A write transaction on ``conn``: its body runs in a savepoint of the group's
        transaction; on a clean exit it returns only after the group committed."""
        me = threading.get_ident()
        self._arrive()
        with self.lock:
            self._took_lock()
            if self._body == me:
                raise SpoolError("a spool transaction was opened inside another one")
            group = self._open(conn)
            try:
                with self._translate():
                    conn.execute("SAVEPOINT member")
            except GatewayError:
                self._settle(conn)  # never leave a group open that no writer will commit
                raise
            self._body = me
            try:
                yield
            except BaseException:
                self._body = None
                self._undo_member(conn)
                self._settle(conn)
                raise
            self._body = None
            try:
                with self._translate():
                    conn.execute("RELEASE member")
            except GatewayError:
                self._undo_member(conn)
                self._settle(conn)
                raise
            group.members += 1
            self._settle(conn)
        group.wait()

    @contextmanager
    def reading(self, conn: Any) -> Iterator[None]:
        """Hold the connection for a read of committed data: while a group is open (its
        writers still queued) the reader waits for its commit rather than forcing it, so
        reads do not break groups up. A thread inside a member's body reads at once (its
        own changes included)."""
        me = threading.get_ident()
        while True:
            with self.lock:
                group = self._group
                if group is None or self._body == me:
                    yield
                    return
            group.done.wait()  # committed (or failed) by its last writer

    def log_totals(self, log: logging.Logger) -> None:
        """Log how many transactions shared how many commits (a store logs it when it
        closes; ``bench/`` reads the line)."""
        if self.commits:
            log.info("spool: %d transactions in %d commits (group commit)",
                     self.committed_members, self.commits)

    def idle(self, conn: Any) -> None:
        """Commit an open group now (before the connection closes)."""
        with self.lock:
            if self._group is not None and self._body is None:
                self._commit(conn)

    # --- the group ------------------------------------------------------------------

    def _arrive(self) -> None:
        with self._count_lock:
            self._queued += 1

    def _took_lock(self) -> None:
        with self._count_lock:
            self._queued -= 1

    def _open(self, conn: Any) -> _Group:
        if self._group is None:
            try:
                with self._translate():
                    conn.execute("BEGIN IMMEDIATE")
                    if self._on_begin is not None:
                        self._on_begin(conn)
            except BaseException:
                self._abandon(conn)  # never leave a transaction open that no group owns
                raise
            self._group = _Group()
        return self._group

    def _abandon(self, conn: Any) -> None:
        try:
            with self._translate():
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except GatewayError:
            pass  # the caller reports the first error

    def _undo_member(self, conn: Any) -> None:
        """Roll back the failed member's savepoint; if even that fails, the whole group's
        transaction is lost: fail it."""
        try:
            with self._translate():
                conn.execute("ROLLBACK TO member")
                conn.execute("RELEASE member")
        except GatewayError as exc:
            self._fail(conn, exc)

    def _settle(self, conn: Any) -> None:
        """After a member: commit unless another thread is already queued to join (and
        the group is not full)."""
        group = self._group
        if group is None:
            return
        with self._count_lock:
            queued = self._queued
        if queued == 0 or group.members >= self.max_members:
            self._commit(conn)

    def _commit(self, conn: Any) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        try:
            with self._translate():
                conn.execute("COMMIT")
        except GatewayError as exc:
            self._group = group
            self._fail(conn, exc)
            return
        except BaseException:  # interrupted: the waiting members must not wait forever
            self._group = group
            self._fail(conn, SpoolError("the shared commit was interrupted"))
            raise
        self.commits += 1
        self.committed_members += group.members
        group.done.set()

    def _fail(self, conn: Any, exc: GatewayError) -> None:
        group, self._group = self._group, None
        self._abandon(conn)  # members get the first error, not the rollback's
        if group is not None:
            group.error = exc
            group.done.set()
