"""Shared test configuration."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, settings

from tests.support import reaper
from tests.support.postgres import Cluster, running_cluster

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

# Machines here are small and shared: correctness, not speed, is what tests check.
settings.register_profile(
    "gateway",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60")),
)
settings.load_profile("gateway")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Third-party test material, each folder with its provenance and licence."""
    return FIXTURES


@pytest.fixture(scope="module")
def key_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where test nodes' generated keys are kept, shared by one module's tests
    (``tests.support.gwnodes.write_config`` copies them from here)."""
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throw-away PostgreSQL cluster for the whole session (started on first use)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres_cluster: Cluster) -> str:
    """A fresh, empty PostgreSQL store for one test (a schema of its own)."""
    return postgres_cluster.new_schema()


# --- no process left behind (tests/support/reaper.py) -------------------------------------


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI timeout, `kill`) ends the run like Ctrl-C: tests' finally blocks and
    # fixture teardowns still stop what they started.
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture(scope="session", autouse=True)
def _session_watchdog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """If this test process dies without cleaning up (SIGKILL, a second Ctrl-C), whatever
    still runs from the session's temporary folders is stopped by the watchdog."""
    reaper.watch(tmp_path_factory.getbasetemp())
    yield
    reaper.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if call.when == "call":
        item.stash[_CALL_PASSED] = getattr(report, "passed", False)
    return report


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _no_process_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After an integration test (those start servers and daemons), nothing it started
    from its tmp_path runs any more: what does is stopped, and a test that passed fails
    for having left it."""
    if (request.node.get_closest_marker("integration") is None
            or "tmp_path" not in request.fixturenames):
        yield
        return
    folder = request.getfixturevalue("tmp_path")  # set up first, so torn down after this
    yield
    left = reaper.stop_leftovers(folder)
    if left and request.node.stash.get(_CALL_PASSED, False):
        pytest.fail(f"the test left {len(left)} process(es) running (now stopped): "
                    + "; ".join(x[:200] for x in left))
