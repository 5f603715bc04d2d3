"""Outbound: send sealed envelopes to partners, record receipts, retry, give up.

The :class:`Sender` is driven by the daemon's scheduler: :meth:`Sender.dispatch` finds
messages that are due (sealed, retrying whose time has come, relays just received) and
hands each to a worker thread, at most ``limits.send_workers`` at a time *per partner*,
so a slow or dead partner only ever ties up its own lane. Each worker claims the message
(``sealed/retrying -> sending``, exactly once), tries the partner's transports in order of
preference, and records the outcome in one transaction with its audit events:

- a valid ``Delivered`` receipt in the answer (HTTPS) -> ``delivered``;
- a ``Rejected`` receipt (HTTPS 4xx body or answer) -> ``failed`` with its error codes;
- accepted without a receipt (SFTP upload, a relay's 202) -> ``sent``; the receipt arrives
  later through the inbound pipeline and :func:`apply_receipt` finishes the message;
- a retryable failure -> ``retrying`` at a backoff time (:mod:`gateway.node.retry`), and the
  partner's breaker counts it; past the expiry or permanent -> ``failed``.

A relay forwards the envelope unchanged (direction ``relay``) and any receipt the next hop
answers with goes back into the inbound pipeline (it is addressed to the original sender).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import Any

from gateway.errors import (
    GatewayError,
    ReceiptInvalid,
    SecurityError,
)
from gateway.node import as4_node
from gateway.node.batches import together_or_alone
from gateway.node.config import Config, PartnerConfig, TransportConfig
from gateway.node.nodekeys import ReceiptCheck, ReceiptOutcome
from gateway.node.retry import BreakerBoard, RetryDecision, after_failure
from gateway.node.transport_pool import TransportPool
from gateway.store.spool import Message, Spool, Txn
from gateway.store.states import Direction, IllegalTransition, State
from transports import BatchSender, TransportError
from transports.errors import NotSupported, http_error

__all__ = [
    "Sender",
    "apply_receipt",
    "wire_name",
]

log = logging.getLogger("gateway.node.outbound")

#: what one lane sends at once: (spool row id, expected state) per message, in one request
Unit = list[tuple[int, State]]


def wire_name(message: Message) -> str:
    """The blob name on the wire: the envelope's MessageId (unique, safe characters)."""
    return f"{message.message_id}.xml"


def apply_receipt(txn: Txn, message: Message, data: bytes, outcome: ReceiptOutcome, *,
                  transport: str | None = None) -> Message:
    """Record a verified receipt for an outbound ``message`` (inside ``txn``):
    ``delivered`` or ``failed`` with the receipt's first error code. ``transport`` is the
    endpoint the message went over when the receipt came back in the send's own answer
    (HTTPS): the message never passed through ``sent``, which records it otherwise."""
    txn.store_receipt(message.message_id or "", "received", data)
    txn.audit("receipt_received", message,
              detail={"status": "Delivered" if outcome.delivered else "Rejected"})
    changes: dict[str, object] = {"next_attempt_at": None}
    if transport is not None:
        changes["transport"] = transport[:200]
    if outcome.delivered:
        return txn.transition(message.id, State.DELIVERED, payloads={"receipt": data},
                              changes=changes)
    code = outcome.errors[0][0] if outcome.errors else "Rejected"
    return txn.transition(message.id, State.FAILED, payloads={"receipt": data},
                          error_code=code[:60],
                          changes={**changes, "error_text": "partner rejected the message"},
                          detail={"errors": len(outcome.errors)})


#: the most envelope bytes sent in one batch request: a batch stays far below any
#: receiver's body limit (``listeners.https.max_body``, by default twice the largest
#: message), and larger envelopes go in requests of their own
BATCH_BYTES = 1024 * 1024


def _requests(items: list[tuple[str, bytes]]) -> list[tuple[int, int]]:
    """``items`` cut into consecutive runs [start, end) of at most :data:`BATCH_BYTES`
    each (a larger envelope alone), one request each."""
    runs: list[tuple[int, int]] = []
    start, size = 0, 0
    for index, (_, data) in enumerate(items):
        if index > start and size + len(data) > BATCH_BYTES:
            runs.append((start, index))
            start, size = index, 0
        size += len(data)
    runs.append((start, len(items)))
    return runs


