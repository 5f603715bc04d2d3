"""Receiving a batch (gateway/node/inbound.py, ``Inbound.accept_many``): every envelope of
a batch gets what ``accept`` gives it alone (the answer, the receipt, the records, the
audit trail, the inbox), the new messages cost two spool commits for the whole batch, and
a crash between the phases (temporary files written, arrivals committed, renames done)
loses nothing and delivers nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest

import gateway.node.inbound
from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.examine import Examined, receipt_for
from gateway.node.inbound import Answer
from gateway.node.nodekeys import NodeKeys, load_node_keys
from gateway.protocol.envelope import Header, ParsedEnvelope, parse_envelope
from gateway.protocol.party import Party
from gateway.protocol.seal import seal
from gateway.store.spool import NewMessage, Txn
from gateway.store.states import Direction, State
from tests.support.arrivals import Sealer, pooled, receipt_fields, specs
from tests.support.gwnodes import write_config

A, B, C = "fips:0600000", "fips:4800000", "fips:3600000"



@pytest.fixture
def clock() -> Callable[[], datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return lambda: now


@pytest.fixture
def twins(tmp_path: Path, key_cache: Path, clock: Callable[[], datetime]
          ) -> Iterator[tuple[Sealer, Gateway, Gateway]]:
    """Two B nodes (the same party and keys, each its own spool and inbox, both routing
    C through A): the first receives batches, the second the same envelopes one by one.
    No worker processes: envelopes are examined in-process."""
    a, bs = specs(tmp_path, key_cache, "bbatch", "bsingle")
    for b in bs:
        b.routes = [(C, A)]
        write_config(b, key_cache, [a, *bs])
    started = [Gateway(load_config(b.config_path), clock=clock) for b in bs]
    try:
        yield Sealer(a, tmp_path, clock()), started[0], started[1]
    finally:
        for gw in started:
            gw.stop()


def new_messages(sealer: Sealer, count: int, first: int = 0) -> list[bytes]:
    return [sealer.envelope(interstate_transaction("0600000", "4800000", seed=first + i))
            for i in range(count)]


def sent_to_a(gw: Gateway, envelope: bytes) -> None:
    """Record ``envelope`` (B to A) as sent by ``gw`` and waiting for its receipt."""
    parsed = parse_envelope(envelope)
    h = parsed.header
    with gw.spool.transaction(gw.clock()) as txn:
        record = txn.insert(NewMessage(Direction.OUT, message_id=h.message_id, partner=A,
                                       from_party=B, to_party=A, service=h.service,
                                       action=h.action, envelope_digest=parsed.digest),
                            State.RECEIVED)
        for state in (State.SEALED, State.SENDING, State.SENT):
            txn.transition(record.id, state, payloads={"envelope": envelope}
                           if state is State.SEALED else {})


def mixed_batch(sealer: Sealer, gws: tuple[Gateway, ...], channel: str
                ) -> dict[str, bytes]:
    """Every kind of envelope a batch can hold; what the batch must find already there
    (a delivered and a rejected message, an outbound message waiting for its receipt) is
    done on each of ``gws`` alike."""
    cases = sealer.cases()
    known_ok, known_bad = new_messages(sealer, 1, first=40)[0], cases["SchemaInvalid"]
    b_keys = load_node_keys(gws[0].config)
    ours = seal(interstate_transaction("4800000", "0600000", seed=41),
                Header.new(from_party=Party.parse(B), to_party=Party.parse(A),
                           service="interstate", action="InterstateTransaction",
                           created=sealer.now),
                sender=b_keys.identity,
                recipient_cert=b_keys.recipient_cert(Party.parse(A), sealer.now))
    parsed_ours = parse_envelope(ours)
    receipt = receipt_for(parsed_ours.header, parsed_ours.digest, None, sealer.now,
                          node=sealer.keys.identity)
    for gw in gws:
        assert gw.inbound.accept(known_ok, channel=channel).status == 200
        assert gw.inbound.accept(known_bad, channel=channel).status == 400
        sent_to_a(gw, ours)
    relay = sealer.envelope(interstate_transaction("0600000", "3600000", seed=42), to=C)
    return {
        "new-0": cases["delivered-0"],
        "untrusted": cases["untrusted"],
        "new-1": cases["delivered-1"],
        "HeaderMismatch": cases["HeaderMismatch"],
        "DecryptionFailed": cases["DecryptionFailed"],
        "delivered before": known_ok,
        "new-0 again": cases["delivered-0"],
        "unreadable": b"\x00\x01 not xml at all",
        "receipt for ours": receipt,
        "rejected before": known_bad,
        "relay": relay,
        "ReplayWindow": cases["ReplayWindow"],
        "new-2": cases["delivered-2"],
        "rejected before again": known_bad,
    }


def answer_fields(answer: Answer, sealer: Sealer, envelope: bytes) -> tuple[object, ...]:
    return (answer.status,
            receipt_fields(answer.body, sealer, envelope) if answer.body else None)


def node_state(gw: Gateway) -> tuple[object, ...]:
    """Everything durable, less what is random per node (receipt ids, row ids, times):
    the records, each message's audit trail in order, the inbox."""
    records = gw.spool.select(limit=1000)
    receipt_ids = {r.message_id: f"receipt for {r.ref_to}" for r in records
                   if r.direction is Direction.RECEIPT}
    rows = sorted(((str(r.direction), receipt_ids.get(r.message_id, r.message_id),
                   str(r.state), r.error_code, r.error_text, r.case_id, r.source,
                   r.transport, r.partner, r.ref_to,
                   None if r.direction is Direction.RECEIPT else r.envelope_digest)
                  for r in records), key=repr)
    trails: dict[str, list[tuple[object, ...]]] = {}
    with gw.spool.audit_log() as audit:
        for stored in audit.query():
            e = stored.event
            key = str(receipt_ids.get(e.message_id, e.message_id))
            trails.setdefault(key, []).append((e.code, e.error_code, e.detail))
    inbox = sorted((p.name, p.read_bytes()) for p in gw.config.inbox.iterdir())
    return rows, trails, inbox


