"""What only a shared store does: leases with fencing, takeover after expiry, outbox files
claimed once, roles held by one node, one audit chain written by many nodes, migrations,
and recovery after the database was away. Real PostgreSQL (a throw-away cluster)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.cli import main
from gateway.errors import Duplicate, LeaseLost, SpoolError
from gateway.store.pg_schema import MIGRATIONS, migrate
from gateway.store.postgres import PostgresSpool
from gateway.store.spool import NewMessage
from gateway.store.states import Direction, State
from tests.support.postgres import Cluster

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sealed(spool: PostgresSpool, mid: str) -> int:
    with spool.transaction(NOW) as txn:
        msg = txn.insert(NewMessage(Direction.OUT, message_id=mid, partner="fips:4800000"),
                         State.RECEIVED, payloads={"document": b"<doc/>"})
        txn.transition(msg.id, State.SEALED, payloads={"envelope": b"<env/>"})
    return msg.id


def run_threads(target: Callable[..., None], args: list[tuple[Any, ...]]) -> None:
    """``target(*a)`` for each ``a`` in threads of their own, all at once; each must end
    within two minutes."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)


@pytest.fixture
def nodes(pg_url: str) -> list[PostgresSpool]:
    spools = [PostgresSpool(pg_url, holder=f"node-{i}", lease=30.0) for i in range(3)]
    yield spools  # type: ignore[misc]
    for s in spools:
        s.close()


def codes(spool: PostgresSpool, mid: str) -> list[str]:
    with spool.audit_log() as log:
        return [e.event.code for e in log.query(message_id=mid)]


def test_a_late_writer_whose_lease_was_taken_over_writes_nothing(
        nodes: list[PostgresSpool]) -> None:
    a, b, _ = nodes
    row = sealed(a, "m-1")
    assert a.claim(row, State.SEALED, NOW) is not None
    # b sees it neither due nor claimable while a's lease runs
    assert b.due(NOW + timedelta(seconds=29)) == []
    assert b.claim(row, State.SENDING, NOW + timedelta(seconds=29)) is None
    later = NOW + timedelta(seconds=31)
    assert [m.id for m in b.due(later)] == [row]
    taken = b.claim(row, State.SENDING, later)
    assert taken is not None
    assert taken.attempts == 2
    with pytest.raises(LeaseLost), a.transaction(later) as txn:
        txn.transition(row, State.SENT)  # a's answer came back too late
    with b.transaction(later) as txn:
        txn.transition(row, State.SENT)
    assert a.get(row).state is State.SENT
    assert codes(a, "m-1") == ["intake", "sealed", "sending", "retry_scheduled", "sending",
                               "sent"]
    with a.audit_log() as log:
        takeover = next(log.query(code="retry_scheduled"))
        assert takeover.event.detail == {"lease_expired": 1}
        assert log.verify().ok


def test_a_batch_claim_takes_a_lease_on_each_message_it_gets(
        nodes: list[PostgresSpool]) -> None:
    """claim_many: one transaction; each message claimed under this node's lease and
    fenced like a single claim; one held by another node is left out."""
    a, b, _ = nodes
    rows = [sealed(a, f"m-batch-{n}") for n in range(4)]
    assert b.claim(rows[2], State.SEALED, NOW) is not None
    taken = a.claim_many([(row, State.SEALED) for row in rows], NOW)
    assert [m.id for m in taken] == [rows[0], rows[1], rows[3]]
    assert {m.state for m in taken} == {State.SENDING}
    assert b.due(NOW + timedelta(seconds=29)) == []  # all four held
    later = NOW + timedelta(seconds=31)
    assert b.claim(rows[0], State.SENDING, later) is not None  # a's lease ran out
    with pytest.raises(LeaseLost), a.transaction(later) as txn:
        txn.transition(rows[0], State.SENT)  # fenced: a's answer is too late
    with a.transaction(NOW) as txn:
        txn.transition(rows[1], State.SENT)  # a still holds this one
    assert codes(a, "m-batch-1") == ["intake", "sealed", "sending", "sent"]


