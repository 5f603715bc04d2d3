"""The sender's batches: a lane sends up to the partner transport's ``batch`` messages in
one request (``send_batch``), each answer handled as its own request's would be, the
claims and the receipts each in one transaction; an endpoint that takes no batches is
remembered and each message goes alone. The transport here is a test double standing for
the partner (the HTTPS framing has its own tests in tests/transports, the whole path over
real TLS in tests/node/test_daemon_batches.py); the fixed clock and the test receipt check
are those of test_daemon_sender.py."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.node.config import Config, load_config
from gateway.node.outbound import Sender, apply_receipt
from gateway.node.retry import BreakerBoard
from gateway.node.transport_pool import TransportPool
from gateway.store.spool import Message, NewMessage
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.node.test_daemon_sender import T0, Clock, check
from transports.errors import ConnectionLost, HttpStatus, NotSupported, TransportError

TX = "fips:4800000"
URL = "https://tx.example:8443/v1/messages"

Answer = tuple[int, bytes]


def receipt(status: str, name: str) -> bytes:
    return f"RECEIPT {status} {name.removesuffix('.xml')}".encode()


class Partner:
    """Stands for the partner's endpoint: answers a batch with ``per_item`` for each
    envelope (default: a Delivered receipt), records every request."""

    endpoint = URL

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.per_item: Callable[[int, str], Answer] = lambda i, name: (
            200, receipt("Delivered", name))
        self.whole: TransportError | None = None  # the batch request fails as a whole
        self.meanwhile: Callable[[], None] = lambda: None  # runs before the answer
        self.single_answer: Callable[[str], bytes] = lambda name: receipt("Delivered", name)

    def send_batch(self, items: list[tuple[str, bytes]]) -> list[Answer]:
        names = [name for name, _ in items]
        self.batches.append(names)
        if self.whole is not None:
            raise self.whole
        self.meanwhile()
        return [self.per_item(i, name) for i, name in enumerate(names)]

    def send(self, name: str, data: bytes) -> bytes | None:
        self.singles.append(name)
        return self.single_answer(name)

    def close(self) -> None:
        pass


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "gateway.toml").write_text(f"""
[node]
party = "fips:0600000"
[[partners]]
party = "{TX}"
[[partners.transports]]
url = "{URL}"
client_cert = "c.pem"
client_key = "k.pem"
ca_file = "ca.pem"
batch = 4
[retry]
base = "10s"
jitter = 0
expiry = "1h"
[breaker]
failure_threshold = 2
reset_after = "1m"
[limits]
send_workers = 2
""", encoding="utf-8")
    config: Config = load_config(tmp_path / "gateway.toml")
    spool = SqliteSpool(tmp_path / "spool.db")
    partner = Partner()
    pool = TransportPool(opener=lambda url, **options: partner)
    clock = Clock()
    sender = Sender(config, spool, pool, BreakerBoard(config.breaker), check, clock=clock,
                    rng=random.Random(0))
    yield spool, partner, clock, sender
    pool.close()
    spool.close()


def sealed(spool: SqliteSpool, count: int, first: int = 0, size: int = 0) -> list[Message]:
    made = []
    for n in range(first, first + count):
        mid = f"00000000-0000-4000-8000-{n:012d}"
        with spool.transaction(T0) as txn:
            msg = txn.insert(NewMessage(Direction.OUT, message_id=mid, to_party=TX,
                                        partner=TX, expires_at=(T0 + timedelta(hours=1))
                                        .timestamp()), State.RECEIVED,
                             payloads={"document": b"<doc/>"})
            made.append(txn.transition(msg.id, State.SEALED,
                                       payloads={"envelope": b"ENV" + mid.encode()
                                                 + b"x" * size}))
    return made


def run(sender: Sender) -> None:
    """Dispatch until nothing is due or in flight (lanes refill from the waiting list)."""
    with ThreadPoolExecutor(max_workers=4) as executor:
        sender.dispatch(executor)
        for _ in range(500):
            if sender.idle():
                break
            threading.Event().wait(0.01)


def states(spool: SqliteSpool, messages: list[Message]) -> list[str]:
    return [str(spool.get(m.id).state) for m in messages]


def test_due_messages_go_in_batches_of_the_transports_size(setup: Any) -> None:
    spool, partner, _, sender = setup
    messages = sealed(spool, 10)
    run(sender)
    assert states(spool, messages) == ["delivered"] * 10
    assert sorted(len(b) for b in partner.batches) == [2, 4, 4]
    assert sorted(n for b in partner.batches for n in b) == sorted(
        f"{m.message_id}.xml" for m in messages)
    (alone,) = sealed(spool, 1, first=50)
    sender.send(alone.id, State.SEALED)
    assert partner.singles == [f"{alone.message_id}.xml"]

    def trail(m: Message) -> list[tuple[str, str | None, list[str]]]:
        with spool.audit_log() as audit:
            return [(e.event.code, e.event.transport, sorted(e.event.detail))
                    for e in audit.query(message_id=m.message_id)]

    assert len(trail(alone)) >= 5
    for m in messages:  # the receipt kept, the trail as for a message sent alone, and
        # its "sent" event says how many went in the same request
        assert spool.payload(m.id, "receipt") == receipt("Delivered", m.message_id or "")
        assert trail(m) == [(code, where, sorted([*keys, "batch"]) if code == "sent"
                             else keys) for code, where, keys in trail(alone)]
    with spool.audit_log() as audit:
        sizes = sorted(e.event.detail["batch"] for e in audit.query(code="sent")
                       if "batch" in e.event.detail)
    assert sizes == [2, 2, 4, 4, 4, 4, 4, 4, 4, 4]


def test_claims_and_receipts_of_a_batch_share_transactions(setup: Any) -> None:
    spool, partner, _, sender = setup
    messages = sealed(spool, 4)
    before = spool._groups.committed_members
    done = sender.send_many([(m.id, State.SEALED) for m in messages])
    assert sorted(str(m.state) for m in done) == ["delivered"] * 4
    assert partner.batches == [[f"{m.message_id}.xml" for m in messages]]
    # one transaction claims the four, one records the four receipts (alone: eight)
    assert spool._groups.committed_members - before == 2


def test_each_answer_in_a_batch_is_handled_as_its_own_request(setup: Any) -> None:
    spool, partner, clock, sender = setup
    messages = sealed(spool, 4)
    answers = {
        0: (200, receipt("Rejected", messages[0].message_id or "")),  # refused in a 200
        1: (400, receipt("Rejected", messages[1].message_id or "")),  # refused in a 400
        2: (503, b""),                                               # busy: again later
        3: (200, b"not a receipt"),                                  # does not verify
    }
    partner.per_item = lambda i, name: answers[i]
    sender.send_many([(m.id, State.SEALED) for m in messages])
    after = [spool.get(m.id) for m in messages]
    assert [str(m.state) for m in after] == ["failed", "failed", "retrying", "retrying"]
    assert [m.error_code for m in after] == ["SchemaInvalid", "SchemaInvalid", "HttpStatus",
                                             "ReceiptInvalid"]
    assert after[2].next_attempt_at == clock().timestamp() + 10
    assert spool.payload(messages[1].id, "receipt") == answers[1][1]


def test_an_endpoint_without_batches_is_remembered_and_each_goes_alone(setup: Any) -> None:
    spool, partner, _, sender = setup
    partner.whole = NotSupported("the partner does not accept batches (HTTP 404)")
    first = sealed(spool, 3)
    sender.send_many([(m.id, State.SEALED) for m in first])
    assert states(spool, first) == ["delivered"] * 3
    assert len(partner.batches) == 1
    assert sorted(partner.singles) == sorted(f"{m.message_id}.xml" for m in first)
    assert sender.batch_size(TX) == 1  # from now on one per request, no batch tried
    more = sealed(spool, 3, first=10)
    run(sender)
    assert states(spool, more) == ["delivered"] * 3
    assert len(partner.batches) == 1


def test_a_batch_refused_as_a_whole_goes_again_alone(setup: Any) -> None:
    """413 for the whole request (the receiver takes fewer per batch): the messages are
    not failed for it; each goes in a request of its own."""
    spool, partner, _, sender = setup
    partner.whole = HttpStatus("too many parts", status=413, body=b"")
    messages = sealed(spool, 2)
    sender.send_many([(m.id, State.SEALED) for m in messages])
    assert states(spool, messages) == ["delivered"] * 2
    assert len(partner.singles) == 2


def test_a_lost_batch_is_one_failure_for_the_breaker(setup: Any) -> None:
    spool, partner, clock, sender = setup
    partner.whole = ConnectionLost("connection reset")
    messages = sealed(spool, 4)
    sender.send_many([(m.id, State.SEALED) for m in messages])
    after = [spool.get(m.id) for m in messages]
    assert [str(m.state) for m in after] == ["retrying"] * 4
    assert {m.error_code for m in after} == {"ConnectionLost"}
    assert partner.singles == []
    # threshold 2: one lost request counts once, so the breaker is still closed
    assert sender.breakers.allow(TX, clock().timestamp())


def test_only_the_messages_still_due_are_claimed(setup: Any) -> None:
    spool, partner, _, sender = setup
    messages = sealed(spool, 3)
    assert spool.claim(messages[1].id, State.SEALED, T0) is not None  # another lane took it
    done = sender.send_many([(m.id, State.SEALED) for m in messages])
    assert len(done) == 2
    assert partner.batches == [[f"{messages[0].message_id}.xml",
                                f"{messages[2].message_id}.xml"]]
    assert spool.get(messages[1].id).state is State.SENDING
    assert spool.get(messages[1].id).attempts == 1


def test_a_batch_stays_under_a_megabyte_and_a_large_envelope_goes_alone(
        setup: Any) -> None:
    """Far below any receiver's body limit: 400 KB envelopes go two to a request, and a
    2 MB one in a request of its own (an ordinary POST)."""
    spool, partner, _, sender = setup
    small = sealed(spool, 2, size=400_000)
    large = sealed(spool, 1, first=2, size=2_000_000)
    more = sealed(spool, 1, first=3, size=400_000)
    messages = [*small, *large, *more]
    sender.send_many([(m.id, State.SEALED) for m in messages])
    assert states(spool, messages) == ["delivered"] * 4
    assert partner.batches == [[f"{m.message_id}.xml" for m in small]]
    assert partner.singles == [f"{m.message_id}.xml" for m in (*large, *more)]


def test_a_receipt_that_came_back_another_way_meanwhile_settles_only_its_message(
        setup: Any) -> None:
    """One message's receipt is recorded by another path (e.g. relayed back) while the
    batch is out: the batch's shared receipt transaction is refused as a whole, nothing of
    it stays, and each answer is then recorded on its own."""
    spool, partner, clock, sender = setup
    messages = sealed(spool, 3)
    early = messages[1]
    data = receipt("Delivered", early.message_id or "")

    def came_back() -> None:
        with spool.transaction(clock()) as txn:
            apply_receipt(txn, spool.get(early.id), data,
                          check(data, message=early, now=clock()))

    partner.meanwhile = came_back
    sender.send_many([(m.id, State.SEALED) for m in messages])
    assert states(spool, messages) == ["delivered"] * 3
    with spool.audit_log() as audit:
        assert [e.event.code for e in audit.query(message_id=early.message_id)].count(
            "delivered") == 1
        assert len(list(audit.query(code="receipt_received"))) == 3


def test_a_batch_of_one_is_an_ordinary_send(setup: Any) -> None:
    spool, partner, _, sender = setup
    (message,) = sealed(spool, 1)
    run(sender)
    assert spool.get(message.id).state is State.DELIVERED
    assert partner.batches == []
    assert partner.singles == [f"{message.message_id}.xml"]


def test_batch_is_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    for url, extra in (("sftp://u@h/in", 'key_file = "k"\nknown_hosts = "kh"\n'),
                       ("file:///tmp/x", "")):
        (tmp_path / "g.toml").write_text(f"""
[node]
party = "fips:0600000"
[[partners]]
party = "{TX}"
[[partners.transports]]
url = "{url}"
{extra}batch = 8
""", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"partners\[0\]\.transports\[0\]\.batch"):
            load_config(tmp_path / "g.toml")
    (tmp_path / "g.toml").write_text(f"""
[node]
party = "fips:0600000"
[[partners]]
party = "{TX}"
[[partners.transports]]
url = "{URL}"
client_cert = "c.pem"
client_key = "k.pem"
ca_file = "ca.pem"
batch = 65
""", encoding="utf-8")
    with pytest.raises(ConfigError, match="at most 64"):
        load_config(tmp_path / "g.toml")
