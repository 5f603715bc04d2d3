"""Inbound: envelopes arriving over HTTPS, from SFTP pulls and from local inbound folders.

:meth:`Inbound.accept` is the one entry point. In order:

1. read the envelope (schema-checked, nothing decrypted); unreadable -> refused, recorded;
2. ``To`` is not this node -> *relay*: stored as a ``relay`` message and forwarded
   unchanged by the sender (a relay cannot read it and does not try); answered 202;
3. a ``receipt`` for this node -> verified against the outbound message it names and
   applied (``delivered`` / ``failed``);
4. a business message: a duplicate ``MessageId`` gets the stored receipt back and is not
   delivered again; otherwise it is opened, verified and validated, the document written
   to a fsynced temporary file in the inbox, and then one transaction records the arrival
   (``received``, the envelope kept) with its outcome (``delivering`` and the signed
   receipt, or ``rejected``). Nothing is answered or acknowledged before that commit, so
   a crash earlier loses nothing: the sender retries, or the pulled file is still there.
   Then the temporary file is renamed into the inbox (named by MessageId, so a replay
   after a crash rewrites the same file) and ``delivered`` is committed with the receipt.
   Over HTTPS the receipt is the response; for pulled messages it is queued as a
   ``receipt`` message back to the sender. Two copies arriving at once are both opened;
   the first to commit wins, the other is answered as a duplicate (or 503, retry later).

:meth:`Inbound.accept_many` answers a batch (``POST /v1/messages/batch``) exactly as
:meth:`Inbound.accept` answers each envelope alone, in order, but its new business messages
are examined in one call and share the fsynced writes: their temporary files, then one
transaction recording every arrival and outcome, the renames, one ``delivered``
transaction. A batch is all or nothing at each commit, and nothing is answered before it.

:meth:`Inbound.recover` finishes ``delivering`` messages left by a crash (and
``received`` ones, which only older versions left behind).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.documents.schemas import SchemaRegistry
from gateway.errors import (
    Duplicate,
    GatewayError,
    InputError,
    RoutingError,
    SecurityError,
    SpoolError,
    TooLarge,
    UnknownRecipient,
)
from gateway.node.batches import together_or_alone
from gateway.node.config import Config
from gateway.node.examine import Examined, ExaminePool, Examiner, as_received_csenet, receipt_for
from gateway.node.nodekeys import NodeKeys, ReceiptOutcome
from gateway.node.outbound import apply_receipt
from gateway.node.ping import answer_ping
from gateway.node.pulls import pull_batches
from gateway.node.routing import decide
from gateway.protocol.envelope import Header, ParsedEnvelope, parse_envelope
from gateway.store.fsutil import commit_temp, write_temp
from gateway.store.spool import Message, NewMessage, Spool, Txn
from gateway.store.states import Direction, IllegalTransition, State
from transports import Transport
from transports.base import PeerInfo

__all__ = ["Answer", "Inbound", "as_received_csenet", "inbox_name"]

log = logging.getLogger("gateway.node.inbound")

#: a verified receipt to record: the outbound message, the receipt's bytes, its outcome
_Receipt = tuple[Message, bytes, ReceiptOutcome]

HTTPS, PULL = "https", "pull"
AS4 = "as4"  # the transport of the records As4Inbound keeps (it recovers them itself)


@dataclass(frozen=True)
class Answer:
    """What to tell the sender: an HTTP-style status and the body (a receipt or empty)."""

    status: int
    body: bytes = b""


def inbox_name(header: Header, *, csenet: bool = False) -> str:
    """The delivered file's name: deterministic per message, so redelivery after a crash
    replaces the same file instead of making a second one (``.txt`` for a transaction
    delivered as a CSENet line)."""
    return f"{header.action}-{header.message_id}.{'txt' if csenet else 'xml'}"


@dataclass(frozen=True)
class _Arrival:
    """A business message examined and waiting to be recorded: new (``record`` None,
    its bytes in ``data``) or left ``received`` by a crash."""

    parsed: ParsedEnvelope
    data: bytes
    channel: str
    examined: Examined
    record: Message | None = None


@dataclass(frozen=True)
class _Delivery:
    """A recorded ``delivering`` message (its temporary file named by ``record.source``)
    and its receipt."""

    record: Message
    header: Header
    receipt: bytes
    receipt_id: str
    channel: str


def _rename(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` over ``target``, without the directory fsync (see
    :meth:`Inbound._finish`)."""
    try:
        os.replace(tmp, target)
    except OSError as exc:
        raise SpoolError(f"cannot rename file into place ({exc.strerror})",
                         where=str(target)) from None