@pytest.mark.parametrize("channel", ["https", "pull"])
def test_a_batch_gets_what_each_envelope_gets_alone(
        twins: tuple[Sealer, Gateway, Gateway], channel: str) -> None:
    sealer, gw_batch, gw_single = twins
    batch = mixed_batch(sealer, (gw_batch, gw_single), channel)
    envelopes = list(batch.values())
    together = gw_batch.inbound.accept_many(envelopes, channel=channel)
    alone = [gw_single.inbound.accept(e, channel=channel) for e in envelopes]
    assert len(together) == len(envelopes)
    for name, envelope, theirs, ours in zip(batch, envelopes, together, alone, strict=True):
        assert answer_fields(theirs, sealer, envelope) == answer_fields(ours, sealer,
                                                                        envelope), name
    assert node_state(gw_batch) == node_state(gw_single)
    # and what that is, so that both cannot be wrong alike
    statuses = dict(zip(batch, (a.status for a in together), strict=True))
    assert statuses == {
        "new-0": 200, "untrusted": 400, "new-1": 200, "HeaderMismatch": 400,
        "DecryptionFailed": 400, "delivered before": 200, "new-0 again": 200,
        "unreadable": 400, "receipt for ours": 200, "rejected before": 400, "relay": 202,
        "ReplayWindow": 400, "new-2": 200, "rejected before again": 400}
    trails = node_state(gw_batch)[1]
    assert [code for code, *_ in trails[parse_envelope(batch["new-1"]).header.message_id]] \
        == ["received", "opened", "clock_started", "clock_started", "validated", "delivered",
            "receipt_stored", "receipt_sent"]
    [out] = gw_batch.spool.select(direction=Direction.OUT)
    assert out.state is State.DELIVERED  # the receipt was applied
    [relayed] = gw_batch.spool.select(direction=Direction.RELAY)
    assert relayed.to_party == C
    assert len(list(gw_batch.config.inbox.iterdir())) == 4  # 3 new, 1 before
    receipts = gw_batch.spool.select(direction=Direction.RECEIPT, limit=100)
    assert len(receipts) == (0 if channel == "https" else 2 + 9)  # before, and the batch's


