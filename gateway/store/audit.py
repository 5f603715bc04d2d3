"""The audit trail: append-only, hash-chained events with signed checkpoints, in SQLite.

The trail lives in the spool's database so that every spool transition and its audit
event are written in one transaction. :class:`AuditLog` works on a caller-owned
:class:`sqlite3.Connection` and never commits a transaction it did not start:

* call :meth:`AuditLog.append` inside the caller's *write* transaction
  (``BEGIN IMMEDIATE`` or after a write), so that reading the chain's tail and inserting
  the new event cannot interleave with another writer. Called in autocommit (no open
  transaction) it starts ``BEGIN IMMEDIATE`` itself and commits. Two writers can never fork
  the chain anyway: ``seq`` is the primary key, so a second event at the same position fails.
* each event stores ``prev_hash`` (its predecessor's ``hash``, 64 zeros for the first) and
  ``hash`` = SHA-256 of the canonical JSON of ``seq``, ``prev_hash`` and every stored field
  (:func:`event_hash`; docs/audit.md gives the exact construction).
* :meth:`AuditLog.checkpoint` appends a ``checkpoint`` event and signs (seq, hash, count,
  time) with the node's signing key; :meth:`AuditLog.verify` walks the chain and the
  checkpoints and names the first event altered, removed, inserted or reordered.

Events hold short, non-personal facts only: codes, IDs, parties, digests, counts. Every
value is checked on append (:func:`check_event`): no whitespace (so no free text), printable
ASCII, bounded length, and nothing shaped like an SSN.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any

from cryptography.hazmat.primitives import serialization

from gateway.errors import AuditError, AuditTampered
from gateway.store.audit_chain import (
    FIELDS,
    GENESIS_HASH,
    ChainWalker,
    Checkpoint,
    CheckpointSigner,
    KeySigner,
    Problem,
    VerifyReport,
    algorithm_for,
    canonical_json,
    checkpoint_payload,
    fingerprint,
    format_time,
    parse_time,
    stored_event_hash,
    verify_checkpoint_signature,
)
from gateway.store.audit_events import (
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_KEEP,
    EVENT_CODES,
    AuditEvent,
    StoredEvent,
    StoredReceipt,
    check_event,
    checkpoint_due,
    retention_cutoff,
)
from gateway.store.audit_rows import Prepared, chain_hash
from gateway.store.pgconn import DB_ERRORS

__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_KEEP",
    "EVENT_CODES",
    "GENESIS_HASH",
    "AuditEvent",
    "AuditLog",
    "Checkpoint",
    "CheckpointSigner",
    "KeySigner",
    "Problem",
    "StoredEvent",
    "StoredReceipt",
    "VerifyReport",
    "check_event",
    "checkpoint_due",
    "retention_cutoff",
]

log = logging.getLogger("gateway.store.audit")

_COLUMNS = ", ".join(("seq", *FIELDS, "prev_hash", "hash"))
_INSERT_EVENT = f"INSERT INTO audit_events ({_COLUMNS}) VALUES ({', '.join('?' * 15)})"  # noqa: S608
_INSERT_RECEIPT = ("INSERT INTO audit_receipts (event_seq, message_id, direction, at, sha256, "
                   "data) VALUES (?, ?, ?, ?, ?, ?)")
_quote = encode_basestring_ascii

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL, code TEXT NOT NULL, message_id TEXT, case_id TEXT, from_party TEXT,
    to_party TEXT, partner TEXT, transport TEXT, digest TEXT, error_code TEXT,
    actor TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_events_message ON audit_events(message_id);
CREATE INDEX IF NOT EXISTS audit_events_case ON audit_events(case_id);
CREATE INDEX IF NOT EXISTS audit_events_partner ON audit_events(partner, at);
CREATE INDEX IF NOT EXISTS audit_events_from ON audit_events(from_party, at);
CREATE INDEX IF NOT EXISTS audit_events_to ON audit_events(to_party, at);
CREATE INDEX IF NOT EXISTS audit_events_code_at ON audit_events(code, at);
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events(at);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, count INTEGER NOT NULL, at TEXT NOT NULL,
    algorithm TEXT NOT NULL, signer TEXT NOT NULL, signature BLOB NOT NULL,
    certificate BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit_receipts (
    event_seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL, direction TEXT NOT NULL,
    at TEXT NOT NULL, sha256 TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_receipts_message ON audit_receipts(message_id);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL,
    pruned_by INTEGER NOT NULL);
"""


