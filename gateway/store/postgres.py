"""The PostgreSQL store: the same spool and audit interfaces as SQLite, for several
gateway nodes sharing one queue (``[store] url = "postgresql://..."``).

How the nodes share the work without losing or doubling any of it:

* **Claims under a lease.** A send is claimed in a short transaction: ``SELECT ... FOR
  UPDATE SKIP LOCKED`` on the message (a row another node is changing is skipped, never
  waited for), then ``sending`` with ``lease_holder`` (this node), ``lease_expires`` (now +
  ``lease``) and ``fence`` + 1. Every later change of that message by this node must still
  find its fence (:class:`PgTxn`); a node whose lease ran out and was taken over gets
  :class:`gateway.errors.LeaseLost` and writes nothing. A message left ``sending`` past its
  lease (its node died) is due again: the next node to claim it records the takeover
  (``retry_scheduled``, ``lease_expired``) and claims it under a new fence.
* **Outbox files claimed once** (:meth:`PostgresSpool.claim_intake`), inbound duplicates
  refused by the unique index on (direction, message ID) inside the transaction that
  records the arrival, whichever node receives.
* **One audit chain for the deployment.** Audit events are appended under a
  transaction-scoped advisory lock on the chain's head
  (:meth:`gateway.store.pgconn.PgConn.lock_chain`): appends take turns and the chain
  never forks.
* **Group commit.** A node's write transactions run on one connection of their own and
  share commits (:mod:`gateway.store.groupcommit`, as on SQLite): each is still all or
  nothing (its own savepoint) and none returns before the commit that holds it. A group
  takes the chain's lock first, right after its ``BEGIN``, before any row lock: a group
  waiting for the chain holds nothing another node's group could be waiting for, so
  groups of different nodes never deadlock, and a group's commit (one WAL flush) covers
  every member's audit events.
* **Roles held by one node at a time** (:meth:`PostgresSpool.leader`): signing checkpoints
  and retention, under a renewable lease in ``store_roles``.

Transactions are ``READ COMMITTED``; a transition reads its message ``FOR UPDATE`` so the
state it checks is the state it changes. Reads use connections from a ``psycopg_pool``
pool, which drops a connection found broken when it is given back; the write connection
is opened again when found broken. So the nodes recover by themselves after the database
was away (operations in the meantime, and the first use of each connection made before,
raise :class:`gateway.errors.SpoolError`, roll back, and the daemon's jobs try again on
their next run).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.errors import IllegalTransition, LeaseLost, MessageNotFound, SpoolError
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import CommitGroups
from gateway.store.pg_schema import applied_versions, migrate
from gateway.store.pgconn import PgConn
from gateway.store.spool import (
    SELECT_MESSAGE,
    AuditSink,
    Message,
    SpoolReads,
    Txn,
    to_epoch,
)
from gateway.store.states import Direction, State

__all__ = ["DEFAULT_LEASE", "PgTxn", "PostgresSpool", "redact_url"]

log = logging.getLogger("gateway.store.postgres")

_SELECT_LOCKED = (SELECT_MESSAGE.replace(" FROM messages", ", fence, lease_holder, lease_expires "
                                          "FROM messages") + " WHERE id = ? FOR UPDATE")

#: Seconds a claim holds a message before another node may take it over
DEFAULT_LEASE = 60.0


def redact_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(unparsable URL)"
    host, port, db = info.get("host", ""), info.get("port", ""), info.get("dbname", "")
    return f"postgresql://{host}{':' + str(port) if port else ''}/{db}"


class PgTxn(Txn):
    """A transaction on the PostgreSQL store: rows read ``FOR UPDATE``, new ids from
    ``RETURNING``, and the lease's fence checked before a claimed message changes."""

    integrity_errors = (psycopg.errors.UniqueViolation,)

    def __init__(self, conn: PgConn, audit: AuditSink, now: datetime,
                 spool: PostgresSpool) -> None:
        super().__init__(conn, audit, now)
        self._spool = spool
        self._fences: dict[int, tuple[int, str | None, float | None]] = {}
        self.released: list[int] = []

    def _insert_row(self, values: Mapping[str, Any]) -> int:
        # the recording node is remembered (lease_holder, no lease): crash recovery of
        # half-done inbound work is that node's (its inbox holds the temporary file)
        values = {**values, "lease_holder": self._spool.holder}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        row = self.conn.execute(
            f"INSERT INTO messages ({names}) VALUES ({marks}) RETURNING id",  # noqa: S608
            tuple(values.values())).fetchone()
        return int(row[0])

    def get(self, row_id: int) -> Message:
        """The message, locked until this transaction ends (its lease remembered)."""
        row = self.conn.execute(_SELECT_LOCKED, (row_id,)).fetchone()
        if row is None:
            raise MessageNotFound("no such message in the spool", details={"id": row_id})
        values = dict(row)
        self._fences[row_id] = (int(values.pop("fence")), values.pop("lease_holder"),
                                values.pop("lease_expires"))
        return Message.from_row(values)

    def lease(self, row_id: int) -> tuple[int, str | None, float | None]:
        """(fence, holder, expiry) of a message, locked in this transaction."""
        if row_id not in self._fences:
            self.get(row_id)
        return self._fences[row_id]

    def _guard(self, current: Message, target: State) -> None:
        if current.state is not State.SENDING:
            return
        held = self._spool.held_fence(current.id)
        if held is not None and held != self.lease(current.id)[0]:
            raise LeaseLost("another node took this message over after this node's lease "
                            "expired", details={"id": current.id})
        if target is not State.SENDING:
            self.released.append(current.id)

    def _update(self, row_id: int, state: State, values: Mapping[str, Any]) -> None:
        assignments = ", ".join(f"{k} = ?" for k in values)
        cur = self.conn.execute(
            f"UPDATE messages SET {assignments} WHERE id = ? AND state = ?",  # noqa: S608
            (*values.values(), row_id, str(state)))
        if cur.rowcount != 1:  # pragma: no cover - the row is locked since get()
            raise IllegalTransition("message changed meanwhile", details={"id": row_id})

    def take_lease(self, row_id: int, holder: str, expires: float) -> int:
        row = self.conn.execute(
            "UPDATE messages SET lease_holder = ?, lease_expires = ?, fence = fence + 1 "
            "WHERE id = ? RETURNING fence", (holder, expires, row_id)).fetchone()
        fence = int(row[0])
        self._fences[row_id] = (fence, holder, expires)
        return fence