def test_a_batch_of_new_messages_costs_two_commits(
        twins: tuple[Sealer, Gateway, Gateway]) -> None:
    """16 new messages and a rejected one share two commits (32 + 1 one by one); a
    second copy in the same batch adds its own (the ``duplicate`` event)."""
    sealer, gw_batch, gw_single = twins
    envelopes = [*new_messages(sealer, 16), sealer.cases()["SchemaInvalid"]]
    envelopes.insert(9, envelopes[2])
    before = gw_batch.spool._groups.commits
    answers = gw_batch.inbound.accept_many(envelopes, channel="https")
    assert gw_batch.spool._groups.commits - before == 3
    assert [a.status for a in answers] == [200] * 17 + [400]
    before = gw_single.spool._groups.commits
    for envelope in envelopes:
        gw_single.inbound.accept(envelope, channel="https")
    assert gw_single.spool._groups.commits - before == 34
    assert node_state(gw_batch) == node_state(gw_single)


def examined_in_daemon(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The message IDs ``gw`` examines in its own process, as it examines them."""
    examined_here: list[str] = []
    real = gw.inbound.examiner.examine

    def counted(parsed: ParsedEnvelope, keys: NodeKeys, now: datetime) -> Examined:
        examined_here.append(parsed.header.message_id)
        return real(parsed, keys, now)

    monkeypatch.setattr(gw.inbound.examiner, "examine", counted)
    return examined_here


@pytest.mark.integration  # starts worker processes
def test_a_batch_is_shared_among_the_workers_one_call_each(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """With two receive workers, the batch's 16 envelopes go to them in two calls of 8
    (one each, at once) and nothing is examined in the daemon; with the workers killed,
    all 16 are examined in the daemon and delivered all the same."""
    sealer, gw, _ = twins
    pool = pooled(gw)
    examined_here = examined_in_daemon(gw, monkeypatch)
    envelopes = new_messages(sealer, 16)
    calls, carried = pool.calls, pool.envelopes
    answers = gw.inbound.accept_many(envelopes, channel="https")
    assert (pool.calls - calls, pool.envelopes - carried) == (2, 16)
    assert examined_here == []
    for answer, envelope in zip(answers, envelopes, strict=True):
        assert (answer.status, receipt_fields(answer.body, sealer, envelope)[3]) == \
            (200, "Delivered")
    for pid in pool.pids():
        os.kill(pid, signal.SIGKILL)
    more = new_messages(sealer, 16, first=16)
    answers = gw.inbound.accept_many(more, channel="https")
    assert [a.status for a in answers] == [200] * 16
    assert examined_here == [parse_envelope(e).header.message_id for e in more]
    delivered_once(gw, envelopes + more)


@pytest.mark.integration  # starts worker processes
def test_only_a_share_the_workers_did_not_answer_is_examined_in_the_daemon(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """One of the two shares of a batch comes back unanswered (its worker broke): only
    its 8 envelopes are examined in the daemon, the other share's answers are kept, and
    all 16 are delivered."""
    sealer, gw, _ = twins
    pool = pooled(gw)
    examined_here = examined_in_daemon(gw, monkeypatch)
    dispatch = pool.dispatch

    def second_unanswered(generation, func, calls, sizes=()):  # type: ignore[no-untyped-def]
        collect = dispatch(generation, func, calls, sizes)
        return lambda: [got if i == 0 else None for i, got in enumerate(collect())]

    monkeypatch.setattr(pool, "dispatch", second_unanswered)
    envelopes = new_messages(sealer, 16)
    answers = gw.inbound.accept_many(envelopes, channel="https")
    assert examined_here == [parse_envelope(e).header.message_id for e in envelopes[8:]]
    for answer, envelope in zip(answers, envelopes, strict=True):
        assert (answer.status, receipt_fields(answer.body, sealer, envelope)[3]) == \
            (200, "Delivered")
    delivered_once(gw, envelopes)


# --- a crash between the phases ------------------------------------------------------


def delivered_once(gw: Gateway, envelopes: list[bytes]) -> None:
    """Each of ``envelopes`` is delivered, once: one record, one file, no temporary."""
    ids = [parse_envelope(e).header.message_id for e in envelopes]
    for message_id in ids:
        [record] = [r for r in gw.spool.select(direction=Direction.IN, limit=1000)
                    if r.message_id == message_id]
        assert record.state is State.DELIVERED
        assert record.source == f"InterstateTransaction-{message_id}.xml"
    names = sorted(p.name for p in gw.config.inbox.iterdir())
    assert names == sorted(f"InterstateTransaction-{m}.xml" for m in ids)


def test_killed_after_the_temporary_files_leaves_no_record(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed once every temporary file is written, before the arrivals are recorded:
    nothing is recorded or answered, the next start removes the files, and the batch
    sent again is delivered once."""
    sealer, gw, _ = twins
    envelopes = new_messages(sealer, 16)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    real = gateway.node.inbound.write_temp
    written: list[Path] = []

    def as_the_killed_process(target: Path, data: bytes) -> Path:
        tmp = real(target, data)
        written.append(tmp.rename(tmp.with_name(
            tmp.name.replace(f"-{os.getpid()}-", f"-{dead}-"))))
        if len(written) == len(envelopes):
            raise KeyboardInterrupt("simulated kill before the arrivals are recorded")
        return written[-1]

    monkeypatch.setattr(gateway.node.inbound, "write_temp", as_the_killed_process)
    with pytest.raises(KeyboardInterrupt):
        gw.inbound.accept_many(envelopes, channel="https")
    monkeypatch.undo()
    assert gw.spool.select(direction=Direction.IN) == []
    assert sorted(p.name for p in gw.config.inbox.iterdir()) == sorted(p.name for p in written)
    done = gw.recover()
    assert (done["inbound"], done["temporary_files"]) == (0, 16)
    assert list(gw.config.inbox.iterdir()) == []
    assert [a.status for a in gw.inbound.accept_many(envelopes, channel="https")] == \
        [200] * 16
    delivered_once(gw, envelopes)


def test_killed_among_the_renames_is_finished_by_recovery(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the arrivals' commit, with all but the last document renamed into
    the inbox: recovery renames the last and commits ``delivered`` for all; the batch
    sent again is answered with the stored receipts and delivers nothing again."""
    sealer, gw, _ = twins
    envelopes = new_messages(sealer, 16)
    bad = sealer.cases()["SchemaInvalid"]

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash at the last rename")

    monkeypatch.setattr(gateway.node.inbound, "commit_temp", crash)
    with pytest.raises(KeyboardInterrupt):
        gw.inbound.accept_many([*envelopes, bad], channel="https")
    monkeypatch.undo()
    records = gw.spool.select(direction=Direction.IN, limit=100)
    assert sorted(str(r.state) for r in records) == ["delivering"] * 16 + ["rejected"]
    names = [p.name for p in gw.config.inbox.iterdir()]
    assert len([n for n in names if n.startswith(".")]) == 1  # the last, not renamed
    assert len(names) == 16
    assert gw.recover()["inbound"] == 16
    delivered_once(gw, envelopes)
    again = gw.inbound.accept_many(envelopes, channel="https")
    for answer, record in zip(again, sorted(records, key=lambda r: r.id), strict=False):
        assert answer.status == 200
        assert answer.body == gw.spool.payload(record.id, "receipt")
    delivered_once(gw, envelopes)


def test_killed_before_delivered_is_committed_is_finished_by_recovery(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after every rename, before ``delivered`` is committed: nothing answered;
    recovery commits it without writing any document again."""
    sealer, gw, _ = twins
    envelopes = new_messages(sealer, 16)
    real = gw.spool.transaction
    opened: list[datetime] = []

    def second_one_killed(now: datetime) -> AbstractContextManager[Txn]:
        opened.append(now)
        if len(opened) == 2:
            raise KeyboardInterrupt("simulated crash before delivered is committed")
        return real(now)

    monkeypatch.setattr(gw.spool, "transaction", second_one_killed)
    with pytest.raises(KeyboardInterrupt):
        gw.inbound.accept_many(envelopes, channel="https")
    monkeypatch.undo()
    records = gw.spool.select(direction=Direction.IN, limit=100)
    assert {r.state for r in records} == {State.DELIVERING}
    assert len(records) == 16
    files = {p.name: p.stat().st_ino for p in gw.config.inbox.iterdir()}
    assert not any(name.startswith(".") for name in files)
    assert gw.recover()["inbound"] == 16
    delivered_once(gw, envelopes)
    assert {p.name: p.stat().st_ino for p in gw.config.inbox.iterdir()} == files


def examine_calls(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of ``gw``'s calls to examine envelopes together, as they are made."""
    calls: list[int] = []
    examine_many = gw.inbound._examine_many

    def counted(parsed: list[ParsedEnvelope], now: datetime) -> list[Examined]:
        calls.append(len(parsed))
        return examine_many(parsed, now)

    monkeypatch.setattr(gw.inbound, "_examine_many", counted)
    return calls


def recovered(gw: Gateway, batch: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """``gw``'s inbound recovery with batches of ``batch``: (messages, commits)."""
    monkeypatch.setattr(gw.inbound, "PULL_BATCH", batch)
    commits = gw.spool._groups.commits
    return gw.inbound.recover(), gw.spool._groups.commits - commits


def test_recovery_settles_what_was_left_received_in_batches(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages a crash left ``received`` (as older versions recorded an arrival before
    opening it) are finished PULL_BATCH at a time: examined in one call and settled in
    two commits per batch, leaving the records, trails and inbox that recovery one at a
    time leaves."""
    sealer, gw, single = twins
    envelopes = new_messages(sealer, 5)
    for node in (gw, single):
        with node.spool.transaction(node.clock()) as txn:
            for envelope in envelopes:
                node.inbound._arrived(txn, parse_envelope(envelope), envelope, "pull")
    calls = examine_calls(gw, monkeypatch)
    assert recovered(gw, 2, monkeypatch) == (5, 3 * 2)
    assert calls == [2, 2, 1]
    assert recovered(single, 1, monkeypatch) == (5, 5 * 2)
    assert node_state(gw) == node_state(single)
    delivered_once(gw, envelopes)


def test_recovery_commits_what_was_left_delivering_in_batches(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages a crash left ``delivering`` (their documents renamed into the inbox,
    ``delivered`` not committed) are committed PULL_BATCH to a transaction, leaving what
    recovery one at a time leaves, and no document is written again."""
    sealer, gw, single = twins
    envelopes = new_messages(sealer, 5)
    for node in (gw, single):
        real = node.spool.transaction
        opened: list[datetime] = []

        def second_one_killed(now: datetime, real=real, opened=opened  # type: ignore[no-untyped-def]
                              ) -> AbstractContextManager[Txn]:
            opened.append(now)
            if len(opened) == 2:
                raise KeyboardInterrupt("simulated crash before delivered is committed")
            return real(now)

        with monkeypatch.context() as patched:
            patched.setattr(node.spool, "transaction", second_one_killed)
            with pytest.raises(KeyboardInterrupt):
                node.inbound.accept_many(envelopes, channel="pull")
        assert {r.state for r in node.spool.select(direction=Direction.IN)} == \
            {State.DELIVERING}
    files = {p.name: p.stat().st_ino for p in gw.config.inbox.iterdir()}
    assert recovered(gw, 2, monkeypatch) == (5, 3)
    assert recovered(single, 1, monkeypatch) == (5, 5)
    assert node_state(gw) == node_state(single)
    delivered_once(gw, envelopes)
    assert {p.name: p.stat().st_ino for p in gw.config.inbox.iterdir()} == files


def test_a_copy_recorded_meanwhile_settles_the_batch_one_by_one(
        twins: tuple[Sealer, Gateway, Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another request records one of the batch's messages while the batch is being
    examined: the batch's transaction is refused as a whole, its temporary files are
    removed, and each message is settled alone: the late copy is answered with the
    first copy's receipt, the others are delivered."""
    sealer, gw, _ = twins
    envelopes = new_messages(sealer, 8)
    real = gw.inbound._examine_many

    def meanwhile(parsed: list[object], now: datetime) -> object:
        examined = real(parsed, now)  # type: ignore[arg-type]
        assert gw.inbound.accept(envelopes[3], channel="https").status == 200
        return examined

    monkeypatch.setattr(gw.inbound, "_examine_many", meanwhile)
    answers = gw.inbound.accept_many(envelopes, channel="https")
    assert [a.status for a in answers] == [200] * 8
    first = gw.spool.find(Direction.IN, parse_envelope(envelopes[3]).header.message_id)
    assert first is not None
    assert answers[3].body == gw.spool.payload(first.id, "receipt")
    delivered_once(gw, envelopes)