def test_a_restarted_node_resumes_only_its_own_sends(pg_url: str,
                                                      nodes: list[PostgresSpool]) -> None:
    a, b, _ = nodes
    mine, theirs = sealed(a, "m-a"), sealed(a, "m-b")
    assert a.claim(mine, State.SEALED, NOW) is not None
    assert b.claim(theirs, State.SEALED, NOW) is not None
    again = PostgresSpool(pg_url, holder="node-0")  # node-0 restarted
    try:
        assert again.recover_sending(NOW) == 1
    finally:
        again.close()
    assert a.get(mine).state is State.RETRYING
    assert a.get(theirs).state is State.SENDING


def test_outbox_files_are_claimed_once_across_nodes(nodes: list[PostgresSpool]) -> None:
    won: list[str] = []
    lock = threading.Lock()

    def scan(spool: PostgresSpool) -> None:
        for i in range(30):
            if spool.claim_intake(f"key-{i}", NOW):
                with lock:
                    won.append(f"key-{i}")

    run_threads(scan, [(s,) for s in nodes])
    assert sorted(won) == sorted(f"key-{i}" for i in range(30))
    a, b, _ = nodes
    holder_of_0 = next(s for s in nodes if s.claim_intake("key-0", NOW))
    other = b if holder_of_0 is a else a
    assert not other.claim_intake("key-0", NOW + timedelta(seconds=29))
    assert other.claim_intake("key-0", NOW + timedelta(seconds=31))  # its holder died


def test_a_role_is_held_by_one_node_until_its_lease_expires(
        nodes: list[PostgresSpool]) -> None:
    a, b, c = nodes
    assert a.leader("audit-checkpoint", NOW)
    assert not b.leader("audit-checkpoint", NOW + timedelta(seconds=10))
    assert a.leader("audit-checkpoint", NOW + timedelta(seconds=20))  # renewed
    assert not c.leader("audit-checkpoint", NOW + timedelta(seconds=45))
    assert c.leader("audit-checkpoint", NOW + timedelta(seconds=51))
    assert b.leader("audit-retention", NOW)  # another role, another holder


def test_many_nodes_write_one_chain(nodes: list[PostgresSpool]) -> None:
    errors: list[BaseException] = []

    def work(spool: PostgresSpool, k: int) -> None:
        try:
            for i in range(15):
                row = sealed(spool, f"m-{k}-{i}")
                for s in nodes:  # every node tries; exactly one claim wins
                    s.claim(row, State.SEALED, NOW)
                with spool.transaction(NOW) as txn:
                    txn.transition(row, State.SENT)
        except BaseException as exc:
            errors.append(exc)

    run_threads(work, [(s, k) for k, s in enumerate(nodes)])
    assert errors == []
    with nodes[0].audit_log() as log:
        report = log.verify()
    assert report.ok, report.problems
    assert report.events == 45 * 4  # intake, sealed, sending, sent


