"""A demo killed without a chance to clean up (``kill -9``) takes its nodes and its sshd
with it (gateway.demo.lifetime): nothing of it keeps running."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from gateway.demo.lifetime import end_with_this_process
from tests.support.demoproc import start_kept_demo
from tests.support.reaper import running_under

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_killed_demo_takes_its_nodes_and_sshd_with_it(tmp_path: Path) -> None:
    demo, directory, _ = start_kept_demo(tmp_path)
    try:
        children = {pid: args for pid, args in running_under(directory).items()
                    if pid != demo.pid}
        assert sum(" run" in a for a in children.values()) == 4, children  # the four nodes
        assert any("sshd" in a for a in children.values()), children
        demo.send_signal(signal.SIGKILL)
        demo.wait(10)
        deadline = time.monotonic() + 60
        while running_under(directory):
            assert time.monotonic() < deadline, f"still running: {running_under(directory)}"
            time.sleep(0.2)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)


def test_the_request_is_only_made_on_linux() -> None:
    preexec = end_with_this_process()
    assert (preexec is not None) == sys.platform.startswith("linux")