class PostgresSpool(SpoolReads):
    """The shared store. Thread-safe: each call takes a connection from the pool.
    ``holder`` names this node in leases (unique per running node; the same across its
    restarts, so a restarted node resumes its own work at once)."""

    def __init__(self, url: str, *, holder: str, lease: float = DEFAULT_LEASE,
                 pool_size: int = 8, timeout: float = 30.0, create: bool = True) -> None:
        self.url = url
        self.where = redact_url(url)
        self.holder = holder
        self.lease = lease
        self.timeout = timeout
        self._fences: dict[int, int] = {}
        self._foreign: dict[str, float] = {}  # outbox files other nodes claimed, until
        self._claims = 0
        self._fence_lock = threading.Lock()
        self._groups = CommitGroups(self._translate, on_begin=PgConn.lock_chain)
        self._writer: tuple[PgConn, AuditSink] | None = None
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": 10},
            name="gateway-store", reconnect_timeout=0)
        with self._translate():
            self._pool.open(wait=False)
            if create:
                with self._pool.connection() as raw:
                    migrate(raw)
            else:
                with self._pool.connection() as raw:
                    if not applied_versions(raw):
                        raise SpoolError("this database holds no gateway store (run "
                                         "gateway store migrate)", where=self.where)

    # --- plumbing -------------------------------------------------------------------

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except PoolTimeout:
            raise SpoolError("the store database is not reachable", where=self.where) \
                from None
        except psycopg.Error as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SpoolError(f"store database error: {text}", where=self.where) from None

    @contextmanager
    def _connection(self) -> Iterator[PgConn]:
        with self._translate(), self._pool.connection() as raw:
            yield PgConn(raw)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        for again in (False, True):
            with self._translate(), self._pool.connection() as raw:
                try:
                    return list(PgConn(raw).execute(sql, params).fetchall())
                except psycopg.OperationalError:
                    if again or not raw.broken:
                        raise
                    # a pooled connection that broke while idle (the database restarted);
                    # the pool drops it as it comes back, and a read is safe to repeat
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._groups.lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    self._groups.idle(writer[0])
                finally:
                    writer[0].close()
            self._groups.log_totals(log)
        self._pool.close()

    def _write_connection(self) -> tuple[PgConn, AuditSink]:
        """The connection write transactions share (opened again when found broken)."""
        writer = self._writer
        if writer is not None and not (writer[0].raw.closed or writer[0].raw.broken):
            return writer
        with self._groups.lock:
            writer = self._writer
            if writer is None or writer[0].raw.closed or writer[0].raw.broken:
                if writer is not None:
                    log.warning("the store's write connection to %s broke; opening a "
                                "new one", self.where)
                    writer[0].close()
                    self._writer = None
                with self._translate():
                    raw = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                conn = PgConn(raw, owned=True)
                writer = self._writer = (conn, AuditSink(conn))
            return writer

    @contextmanager
    def transaction(self, now: datetime) -> Iterator[PgTxn]:
        """A write transaction: commits on success (durably, before the ``with`` block
        exits), rolls back on any exception (which propagates; database errors become
        :class:`SpoolError`). Transactions of this node's threads that queue at the same
        time share one commit (see the module's notes on group commit). ``READ
        COMMITTED``: each statement sees what committed before it, so the chain's head
        read under its lock is the real head."""
        conn, sink = self._write_connection()
        with self._groups.member(conn):
            txn = PgTxn(conn, sink, now, self)
            txn.sealer = self.sealer
            yield txn
            txn.flush()
        with self._fence_lock:
            for row_id in txn.released:
                self._fences.pop(row_id, None)

    def held_fence(self, row_id: int) -> int | None:
        with self._fence_lock:
            return self._fences.get(row_id)

    # --- claims ---------------------------------------------------------------------

    def _due_filter(self, now: datetime) -> tuple[str, tuple[Any, ...]]:
        # a node sends what it recorded or last claimed itself; another node's work only
        # once that node left it alone for a lease (dead or stuck): the nodes do not all
        # race for every message
        return (" AND (lease_holder = ? OR lease_holder IS NULL OR updated_at < ?)",
                (self.holder, to_epoch(now) - self.lease))

    def due(self, now: datetime, limit: int = 100,
            exclude_partners: Sequence[str] = ()) -> list[Message]:
        """As the SQLite store's, for this node's share of the work (what it recorded or
        last claimed, and other nodes' work left alone for a lease), plus messages left
        ``sending`` past their lease (a node died while sending them)."""
        found = super().due(now, limit, exclude_partners)
        if len(found) < limit:
            skip = ""
            if exclude_partners:
                skip = (" AND COALESCE(partner, '') NOT IN "
                        f"({','.join('?' for _ in exclude_partners)})")
            rows = self._rows(
                SELECT_MESSAGE + " WHERE state = 'sending' AND lease_expires < ?"
                f"{skip} ORDER BY lease_expires, id LIMIT ?",
                (to_epoch(now), *exclude_partners, limit - len(found)))
            found += [Message.from_row(r) for r in rows]
        return found

    def _claim_in(self, txn: Txn, row_id: int, expect: State,
                  now: datetime) -> tuple[Message, Any] | None:
        """Move a due message to ``sending`` under this node's lease (attempts + 1), its
        lease fence kept once committed (:meth:`_claimed`). ``None`` when another node
        holds it or claimed it first. A message found ``sending`` with an expired lease is
        taken over (``retry_scheduled`` with ``lease_expired``, then ``sending`` again)."""
        epoch = to_epoch(now)
        row = txn.conn.execute(
            "SELECT state, lease_expires, lease_holder FROM messages WHERE id = ? "
            "FOR UPDATE SKIP LOCKED", (row_id,)).fetchone()
        if row is None or row[0] != str(expect):
            return None
        current = txn.get(row_id)
        if expect is State.SENDING:
            if row[1] is None or row[1] >= epoch:
                return None  # still held
            log.warning("taking over spool message %d: the lease of %s expired",
                        row_id, row[2])
            current = txn.transition(row_id, State.RETRYING, expect=State.SENDING,
                                     changes={"next_attempt_at": epoch},
                                     detail={"lease_expired": 1})
        message = txn.transition(row_id, State.SENDING, expect=current.state,
                                 changes={"attempts": current.attempts + 1},
                                 detail={"attempt": current.attempts + 1})
        assert isinstance(txn, PgTxn)  # noqa: S101 - this store's transactions
        return message, txn.take_lease(row_id, self.holder, epoch + self.lease)

    def _claimed(self, row_id: int, token: Any) -> None:
        with self._fence_lock:
            self._fences[row_id] = token

    def recover_sending(self, now: datetime) -> int:
        """After a restart: this node's own ``sending`` messages (same ``holder``) go back
        to ``retrying`` at once; other nodes' stay theirs until their leases expire."""
        count = 0
        for row in self._rows(SELECT_MESSAGE + " WHERE state = 'sending' AND "
                              "lease_holder = ?", (self.holder,)):
            message = Message.from_row(row)
            try:
                with self.transaction(now) as txn:
                    if txn.lease(message.id)[1] != self.holder:
                        continue
                    txn.transition(message.id, State.RETRYING, expect=State.SENDING,
                                   changes={"next_attempt_at": to_epoch(now)},
                                   detail={"recovered": 1})
                count += 1
            except IllegalTransition:
                continue
        return count

    def left_by_me(self, state: State, direction: Direction,
                   limit: int = 100_000) -> list[Message]:
        """Messages in ``state`` that this node recorded or last claimed (crash recovery at
        start: another node's half-done inbound delivery is its own, its temporary file
        is in that node's inbox)."""
        rows = self._rows(SELECT_MESSAGE + " WHERE state = ? AND direction = ? AND "
                          "lease_holder = ? ORDER BY id LIMIT ?",
                          (str(state), str(direction), self.holder, limit))
        return [Message.from_row(r) for r in rows]

    def claim_intake(self, intake_key: str, now: datetime) -> bool:
        """Whether this node takes the outbox file ``intake_key`` (several nodes scan one
        shared outbox): the first to ask holds it for a lease; another node may take it
        once that lease expires (its holder died before recording it)."""
        epoch = to_epoch(now)
        with self._fence_lock:
            if self._foreign.get(intake_key, 0.0) > epoch:
                return False  # another node held it a moment ago: no query every scan
        with self._connection() as conn:
            row = conn.execute(
                "INSERT INTO intake_claims (intake_key, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (intake_key) DO UPDATE SET holder = excluded.holder, "
                "expires = excluded.expires WHERE intake_claims.expires < ? "
                "OR intake_claims.holder = excluded.holder RETURNING holder",
                (intake_key, self.holder, epoch + self.lease, epoch)).fetchone()
            self._claims += 1
            if row is not None and self._claims % 1000 == 1:
                # now and then, forget claims whose files were recorded long ago
                conn.execute("DELETE FROM intake_claims WHERE expires < ?", (epoch - 86400,))
        if row is None:
            with self._fence_lock:
                if len(self._foreign) > 10_000:
                    self._foreign = {k: t for k, t in self._foreign.items() if t > epoch}
                self._foreign[intake_key] = epoch + min(self.lease, 1.0)
        return row is not None

    def leader(self, role: str, now: datetime) -> bool:
        """Whether this node performs ``role`` now: it holds (or takes, when free or
        expired) the role's lease, renewed on every call."""
        epoch = to_epoch(now)
        with self._connection() as conn:
            row = conn.execute(
                "INSERT INTO store_roles (role, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, "
                "expires = excluded.expires WHERE store_roles.expires < ? "
                "OR store_roles.holder = excluded.holder RETURNING holder",
                (role, self.holder, epoch + self.lease, epoch)).fetchone()
        return row is not None

    @contextmanager
    def audit_log(self) -> Iterator[AuditLog]:
        """The deployment's audit trail on a pooled connection of its own."""
        with self._connection() as conn:
            try:
                yield AuditLog(conn)
            finally:
                conn.rollback()

    def schema_versions(self) -> list[int]:
        with self._translate(), self._pool.connection() as raw:
            return applied_versions(raw)


def open_audit_log(url: str, *, read_only: bool = True) -> AuditLog:
    """The deployment's audit trail on a connection of its own (the CLI's ``gateway
    audit`` commands); ``read_only`` connections cannot change anything."""
    where = redact_url(url)
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        if read_only:  # (not the connection's options: the URL may carry its own)
            raw.execute("SET default_transaction_read_only = on")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpoolError(f"cannot connect to the store database: {first}",
                         where=where) from None
    return AuditLog(PgConn(raw, owned=True), create=False)
