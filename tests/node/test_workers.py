"""The worker-process machinery both pools share (gateway/node/workers.py), with a role of
its own: answers come back in order from either way of calling; a call that raises in a
worker comes back None and leaves the pool as it was; a worker killed while idle is seen
at the next call (done in the daemon instead, logged once, new workers next); repeated
breaks give the pool up until the next reload; close ends every worker."""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.documents.csenet import fields
from gateway.documents.csenet.layout import RECORD_NAMES
from gateway.node.config import Config, load_config
from gateway.node.nodekeys import NodeKeys, load_node_keys
from gateway.node.workers import MAX_BREAKS, WorkerPool, compiled_registry
from tests.node.test_intake_pool import two_specs
from tests.support.gwnodes import wait_until
from tests.support.procs import alive

pytestmark = pytest.mark.integration  # every test here starts worker processes


def _load(config: Config, keys: NodeKeys) -> None:
    """This role keeps nothing."""


def _double(x: int) -> int:
    return 2 * x


def _boom(x: int) -> int:
    raise ValueError(f"no {x}")


def _pid() -> int:
    return os.getpid()


class Doubler(WorkerPool):
    kind = "test"
    items = ("number(s)", "doubled")
    stale_work = "doubles"
    loader = staticmethod(_load)


def _load_compiled(config: Config, keys: NodeKeys) -> None:
    """What the intake and receive roles do first: compile what validation uses."""
    compiled_registry(config)


def _patterns_compiled() -> int:
    return fields._clean_pattern.cache_info().currsize


class Compiled(Doubler):
    loader = staticmethod(_load_compiled)


def node_config(tmp_path: Path) -> Config:
    """The configuration of a node with its keys (a worker reads them at start)."""
    cache = tmp_path / "keys"
    cache.mkdir()
    a, _ = two_specs(tmp_path, cache)
    return load_config(a.config_path)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Doubler]:
    config = node_config(tmp_path)
    made = Doubler(config, load_node_keys(config), workers=2)
    try:
        yield made
    finally:
        made.close()


def ready(pool: Doubler) -> list[int]:
    generation = pool._generation()
    assert generation is not None
    wait_until(generation.ready.is_set, 60, "the workers")
    return pool.pids()


def call(pool: Doubler, func: object, *args: object) -> object:
    generation = pool._generation()
    assert generation is not None
    return pool.call(generation, func, args)  # type: ignore[arg-type]


def test_answers_come_back_in_order_both_ways(pool: Doubler) -> None:
    pids = ready(pool)
    assert len(pids) == 2
    generation = pool._generation()
    assert generation is not None
    collect = pool.dispatch(generation, _double, [(i,) for i in range(40)])
    assert collect() == [2 * i for i in range(40)]
    assert [call(pool, _double, i) for i in range(5)] == [0, 2, 4, 6, 8]
    both = {call(pool, _pid) for _ in range(20)}
    assert both <= set(pids)
    assert pool.pids() == pids


def test_a_call_that_raises_comes_back_none_and_keeps_the_pool(
        pool: Doubler, caplog: pytest.LogCaptureFixture) -> None:
    pids = ready(pool)
    with caplog.at_level(logging.WARNING, logger="gateway.node.workers"):
        assert call(pool, _boom, 3) is None
    assert [r.getMessage() for r in caplog.records] == [
        "test worker failed (ValueError); doubled in the daemon instead"]
    assert "no 3" not in caplog.text  # the exception's text never reaches the log
    assert call(pool, _double, 4) == 8
    assert pool.pids() == pids


def test_a_worker_killed_while_idle_is_seen_at_the_next_call(
        pool: Doubler, caplog: pytest.LogCaptureFixture) -> None:
    first = ready(pool)
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(p) for p in first), 10, "the workers to end")
    with caplog.at_level(logging.WARNING, logger="gateway.node.workers"):
        assert call(pool, _double, 1) is None  # the caller does it itself
    broke = [r for r in caplog.records if "ended unexpectedly" in r.getMessage()]
    assert len(broke) == 1
    assert call(pool, _double, 21) == 42  # new workers, started by this call
    assert not set(pool.pids()) & set(first)


