"""``gateway demo --keep-running`` as a test starts it: a subprocess in the repository root,
its output in a file, waited for until the network is up and holding."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

__all__ = ["REPO", "start_kept_demo"]

REPO = Path(__file__).resolve().parents[2]


def start_kept_demo(tmp_path: Path, timeout: float = 120
                    ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """(process, demo directory, output file) once the demo says "Press Ctrl-C"; the
    process is killed if it does not get there."""
    directory = tmp_path / "cse-demo"
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--keep-running",
                                 "--dir", str(directory)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while "Press Ctrl-C" not in log.read_text():
            assert demo.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo did not reach --keep-running"
            time.sleep(0.2)
    except BaseException:
        demo.kill()
        demo.wait(10)
        raise
    return demo, directory, log
