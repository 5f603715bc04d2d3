"""Issue 12 item 4: with a short poll interval under load, a periodic job that is still
running when its next turn comes skips that turn; that is normal here, so it must not
fill the log with APScheduler's "skipped: maximum number of running instances" warning."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.logs import SKIPPED
from tests.support.gwnodes import NodeSpec, write_config


def test_a_skipped_poll_is_not_a_warning(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    spec = NodeSpec("a", "fips:0600000", tmp_path / "a", extra='[inbound]\n'
                    'poll_interval = "50ms"\n[schedule]\nsftp_pull = "50ms"\n')
    gw = Gateway(load_config(write_config(spec, tmp_path / "keys", [spec])))
    release = threading.Event()
    calls: list[int] = []

    def slow_pull() -> int:  # a pull that takes many poll intervals (a slow partner)
        calls.append(1)
        release.wait(1.5)
        return 0

    gw.pull = slow_pull  # type: ignore[method-assign]
    before = SKIPPED.count
    caplog.set_level(logging.DEBUG)
    try:
        gw.start(listen=False)
        threading.Event().wait(1.2)
    finally:
        release.set()
        gw.stop()
    assert calls, "the pull job never ran"
    noisy = [r for r in caplog.records if "maximum number of running instances"
             in r.getMessage() and r.levelno >= logging.INFO]
    assert noisy == []
    assert SKIPPED.count - before >= 3, "the slow pull did not make the scheduler skip turns"


@pytest.mark.parametrize(("level", "verbose", "shown"), [
    ("info", 0, False), ("warning", 1, False), ("warning", 2, True), ("debug", 0, True)])
def test_job_runs_are_logged_only_at_debug(level: str, verbose: int, shown: bool) -> None:
    # APScheduler's executor writes "Running job" and "executed successfully" at INFO
    # for every run of every job (the outbox scan: several a second); at INFO they would
    # bury the gateway's own lines, so they show only when debugging
    from gateway.node.logs import EXECUTOR_LOGGER, configure
    from gateway.node.monitor_config import LoggingConfig

    root = logging.getLogger()
    saved = (root.level, logging.getLogger(EXECUTOR_LOGGER).level,
             [(h, h.formatter) for h in root.handlers])
    try:
        configure(LoggingConfig(level=level), verbose=verbose)
        executor = logging.getLogger(EXECUTOR_LOGGER + ".default")
        assert executor.isEnabledFor(logging.INFO) is shown
        assert executor.isEnabledFor(logging.WARNING)  # its failures always show
        assert logging.getLogger("gateway.node.daemon").isEnabledFor(logging.INFO) \
            is (level != "warning" or verbose > 0)
    finally:
        root.setLevel(saved[0])
        logging.getLogger(EXECUTOR_LOGGER).setLevel(saved[1])
        for handler in root.handlers[:]:
            if all(handler is not h for h, _ in saved[2]):
                root.removeHandler(handler)  # configure() adds one when there was none
        for handler, formatter in saved[2]:
            handler.setFormatter(formatter)