# --- events ---------------------------------------------------------------------------


def _row_event(row: tuple[Any, ...]) -> StoredEvent:
    seq, at, code, mid, case, frm, to, partner, transport, digest, err, actor, detail, \
        prev, h = row
    try:
        detail_obj = json.loads(detail)
        when = parse_time(at)
        if not isinstance(detail_obj, dict):
            raise TypeError
    except (ValueError, TypeError, AuditTampered):
        raise AuditTampered(f"event {seq} has an unreadable time or detail (altered?); run "
                            "gateway audit verify") from None
    event = AuditEvent(code=code, at=when, message_id=mid, case_id=case,
                       from_party=frm, to_party=to, partner=partner, transport=transport,
                       digest=digest, error_code=err, actor=actor, detail=detail_obj)
    return StoredEvent(seq=seq, prev_hash=prev, hash=h, event=event)


def _event_filter(*, message_id: str | None = None, case_id: str | None = None,
                  partner: str | None = None, code: str | Collection[str] | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  after_seq: int | None = None, from_seq: int | None = None,
                  to_seq: int | None = None) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters selecting audit events (see :meth:`AuditLog.query`)."""
    where: list[str] = []
    params: list[Any] = []
    for column, text in (("message_id", message_id), ("case_id", case_id)):
        if text is not None:
            where.append(f"{column} = ?")
            params.append(text)
    if partner is not None:
        where.append("(partner = ? OR from_party = ? OR to_party = ?)")
        params += [partner, partner, partner]
    if code is not None:
        codes = [code] if isinstance(code, str) else list(code)
        where.append(f"code IN ({', '.join('?' * len(codes))})")
        params += codes
    if since is not None:
        where.append("at >= ?")
        params.append(format_time(since))
    if until is not None:
        where.append("at < ?")
        params.append(format_time(until))
    for op, value in ((">", after_seq), (">=", from_seq), ("<=", to_seq)):
        if value is not None:
            where.append(f"seq {op} ?")
            params.append(value)
    return where, params


class AuditLog:
    """The audit trail in a caller-owned connection to the spool's database: a
    ``sqlite3.Connection``, or a :class:`gateway.store.pgconn.PgConn` (PostgreSQL, whose
    schema ``gateway store migrate`` creates)."""

    def __init__(self, conn: Any, *, create: bool = True) -> None:
        self.conn = conn
        self._shared = getattr(conn, "dialect", "sqlite") == "postgresql"
        # inside :meth:`batch`: (thread, seq, hash) of the event this batch appended last
        self._batch: tuple[int, int, str] | None = None
        self._batching: int | None = None
        try:
            if self._shared:  # the schema is the migrations' (gateway store migrate)
                missing = set() if create else {
                    "audit_events", "audit_checkpoints", "audit_receipts",
                    "audit_anchor"} - conn.tables()
                if missing:
                    raise AuditError("this database holds no audit trail (run gateway "
                                     "store migrate)")
            elif create:
                if conn.in_transaction:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                else:
                    conn.executescript(_SCHEMA)
            else:
                names = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                missing = {"audit_events", "audit_checkpoints", "audit_receipts",
                           "audit_anchor"} - names
                if missing:
                    raise AuditError("this database holds no audit trail (missing tables: "
                                     f"{', '.join(sorted(missing))})")
        except DB_ERRORS as exc:
            raise AuditError(f"cannot open the audit tables: {exc}") from None

    # -- writing

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Run the body in the caller's write transaction when one is open (never
        committing it), else in our own ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on
        any exception. SQLite errors become :class:`AuditError` ("cannot ``what``")."""
        own = False
        try:
            if not self.conn.in_transaction:
                self.conn.execute("BEGIN IMMEDIATE")
                own = True
            yield
            if own:
                self.conn.commit()
        except DB_ERRORS as exc:
            if own and self.conn.in_transaction:
                self.conn.rollback()
            raise AuditError(f"cannot {what}: {exc}") from None
        except BaseException:
            if own and self.conn.in_transaction:
                self.conn.rollback()
            raise

    def tail(self) -> tuple[int, str]:
        """(seq, hash) of the last event, or of the anchor (0 and 64 zeros at genesis)."""
        row = self.conn.execute(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            row = self.conn.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

    def append(self, event: AuditEvent) -> int:
        """Add ``event`` at the end of the chain and return its ``seq``. Runs inside the
        caller's write transaction (never commits it)."""
        check_event(event)
        with self._writing("append to the audit trail"):
            seq, _ = self._append_checked(event)
        return seq

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Appends in the body (from this thread, inside the caller's write transaction)
        are one run at the end of the chain: its tail is read by the first and carried
        from event to event after that, instead of read back before every event. The
        transaction holds the database's write lock (SQLite) or the chain's lock
        (PostgreSQL, taken by the first append) from that first read to its end, so no
        other writer can append in between."""
        me = threading.get_ident()
        if self._batching is not None:  # nested: the outer batch carries on
            yield
            return
        self._batching, self._batch = me, None
        try:
            yield
        finally:
            self._batching, self._batch = None, None

    def append_checked(self, event: AuditEvent) -> int:
        """:meth:`append` for an event the caller has already passed through
        :func:`check_event` (the spool checks each when it is recorded, so a bad event is
        refused at once, not at commit; checking it again here would double the cost)."""
        with self._writing("append to the audit trail"):
            seq, _ = self._append_checked(event)
        return seq

    def _head(self, me: int) -> tuple[int, str]:
        """(seq, hash) of the chain's last event, for an append by thread ``me`` (the
        chain's lock taken on a shared store)."""
        carried = self._batch
        if carried is not None and carried[0] == me and self.conn.in_transaction:
            return carried[1], carried[2]  # the event this batch appended last
        if self._shared:
            self.conn.lock_chain()  # one chain for every node: appends take turns
        return self.tail()

    def append_run(self, run: Sequence[Prepared]) -> int:
        """Append prepared events (:mod:`gateway.store.audit_rows`) at the end of the
        chain, in order, and the receipts among them; returns the last one's seq. The
        rows and hashes are those :meth:`append_checked` and :meth:`store_receipt` would
        write one by one; the tail is read (and the chain locked) once, and each table
        gets one ``executemany``. Runs inside the caller's write transaction (never
        commits it, so on a failure the caller rolls back: the spool's transaction does)."""
        me = threading.get_ident()
        with self._writing("append to the audit trail"):
            seq, prev = self._head(me)
            prev_json = _quote(prev)
            events: list[tuple[Any, ...]] = []
            receipts: list[tuple[Any, ...]] = []
            for prepared in run:
                seq += 1
                h = chain_hash(prepared, seq, prev_json)
                events.append((seq, *prepared[0], prev, h))
                if len(prepared) > 3:
                    receipts.append((seq, *prepared[3]))
                prev, prev_json = h, f'"{h}"'
            if events:
                self.conn.executemany(_INSERT_EVENT, events)
            if receipts:
                self.conn.executemany(_INSERT_RECEIPT, receipts)
            if events and self._batching == me:
                self._batch = (me, seq, prev)
        return seq

    def _append_checked(self, event: AuditEvent) -> tuple[int, str]:
        me = threading.get_ident()
        last_seq, last_hash = self._head(me)
        seq = last_seq + 1
        columns = event.columns()
        # the record hashed holds the event's detail, whose canonical JSON is the stored
        # column: the record's JSON is written around that text (one serialisation)
        h = stored_event_hash(seq, last_hash, columns)
        self.conn.execute(_INSERT_EVENT, (seq, *(columns[n] for n in FIELDS), last_hash, h))
        if self._batching == me:
            self._batch = (me, seq, h)
        return seq, h

    def store_receipt(self, message_id: str, direction: str,
                      data: bytes, at: datetime, *, actor: str = "daemon") -> int:
        """Keep a receipt's exact bytes. Appends a ``receipt_stored`` event whose digest is
        the bytes' SHA-256 (this anchors the receipt in the chain) and returns its seq. The
        caller still records its own ``receipt_sent`` / ``receipt_received`` event."""
        if direction not in ("sent", "received"):
            raise AuditError("receipt direction must be 'sent' or 'received'",
                             where="direction")
        digest = hashlib.sha256(data).hexdigest()
        event = AuditEvent("receipt_stored", at, message_id=message_id, digest=digest,
                           actor=actor, detail={"direction": direction, "bytes": len(data)})
        check_event(event)
        with self._writing("store the receipt"):
            seq, _ = self._append_checked(event)
            self.conn.execute(_INSERT_RECEIPT,
                              (seq, message_id, direction, format_time(at), digest, data))
        return seq

    def checkpoint(self, signer: CheckpointSigner, now: datetime, *,
                   actor: str = "daemon") -> Checkpoint:
        """Append a ``checkpoint`` event and sign (its seq, its hash, count, now)."""
        cert = signer.certificate
        fp = fingerprint(cert)
        algorithm = algorithm_for(cert.public_key())
        with self._writing("write the checkpoint"):
            seq, h = self._append_checked(AuditEvent("checkpoint", now, digest=fp,
                                                     actor=actor))
            payload = checkpoint_payload(seq, h, seq, now, algorithm=algorithm, signer=fp)
            cp = Checkpoint(seq=seq, hash=h, count=seq, at=now.astimezone(UTC),
                            algorithm=algorithm, signer=fp, signature=signer.sign(payload),
                            certificate=cert.public_bytes(serialization.Encoding.DER))
            why = verify_checkpoint_signature(cp)
            if why is not None:
                raise AuditError(f"checkpoint signing failed: {why}")
            self.conn.execute(
                "INSERT INTO audit_checkpoints (seq, hash, count, at, algorithm, signer, "
                "signature, certificate) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cp.seq, cp.hash, cp.count, format_time(now), cp.algorithm, cp.signer,
                 cp.signature, cp.certificate))
        log.info("audit checkpoint at seq %d signed by %s", seq, fp[:16])
        return cp

    def checkpoint_if_due(self, signer: CheckpointSigner, now: datetime,
                          interval: timedelta = DEFAULT_CHECKPOINT_INTERVAL) -> Checkpoint | None:
        last = self.last_checkpoint()
        if not checkpoint_due(now, last_at=last.at if last else None,
                              last_seq=last.seq if last else 0, tail_seq=self.tail()[0],
                              interval=interval):
            return None
        return self.checkpoint(signer, now)

    # -- reading

    def checkpoints(self, *, from_seq: int = 0, to_seq: int | None = None) -> list[Checkpoint]:
        sql = ("SELECT seq, hash, count, at, algorithm, signer, signature, certificate "
               "FROM audit_checkpoints WHERE seq >= ?")
        params: list[Any] = [from_seq]
        if to_seq is not None:
            sql += " AND seq <= ?"
            params.append(to_seq)
        out = []
        for seq, h, count, at, alg, signer, sig, cert in self.conn.execute(
                sql + " ORDER BY seq", params):
            out.append(Checkpoint(seq=seq, hash=h, count=count, at=parse_time(at),
                                  algorithm=alg, signer=signer, signature=bytes(sig),
                                  certificate=bytes(cert)))
        return out

    def last_checkpoint(self) -> Checkpoint | None:
        row = self.conn.execute("SELECT max(seq) FROM audit_checkpoints").fetchone()
        if row is None or row[0] is None:
            return None
        return self.checkpoints(from_seq=row[0])[0]

    def anchor(self) -> tuple[int, str, int] | None:
        """(seq, hash, pruned_by) of the last pruned event, or None if nothing was pruned."""
        row = self.conn.execute(
            "SELECT seq, hash, pruned_by FROM audit_anchor WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1]), int(row[2])) if row else None

    def query(self, *, message_id: str | None = None, case_id: str | None = None,
              partner: str | None = None, code: str | Collection[str] | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after_seq: int | None = None, from_seq: int | None = None,
              to_seq: int | None = None, limit: int | None = None,
              descending: bool = False) -> Iterator[StoredEvent]:
        """Events matching every given filter, in seq order. ``since`` is inclusive,
        ``until`` exclusive; ``partner`` matches partner, from_party or to_party."""
        where, params = _event_filter(message_id=message_id, case_id=case_id,
                                      partner=partner, code=code, since=since, until=until,
                                      after_seq=after_seq, from_seq=from_seq, to_seq=to_seq)
        sql = f"SELECT {_COLUMNS} FROM audit_events"  # noqa: S608 (fixed column names)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC" if descending else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        try:
            for row in self.conn.execute(sql, params):
                yield _row_event(row)
        except DB_ERRORS as exc:
            raise AuditError(f"cannot read the audit trail: {exc}") from None

    def seq_range(self, *, message_id: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> tuple[int, int] | None:
        """(first, last) seq of the events matching the filters (as :meth:`query`), or
        None when none match."""
        where, params = _event_filter(message_id=message_id, since=since, until=until)
        sql = "SELECT min(seq), max(seq) FROM audit_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        try:
            first, last = self.conn.execute(sql, params).fetchone()
        except DB_ERRORS as exc:
            raise AuditError(f"cannot read the audit trail: {exc}") from None
        return None if first is None else (int(first), int(last))

    def receipts(self, message_id: str | None = None, *, from_seq: int = 0,
                 to_seq: int | None = None) -> list[StoredReceipt]:
        sql = ("SELECT event_seq, message_id, direction, at, sha256, data FROM audit_receipts "
               "WHERE event_seq >= ?")
        params: list[Any] = [from_seq]
        if message_id is not None:
            sql += " AND message_id = ?"
            params.append(message_id)
        if to_seq is not None:
            sql += " AND event_seq <= ?"
            params.append(to_seq)
        return [StoredReceipt(event_seq=s, message_id=m, direction=d, at=parse_time(a),
                              sha256=h, data=bytes(b))
                for s, m, d, a, h, b in self.conn.execute(sql + " ORDER BY event_seq", params)]

    # -- verification

    def verify(self, *, pinned: Collection[str] | None = None, max_problems: int = 20,
               known: Collection[Checkpoint] = ()) -> VerifyReport:
        """Walk the whole chain, every checkpoint signature (``pinned``: the fingerprints of
        the node's known signing certificates; None = trust the stored certificates) and
        every stored receipt. ``known``: checkpoints kept elsewhere (e.g. from an earlier
        export): each must still be in the chain, which detects a rollback of the whole
        database to an earlier state. Never raises for tampering: read the report."""
        try:
            with self.snapshot():
                return self._verify(pinned, max_problems, known)
        except DB_ERRORS as exc:
            raise AuditError(f"cannot read the audit trail: {exc}") from None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Several reads that see one state of the database (a read transaction), so a
        daemon appending meanwhile cannot make, e.g., a checkpoint event appear without its
        record. Inside a caller's transaction it simply uses that one."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.rollback()

    def _verify(self, pinned: Collection[str] | None, max_problems: int,
                known: Collection[Checkpoint]) -> VerifyReport:
        anchor = self.anchor()
        start_seq, start_hash = (anchor[0] + 1, anchor[1]) if anchor else (1, GENESIS_HASH)
        stored = {cp.seq: cp for cp in self.checkpoints()}
        differs = []
        for cp in known:
            if cp.seq < start_seq:
                continue  # pruned by retention (the anchor is checked below)
            if cp.seq not in stored:
                stored[cp.seq] = cp  # the chain must still hold it
            elif (stored[cp.seq].hash, stored[cp.seq].count) != (cp.hash, cp.count):
                differs.append(cp.seq)
        walker = ChainWalker(start_seq, start_hash, list(stored.values()), pinned=pinned,
                             max_problems=max_problems)
        for seq in differs:
            walker.problem("checkpoint", seq, "checkpoint differs from the copy kept "
                           "elsewhere")
        for row in self.conn.execute(f"SELECT {_COLUMNS} FROM audit_events ORDER BY seq"):  # noqa: S608
            walker.feed(row)
        walker.finish()
        if anchor is not None:
            row = self.conn.execute("SELECT code, digest, detail FROM audit_events WHERE seq = ?",
                                    (anchor[2],)).fetchone()
            if row is None or row[0] != "audit_pruned" or row[1] != anchor[1] or \
                    row[2] != canonical_json({"through_seq": anchor[0]}):
                walker.problem("anchor", start_seq, "the chain's start (pruning anchor) is not "
                               "the one recorded by its audit_pruned event")
        count = 0
        for seq, mid, _direction, sha, data in self.conn.execute(
                "SELECT event_seq, message_id, direction, sha256, data FROM audit_receipts"):
            count += 1
            why = _receipt_problem(self.conn, seq, mid, sha, bytes(data))
            if why:
                walker.problem("receipt", seq, why)
        # The other way round: every receipt the chain says was stored must still be there,
        # or deleting a row would silently remove the proof of a delivery.
        for (seq,) in self.conn.execute(
                "SELECT seq FROM audit_events WHERE code = 'receipt_stored' AND seq >= ? AND "
                "seq NOT IN (SELECT event_seq FROM audit_receipts) ORDER BY seq", (start_seq,)):
            walker.problem("receipt", seq, "the receipt its receipt_stored event records is "
                           "missing")
        return walker.report(receipts=count, pinned=pinned is not None)

    # -- retention

    def prunable(self, before: datetime) -> tuple[int, int]:
        """(seq of the last event :meth:`prune` would remove, how many it would remove)."""
        row = self.conn.execute("SELECT min(seq) FROM audit_events WHERE at >= ?",
                                (format_time(before),)).fetchone()
        first_kept = row[0] if row and row[0] is not None else self.tail()[0] + 1
        anchor = self.anchor()
        start = anchor[0] if anchor else 0
        return first_kept - 1, max(0, first_kept - 1 - start)

    def prune(self, before: datetime, signer: CheckpointSigner, now: datetime, *,
              actor: str = "daemon", pinned: Collection[str] | None = None) -> int:
        """Remove the longest prefix of events all older than ``before`` (and their
        receipts and checkpoints); returns how many events were removed. The whole chain is
        verified first (evidence of tampering is never deleted); an ``audit_pruned`` event
        records the new start and a signed checkpoint covers it before anything is removed.
        Runs in its own transaction when the caller has none."""
        through, count = self.prunable(before)
        if count == 0:
            return 0
        report = self.verify(pinned=pinned)
        if not report.ok:
            raise AuditTampered(f"refusing to prune a chain that does not verify "
                                f"({report.problems[0]})")
        with self._writing("prune the audit trail"):
            h = self.conn.execute("SELECT hash FROM audit_events WHERE seq = ?",
                                  (through,)).fetchone()[0]
            pruned_by, _ = self._append_checked(AuditEvent(
                "audit_pruned", now, digest=h, actor=actor, detail={"through_seq": through}))
            self.checkpoint(signer, now, actor=actor)
            self.conn.execute("INSERT INTO audit_anchor (id, seq, hash, pruned_by) "
                              "VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                              "seq = excluded.seq, hash = excluded.hash, "
                              "pruned_by = excluded.pruned_by", (through, h, pruned_by))
            removed = self.conn.execute("DELETE FROM audit_events WHERE seq <= ?",
                                        (through,)).rowcount
            self.conn.execute("DELETE FROM audit_checkpoints WHERE seq <= ?", (through,))
            self.conn.execute("DELETE FROM audit_receipts WHERE event_seq <= ?", (through,))
        log.info("audit trail pruned through seq %d (%d events)", through, removed)
        return int(removed)


def _receipt_problem(conn: Any, seq: int, message_id: str, sha: str,
                     data: bytes) -> str | None:
    if hashlib.sha256(data).hexdigest() != sha:
        return "stored receipt bytes do not match their digest"
    row = conn.execute("SELECT code, message_id, digest FROM audit_events WHERE seq = ?",
                       (seq,)).fetchone()
    if row is None or row[0] != "receipt_stored" or row[1] != message_id or row[2] != sha:
        return "stored receipt is not the one its receipt_stored event records"
    return None