def test_migrate_is_versioned_and_idempotent(pg_url: str, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    with psycopg.connect(pg_url, autocommit=True) as raw:
        assert migrate(raw) == [v for v, _, _ in MIGRATIONS]
        assert migrate(raw) == []
    for _ in range(2):
        assert main(["store", "migrate", "--url", pg_url]) == 0
    assert f"schema version {MIGRATIONS[-1][0]}" in capsys.readouterr().out


def test_an_unmigrated_database_is_named_not_created(postgres_cluster: Cluster) -> None:
    url = postgres_cluster.new_schema()
    with pytest.raises(SpoolError, match="gateway store migrate") as info:
        PostgresSpool(url, holder="x", create=False)
    assert "postgres@" not in str(info.value)  # the URL's user and password stay out


def test_the_store_recovers_after_the_database_was_away(postgres_cluster: Cluster,
                                                        tmp_path: Path) -> None:
    url = postgres_cluster.new_schema()
    spool = PostgresSpool(url, holder="a", timeout=2.0)
    try:
        row = sealed(spool, "m-1")
        postgres_cluster.stop("fast")
        try:
            with pytest.raises(SpoolError):
                spool.get(row)
            with pytest.raises(SpoolError), spool.transaction(NOW) as txn:
                txn.transition(row, State.CANCELLED)
        finally:
            postgres_cluster.start()
        assert spool.get(row).state is State.SEALED  # the failed change left nothing
        with spool.transaction(NOW) as txn:
            txn.transition(row, State.CANCELLED)
        assert spool.get(row).state is State.CANCELLED
    finally:
        spool.close()


def test_copy_from_sqlite_keeps_messages_payloads_and_the_chain(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.store.audit_chain import fingerprint
    from gateway.store.sealing import Sealer
    from gateway.store.sqlite import SqliteSpool
    from tests.store.test_at_rest import encryption_key
    from tests.support.audit_keys import make_signer

    sealer_keys = encryption_key("node")
    signer = make_signer("ec")
    lite = SqliteSpool(tmp_path / "gateway.db")
    lite.use_sealer(Sealer(sealer_keys))
    rows = [sealed(lite, f"m-{i}") for i in range(5)]  # type: ignore[arg-type]
    with lite.transaction(NOW) as txn:
        txn.transition(rows[0], State.CANCELLED)
        txn.store_receipt("m-1", "received", b"<Receipt/>")
    with lite.audit_log() as log:
        log.checkpoint(signer, NOW)
    before = [lite.get(r) for r in rows]
    lite.close()

    target = f"sqlite:{tmp_path / 'gateway.db'}"
    assert main(["store", "copy", "--from", target, "--to", pg_url]) == 0
    assert "5 messages" in capsys.readouterr().out
    assert main(["store", "copy", "--from", target, "--to", pg_url]) == 1  # not empty now
    assert "not empty" in capsys.readouterr().err

    pg = PostgresSpool(pg_url, holder="a")
    try:
        pg.use_sealer(Sealer(sealer_keys))
        assert [pg.get(r) for r in rows] == before
        assert pg.payload(rows[3], "document") == b"<doc/>"  # sealed, bound to its id
        with pg.audit_log() as log:
            report = log.verify(pinned={fingerprint(signer.certificate)})
            assert report.ok, report.problems
            assert report.checkpoints == 1
            assert report.receipts == 1
            assert next(log.query(code="store_copied")).event.detail == {
                "messages": 5, "events": 13}
        assert sealed(pg, "m-new") > max(rows)  # new ids continue after the copied ones
    finally:
        pg.close()


def test_half_done_inbound_work_is_recovered_by_the_node_that_recorded_it(
        nodes: list[PostgresSpool]) -> None:
    a, b, _ = nodes
    with a.transaction(NOW) as txn:
        row = txn.insert(NewMessage(Direction.IN, message_id="in-1"), State.RECEIVED).id
        txn.transition(row, State.DELIVERING, changes={"source": ".in-1.tmp"})
    assert [m.id for m in a.left_by_me(State.DELIVERING, Direction.IN)] == [row]
    assert b.left_by_me(State.DELIVERING, Direction.IN) == []  # its temp file is in a's inbox


def test_nodes_with_many_threads_share_commits_and_never_deadlock(
        nodes: list[PostgresSpool]) -> None:
    """Group commit on the shared store: 3 nodes x 4 threads, each recording messages,
    every node trying to claim each one (row locks ``FOR UPDATE``) and the recorder
    finishing it, with a duplicate insert (refused inside its group) now and then. Nothing
    deadlocks, every change lands exactly once, the one chain is intact, and the nodes'
    transactions shared commits."""
    errors: list[BaseException] = []
    duplicates = [0]

    def work(spool: PostgresSpool, k: int) -> None:
        try:
            for i in range(10):
                row = sealed(spool, f"g-{k}-{i}")
                for s in nodes:
                    s.claim(row, State.SEALED, NOW)
                with spool.transaction(NOW) as txn:
                    txn.transition(row, State.SENT)
                if i % 3 == 0:
                    try:
                        sealed(spool, f"g-{k}-{i}")
                    except Duplicate:
                        duplicates[0] += 1  # (one thread per k: no race on the count)
        except BaseException as exc:
            errors.append(exc)

    run_threads(work, [(nodes[k % 3], k) for k in range(12)])
    assert errors == []
    assert duplicates[0] == 12 * 4
    sent = nodes[0].select(states=[State.SENT], limit=1000)
    assert sorted(m.message_id or "" for m in sent) == sorted(
        f"g-{k}-{i}" for k in range(12) for i in range(10))
    with nodes[0].audit_log() as log:
        report = log.verify()
    assert report.ok, report.problems
    assert report.events == 120 * 4  # intake, sealed, sending, sent; refused ones left none
    members = sum(s._groups.committed_members for s in nodes)
    commits = sum(s._groups.commits for s in nodes)
    # every successful transaction committed: 120 x (record, claim, sent); the refused
    # duplicates and the claims another node won (SKIP LOCKED or state) commit nothing
    assert members >= 120 * 3
    assert commits < members, (commits, members)


def test_a_refused_member_leaves_its_group_and_the_chain_intact(pg_url: str) -> None:
    """A member whose statement fails (a duplicate message ID: the PostgreSQL transaction
    is aborted until its savepoint is rolled back) is refused alone; a member queued with
    it in the same group still commits, with its audit events."""
    spool = PostgresSpool(pg_url, holder="a")
    try:
        sealed(spool, "d-1")
        started, go = threading.Event(), threading.Event()
        outcome: dict[str, object] = {}

        def first() -> None:
            with spool.transaction(NOW) as txn:
                txn.insert(NewMessage(Direction.OUT, message_id="d-2"), State.RECEIVED)
                started.set()
                go.wait(10)  # the second writer queues behind this one: same group
            outcome["first"] = "ok"

        def second() -> None:
            try:
                sealed(spool, "d-1")
            except Duplicate:
                outcome["second"] = "duplicate"

        a = threading.Thread(target=first)
        a.start()
        assert started.wait(10)
        b = threading.Thread(target=second)
        b.start()
        deadline = time.monotonic() + 10
        while spool._groups._queued == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        go.set()
        a.join(20)
        b.join(20)
        assert outcome == {"first": "ok", "second": "duplicate"}
        assert {m.message_id for m in spool.select(limit=10)} == {"d-1", "d-2"}
        with spool.audit_log() as log:
            report = log.verify()
        assert report.ok, report.problems
        assert report.events == 3  # d-1 intake + sealed, d-2 intake
    finally:
        spool.close()


def test_groups_of_different_nodes_locking_the_same_rows_never_deadlock(
        nodes: list[PostgresSpool]) -> None:
    """The case group commit could deadlock in: every thread of every node locks shared
    messages (``FOR UPDATE``, waiting) in its own order and appends an audit event, so a
    group holds row locks of its earlier members while its later members wait. Because a
    group takes the audit chain's lock before any row lock, no group ever waits for the
    chain while holding a row another group waits for: every transaction commits."""
    rows = [sealed(nodes[0], f"s-{i}") for i in range(4)]
    errors: list[BaseException] = []

    def work(spool: PostgresSpool, k: int) -> None:
        try:
            for i in range(12):
                row = rows[(k + i * (1 + k % 3)) % len(rows)]
                with spool.transaction(NOW) as txn:
                    message = txn.get(row)  # FOR UPDATE: waits for a holder
                    txn.audit("duplicate", message, actor=f"t{k}")
        except BaseException as exc:
            errors.append(exc)

    run_threads(work, [(nodes[k % 3], k) for k in range(12)])
    assert errors == []
    with nodes[0].audit_log() as log:
        report = log.verify()
    assert report.ok, report.problems
    assert report.events == 4 * 2 + 12 * 12