def _took(started: float | None) -> dict[str, int]:
    """The audit detail of a send attempt's duration (what the metrics' histogram reads)."""
    if started is None:
        return {}
    return {"duration_ms": max(0, round((time.monotonic() - started) * 1000))}


class Sender:
    """Claims due messages and sends them; thread-safe."""

    #: overdue receipts settled in one transaction by :meth:`expire`
    EXPIRE_BATCH = 256

    def __init__(self, config: Config, spool: Spool, pool: TransportPool,
                 breakers: BreakerBoard, check_receipt: ReceiptCheck, *,
                 clock: Callable[[], datetime], rng: random.Random | None = None,
                 relay_answer: Callable[[bytes, datetime], None] | None = None) -> None:
        self.config = config
        self.spool = spool
        self.pool = pool
        self.breakers = breakers
        self.check_receipt = check_receipt
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.relay_answer = relay_answer
        self._lock = threading.Lock()
        self._inflight: set[int] = set()
        self._lanes: dict[str, int] = {}
        self._refilling = 0  # lanes freed whose refill has not finished yet
        #: per partner, the due messages the last dispatch found but had no free lane for
        #: (row id, state), in the spool's order: a lane that frees takes the next from
        #: here rather than reading the whole due list again (see :meth:`_refill`)
        self._waiting: dict[str, deque[tuple[int, State]]] = {}
        self._executor: Executor | None = None
        #: the URLs of https transports whose endpoint answered that it takes no batches
        self._unbatched: set[str] = set()

    # --- scheduling -----------------------------------------------------------------

    def dispatch(self, executor: Executor, *, limit: int = 500) -> int:
        """Submit every due message whose partner has a free lane; returns how many. A
        lane takes up to the partner's batch size (:meth:`batch_size`) of its due
        messages at once, sent in one request. The due messages left over for want of a
        lane are remembered per partner (until the next dispatch that reads that
        partner's messages again)."""
        now = self.clock()
        self._executor = executor
        blocked = set(self.breakers.blocked(now.timestamp()))
        lane_size = self.config.limits.send_workers
        with self._lock:
            full = {p for p, n in self._lanes.items() if n >= lane_size}
        skipped = blocked | full
        waiting: dict[str, deque[tuple[int, State]]] = {}
        sizes: dict[str, int] = {}
        filling: dict[str, Unit] = {}  # per partner, the lane still taking messages
        units: list[tuple[str, Unit]] = []
        for message in self.spool.due(now, limit=limit, exclude_partners=sorted(skipped)):
            partner = message.partner or ""
            if partner not in sizes:
                sizes[partner] = self.batch_size(partner)
            with self._lock:
                if message.id in self._inflight or partner in blocked:
                    continue
                unit = filling.get(partner)
                if unit is None or len(unit) >= sizes[partner]:
                    if self._lanes.get(partner, 0) >= lane_size:
                        waiting.setdefault(partner, deque()).append((message.id,
                                                                     message.state))
                        continue
                    self._lanes[partner] = self._lanes.get(partner, 0) + 1
                    unit = filling[partner] = []
                    units.append((partner, unit))
                unit.append((message.id, message.state))
                self._inflight.add(message.id)
        submitted = 0
        for index, (partner, unit) in enumerate(units):
            if not self._submit(executor, unit, partner):
                for later, rest in units[index + 1:]:  # shut down: none of them is sent
                    self._release(rest, later)
                break
            submitted += len(unit)
        with self._lock:  # what was read replaces what was remembered, partner by partner
            kept = {p: q for p, q in self._waiting.items() if p in skipped}
            self._waiting = {**kept, **waiting}
        return submitted

    def batch_size(self, partner: str) -> int:
        """How many due messages of ``partner`` one lane sends in one request: its first
        transport's ``batch``, unless that endpoint answered that it takes no batches."""
        found = self.config.find_partner(partner)
        if found is None or found.as4 is not None or not found.transports:
            return 1
        first = found.transports[0]
        return 1 if first.url in self._unbatched else first.batch

    def _submit(self, executor: Executor, unit: Unit, partner: str) -> bool:
        """Hand messages whose lane is taken to a worker; False if the executor is shut
        down (the messages are left for the next start)."""
        try:
            executor.submit(self._run, unit, partner)
        except RuntimeError:
            self._release(unit, partner)
            return False
        return True

    def _refill(self, executor: Executor, partner: str) -> None:
        """A lane of ``partner`` is free again: send the next messages the last dispatch
        found waiting for it; when none is left, look for due work as :meth:`dispatch`
        does. A remembered message that was settled meanwhile costs only a claim that
        finds it no longer due (:meth:`send` returns None)."""
        lane_size = self.config.limits.send_workers
        size = self.batch_size(partner)
        units: list[Unit] = []
        if partner not in self.breakers.blocked(self.clock().timestamp()):
            with self._lock:
                queue = self._waiting.get(partner)
                while queue and self._lanes.get(partner, 0) < lane_size:
                    unit: Unit = []
                    while queue and len(unit) < size:
                        row_id, state = queue.popleft()
                        if row_id not in self._inflight:
                            self._inflight.add(row_id)
                            unit.append((row_id, state))
                    if unit:
                        self._lanes[partner] = self._lanes.get(partner, 0) + 1
                        units.append(unit)
        for index, unit in enumerate(units):
            if not self._submit(executor, unit, partner):
                for later in units[index + 1:]:  # shut down: none of them is sent
                    self._release(later, partner)
                return
        if not units:
            self.dispatch(executor, limit=lane_size * size)

    def _release(self, unit: Unit, partner: str, *, refilling: bool = False) -> None:
        """Free ``unit``'s lane; ``refilling``: the caller refills it next, and the
        sender is not idle until it has (so :meth:`idle` never sees the hand-over)."""
        with self._lock:
            self._inflight.difference_update(row_id for row_id, _ in unit)
            self._lanes[partner] = max(0, self._lanes.get(partner, 1) - 1)
            self._refilling += refilling

    def _run(self, unit: Unit, partner: str) -> None:
        executor = self._executor
        try:
            if len(unit) == 1:
                self.send(*unit[0])
            else:
                self.send_many(unit)
        except Exception:
            log.exception("unexpected error sending spool messages %s",
                          ", ".join(str(row_id) for row_id, _ in unit))
            for row_id, _ in unit:
                self._unstick(row_id)
        finally:
            self._release(unit, partner, refilling=executor is not None)
        if executor is not None:  # a lane is free again: refill it at once
            try:
                self._refill(executor, partner)
            except GatewayError as exc:
                log.warning("refill after a send failed: %s", exc.code)
            finally:
                with self._lock:
                    self._refilling -= 1

    def _unstick(self, row_id: int) -> None:
        """After an unexpected error (a bug, not a transport failure) a claimed message
        would stay ``sending`` until the next restart: put it back to ``retrying`` at the
        retry base delay, so it is tried again and the failure shows in its error."""
        now = self.clock()
        try:
            with self.spool.transaction(now) as txn:
                if txn.get(row_id).state is not State.SENDING:
                    return
                txn.transition(row_id, State.RETRYING, expect=State.SENDING,
                               error_code="InternalError",
                               changes={"next_attempt_at": now.timestamp()
                                        + self.config.retry.base,
                                        "error_text": "unexpected error while sending "
                                                      "(see the daemon log)"})
        except Exception:
            log.exception("could not put spool message %d back to retrying", row_id)

    def idle(self) -> bool:
        """No send in flight, and no freed lane still taking its next message."""
        with self._lock:
            return not self._inflight and not self._refilling

    # --- one message ----------------------------------------------------------------

    def send(self, row_id: int, expect: State) -> Message | None:
        """Claim message ``row_id`` (expected in state ``expect``) and try to send it."""
        message = self.spool.claim(row_id, expect, self.clock())
        return None if message is None else self._send_claimed(message)

    def _send_claimed(self, message: Message) -> Message:
        """Try the partner's transports in order for a claimed message, one request."""
        now = self.clock()
        partner_party = message.partner or ""
        if not self.breakers.allow(partner_party, now.timestamp()):
            return self._failed_attempt(message, None, "BreakerOpen",
                                        "partner circuit breaker is open", retryable=True,
                                        breaker=None)
        envelope = self.spool.payload(message.id, "envelope")
        try:
            partner = self.config.partner(partner_party)
        except KeyError:
            return self._failed_attempt(message, None, "NoRoute",
                                        "partner is no longer configured", retryable=False,
                                        breaker=None)
        if envelope is None:
            return self._failed_attempt(message, None, "SpoolError",
                                        "envelope payload is missing", retryable=False,
                                        breaker=None)
        last: TransportError | None = None
        started = time.monotonic()
        for tc in partner.transports:
            try:
                with self.pool.lease(tc) as transport:
                    if partner.as4 is not None:
                        answer = as4_node.post(transport, envelope)
                    else:
                        answer = transport.send(wire_name(message), envelope)
            except TransportError as exc:
                last = exc
                done = self._refused(message, exc, tc.url, started)
                if done is not None:
                    return done
                continue
            self._breaker_closed(partner.party)
            return (self._answered(message, answer, tc.url, started=started)
                    or self.spool.get(message.id))
        assert last is not None or not partner.transports  # noqa: S101
        if last is None:
            return self._failed_attempt(message, None, "NoTransport",
                                        "partner has no transport", retryable=False, breaker=None)
        return self._failed_attempt(message, partner.transports[-1].url, last.code,
                                    last.message, retryable=last.retryable, started=started)

    def _refused(self, message: Message, exc: TransportError, url: str,
                 started: float) -> Message | None:
        """A send over ``url`` failed with ``exc``: the message's new state when that
        settles it (a permanent refusal carrying a receipt), else None (the caller tries
        the next transport, or records the failure)."""
        log.warning("send of %s to %s via %s failed: %s (%s)", message.message_id,
                    message.partner, url.split("://", 1)[0], exc.code,
                    "retryable" if exc.retryable else "permanent",
                    extra={"event": "send_failed", "message_id": message.message_id,
                           "partner": message.partner, "error_code": exc.code})
        body = getattr(exc, "body", b"")
        if not body or exc.retryable:
            return None
        if message.direction is Direction.OUT:
            done = self._answered(message, body, url, refused=exc, started=started)
            if done is not None:
                self._breaker_closed(message.partner or "")
            return done
        if message.direction is Direction.RELAY:
            # the next hop refused it with a (Rejected) receipt for the original sender:
            # the relay's work is done, the receipt goes back
            self._breaker_closed(message.partner or "")
            return (self._answered(message, body, url, started=started)
                    or self.spool.get(message.id))
        return None

    # --- several messages in one request ------------------------------------------

    def send_many(self, unit: Unit) -> list[Message]:
        """Claim the messages of ``unit`` (one partner's, in one transaction) and send
        them in one HTTPS request (``POST .../batch``); every answer is handled as the
        answer to a request of its own would be, and the receipts are recorded in one
        transaction. An endpoint that takes no batches is remembered and each message
        goes in a request of its own."""
        claimed = self.spool.claim_many(unit, self.clock())
        if len(claimed) <= 1:
            return [self._send_claimed(message) for message in claimed]
        now = self.clock()
        partner = self.config.find_partner(claimed[0].partner or "")
        if partner is None or not partner.transports or not self.breakers.allow(
                partner.party, now.timestamp()):
            return [self._send_claimed(message) for message in claimed]  # it says why
        tc = partner.transports[0]
        envelopes = [self.spool.payload(message.id, "envelope") for message in claimed]
        items = [(wire_name(m), e) for m, e in zip(claimed, envelopes, strict=True) if e]
        if len(items) < len(claimed):  # a missing payload: each one on its own says so
            return [self._send_claimed(message) for message in claimed]
        done: list[Message] = []
        for start, end in _requests(items):
            if end - start == 1 or tc.url in self._unbatched:
                done += [self._send_claimed(message) for message in claimed[start:end]]
            else:
                done += self._send_batch(partner, tc, claimed[start:end], items[start:end])
        return done

    def _send_batch(self, partner: PartnerConfig, tc: TransportConfig,
                    messages: list[Message], items: list[tuple[str, bytes]]
                    ) -> list[Message]:
        """One ``POST .../batch`` of claimed ``messages`` (their wire names and envelopes
        in ``items``) over ``tc``, the partner's first transport."""
        started = time.monotonic()
        try:
            with self.pool.lease(tc) as transport:
                if not isinstance(transport, BatchSender):
                    raise NotSupported("this transport sends one envelope per request")
                answers = transport.send_batch(items)
        except TransportError as exc:
            if not exc.retryable:  # no batch endpoint (404), or refused as a whole (413)
                log.warning("%s refused a batch (%s): one envelope per request from now "
                            "on", tc.url, exc.code)
                with self._lock:
                    self._unbatched.add(tc.url)
                return [self._send_claimed(message) for message in messages]
            if len(partner.transports) > 1:  # the other transports may work
                return [self._send_claimed(message) for message in messages]
            return [self._failed_attempt(message, tc.url, exc.code, exc.message,
                                         retryable=exc.retryable, started=started,
                                         breaker="auto" if index == 0 else None)
                    for index, message in enumerate(messages)]
        self._breaker_closed(partner.party)
        return self._answered_many(messages, answers, tc.url, started)

    def _answered_many(self, messages: list[Message], answers: list[tuple[int, bytes]],
                       url: str, started: float) -> list[Message]:
        """Each message's answer from a batch: receipts that verify are recorded together
        in one transaction; anything else as :meth:`_answered` or :meth:`_refused` would
        for an answer of its own."""
        now = self.clock()
        done: list[Message] = []
        receipts: list[tuple[Message, bytes, ReceiptOutcome]] = []
        for message, (status, body) in zip(messages, answers, strict=True):
            if 200 <= status < 300 and body and message.direction is Direction.OUT:
                try:
                    outcome = self.check_receipt(body, message=message, now=now)
                except SecurityError:
                    pass  # _answered says so and records the failure
                else:
                    receipts.append((message, body, outcome))
                    continue
            if 200 <= status < 300:
                done.append(self._answered(message, body, url, started=started)
                            or self.spool.get(message.id))
                continue
            exc = http_error(status, body, endpoint=url)
            done.append(self._refused(message, exc, url, started)
                        or self._failed_attempt(message, url, exc.code, exc.message,
                                                retryable=exc.retryable, started=started,
                                                breaker=None))
        detail = {**_took(started), "batch": len(messages)}  # sent with how many in all
        try:
            done += self._record_receipts(receipts, url, detail, now)
        except IllegalTransition:  # one came back another way: each on its own
            done += [self._answered(message, body, url, started=started)
                     or self.spool.get(message.id) for message, body, _ in receipts]
        return done

    def _breaker_closed(self, party: str) -> None:
        if self.breakers.success(party):
            self._breaker_event("breaker_closed", party)

    def _breaker_event(self, code: str, party: str) -> None:
        """Breaker changes are audit events, so every process on the store (metrics,
        alerts) sees the same breaker state."""
        log.info("circuit breaker for %s: %s", party, code.removeprefix("breaker_"),
                 extra={"event": code, "partner": party})
        try:
            with self.spool.transaction(self.clock()) as txn:
                txn.audit(code, None, partner=party)
        except GatewayError as exc:
            log.warning("could not record %s for %s: %s", code, party, exc.code)

    def _record_receipts(self, receipts: list[tuple[Message, bytes, ReceiptOutcome]],
                         url: str, detail: dict[str, int], now: datetime) -> list[Message]:
        """In one transaction, each of ``receipts`` (message, receipt, its verified
        outcome): ``sent`` over ``url`` with ``detail``, then the receipt applied. Raises
        :class:`IllegalTransition` (nothing kept) when one was settled another way."""
        with self.spool.transaction(now) as txn:
            settled = []
            for message, body, outcome in receipts:
                txn.audit("sent", message, transport=url[:200], detail=detail)
                settled.append(apply_receipt(txn, txn.get(message.id), body, outcome,
                                             transport=url))
            return settled

    def _answered(self, message: Message, answer: bytes | None, url: str, *,
                  refused: TransportError | None = None,
                  started: float | None = None) -> Message | None:
        """The partner took the envelope (or refused it with a body). Returns the new
        message state, or None when a refusal's body was not a usable receipt."""
        now = self.clock()
        took = _took(started)
        if message.direction is Direction.OUT and answer:
            try:
                outcome = self.check_receipt(answer, message=message, now=now)
            except SecurityError as exc:
                log.warning("answer to %s is not a valid receipt: %s", message.message_id,
                            exc.code)
                if refused is not None:
                    return None
                return self._failed_attempt(message, url, ReceiptInvalid.code,
                                            "the partner's receipt did not verify",
                                            retryable=True, breaker=None, started=started)
            try:
                return self._record_receipts([(message, answer, outcome)], url, took, now)[0]
            except IllegalTransition:  # the receipt also came back by another way
                return self.spool.get(message.id)
        if refused is not None:
            return None
        target = {Direction.OUT: State.SENT, Direction.RELAY: State.RELAYED,
                  Direction.RECEIPT: State.SENT}[message.direction]
        try:
            with self.spool.transaction(now) as txn:
                done = txn.transition(message.id, target, expect=State.SENDING,
                                      changes={"transport": url[:200], "next_attempt_at": None},
                                      detail=took)
        except IllegalTransition:  # its receipt came back (via a relay) before this answer
            return self.spool.get(message.id)
        if message.direction is Direction.RELAY and answer and self.relay_answer is not None:
            try:
                self.relay_answer(answer, now)  # the next hop's receipt, for the sender
            except GatewayError as exc:
                log.warning("could not pass back the answer to relayed %s: %s",
                            message.message_id, exc.code)
        return done

    def _failed_attempt(self, message: Message, url: str | None, code: str, text: str, *,
                        retryable: bool, breaker: str | None = "auto",
                        started: float | None = None) -> Message:
        """Record a failed attempt. ``breaker``: "auto" counts a retryable failure against
        the partner (a permanent one proves it is alive); None leaves the breaker alone."""
        now = self.clock()
        opened = False
        if breaker == "auto":
            if retryable:  # the breaker decides at once, so other lanes stop now
                opened = self.breakers.failure(message.partner or "", now.timestamp())
            else:
                self._breaker_closed(message.partner or "")
        decision = after_failure(self.config.retry, attempts=message.attempts,
                                 expires_at=message.expires_at or now.timestamp(),
                                 now=now.timestamp(), retryable=retryable, rng=self.rng)
        try:
            return self._record_failure(message, url, code, text, decision=decision,
                                        now=now, started=started)
        finally:
            if opened:  # after the failure that opened it, so the trail reads in order
                self._breaker_event("breaker_opened", message.partner or "")

    def _record_failure(self, message: Message, url: str | None, code: str, text: str, *,
                        decision: RetryDecision, now: datetime, started: float | None
                        ) -> Message:
        with self.spool.transaction(now) as txn:
            txn.audit("send_failed", message, error_code=code[:60],
                      transport=(url or None) and url[:200],
                      detail={"attempt": message.attempts, **_took(started)})
            changes: dict[str, Any] = {"error_text": text[:500]}
            if decision.retry:
                changes["next_attempt_at"] = decision.at
                return txn.transition(message.id, State.RETRYING, expect=State.SENDING,
                                      error_code=code[:60], changes=changes,
                                      detail={"attempt": message.attempts})
            changes["next_attempt_at"] = None
            return txn.transition(message.id, State.FAILED, expect=State.SENDING,
                                  error_code=code[:60], changes=changes,
                                  detail={"reason": decision.reason})

    # --- housekeeping ---------------------------------------------------------------

    def recover(self) -> int:
        """After a restart: messages this node left ``sending`` go back to ``retrying``
        now (the receiver's duplicate detection makes a second copy harmless); in a
        shared store, other nodes' stay under their leases."""
        return self.spool.recover_sending(self.clock())

    def expire(self) -> int:
        """``sent`` messages whose receipt is overdue are sent again (the receiver answers
        a duplicate with its stored receipt); expired ones fail. They are settled
        :attr:`EXPIRE_BATCH` to a transaction (after a partner's outage there may be
        thousands); when one of a batch was settled meanwhile (its receipt came), the batch
        is undone whole and each is settled alone, that one not."""
        now = self.clock()
        cutoff = (now - timedelta(seconds=self.config.retry.receipt_timeout)).timestamp()
        overdue = [message for message in self.spool.select(
            states=[State.SENT], direction=Direction.OUT, limit=100_000)
            if message.updated_at <= cutoff]
        return sum(together_or_alone(overdue[start:start + self.EXPIRE_BATCH],
                                     lambda batch: self._expire_all(batch, now),
                                     IllegalTransition)
                   for start in range(0, len(overdue), self.EXPIRE_BATCH))

    def _expire_all(self, messages: Sequence[Message], now: datetime) -> int:
        """In one transaction, each of ``messages`` (``sent``, its receipt overdue) back to
        ``retrying``, or ``failed`` once past its expiry; raises :class:`IllegalTransition`
        (nothing kept) when one is no longer ``sent``."""
        with self.spool.transaction(now) as txn:
            for message in messages:
                if message.expires_at is not None and now.timestamp() >= message.expires_at:
                    txn.transition(message.id, State.FAILED, expect=State.SENT,
                                   error_code="ReceiptTimeout",
                                   changes={"error_text": "no receipt before the expiry"})
                else:
                    txn.transition(message.id, State.RETRYING, expect=State.SENT,
                                   error_code="ReceiptTimeout",
                                   changes={"next_attempt_at": now.timestamp()})
        return len(messages)