def test_repeated_breaks_give_the_pool_up_until_a_reload(
        pool: Doubler, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.node.workers"):
        for _ in range(MAX_BREAKS):
            pids = ready(pool)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            assert call(pool, _double, 1) is None
    assert "keep ending unexpectedly" in caplog.records[-1].getMessage()
    assert pool._generation() is None  # given up: no new workers
    assert pool.pids() == []
    pool.recycle(load_node_keys(pool.config))  # the reload
    ready(pool)
    assert call(pool, _double, 5) == 10


def test_close_ends_every_worker(pool: Doubler) -> None:
    pids = ready(pool)
    generation = pool._generation()
    assert generation is not None
    pool.close()
    assert not any(alive(p) for p in pids)
    assert pool.call(generation, _double, (1,)) is None
    assert pool._generation() is None


class NoProcesses:
    """A multiprocessing context whose processes cannot start (the fault this test
    injects: fork refused for memory or a process limit)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.tries = 0

    def Pipe(self) -> object:  # noqa: N802 - multiprocessing's name
        return self.real.Pipe()  # type: ignore[attr-defined]

    def Process(self, **kwargs: object) -> object:  # noqa: N802 - multiprocessing's name
        process = self.real.Process(**kwargs)  # type: ignore[attr-defined]

        def refuse() -> None:
            self.tries += 1
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

        process.start = refuse
        return process


def test_workers_that_cannot_start_leave_the_work_to_the_daemon(
        pool: Doubler, caplog: pytest.LogCaptureFixture) -> None:
    real = pool._context
    pool._context = NoProcesses(real)  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="gateway.node.workers"):
        assert pool._generation() is None
        assert pool._generation() is None  # given up: not tried again
    assert pool._context.tries == 1  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records] == [
        "cannot start the test worker processes (Resource temporarily unavailable); the "
        "daemon doubles itself until the next reload"]
    assert pool.pids() == []
    pool._context = real
    pool.recycle(load_node_keys(pool.config))  # the reload tries again
    ready(pool)
    assert call(pool, _double, 2) == 4


def test_workers_replaced_while_starting_end(pool: Doubler) -> None:
    """A reload right after the start (SIGHUP as the daemon comes up): the first
    workers, not yet ready, end once they have started; the new ones answer."""
    generation = pool._generation()
    assert generation is not None
    first = pool.pids()
    assert not generation.ready.is_set()
    pool.recycle(load_node_keys(pool.config))
    second = ready(pool)
    assert not set(second) & set(first)
    wait_until(lambda: not any(alive(p) for p in first), 30, "the first workers to end")
    assert call(pool, _double, 3) == 6


def test_a_call_that_cannot_be_sent_costs_no_worker(
        pool: Doubler, caplog: pytest.LogCaptureFixture) -> None:
    pids = ready(pool)
    with caplog.at_level(logging.WARNING, logger="gateway.node.workers"):
        for _ in range(3):  # more than there are workers
            assert call(pool, _double, lambda: 1) is None  # a lambda does not pickle
    assert {r.getMessage() for r in caplog.records} == {
        "test worker failed (AttributeError); doubled in the daemon instead"}
    assert [call(pool, _double, i) for i in range(4)] == [0, 2, 4, 6]
    assert pool.pids() == pids


def test_call_when_free_takes_its_arguments_only_once_a_worker_is_free(pool: Doubler
                                                                        ) -> None:
    ready(pool)
    generation = pool._generation()
    assert generation is not None
    busy = [generation.free.pop() for _ in range(len(generation.free))]  # every worker
    taken: list[str] = []
    out: list[object] = []

    def take() -> tuple[int]:
        taken.append("taken")
        return (21,)

    caller = threading.Thread(target=lambda: out.append(
        pool.call_when_free(generation, _double, take)))
    caller.start()
    caller.join(0.5)
    assert caller.is_alive()  # waits for a worker
    assert taken == []  # and takes nothing yet
    with generation.cond:
        generation.free.extend(busy)
        generation.cond.notify_all()
    caller.join(10)
    assert taken == ["taken"]
    assert out == [(True, 42)]
    # nothing to take: no call, the worker goes back to the free list
    assert pool.call_when_free(generation, _double, lambda: None)[0] is False
    assert len(generation.free) == 2
    assert call(pool, _double, 4) == 8


def test_a_worker_starts_with_the_csenet_patterns_compiled(tmp_path: Path) -> None:
    """compiled_registry (the intake and receive workers' start) compiles every CSENet
    layout's clean pattern before the worker says it is ready, so the first transactions
    a worker validates do not pay for it."""
    config = node_config(tmp_path)
    made = Compiled(config, load_node_keys(config), workers=1)
    try:
        ready(made)
        assert call(made, _patterns_compiled) == len(RECORD_NAMES)
    finally:
        made.close()
