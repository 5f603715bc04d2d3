"""Group commit (gateway.store.groupcommit): queued writers share one commit, each still
all or nothing, none returning before the commit that holds its changes."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import SpoolError
from gateway.store.groupcommit import CommitGroups
from gateway.store.spool import NewMessage
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise SpoolError(f"database error: {exc}") from None


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT, p INTEGER REFERENCES parent(id) "
                 "DEFERRABLE INITIALLY DEFERRED)")
    return conn


def _committed(path: Path) -> list[str]:
    """What another connection (another process) sees: committed rows only."""
    other = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in other.execute("SELECT v FROM t"))
    finally:
        other.close()


def _queued(groups: CommitGroups, n: int) -> None:
    """Wait until ``n`` threads are queued for the connection."""
    deadline = time.monotonic() + 10
    while groups._queued < n:
        assert time.monotonic() < deadline, "threads did not queue"
        time.sleep(0.005)


def _run_group(groups: CommitGroups, conn: sqlite3.Connection,
               bodies: list[Callable[[], None]]) -> list[BaseException | None]:
    """The first body runs while the others queue behind it; each member's outcome."""
    outcome: list[BaseException | None] = [None] * len(bodies)
    inside = threading.Event()
    go = threading.Event()

    def first() -> None:
        try:
            with groups.member(conn):
                inside.set()
                go.wait(10)
                bodies[0]()
        except BaseException as exc:
            outcome[0] = exc

    def other(i: int) -> None:
        try:
            with groups.member(conn):
                bodies[i]()
        except BaseException as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=first)]
    threads[0].start()
    inside.wait(10)
    for i in range(1, len(bodies)):
        threads.append(threading.Thread(target=other, args=(i,)))
        threads[-1].start()
    _queued(groups, len(bodies) - 1)
    go.set()
    for t in threads:
        t.join(10)
    return outcome


def test_queued_writers_share_one_commit(tmp_path: Path) -> None:
    conn = _db(tmp_path / "g.db")
    groups = CommitGroups(_translate)
    values = [f"v{i}" for i in range(5)]
    bodies = [lambda v=v: conn.execute("INSERT INTO t (v) VALUES (?)", (v,)) for v in values]
    assert _run_group(groups, conn, bodies) == [None] * 5  # type: ignore[misc]
    assert (groups.commits, groups.committed_members) == (1, 5)
    assert _committed(tmp_path / "g.db") == values


def test_a_lone_writer_commits_before_its_block_exits(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    conn = _db(path)
    groups = CommitGroups(_translate)
    for i in range(3):
        with groups.member(conn):
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"v{i}",))
        assert _committed(path) == [f"v{j}" for j in range(i + 1)]
    assert (groups.commits, groups.committed_members) == (3, 3)


def test_a_failing_member_is_rolled_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    conn = _db(path)
    groups = CommitGroups(_translate)

    def bad() -> None:
        conn.execute("INSERT INTO t (v) VALUES ('bad')")
        raise ValueError("the member's own failure")

    bodies = [lambda: conn.execute("INSERT INTO t (v) VALUES ('a')"), bad,
              lambda: conn.execute("INSERT INTO t (v) VALUES ('c')")]
    outcome = _run_group(groups, conn, bodies)
    assert outcome[0] is None
    assert outcome[2] is None
    assert isinstance(outcome[1], ValueError)
    assert _committed(path) == ["a", "c"]
    assert groups.commits == 1


def test_a_failed_commit_fails_every_member_and_keeps_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    conn = _db(path)
    groups = CommitGroups(_translate)
    # a deferred foreign key is checked at COMMIT: the whole group's commit fails
    bodies = [lambda: conn.execute("INSERT INTO t (v) VALUES ('a')"),
              lambda: conn.execute("INSERT INTO t (v, p) VALUES ('orphan', 42)"),
              lambda: conn.execute("INSERT INTO t (v) VALUES ('c')")]
    outcome = _run_group(groups, conn, bodies)
    assert all(isinstance(o, SpoolError) for o in outcome), outcome
    assert _committed(path) == []
    assert not conn.in_transaction
    with groups.member(conn):  # the connection is usable again
        conn.execute("INSERT INTO t (v) VALUES ('after')")
    assert _committed(path) == ["after"]


def test_a_read_waits_for_the_open_group_and_sees_only_committed_data(
        tmp_path: Path) -> None:
    """A reads while A's changes wait for B (queued) to join and commit: the read neither
    sees A's uncommitted row nor breaks the group up; it runs after the one commit."""
    path = tmp_path / "g.db"
    conn = _db(path)
    groups = CommitGroups(_translate)
    inside, go = threading.Event(), threading.Event()
    seen: list[tuple[list[str], list[str]]] = []

    def writer(value: str, hold: bool) -> None:
        with groups.member(conn):
            if hold:
                inside.set()
                go.wait(10)
            conn.execute("INSERT INTO t (v) VALUES (?)", (value,))

    def reader() -> None:
        with groups.reading(conn):
            own = sorted(r[0] for r in conn.execute("SELECT v FROM t"))
            seen.append((own, _committed(path)))

    a = threading.Thread(target=writer, args=("a", True))
    a.start()
    inside.wait(10)
    r = threading.Thread(target=reader)
    r.start()
    time.sleep(0.1)  # the reader is waiting for the connection
    b = threading.Thread(target=writer, args=("b", False))
    b.start()
    _queued(groups, 1)
    go.set()
    for t in (a, r, b):
        t.join(10)
    assert seen == [(["a", "b"], ["a", "b"])]
    assert (groups.commits, groups.committed_members) == (1, 2)


