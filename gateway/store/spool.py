"""The spool's shared part: messages, their states and payloads, and one write transaction.

A store keeps every message (one row with an explicit state) and its payloads (the
original document, the sealed or received envelope, receipts, error reports), so storing a
payload and changing a state commit together. Two stores implement the narrow
:class:`Spool` protocol the pipelines use: :mod:`gateway.store.sqlite` (one node, one
database file) and :mod:`gateway.store.postgres` (several gateways sharing one queue).
Both use the SQL here: :class:`SpoolReads` for reads and :class:`Txn` for a transaction; a
store supplies its connection and a few hooks.

Every state change goes through :meth:`Txn.transition` (or :meth:`Txn.insert`), which
checks the change against :mod:`gateway.store.states` (an illegal one raises) and appends the
matching audit event in the same transaction. Claims are ``UPDATE ... WHERE id=? AND
state=?`` inside a write transaction, so two workers can never both win.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any, Protocol

from gateway.errors import Duplicate, MessageNotFound, SpoolError
from gateway.store.audit import AuditEvent, AuditLog, StoredEvent
from gateway.store.audit_rows import Prepared, prepare_event, prepare_receipt
from gateway.store.query import MessageQuery, query_sql
from gateway.store.sealing import MAGIC, Sealer
from gateway.store.states import Direction, IllegalTransition, State, audit_code

__all__ = [
    "Message",
    "NewMessage",
    "Spool",
    "Txn",
    "from_epoch",
    "to_epoch",
]

log = logging.getLogger("gateway.store.spool")


def to_epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("datetimes in the spool must be timezone-aware (UTC)")
    return moment.timestamp()


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class Message:
    """One row of the spool (a snapshot; the spool holds the truth)."""

    id: int
    message_id: str | None
    direction: Direction
    state: State
    source: str | None
    intake_key: str | None
    partner: str | None
    transport: str | None
    from_party: str | None
    to_party: str | None
    service: str | None
    action: str | None
    case_id: str | None
    ref_to: str | None
    document_digest: str | None
    envelope_digest: str | None
    attempts: int
    created_at: float
    updated_at: float
    next_attempt_at: float | None
    expires_at: float | None
    error_code: str | None
    error_text: str | None

    @classmethod
    def from_row(cls, row: Any) -> Message:
        """From a row that maps column names to values (``sqlite3.Row`` or the
        PostgreSQL store's rows)."""
        # a sqlite3.Row maps names to values like a dict, but dict() looks each name
        # up again (case-insensitively): zipping its names and values is half the cost
        values = dict(zip(row.keys(), row, strict=True)) if type(row) is sqlite3.Row else dict(row)
        values["direction"] = _DIRECTIONS.get(values["direction"]) \
            or Direction(values["direction"])
        values["state"] = _STATES.get(values["state"]) or State(values["state"])
        if values.keys() != _FIELD_SET:
            return cls(**values)  # raises TypeError naming the odd column
        return _built(values)

    def changed(self, values: Mapping[str, Any]) -> Message:
        """A copy with ``values`` (field name -> value) replaced: ``dataclasses.replace``
        without its per-field ``__init__`` (a spool transaction makes several per
        message); the caller passes field names only (:meth:`Txn.transition` checks them)."""
        fresh = dict(self.__dict__)
        fresh.update(values)
        return _built(fresh)


def _built(values: dict[str, Any]) -> Message:
    """A :class:`Message` from exactly its fields, already typed: the frozen dataclass's
    ``__init__`` sets 23 fields one ``object.__setattr__`` at a time, about three times
    the cost of this (every spool read builds one per row)."""
    message = object.__new__(Message)
    message.__dict__.update(values)
    return message


_DIRECTIONS = {str(d): d for d in Direction}
_STATES = {str(s): s for s in State}


_COLUMNS = tuple(f.name for f in fields(Message))
_FIELD_SET = frozenset(_COLUMNS)
_MUTABLE = frozenset(_COLUMNS) - {"id", "direction", "state", "created_at", "updated_at"}
#: ``SELECT`` of a message row by name (a store may keep more columns, e.g. leases)
SELECT_MESSAGE = f"SELECT {', '.join(_COLUMNS)} FROM messages"  # noqa: S608


@dataclass(frozen=True)
class NewMessage:
    """What is known about a message when it is first recorded."""

    direction: Direction
    message_id: str | None = None
    source: str | None = None
    intake_key: str | None = None
    partner: str | None = None
    transport: str | None = None
    from_party: str | None = None
    to_party: str | None = None
    service: str | None = None
    action: str | None = None
    case_id: str | None = None
    ref_to: str | None = None
    document_digest: str | None = None
    envelope_digest: str | None = None
    next_attempt_at: float | None = None
    expires_at: float | None = None


class AuditSink:
    """Writes audit events (and receipt bytes) into the connection's current transaction
    through :class:`gateway.store.audit.AuditLog`, so each commits with its spool change."""

    def __init__(self, conn: Any, *, create: bool = True) -> None:
        self.conn = conn
        self._log = AuditLog(conn, create=create)

    def append(self, event: AuditEvent) -> None:
        """Append ``event``, which :meth:`Txn.audit` has checked already."""
        self._log.append_checked(event)

    def append_run(self, run: Sequence[Prepared]) -> None:
        """Append one transaction's prepared events and receipts, in order, as one run
        (:meth:`AuditLog.append_run`)."""
        self._log.append_run(run)

    def store_receipt(self, message_id: str, direction: str, data: bytes, at: datetime) -> None:
        self._log.store_receipt(message_id, direction, data, at)

    def batch(self) -> AbstractContextManager[None]:
        """Appends as one run (:meth:`AuditLog.batch`)."""
        return self._log.batch()


class Txn:
    """One write transaction: inserts, transitions, payloads and audit events commit
    together or not at all. Obtain it from a store's ``transaction(now)``."""

    def __init__(self, conn: Any, audit: AuditSink, now: datetime,
                 sealer: Sealer | None = None) -> None:
        self.conn = conn
        self.sealer = sealer
        self._audit = audit
        self.now = now
        self._now = to_epoch(now)
        # audit writes wait for the end of the transaction (:meth:`flush`): the chain's
        # head is read and locked last, for as short a time as possible (a shared store
        # serialises every append on it); each is checked and prepared when recorded
        self._pending: list[Prepared] = []
        # rows as this transaction last read or wrote them: it holds the write lock
        # (SQLite) from its first statement to its commit and changes rows only through
        # insert/transition, so a row read again would read back exactly this
        self._known: dict[int, Message] = {}

    def flush(self) -> None:
        """Write the audit events and receipts of this transaction (the store calls it
        just before committing), in the order recorded, as one run: the chain's head is
        read once, not once per event."""
        pending, self._pending = self._pending, []
        if pending:
            self._audit.append_run(pending)

    def audit(self, code: str, message: Message | None = None, **values: Any) -> None:
        """Record the event ``AuditEvent(code, now, ...)`` (the message's IDs, parties,
        transport and digest, then ``values``); a bad one is refused now, not at commit."""
        if message is not None:
            base: dict[str, Any] = {
                "message_id": message.message_id, "case_id": message.case_id,
                "from_party": message.from_party, "to_party": message.to_party,
                "partner": message.partner, "transport": message.transport,
                "digest": message.envelope_digest or message.document_digest}
            base.update(values)
            values = base
        self._pending.append(prepare_event(code, self.now, values))

    def store_receipt(self, message_id: str, direction: str, data: bytes) -> None:
        """Keep a receipt's exact bytes in the audit trail (``sent`` or ``received``)."""
        self._pending.append(prepare_receipt(message_id, direction, bytes(data), self.now))

    def insert(self, new: NewMessage, state: State, *, payloads: Mapping[str, bytes] = {},
               detail: Mapping[str, str | int] | None = None) -> Message:
        """Record a new message in ``state`` (must be a creation state of its direction)."""
        code = audit_code(new.direction, None, state)
        values = dict(zip(_NEW_FIELDS, _new_values(new), strict=True))
        values.update(direction=str(new.direction), state=str(state), created_at=self._now,
                      updated_at=self._now)
        try:
            row_id = self._insert_row(values)
        except self.integrity_errors:
            raise Duplicate("message already recorded",
                            details={"message_id": new.message_id or "",
                                     "direction": str(new.direction)}) from None
        for kind, data in payloads.items():
            self.put_payload(row_id, kind, data)
        # the row as written (not read back: one statement less while holding the lock)
        message = _built({**values, "id": row_id, "direction": new.direction,
                          "state": state, "attempts": 0, "error_code": None,
                          "error_text": None})
        self._known[row_id] = message
        self.audit(code, message, detail=dict(detail or {}))
        return message

    #: what the driver raises when a unique constraint refuses a row
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def _insert_row(self, values: Mapping[str, Any]) -> int:
        cursor = self.conn.execute(_insert_sql(tuple(values)), tuple(values.values()))
        row_id = cursor.lastrowid
        assert row_id is not None  # noqa: S101 - sqlite always sets it after INSERT
        return int(row_id)

    def _guard(self, current: Message, target: State) -> None:
        """A store's extra check before ``current`` changes state (the PostgreSQL store's
        lease fencing); nothing here."""

    def _update(self, row_id: int, state: State, values: Mapping[str, Any]) -> None:
        self.conn.execute(_update_sql(tuple(values)), (*values.values(), row_id, str(state)))

    def transition(self, row_id: int, target: State, *, expect: State | Sequence[State] | None
                   = None, changes: Mapping[str, Any] | None = None,
                   payloads: Mapping[str, bytes] = {}, error_code: str | None = None,
                   detail: Mapping[str, str | int] | None = None,
                   actor: str = "daemon", code: str | None = None) -> Message:
        """Move message ``row_id`` to ``target``, apply ``changes`` (columns), store
        ``payloads``, write the audit event (``code`` names it when the transition is
        legal but happens for another reason than the one the state table names, e.g. a
        relay queued again by the sender's repeat rather than by an operator).
        ``expect`` guards against lost races."""
        current = self.get(row_id)
        if expect is not None:
            allowed = (expect,) if isinstance(expect, State) else tuple(expect)
            if current.state not in allowed:
                raise IllegalTransition(
                    f"message is {current.state}, expected {'/'.join(allowed)}",
                    details={"id": row_id, "state": str(current.state)})
        legal = audit_code(current.direction, current.state, target)  # raises if not
        self._guard(current, target)
        code = code or legal
        values: dict[str, Any] = dict(changes or {})
        unknown = set(values) - _MUTABLE
        if unknown:
            raise SpoolError(f"unknown or immutable columns: {sorted(unknown)}")
        values.update(state=str(target), updated_at=self._now)
        if error_code is not None:
            values.setdefault("error_code", error_code)
        self._update(row_id, current.state, values)
        for kind, data in payloads.items():
            self.put_payload(row_id, kind, data)
        # the row as written (not read back: one statement less while holding the lock)
        message = current.changed({**values, "state": target})
        self._known[row_id] = message
        self.audit(code, message, error_code=error_code, detail=dict(detail or {}),
                   actor=actor)
        return message

    def drop_payload(self, row_id: int, kind: str) -> None:
        self.conn.execute("DELETE FROM payloads WHERE message = ? AND kind = ?", (row_id, kind))

    def put_payload(self, row_id: int, kind: str, data: bytes) -> None:
        """Store a payload (sealed to the node's key when the store has a sealer)."""
        if self.sealer is not None and self.sealer.wants(kind):
            data = self.sealer.seal(row_id, kind, data)
        self.conn.execute("INSERT INTO payloads(message, kind, data) VALUES (?,?,?) "
                          "ON CONFLICT (message, kind) DO UPDATE SET data = excluded.data",
                          (row_id, kind, bytes(data)))

    def get(self, row_id: int) -> Message:
        """The message as it stands in this transaction (read once: later calls return
        the row as this transaction last read or wrote it)."""
        known = self._known.get(row_id)
        if known is not None:
            return known
        row = self.conn.execute(SELECT_MESSAGE + " WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise MessageNotFound("no such message in the spool", details={"id": row_id})
        message = self._known[row_id] = Message.from_row(row)
        return message


_NEW_FIELDS = tuple(f.name for f in fields(NewMessage))
_new_values = attrgetter(*_NEW_FIELDS)


@lru_cache(maxsize=128)
def _insert_sql(names: tuple[str, ...]) -> str:
    """The ``INSERT`` of a message row with these columns (a few shapes recur)."""
    return (f"INSERT INTO messages ({', '.join(names)}) "  # noqa: S608 - column names
            f"VALUES ({', '.join('?' for _ in names)})")


@lru_cache(maxsize=128)
def _update_sql(names: tuple[str, ...]) -> str:
    """The guarded ``UPDATE`` of a message row's columns ``names`` (a few shapes recur)."""
    assignments = ", ".join(f"{k} = ?" for k in names)
    return f"UPDATE messages SET {assignments} WHERE id = ? AND state = ?"  # noqa: S608


class Spool(Protocol):
    """What the pipelines need from a store: :class:`SqliteSpool` (one node) and
    :class:`gateway.store.postgres.PostgresSpool` (several nodes sharing one queue). The
    pipelines, the intake and the daemon are typed against this, not against a store."""

    def transaction(self, now: datetime) -> AbstractContextManager[Txn]: ...

    def get(self, row_id: int) -> Message: ...

    def find(self, direction: Direction, message_id: str) -> Message | None: ...

    def find_any(self, message_id: str) -> list[Message]: ...

    def find_intake(self, intake_key: str) -> Message | None: ...

    def payload(self, row_id: int, kind: str) -> bytes | None: ...

    def claim(self, row_id: int, expect: State, now: datetime) -> Message | None: ...

    def claim_many(self, items: Sequence[tuple[int, State]], now: datetime) -> list[Message]:
        ...

    def recover_sending(self, now: datetime) -> int: ...

    def left_by_me(self, state: State, direction: Direction,
                   limit: int = 100_000) -> list[Message]: ...

    def claim_intake(self, intake_key: str, now: datetime) -> bool: ...

    def leader(self, role: str, now: datetime) -> bool: ...

    def audit_log(self) -> AbstractContextManager[AuditLog]: ...

    def due(self, now: datetime, limit: int = 100,
            exclude_partners: Sequence[str] = ()) -> list[Message]: ...

    def select(self, *, states: Sequence[State] = (), direction: Direction | None = None,
               partner: str | None = None, limit: int = 100) -> list[Message]: ...

    def without_payload(self, state: State, direction: Direction, kind: str,
                        limit: int = 100) -> list[Message]: ...

    def search(self, query: MessageQuery) -> list[Message]:
        """One page of the messages ``query`` selects, in its order (read-only; the SQL
        is :func:`gateway.store.query.query_sql`)."""
        ...

    def count(self, query: MessageQuery) -> int:
        """How many messages ``query`` selects, ignoring its page (read-only)."""
        ...

    def counts(self) -> list[tuple[str, str, str, int]]: ...

    def oldest(self, states: Sequence[State]) -> float | None: ...

    # read-only queries for monitoring (metrics and alerts read these at scrape time)

    def oldest_by_partner(self, states: Sequence[State]) -> list[tuple[str, float]]: ...

    def error_counts(self, direction: Direction, state: State) -> list[tuple[str, int]]: ...

    def audit_after(self, after_seq: int, codes: Sequence[str],
                    limit: int = 10_000) -> list[StoredEvent]: ...

    def audit_head(self) -> tuple[int, float | None]: ...

    def close(self) -> None: ...


class SpoolReads:
    """The reads every store shares (plain SQL on the ``messages`` and ``payloads``
    tables); a store supplies :meth:`_rows` and :meth:`transaction`."""

    sealer: Sealer | None = None

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def transaction(self, now: datetime) -> AbstractContextManager[Txn]:
        raise NotImplementedError

    def audit_log(self) -> AbstractContextManager[AuditLog]:
        raise NotImplementedError

    def _add_key(self, key_id: str, cert: str, wrapped: bytes) -> None:
        with self.transaction(datetime.now(UTC)) as txn:
            txn.conn.execute("INSERT INTO store_keys (id, cert, wrapped) VALUES (?, ?, ?)",
                             (key_id, cert, wrapped))

    def _key_rows(self) -> list[tuple[str, str, bytes]]:
        return [(str(r[0]), str(r[1]), bytes(r[2]))
                for r in self._rows("SELECT id, cert, wrapped FROM store_keys", ())]

    def use_sealer(self, sealer: Sealer) -> None:
        """Seal every payload written from now on to the node's encryption key, and open
        sealed ones on reading (see :mod:`gateway.store.sealing`)."""
        sealer.bind(self._key_rows, self._add_key)
        self.sealer = sealer

    # --- reads ----------------------------------------------------------------------

    def _one(self, sql: str, params: tuple[Any, ...]) -> Message | None:
        rows = self._rows(sql, params)
        return Message.from_row(rows[0]) if rows else None

    def get(self, row_id: int) -> Message:
        message = self._one(SELECT_MESSAGE + " WHERE id = ?", (row_id,))
        if message is None:
            raise MessageNotFound("no such message in the spool", details={"id": row_id})
        return message

    def find(self, direction: Direction, message_id: str) -> Message | None:
        """The live (non-rejected, else latest rejected) record of ``message_id``."""
        return self._one(
            SELECT_MESSAGE + " WHERE direction = ? AND message_id = ? "
            "ORDER BY state = 'rejected', id DESC LIMIT 1", (str(direction), message_id))

    def find_any(self, message_id: str) -> list[Message]:
        rows = self._rows(SELECT_MESSAGE + " WHERE message_id = ? ORDER BY id",
                          (message_id,))
        return [Message.from_row(r) for r in rows]

    def find_intake(self, intake_key: str) -> Message | None:
        return self._one(SELECT_MESSAGE + " WHERE intake_key = ?", (intake_key,))

    def payload(self, row_id: int, kind: str) -> bytes | None:
        rows = self._rows("SELECT data FROM payloads WHERE message = ? AND kind = ?",
                          (row_id, kind))
        if not rows:
            return None
        blob = bytes(rows[0][0])
        if self.sealer is not None:
            return self.sealer.open(row_id, kind, blob)
        if blob.startswith(MAGIC):
            raise SpoolError("this payload is sealed to the node's encryption key: open the "
                             "spool with the node's keys", details={"id": row_id,
                                                                    "kind": kind})
        return blob

    def has_payload(self, row_id: int, kind: str) -> bool:
        """Whether message ``row_id`` keeps a ``kind`` payload (without opening it)."""
        return bool(self._rows("SELECT 1 FROM payloads WHERE message = ? AND kind = ?",
                               (row_id, kind)))

    def payload_kinds(self, row_id: int) -> set[str]:
        """The kinds of payload message ``row_id`` keeps (without opening them)."""
        return {str(r[0]) for r in self._rows("SELECT kind FROM payloads WHERE message = ?",
                                              (row_id,))}

    def without_payload(self, state: State, direction: Direction, kind: str,
                        limit: int = 100) -> list[Message]:
        """Messages in ``state`` and ``direction`` that have no ``kind`` payload (work
        still to do for them, e.g. a failed message not yet reported), oldest first."""
        rows = self._rows(
            SELECT_MESSAGE + " m WHERE state = ? AND direction = ? AND NOT EXISTS "  # noqa: S608
            "(SELECT 1 FROM payloads p WHERE p.message = m.id AND p.kind = ?) "
            "ORDER BY id LIMIT ?", (str(state), str(direction), kind, limit))
        return [Message.from_row(r) for r in rows]

    def select(self, *, states: Sequence[State] = (), direction: Direction | None = None,
               partner: str | None = None, limit: int = 100) -> list[Message]:
        sql = SELECT_MESSAGE + " WHERE 1=1"
        params: list[Any] = []
        if states:
            sql += f" AND state IN ({','.join('?' for _ in states)})"
            params += [str(s) for s in states]
        if direction is not None:
            sql += " AND direction = ?"
            params.append(str(direction))
        if partner is not None:
            sql += " AND partner = ?"
            params.append(partner)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [Message.from_row(r) for r in self._rows(sql, params)]

    def search(self, query: MessageQuery) -> list[Message]:
        where, order, params = query_sql(query)
        rows = self._rows(f"{SELECT_MESSAGE} {where} {order} LIMIT ? OFFSET ?",
                          [*params, query.limit, query.offset])
        return [Message.from_row(r) for r in rows]

    def count(self, query: MessageQuery) -> int:
        where, _, params = query_sql(query)
        rows = self._rows(f"SELECT COUNT(*) FROM messages {where}", params)  # noqa: S608
        return int(rows[0][0])

    def counts(self) -> list[tuple[str, str, str, int]]:
        """``(direction, state, partner, count)`` for every combination present."""
        rows = self._rows(
            "SELECT direction, state, COALESCE(partner, ''), COUNT(*) FROM messages "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", ())
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

    def oldest(self, states: Sequence[State]) -> float | None:
        rows = self._rows(
            f"SELECT MIN(created_at) FROM messages WHERE state IN "  # noqa: S608
            f"({','.join('?' for _ in states)})", [str(s) for s in states])
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    # --- monitoring (read-only; metrics and alerts) ---------------------------------

    def oldest_by_partner(self, states: Sequence[State]) -> list[tuple[str, float]]:
        """``(partner, created_at of its oldest message in states)``; partner '' if none."""
        rows = self._rows(
            "SELECT COALESCE(partner, ''), MIN(created_at) FROM messages WHERE state IN "  # noqa: S608
            f"({','.join('?' for _ in states)}) GROUP BY 1 ORDER BY 1", [str(s) for s in states])
        return [(r[0], float(r[1])) for r in rows]

    def error_counts(self, direction: Direction, state: State) -> list[tuple[str, int]]:
        """``(error_code, count)`` of the messages in ``direction`` and ``state``."""
        rows = self._rows(
            "SELECT COALESCE(error_code, ''), COUNT(*) FROM messages WHERE state = ? AND "
            "direction = ? GROUP BY 1 ORDER BY 1", (str(state), str(direction)))
        return [(r[0], int(r[1])) for r in rows]

    def audit_after(self, after_seq: int, codes: Sequence[str],
                    limit: int = 10_000) -> list[StoredEvent]:
        """Audit events with one of ``codes`` after ``after_seq``, in order, at most
        ``limit`` (page on with the last one's seq)."""
        with self.audit_log() as audit:
            return list(audit.query(code=list(codes), after_seq=after_seq, limit=limit))

    def audit_head(self) -> tuple[int, float | None]:
        """The audit chain's last sequence number and the time of its last signed
        checkpoint (epoch seconds, None when none was signed yet)."""
        with self.audit_log() as audit:
            last = audit.last_checkpoint()
            return audit.tail()[0], (None if last is None else last.at.timestamp())

    # --- claims ---------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 100,
            exclude_partners: Sequence[str] = ()) -> list[Message]:
        """Messages ready to be (re)sent: sealed / received relays / retrying whose time
        has come, oldest first, skipping ``exclude_partners``. Read-only: claim each with
        :meth:`claim`."""
        skip = ""
        if exclude_partners:
            skip = f" AND COALESCE(partner, '') NOT IN ({','.join('?' for _ in exclude_partners)})"
        mine, mine_params = self._due_filter(now)
        rows = self._rows(
            SELECT_MESSAGE + " WHERE ((state = 'sealed' AND direction IN "
            "('out','receipt')) OR (state = 'received' AND direction = 'relay') OR "
            f"state = 'retrying') AND COALESCE(next_attempt_at, 0) <= ?{mine}{skip} "
            "ORDER BY COALESCE(next_attempt_at, 0), id LIMIT ?",
            (to_epoch(now), *mine_params, *exclude_partners, limit))
        return [Message.from_row(r) for r in rows]

    def _due_filter(self, now: datetime) -> tuple[str, tuple[Any, ...]]:
        """Extra SQL (and its parameters) narrowing :meth:`due` to this node's share of
        the work (a shared store); none here."""
        return "", ()

    def claim(self, row_id: int, expect: State, now: datetime) -> Message | None:
        """Atomically move a due message to ``sending`` (attempts + 1). Returns ``None``
        if another worker claimed it first."""
        claimed = self.claim_many([(row_id, expect)], now)
        return claimed[0] if claimed else None

    def claim_many(self, items: Sequence[tuple[int, State]], now: datetime) -> list[Message]:
        """:meth:`claim` for several messages (row id, expected state) in one transaction:
        the ones claimed, in ``items``' order (a batch sent in one request). Should a
        claim conflict inside the shared transaction, nothing of it is kept and each is
        claimed on its own."""
        taken: list[tuple[Message, Any]] = []
        try:
            with self.transaction(now) as txn:
                for row_id, expect in items:
                    claimed = self._claim_in(txn, row_id, expect, now)
                    if claimed is not None:
                        taken.append(claimed)
        except IllegalTransition:
            if len(items) == 1:
                return []
            return [m for row_id, expect in items
                    for m in self.claim_many([(row_id, expect)], now)]
        for message, token in taken:
            self._claimed(message.id, token)
        return [message for message, _ in taken]

    def _claim_in(self, txn: Txn, row_id: int, expect: State,
                  now: datetime) -> tuple[Message, Any] | None:
        """One claim inside ``txn``: the message moved to ``sending`` and what
        :meth:`_claimed` keeps once it committed, or None when it is not ``expect``."""
        current = txn.get(row_id)
        if current.state is not expect:
            return None
        return txn.transition(row_id, State.SENDING, expect=expect,
                              changes={"attempts": current.attempts + 1},
                              detail={"attempt": current.attempts + 1}), None

    def _claimed(self, row_id: int, token: Any) -> None:
        """After the commit of a claim (a shared store keeps its lease fence); nothing."""

    def left_by_me(self, state: State, direction: Direction,
                   limit: int = 100_000) -> list[Message]:
        """Messages in ``state`` this node recorded (crash recovery at start): with one
        node per store, every one."""
        return self.select(states=[state], direction=direction, limit=limit)

    def recover_sending(self, now: datetime) -> int:
        """After a restart: messages left ``sending`` by a crash go back to ``retrying``
        now (the receiver's duplicate detection makes a second copy harmless). One node
        owns this store, so every ``sending`` message was this node's."""
        count = 0
        for message in self.select(states=[State.SENDING], limit=100_000):
            try:
                with self.transaction(now) as txn:
                    txn.transition(message.id, State.RETRYING, expect=State.SENDING,
                                   changes={"next_attempt_at": to_epoch(now)},
                                   detail={"recovered": 1})
                count += 1
            except IllegalTransition:
                continue
        return count