class Inbound:
    def __init__(self, config: Config, spool: Spool, keys: NodeKeys, *,
                 clock: Callable[[], datetime], registry: SchemaRegistry | None = None) -> None:
        self.config = config
        self.spool = spool
        self.keys = keys
        self.clock = clock
        self.registry = registry
        self.examiner = Examiner(config, registry=registry)
        self.policy = self.examiner.policy
        #: receive worker processes that examine new arrivals (``gateway run`` sets it,
        #: :mod:`gateway.node.receive_pool`); None, or a None answer: this process does
        self.pool: ExaminePool | None = None

    # --- entry points ---------------------------------------------------------------

    def handle_https(self, body: bytes, peer: PeerInfo) -> tuple[int, bytes]:
        """``transports.https_server.HttpsServer`` handler."""
        answer = self.accept(body, channel=HTTPS)
        return answer.status, answer.body

    def handle_https_batch(self, parts: list[bytes], peer: PeerInfo
                           ) -> list[tuple[int, bytes]]:
        """The answers to the envelopes of one batch request (``POST
        /v1/messages/batch``), one per part, in order."""
        return [(a.status, a.body) for a in self.accept_many(parts, channel=HTTPS)]

    def accept(self, data: bytes, *, channel: str) -> Answer:
        now = self.clock()
        sorted_out = self._triage(data, channel, now)
        if isinstance(sorted_out, Answer):
            return sorted_out
        return self._process(None, sorted_out, channel, data)

    def accept_many(self, datas: Sequence[bytes], *, channel: str) -> list[Answer]:
        """What :meth:`accept` answers each of ``datas`` alone, in order, with the work
        done together: the new business messages are examined in one call and recorded,
        delivered and answered in two transactions for all of them (:meth:`_settle`).
        The rest (unreadable, relays, receipts, pings, duplicates) take :meth:`accept`'s
        own paths one by one, and so does a second copy of a message in the batch, after
        the first (answered as :meth:`accept` answers a copy that comes right after)."""
        now = self.clock()
        answers: list[Answer | None] = [None] * len(datas)
        group: dict[str, tuple[int, ParsedEnvelope]] = {}
        again: list[int] = []
        receipts: list[_Receipt] = []
        for i, data in enumerate(datas):
            sorted_out = self._triage(data, channel, now, receipts)
            if isinstance(sorted_out, Answer):
                answers[i] = sorted_out
            elif sorted_out.header.message_id in group:
                again.append(i)
            else:
                group[sorted_out.header.message_id] = (i, sorted_out)
        if receipts:  # recorded before anything of the batch is answered
            self._apply_receipts(receipts, now)
        if group:
            examined = self._examine_many([parsed for _, parsed in group.values()], now)
            arrivals = [_Arrival(parsed, datas[i], channel, result)
                        for (i, parsed), result in zip(group.values(), examined, strict=True)]
            settled = self._settle(arrivals, now)
            for (i, _), answer in zip(group.values(), settled, strict=True):
                answers[i] = answer
        for i in again:
            answers[i] = self.accept(datas[i], channel=channel)
        return [a for a in answers if a is not None]

    def _triage(self, data: bytes, channel: str, now: datetime,
                receipts: list[_Receipt] | None = None) -> Answer | ParsedEnvelope:
        """``data`` read and sorted: the answer when it is not a new business message for
        this node (unreadable, a relay, a receipt, a ping, a duplicate: each handled
        here), else the parsed envelope to process. ``receipts``: where a verified
        receipt goes instead of being recorded here (the caller records them together,
        :meth:`_apply_receipts`, before it answers)."""
        try:
            parsed = parse_envelope(data, max_bytes=self.policy.max_bytes)
        except (InputError, TooLarge) as exc:
            log.warning("refused an unreadable envelope via %s: %s", channel, exc.code,
                        extra={"event": "inbound_unreadable", "error_code": exc.code})
            self._record_unreadable(data, exc, now, channel)
            return Answer(413 if isinstance(exc, TooLarge) else 400)
        header = parsed.header
        if header.to_party != self.keys.identity.party:
            return self._relay(parsed, data, channel, now)
        if header.service == "receipt":
            return self._receipt(parsed, data, now, receipts)
        if header.service == "ping":  # a partner's connectivity check: never stored
            return Answer(*answer_ping(parsed, keys=self.keys, spool=self.spool, now=now,
                                       policy=self.policy, channel=channel,
                                       receipt_for=self._receipt_for))
        existing = self.spool.find(Direction.IN, header.message_id)
        if existing is not None and existing.state is not State.REJECTED:
            return self._duplicate(existing, now)  # a rejected copy is no reason to refuse
        return parsed

    def _arrived(self, txn: Txn, parsed: ParsedEnvelope, data: bytes,
                 channel: str) -> Message:
        """Record a new arrival (``received``, the envelope kept) inside ``txn``; raises
        :class:`Duplicate` when another copy of the same message was recorded first."""
        return txn.insert(self._new(Direction.IN, parsed, channel), State.RECEIVED,
                          payloads={"envelope": data},
                          detail={"bytes": len(data), "channel": channel})

    def _raced(self, message_id: str, now: datetime) -> Answer:
        """Another copy of the message was recorded while this one was being opened."""
        existing = self.spool.find(Direction.IN, message_id)
        if existing is not None and existing.state is State.DELIVERED:
            return self._duplicate(existing, now)
        return Answer(503)  # still being processed: the sender asks again later

    #: How many pulled envelopes are accepted together (:meth:`accept_many`: examined by
    #: the receive workers in one share each, recorded and delivered in two transactions
    #: for all of them), and how many such batches are in flight at once while the
    #: pulling thread fetches the next and acknowledges, in order, those whose accept
    #: returned.
    PULL_BATCH = 16
    PULL_IN_FLIGHT = 2
    #: the most bytes of blobs in one pulled batch (a larger blob goes alone): what a pull
    #: holds stays near two batches whatever the size of the messages
    PULL_BATCH_BYTES = 1024 * 1024

    def pull(self, transport: Transport) -> int:
        """Take every complete blob waiting in ``transport`` (a partner's SFTP outbox, our
        own inbound folder): accept it (stored durably), then acknowledge it. Blobs are
        accepted :attr:`PULL_BATCH` at a time, at most :attr:`PULL_BATCH_BYTES` together
        (as :meth:`accept` would accept each alone,
        see :meth:`accept_many`), up to :attr:`PULL_IN_FLIGHT` batches at once; a blob is
        acknowledged only after its batch's accept returned, and one that was in progress
        elsewhere (503) is left for the next pull (:func:`~gateway.node.pulls.pull_batches`)."""
        return pull_batches(transport, self._accept_pulled, batch=self.PULL_BATCH,
                            in_flight=self.PULL_IN_FLIGHT, max_bytes=self.PULL_BATCH_BYTES)

    def _accept_pulled(self, datas: list[bytes]) -> list[int]:
        if len(datas) == 1:
            return [self.accept(datas[0], channel=PULL).status]
        return [answer.status for answer in self.accept_many(datas, channel=PULL)]

    def recover(self) -> int:
        """Finish inbound messages a crash left ``delivering`` or ``received`` (in a
        shared store, those this node recorded: their temporary files are in its inbox),
        :attr:`PULL_BATCH` at a time as a batch would have been: the ``delivering`` ones
        committed ``delivered`` together, the ``received`` ones examined by the receive
        workers and settled together (:meth:`_settle`)."""
        mine = [r for r in self.spool.left_by_me(State.DELIVERING, Direction.IN)
                if r.transport != AS4]  # an AS4 message: As4Inbound.recover finishes it
        for start in range(0, len(mine), self.PULL_BATCH):
            self._finish([self._left_delivering(r) for r in mine[start:start + self.PULL_BATCH]])
        count = len(mine)
        left: list[tuple[Message, ParsedEnvelope]] = []
        for record in self.spool.left_by_me(State.RECEIVED, Direction.IN):
            if record.transport == AS4:
                continue  # never left received: recorded and opened in one transaction
            data = self.spool.payload(record.id, "envelope") or b""
            try:
                left.append((record, parse_envelope(data, max_bytes=self.policy.max_bytes)))
            except (InputError, TooLarge) as exc:
                with self.spool.transaction(self.clock()) as txn:
                    txn.transition(record.id, State.REJECTED, error_code=exc.code)
        for start in range(0, len(left), self.PULL_BATCH):
            batch = left[start:start + self.PULL_BATCH]
            now = self.clock()
            examined = self._examine_many([parsed for _, parsed in batch], now)
            self._settle([_Arrival(parsed, b"", record.transport or PULL, result, record)
                          for (record, parsed), result in zip(batch, examined, strict=True)],
                         now)
        return count + len(left)

    def _left_delivering(self, record: Message) -> _Delivery:
        """The delivery a crash left ``delivering``, from what its record kept."""
        envelope = self.spool.payload(record.id, "envelope") or b""
        receipt = self.spool.payload(record.id, "receipt") or b""
        header = parse_envelope(envelope, max_bytes=self.policy.max_bytes).header
        receipt_id = parse_envelope(receipt, source="receipt").header.message_id
        return _Delivery(record, header, receipt, receipt_id, record.transport or PULL)

    # --- steps ----------------------------------------------------------------------

    def _new(self, direction: Direction, parsed: ParsedEnvelope, channel: str,
             partner: str | None = None) -> NewMessage:
        h = parsed.header
        return NewMessage(
            direction, message_id=h.message_id, partner=partner, transport=channel,
            from_party=str(h.from_party), to_party=str(h.to_party), service=h.service,
            action=h.action, ref_to=h.ref_to_message_id, envelope_digest=parsed.digest,
            expires_at=self.clock().timestamp() + self.config.retry.expiry)

    def _record_unreadable(self, data: bytes, exc: GatewayError, now: datetime,
                           channel: str) -> None:
        """Keep what arrived (for the operator; a pulled file is removed after this) unless
        it is over the size limit, in which case only its digest and size are kept."""
        keep = {} if isinstance(exc, TooLarge) else {"envelope": data}
        with self.spool.transaction(now) as txn:
            record = txn.insert(NewMessage(Direction.IN, transport=channel,
                                           envelope_digest=hashlib.sha256(data).hexdigest()),
                                State.RECEIVED, payloads=keep,
                                detail={"bytes": len(data)})
            txn.transition(record.id, State.REJECTED, error_code=exc.code,
                           changes={"error_text": exc.message[:500]})

    def _relay(self, parsed: ParsedEnvelope, data: bytes, channel: str,
               now: datetime) -> Answer:
        to = str(parsed.header.to_party)
        try:
            decision = decide(self.config.routing, to)
        except RoutingError as exc:
            return self._reject_unrouted(parsed, data, exc, now)
        if decision.local or decision.partner is None:  # pragma: no cover - To != us
            return Answer(400)
        try:
            with self.spool.transaction(now) as txn:
                txn.insert(self._new(Direction.RELAY, parsed, channel, decision.partner),
                           State.RECEIVED, payloads={"envelope": data},
                           detail={"bytes": len(data)})
        except Duplicate:
            # already relaying this one: accepted again, still forwarded once; but if
            # forwarding it had failed for good, the sender's repeat queues it again
            self._requeue_failed_relay(parsed.header.message_id, now)
        return Answer(202)

    def _requeue_failed_relay(self, message_id: str, now: datetime) -> None:
        existing = self.spool.find(Direction.RELAY, message_id)
        if existing is None or existing.state is not State.FAILED:
            return
        try:
            with self.spool.transaction(now) as txn:
                txn.transition(existing.id, State.RECEIVED, expect=State.FAILED,
                               code="relay_requeued", error_code=None,
                               changes={"next_attempt_at": now.timestamp(),
                                        "error_code": None, "error_text": None,
                                        "expires_at": now.timestamp()
                                        + self.config.retry.expiry})
        except IllegalTransition:
            return  # queued again by another copy meanwhile
        log.info("relay of %s had failed; queued again on the sender's repeat", message_id)

    def _reject_unrouted(self, parsed: ParsedEnvelope, data: bytes, exc: GatewayError,
                         now: datetime) -> Answer:
        log.warning("no route for %s addressed to %s", parsed.header.message_id,
                    parsed.header.to_party)
        error = UnknownRecipient(f"this node has no route to {parsed.header.to_party}")
        receipt = self._receipt_for(parsed.header, parsed.digest, error, now)
        with self.spool.transaction(now) as txn:
            record = txn.insert(NewMessage(Direction.IN, envelope_digest=parsed.digest,
                                           from_party=str(parsed.header.from_party),
                                           to_party=str(parsed.header.to_party)),
                                State.RECEIVED)
            txn.transition(record.id, State.REJECTED, error_code=error.code,
                           payloads={"receipt": receipt})
        return Answer(400, receipt)

    def _receipt(self, parsed: ParsedEnvelope, data: bytes, now: datetime,
                 pending: list[_Receipt] | None = None) -> Answer:
        """A receipt for one of our messages: checked, then recorded now, or added to
        ``pending`` for the caller to record (see :meth:`_triage`)."""
        ref = parsed.header.ref_to_message_id
        message = self.spool.find(Direction.OUT, ref) if ref else None
        if message is None:
            log.warning("receipt %s names no message of ours", parsed.header.message_id)
            return Answer(400)
        if message.state not in (State.SENT, State.SENDING, State.RETRYING):
            return Answer(200)  # already settled: a repeated receipt
        try:
            outcome = self.keys.check_receipt(data, message=message, now=now, parsed=parsed)
        except SecurityError as exc:
            log.warning("receipt for %s did not verify: %s", ref, exc.code)
            return Answer(400)
        if pending is not None:
            if all(waiting.id != message.id for waiting, _, _ in pending):
                pending.append((message, data, outcome))  # else a copy: settled with it
        else:
            self._apply_receipts([(message, data, outcome)], now)
        return Answer(200)

    def _apply_receipts(self, receipts: list[_Receipt], now: datetime) -> None:
        """Record verified receipts in one transaction. When one of them was settled
        meanwhile (by the synchronous answer), that transaction is undone whole and each
        is recorded alone, the settled one not."""
        together_or_alone(receipts, lambda batch: self._record_receipts(batch, now),
                          IllegalTransition)

    def _record_receipts(self, receipts: Sequence[_Receipt], now: datetime) -> int:
        """``receipts`` recorded in one transaction; raises :class:`IllegalTransition`
        (nothing kept) when one was settled meanwhile."""
        with self.spool.transaction(now) as txn:
            for message, data, outcome in receipts:
                apply_receipt(txn, txn.get(message.id), data, outcome)
        return len(receipts)

    def _duplicate(self, existing: Message, now: datetime) -> Answer:
        if existing.state in (State.RECEIVED, State.DELIVERING):
            return Answer(503)  # still being processed (or awaiting crash recovery)
        receipt = self.spool.payload(existing.id, "receipt") or b""
        with self.spool.transaction(now) as txn:
            txn.audit("duplicate", existing, detail={"state": str(existing.state)})
        return Answer(200 if existing.state is State.DELIVERED else 400, receipt)

    def _receipt_for(self, header: Header, digest: str, error: GatewayError | None,
                     now: datetime, receipt_id: str | None = None) -> bytes:
        return receipt_for(header, digest, error, now, node=self.keys.identity,
                           receipt_id=receipt_id)

    def _examine(self, parsed: ParsedEnvelope, now: datetime) -> Examined:
        """Open, verify, validate, convert, build the receipt: in a receive worker when
        there are any and they answer, else here (the same outcome either way)."""
        pool = self.pool
        examined = pool.examine(parsed, now) if pool is not None else None
        return examined or self.examiner.examine(parsed, self.keys, now)

    def _examine_many(self, parsed: list[ParsedEnvelope], now: datetime) -> list[Examined]:
        """:meth:`_examine` for each of ``parsed``: shared among the receive workers; what
        they did not examine is examined here."""
        if len(parsed) == 1:  # joins the envelopes other threads have waiting
            return [self._examine(parsed[0], now)]
        pool = self.pool
        examined = pool.examine_many([(p, now) for p in parsed]) if pool is not None \
            else None
        return [e if e is not None else self.examiner.examine(p, self.keys, now)
                for p, e in zip(parsed, examined or [None] * len(parsed), strict=True)]

    def _process(self, record: Message | None, parsed: ParsedEnvelope, channel: str,
                 data: bytes = b"") -> Answer:
        """Open, verify, validate, deliver, answer one envelope: a new arrival (``record``
        None, its bytes in ``data``), or a message a crash left ``received`` (recovery)."""
        now = self.clock()
        arrival = _Arrival(parsed, data, channel, self._examine(parsed, now), record)
        return self._settle([arrival], now)[0]

    def _settle(self, arrivals: list[_Arrival], now: datetime) -> list[Answer]:
        """Record, deliver and answer examined ``arrivals``. A new arrival is recorded
        ``received`` in the same transaction as its outcome (``delivering`` or
        ``rejected``), and all of them in one: a crash before that commit leaves no trace,
        and the messages come again (over HTTPS the sender got no answer and retries; a
        pulled file is acknowledged only after this returns).

        Two-phase delivery: each document's fsynced temporary file is written before that
        transaction records it (``delivering``) and renamed into the inbox after it, so
        recovery knows whether the rename happened and never writes a document the state
        system may have taken already; then one transaction commits ``delivered`` with the
        receipts. When another copy of one of them was recorded first (:class:`Duplicate`)
        nothing of the transaction stays: each is then settled alone, and the copy that
        lost the race is answered as a duplicate."""
        self.config.inbox.mkdir(parents=True, exist_ok=True)
        temps: list[Path | None] = []
        try:
            for a in arrivals:
                temps.append(write_temp(self._inbox_path(a.parsed.header), a.examined.document)
                             if a.examined.error_code is None else None)
            records = self._record(arrivals, temps, now)
        except Exception as exc:  # nothing recorded: no record names these files
            for tmp in temps:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
            if not isinstance(exc, Duplicate):
                raise
            if len(arrivals) > 1:
                return [self._settle([a], now)[0] for a in arrivals]
            return [self._raced(arrivals[0].parsed.header.message_id, now)]
        self._finish([_Delivery(r, a.parsed.header, a.examined.receipt, a.examined.receipt_id,
                                a.channel)
                      for a, r in zip(arrivals, records, strict=True)
                      if a.examined.error_code is None])
        return [Answer(200 if a.examined.error_code is None else
                       413 if a.examined.too_large else 400, a.examined.receipt)
                for a in arrivals]

    def _record(self, arrivals: list[_Arrival], temps: list[Path | None], now: datetime
                ) -> list[Message]:
        """One transaction: each of ``arrivals`` recorded (when new) and moved to
        ``delivering`` (its temporary file in ``temps``) or ``rejected``, with its receipt;
        the records, in order."""
        for a in arrivals:
            if a.examined.error_code is not None:
                h = a.parsed.header
                log.warning("rejected %s from %s: %s", h.message_id, h.from_party,
                            a.examined.error_code,
                            extra={"event": "inbound_rejected", "message_id": h.message_id,
                                   "partner": str(h.from_party),
                                   "error_code": a.examined.error_code,
                                   "state": "rejected"})
        records = []
        with self.spool.transaction(now) as txn:
            for a, tmp in zip(arrivals, temps, strict=True):
                examined, header = a.examined, a.parsed.header
                record = a.record if a.record is not None else \
                    self._arrived(txn, a.parsed, a.data, a.channel)
                if tmp is not None:
                    txn.audit("opened", record)
                    for code, detail in examined.clock:
                        txn.audit(code, record, detail=detail)
                    record = txn.transition(record.id, State.DELIVERING, expect=State.RECEIVED,
                                            payloads={"receipt": examined.receipt},
                                            changes={"case_id": examined.case_id,
                                                     "source": tmp.name})
                else:
                    txn.transition(record.id, State.REJECTED, expect=State.RECEIVED,
                                   error_code=examined.error_code,
                                   payloads={"receipt": examined.receipt},
                                   changes={"error_text": examined.error_text})
                    txn.store_receipt(header.message_id, "sent", examined.receipt)
                    txn.audit("receipt_sent", record, detail={"status": "Rejected"})
                    if a.channel != HTTPS:
                        self._queue_receipt(txn, header, examined.receipt,
                                            examined.receipt_id)
                records.append(record)
        return records

    def _finish(self, deliveries: list[_Delivery]) -> None:
        """Rename each recorded temporary file into the inbox (unless a crash came after
        its rename: then it is gone and the document is delivered already), then commit
        ``delivered`` with the receipts, all in one transaction."""
        if not deliveries:
            return
        targets = [self._inbox_path(d.header) for d in deliveries]
        moves = [(self.config.inbox / d.record.source, target)
                 for d, target in zip(deliveries, targets, strict=True)
                 if d.record.source and (self.config.inbox / d.record.source).is_file()]
        for tmp, target in moves[:-1]:
            _rename(tmp, target)
        if moves:  # the last one's directory fsync makes every rename durable (one folder)
            commit_temp(*moves[-1])
        with self.spool.transaction(self.clock()) as txn:
            for d, target in zip(deliveries, targets, strict=True):
                txn.transition(d.record.id, State.DELIVERED, expect=State.DELIVERING,
                               changes={"source": target.name})
                txn.store_receipt(d.header.message_id, "sent", d.receipt)
                txn.audit("receipt_sent", d.record, detail={"status": "Delivered"})
                if d.channel != HTTPS:
                    self._queue_receipt(txn, d.header, d.receipt, d.receipt_id)

    def _inbox_path(self, header: Header) -> Path:
        """Where ``header``'s document is delivered."""
        return self.config.inbox / inbox_name(header, csenet=self._csenet(header))

    def _csenet(self, header: Header) -> bool:
        """Whether this message is delivered as a CSENet line (``inbox.format``)."""
        return self.examiner.csenet(header)

    def _queue_receipt(self, txn: Txn, header: Header, receipt: bytes, receipt_id: str) -> None:
        """Send the receipt back as its own message (pulled / folder deliveries)."""
        try:
            decision = decide(self.config.routing, str(header.from_party))
        except RoutingError:
            log.warning("no route back to %s for the receipt of %s", header.from_party,
                        header.message_id)
            return
        txn.insert(NewMessage(
            Direction.RECEIPT, message_id=receipt_id, partner=decision.partner,
            from_party=str(self.keys.identity.party), to_party=str(header.from_party),
            service="receipt", action="Receipt", ref_to=header.message_id,
            envelope_digest=hashlib.sha256(receipt).hexdigest(),
            expires_at=txn.now.timestamp() + self.config.retry.expiry),
            State.SEALED, payloads={"envelope": receipt})