def test_a_transaction_inside_another_is_refused(tmp_path: Path) -> None:
    conn = _db(tmp_path / "g.db")
    groups = CommitGroups(_translate)
    with groups.member(conn):
        conn.execute("INSERT INTO t (v) VALUES ('outer')")
        with pytest.raises(SpoolError, match="inside another"), groups.member(conn):
            pass
    assert _committed(tmp_path / "g.db") == ["outer"]


def test_spool_transactions_of_many_threads_share_commits(tmp_path: Path) -> None:
    """The spool itself: 8 threads x 25 inserts with their audit events, all recorded,
    the audit chain intact, fewer commits than transactions."""
    spool = SqliteSpool(tmp_path / "spool.db")
    now = datetime.now(UTC)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                with spool.transaction(now) as txn:
                    txn.insert(NewMessage(Direction.OUT, message_id=f"m-{t}-{i}",
                                          partner="fips:4800000"), State.RECEIVED,
                               payloads={"envelope": b"x" * 2000})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    groups = spool._groups
    assert groups.committed_members == 200
    assert len(spool.select(states=[State.RECEIVED], limit=1000)) == 200
    with spool.audit_log() as audit:
        assert audit.verify().ok
    spool.close()


class _InterruptedCommit:
    """A connection whose next COMMIT is interrupted (as by Ctrl-C in the committing
    thread); everything else goes to the real connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.interrupt = True

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        return self.conn.execute(sql, *args)


def test_an_interrupted_commit_fails_its_waiting_members_and_keeps_nothing(
        tmp_path: Path) -> None:
    """The thread committing for the group is interrupted: it sees the interruption, the
    members waiting on that commit get a SpoolError instead of waiting forever, and
    nothing of the group stays."""
    path = tmp_path / "g.db"
    conn = _db(path)
    wrapped = _InterruptedCommit(conn)
    groups = CommitGroups(_translate)
    bodies = [lambda: conn.execute("INSERT INTO t (v) VALUES ('a')"),
              lambda: conn.execute("INSERT INTO t (v) VALUES ('b')")]
    outcome = _run_group(groups, wrapped, bodies)  # type: ignore[arg-type]
    assert sorted(type(o).__name__ for o in outcome) == ["KeyboardInterrupt", "SpoolError"]
    assert _committed(path) == []
    assert not conn.in_transaction
    with groups.member(wrapped):
        conn.execute("INSERT INTO t (v) VALUES ('after')")
    assert _committed(path) == ["after"]


class _RefusedSavepoint(_InterruptedCommit):
    """A connection that refuses the next SAVEPOINT (as a full disk might)."""

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith("SAVEPOINT") and self.interrupt:
            self.interrupt = False
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)


def test_a_member_that_cannot_start_leaves_no_group_open(tmp_path: Path) -> None:
    """The savepoint of a lone writer fails after the group's transaction began: the
    writer gets a SpoolError, and the transaction is not left open (a read would
    otherwise wait for a commit no writer is coming to make)."""
    conn = _db(tmp_path / "g.db")
    wrapped = _RefusedSavepoint(conn)
    groups = CommitGroups(_translate)
    with pytest.raises(SpoolError, match="disk I/O"), groups.member(wrapped):
        pass
    assert not conn.in_transaction
    done = threading.Event()

    def read() -> None:
        with groups.reading(wrapped):
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert done.wait(5), "the read waited for a group nobody will commit"


def test_a_group_whose_begin_step_fails_leaves_no_transaction_open(tmp_path: Path) -> None:
    """``on_begin`` (the PostgreSQL store takes its chain lock there) fails: the writer
    gets the error, the transaction begun for the group is rolled back, and the next
    writer starts a group of its own and commits."""
    conn = _db(tmp_path / "g.db")
    calls: list[str] = []

    def begin(c: sqlite3.Connection) -> None:
        calls.append("begin")
        if len(calls) == 1:
            raise SpoolError("lock refused")

    groups = CommitGroups(_translate, on_begin=begin)
    with pytest.raises(SpoolError, match="lock refused"), groups.member(conn):
        conn.execute("INSERT INTO t (v) VALUES ('never')")
    assert not conn.in_transaction
    with groups.member(conn):
        conn.execute("INSERT INTO t (v) VALUES ('kept')")
    assert calls == ["begin", "begin"]
    assert _committed(tmp_path / "g.db") == ["kept"]
