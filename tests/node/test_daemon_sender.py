"""The sender: claims, transports in order, receipts, retries with backoff, breaker, expiry,
lanes per partner, crash recovery. In-memory transport, fixed clock, a test receipt check
(the real receipt verification is SECURITY's and is exercised by the end-to-end tests)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import ReceiptInvalid
from gateway.node.config import Config, load_config
from gateway.node.nodekeys import ReceiptOutcome
from gateway.node.outbound import Sender, apply_receipt
from gateway.node.retry import BreakerBoard
from gateway.node.transport_pool import TransportPool
from gateway.store.spool import Message, NewMessage
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from transports.errors import HttpStatus
from transports.memory import MemoryNetwork

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TX, NY = "fips:4800000", "fips:3600000"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def check(data: bytes, *, message: Message, now: datetime) -> ReceiptOutcome:
    """Test receipts look like b'RECEIPT <status> <message id>'."""
    parts = data.split()
    if len(parts) != 3 or parts[0] != b"RECEIPT" or parts[2].decode() != message.message_id:
        raise ReceiptInvalid("not a receipt for this message")
    delivered = parts[1] == b"Delivered"
    return ReceiptOutcome(delivered, "r-" + parts[2].decode(), parts[2].decode(),
                          () if delivered else (("SchemaInvalid", "bad"),))


def answer_delivered(name: str, data: bytes) -> bytes:
    return b"RECEIPT Delivered " + name.removesuffix(".xml").encode()


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "gateway.toml").write_text(f"""
[node]
party = "fips:0600000"
[[partners]]
party = "{TX}"
[[partners.transports]]
url = "memory://tx-primary"
[[partners.transports]]
url = "memory://tx-backup"
[[partners]]
party = "{NY}"
[[partners.transports]]
url = "memory://ny"
[retry]
base = "10s"
factor = 2
max_delay = "5m"
jitter = 0
expiry = "1h"
receipt_timeout = "10m"
[breaker]
failure_threshold = 2
reset_after = "1m"
[limits]
send_workers = 2
""", encoding="utf-8")
    config: Config = load_config(tmp_path / "gateway.toml")
    spool = SqliteSpool(tmp_path / "spool.db")
    net = MemoryNetwork()
    clock = Clock()
    pool = TransportPool(extra={"memory": {"network": net}})
    sender = Sender(config, spool, pool, BreakerBoard(config.breaker), check, clock=clock,
                    rng=random.Random(0))
    yield config, spool, net, clock, sender
    pool.close()
    spool.close()


def sealed(spool: SqliteSpool, partner: str, n: int = 0) -> Message:
    mid = f"00000000-0000-4000-8000-{n:012d}"
    with spool.transaction(T0) as txn:
        msg = txn.insert(NewMessage(Direction.OUT, message_id=mid, to_party=partner,
                                    partner=partner, expires_at=(T0 + timedelta(hours=1))
                                    .timestamp()), State.RECEIVED,
                         payloads={"document": b"<doc/>"})
        return txn.transition(msg.id, State.SEALED, payloads={"envelope": b"ENV" + mid.encode()})


def test_delivered_with_synchronous_receipt(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, _, sender = setup
    net.serve("tx-primary", answer_delivered)
    msg = sealed(spool, TX)
    done = sender.send(msg.id, State.SEALED)
    assert done.state is State.DELIVERED
    assert done.attempts == 1
    assert spool.payload(msg.id, "receipt") == b"RECEIPT Delivered " + msg.message_id.encode()


def test_sent_then_asynchronous_receipt(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, clock, sender = setup
    msg = sealed(spool, TX)
    done = sender.send(msg.id, State.SEALED)
    assert done.state is State.SENT
    assert net.blobs("tx-primary") == {f"{msg.message_id}.xml": b"ENV" + msg.message_id.encode()}
    receipt = b"RECEIPT Delivered " + msg.message_id.encode()
    with spool.transaction(clock()) as txn:
        final = apply_receipt(txn, spool.get(msg.id), receipt,
                              check(receipt, message=msg, now=clock()))
    assert final.state is State.DELIVERED


def test_rejected_receipt_in_a_4xx_fails_the_message(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, _, sender = setup
    msg = sealed(spool, TX)

    def refuse(name: str, data: bytes) -> bytes:
        body = b"RECEIPT Rejected " + name.removesuffix(".xml").encode()
        raise HttpStatus("bad request", status=400, body=body)

    net.serve("tx-primary", refuse)
    done = sender.send(msg.id, State.SEALED)
    assert done.state is State.FAILED
    assert done.error_code == "SchemaInvalid"
    assert spool.payload(msg.id, "receipt") is not None


def test_falls_back_to_the_next_transport(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, _, sender = setup
    net.fail_next("tx-primary", 1)
    msg = sealed(spool, TX)
    assert sender.send(msg.id, State.SEALED).state is State.SENT
    assert f"{msg.message_id}.xml" in net.blobs("tx-backup")


def test_retry_backoff_breaker_and_recovery(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, clock, sender = setup
    net.fail_next("tx-primary", 100)
    net.fail_next("tx-backup", 100)
    msg = sealed(spool, TX)
    first = sender.send(msg.id, State.SEALED)
    assert first.state is State.RETRYING
    assert first.next_attempt_at == (T0 + timedelta(seconds=10)).timestamp()
    assert first.error_code == "ConnectFailed"
    clock.advance(10)
    second = sender.send(msg.id, State.RETRYING)
    assert second.state is State.RETRYING
    assert second.next_attempt_at == (clock() + timedelta(seconds=20)).timestamp()
    # two failures: the breaker is open, the partner is not tried again before reset_after
    assert sender.breakers.blocked(clock().timestamp()) == [TX]
    other = sealed(spool, TX, 1)
    assert sender.dispatch(ThreadPoolExecutor(1)) == 0
    assert spool.get(other.id).state is State.SEALED
    # after reset_after one probe goes through; it fails, so the breaker opens again
    clock.advance(60)
    probe = sender.send(other.id, State.SEALED)
    assert probe.state is State.RETRYING
    assert probe.error_code == "ConnectFailed"
    assert sender.breakers.blocked(clock().timestamp()) == [TX]
    third = sealed(spool, TX, 2)
    refused = sender.send(third.id, State.SEALED)
    assert refused.state is State.RETRYING
    assert refused.error_code == "BreakerOpen"


def test_the_failure_that_opens_the_breaker_comes_before_it_in_the_trail(setup) -> None:  # type: ignore[no-untyped-def]
    """Metrics and alerts read the trail: once ``breaker_opened`` is there, so is every
    failed attempt that opened it (it used to be written before the last of them)."""
    _, spool, net, clock, sender = setup
    net.fail_next("tx-primary", 100)
    net.fail_next("tx-backup", 100)
    msg = sealed(spool, TX)
    sender.send(msg.id, State.SEALED)
    clock.advance(10)
    sender.send(msg.id, State.RETRYING)
    assert sender.breakers.blocked(clock().timestamp()) == [TX]  # threshold 2: open
    with spool.audit_log() as log:
        codes = [e.event.code for e in log.query(code=["send_failed", "breaker_opened"])]
    assert codes == ["send_failed", "send_failed", "breaker_opened"]


def test_partner_recovers_and_messages_flow(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, clock, sender = setup
    net.fail_next("ny", 2)
    msgs = [sealed(spool, NY, i) for i in range(3)]
    with ThreadPoolExecutor(4) as executor:
        sender.dispatch(executor)
    states = sorted(spool.get(m.id).state for m in msgs)
    assert states.count(State.RETRYING) == 2
    clock.advance(120)  # past the backoff and the breaker's reset
    for _ in range(3):
        with ThreadPoolExecutor(4) as executor:
            sender.dispatch(executor)
        clock.advance(120)
    assert [spool.get(m.id).state for m in msgs] == [State.SENT] * 3
    assert len(net.blobs("ny")) == 3


def test_expiry_makes_a_dead_letter(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, clock, sender = setup
    net.fail_next("ny", 1000)
    msg = sealed(spool, NY)
    state = State.SEALED
    for _ in range(30):
        current = sender.send(msg.id, state)
        assert current is not None
        if current.state is State.FAILED:
            break
        state = current.state
        clock.advance(max(0.0, (current.next_attempt_at or 0) - clock().timestamp()))
        sender.breakers.success(NY)  # keep the breaker out of this test
    final = spool.get(msg.id)
    assert final.state is State.FAILED
    assert final.error_code == "ConnectFailed"
    assert clock() <= T0 + timedelta(hours=1)
    assert clock() >= T0 + timedelta(hours=1) - timedelta(seconds=1)


def test_dead_partner_does_not_slow_the_others(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, _, sender = setup
    release = threading.Event()

    def hang(name: str, data: bytes) -> bytes:
        release.wait(10)
        return answer_delivered(name, data)

    net.serve("tx-primary", hang)
    slow = [sealed(spool, TX, i) for i in range(5)]
    fast = [sealed(spool, NY, 100 + i) for i in range(5)]
    with ThreadPoolExecutor(8) as executor:
        # TX only gets its lane of 2; the others are not blocked behind it
        for _ in range(5):
            sender.dispatch(executor)
            if all(spool.get(m.id).state is State.SENT for m in fast):
                break
            threading.Event().wait(0.05)
        assert all(spool.get(m.id).state is State.SENT for m in fast)
        assert sum(spool.get(m.id).state is State.SENDING for m in slow) == 2
        release.set()
    assert sender.idle()


def test_recover_after_crash_and_receipt_timeout(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, clock, sender = setup
    msg = sealed(spool, NY)
    assert spool.claim(msg.id, State.SEALED, clock()) is not None  # "crash" while sending
    assert sender.recover() == 1
    assert spool.get(msg.id).state is State.RETRYING
    assert sender.send(msg.id, State.RETRYING).state is State.SENT
    clock.advance(599)
    assert sender.expire() == 0
    clock.advance(2)
    assert sender.expire() == 1
    again = sender.send(msg.id, State.RETRYING)
    assert again.state is State.SENT
    assert again.attempts == 3
    assert len(net.blobs("ny")) == 1  # same name, same bytes: no second copy


def test_overdue_receipts_are_settled_in_batches(  # type: ignore[no-untyped-def]
        setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """expire settles overdue messages EXPIRE_BATCH to a commit; one whose receipt came
    after they were listed undoes its batch, whose others are then settled alone."""
    _, spool, _, clock, sender = setup
    monkeypatch.setattr(Sender, "EXPIRE_BATCH", 3)
    messages = [sealed(spool, NY, n) for n in range(7)]
    for message in messages:
        assert sender.send(message.id, State.SEALED).state is State.SENT
    clock.advance(601)
    late = messages[4]  # in the second batch
    listed = spool.select

    def receipt_meanwhile(**kwargs):  # type: ignore[no-untyped-def]
        found = listed(**kwargs)
        with spool.transaction(clock()) as txn:
            body = b"RECEIPT Delivered " + late.message_id.encode()
            apply_receipt(txn, txn.get(late.id), body, check(body, message=late, now=clock()))
        return found

    monkeypatch.setattr(spool, "select", receipt_meanwhile)
    tried: list[int] = []
    expire_all = sender._expire_all

    def counted(batch, now):  # type: ignore[no-untyped-def]
        tried.append(len(batch))
        return expire_all(batch, now)

    monkeypatch.setattr(sender, "_expire_all", counted)
    commits = spool._groups.commits
    assert sender.expire() == 6
    assert tried == [3, 3, 1, 1, 1, 1]
    # transactions (an undone one included): the receipt, the three batches, the second
    # batch's three alone (the late one undone again)
    assert spool._groups.commits - commits == 1 + 3 + 3
    assert spool.get(late.id).state is State.DELIVERED
    for message in messages:
        if message is not late:
            again = spool.get(message.id)
            assert again.state is State.RETRYING
            assert again.error_code == "ReceiptTimeout"
    monkeypatch.setattr(spool, "select", listed)
    assert sender.expire() == 0  # nothing is sent yet: none is overdue again


def test_relay_passes_back_a_refusal_body(setup) -> None:  # type: ignore[no-untyped-def]
    _, spool, net, _, sender = setup
    answers: list[bytes] = []
    sender.relay_answer = lambda data, now: answers.append(data)

    def refuse(name: str, data: bytes) -> bytes:
        raise HttpStatus("bad request", status=400, body=b"REJECTED-RECEIPT-ENVELOPE")

    net.serve("ny", refuse)
    with spool.transaction(T0) as txn:
        relay = txn.insert(NewMessage(Direction.RELAY, message_id="r-1", partner=NY,
                                      to_party=NY, expires_at=T0.timestamp() + 3600),
                           State.RECEIVED, payloads={"envelope": b"ENV"})
    done = sender.send(relay.id, State.RECEIVED)
    assert done.state is State.RELAYED
    assert answers == [b"REJECTED-RECEIPT-ENVELOPE"]


def test_unexpected_error_does_not_leave_a_message_sending(setup) -> None:  # type: ignore[no-untyped-def]
    """A bug (not a transport failure) while sending: the message goes back to retrying
    at the retry base delay instead of staying 'sending' until the next restart."""
    _, spool, net, clock, sender = setup

    def broken(name: str, data: bytes) -> bytes:
        raise RuntimeError("a bug, not a TransportError")

    net.serve("tx-primary", broken)
    msg = sealed(spool, TX)
    sender._inflight.add(msg.id)
    sender._lanes[TX] = 1
    sender._run([(msg.id, State.SEALED)], TX)
    after = spool.get(msg.id)
    assert after.state is State.RETRYING
    assert after.error_code == "InternalError"
    assert after.next_attempt_at == clock().timestamp() + 10
    assert sender.idle()


def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition not met in 5 s")


def _counting_due(spool: SqliteSpool, sender: Sender) -> tuple[list[int], list[int]]:
    """Count the spool's due-list reads (the instance attribute shadows the method): how
    many messages each read found, and the row ids a read found that no lane had taken
    (not in flight, and still sealed right after the read)."""
    calls: list[int] = []
    untaken: list[int] = []
    original = spool.due

    def due(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = original(*args, **kwargs)
        with sender._lock:
            taken = set(sender._inflight)
        if calls:  # the first read is the dispatch's own: everything in it is new
            untaken.extend(m.id for m in found if m.id not in taken
                           and spool.get(m.id).state is State.SEALED)
        calls.append(len(found))
        return found

    spool.due = due  # type: ignore[method-assign]
    return calls, untaken


def test_a_freed_lane_takes_the_next_waiting_message_without_rereading(setup) -> None:  # type: ignore[no-untyped-def]
    # a lane of 2 and 8 due messages: one read of the due list feeds every send; the
    # spool is read again only when nothing is left waiting, and then finds no new work:
    # at most a message a lane has taken but not claimed yet (still sealed in the spool,
    # which a slow machine shows), and the dispatch skips it as in flight
    _, spool, net, _, sender = setup
    net.serve("tx-primary", answer_delivered)
    messages = [sealed(spool, TX, i) for i in range(8)]
    reads, untaken = _counting_due(spool, sender)
    with ThreadPoolExecutor(4) as executor:
        assert sender.dispatch(executor) == 2
        _until(sender.idle)
    assert sender.idle()
    assert all(spool.get(m.id).state is State.DELIVERED for m in messages)
    assert reads[0] == 8
    assert untaken == []  # every message came from the first read's list
    assert sum(reads[1:]) <= 1  # at most the other lane's message, taken, not claimed
    assert len(reads) <= 3  # one per lane when the list ran dry (at most)
    [attempts] = {spool.get(m.id).attempts for m in messages}
    assert attempts == 1  # each claimed and sent exactly once


def test_the_sender_is_not_idle_while_a_freed_lane_takes_its_next_message(setup) -> None:  # type: ignore[no-untyped-def]
    # between a send's end and its lane's refill nothing is in flight, but a message is
    # still waiting for that lane: idle() (what send_all and the tests wait for) must
    # not say so then (it did: the test above failed once under load, its executor shut
    # down in that gap)
    _, spool, net, _, sender = setup
    net.serve("tx-primary", answer_delivered)
    messages = [sealed(spool, TX, i) for i in range(3)]
    in_gap = threading.Semaphore(0)
    go_on = threading.Event()
    refill = sender._refill

    def slow_refill(executor, partner):  # type: ignore[no-untyped-def]
        in_gap.release()
        go_on.wait(10)
        refill(executor, partner)

    sender._refill = slow_refill
    with ThreadPoolExecutor(4) as executor:
        assert sender.dispatch(executor, limit=2) == 2  # the third waits for a lane
        assert in_gap.acquire(timeout=10)  # the first send is done, its lane freed
        assert in_gap.acquire(timeout=10)  # and the second's
        idle_in_gap = sender.idle()
        go_on.set()
        _until(sender.idle)
    assert not idle_in_gap
    assert all(spool.get(m.id).state is State.DELIVERED for m in messages)


def test_a_waiting_message_settled_meanwhile_is_not_sent(setup) -> None:  # type: ignore[no-untyped-def]
    # remembered as due, then cancelled by an operator before its turn: the claim finds
    # it no longer sealed, so it is not sent (the list is a hint, the spool decides)
    _, spool, net, clock, sender = setup
    release = threading.Event()

    def slow(name: str, data: bytes) -> bytes:
        release.wait(10)
        return answer_delivered(name, data)

    net.serve("tx-primary", slow)
    messages = [sealed(spool, TX, i) for i in range(4)]
    with ThreadPoolExecutor(4) as executor:
        assert sender.dispatch(executor) == 2
        _until(lambda: sum(spool.get(m.id).state is State.SENDING for m in messages) == 2)
        waiting = [m for m in messages if spool.get(m.id).state is State.SEALED]
        assert len(waiting) == 2
        with spool.transaction(clock()) as txn:
            txn.transition(waiting[0].id, State.CANCELLED, expect=State.SEALED,
                           actor="operator")
        release.set()
        _until(lambda: spool.get(waiting[1].id).state is State.DELIVERED)
    assert spool.get(waiting[0].id).state is State.CANCELLED
    assert spool.get(waiting[0].id).attempts == 0
    assert f"{waiting[0].message_id}.xml" not in net.blobs("tx-primary")
    assert spool.get(waiting[1].id).state is State.DELIVERED


def test_a_waiting_message_of_a_blocked_partner_waits_for_the_breaker(setup) -> None:  # type: ignore[no-untyped-def]
    # the breaker opens while messages wait: a freed lane does not take them (no
    # BreakerOpen attempts are recorded); they stay sealed for after the breaker
    _, spool, net, clock, sender = setup
    gate = threading.Event()

    def failing(name: str, data: bytes) -> bytes:
        gate.wait(10)
        raise HttpStatus("unavailable", status=503)

    net.serve("tx-primary", failing)
    net.serve("tx-backup", failing)
    messages = [sealed(spool, TX, i) for i in range(5)]
    with ThreadPoolExecutor(4) as executor:
        assert sender.dispatch(executor) == 2
        _until(lambda: sum(spool.get(m.id).state is State.SENDING for m in messages) == 2)
        for _ in range(2):  # the breaker opens while both sends hang
            sender.breakers.failure(TX, clock().timestamp())
        gate.set()
    waiting = [m for m in messages if spool.get(m.id).attempts == 0]
    assert len(waiting) == 3
    assert all(spool.get(m.id).state is State.SEALED for m in waiting)
    assert sender.breakers.blocked(clock().timestamp()) == [TX]
