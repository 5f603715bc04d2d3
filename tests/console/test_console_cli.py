"""``gateway console`` and ``gateway run`` with ``[console]``, as processes: each serves
the login page on the configured port with the security headers, and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.gwnodes import free_port
from tests.support.opsdata import ops_node

pytestmark = [pytest.mark.integration]



@pytest.mark.parametrize("command", ["console", "run"])
def test_console_process_serves_and_stops(command: str, tmp_path: Path, key_cache: Path,
                                          repo_root: Path) -> None:
    node = ops_node(tmp_path, key_cache)
    port = free_port()
    with node.config_path.open("a") as f:
        f.write(f"\n[console]\nport = {port}\n")
    log = tmp_path / "out.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "--config",
                                 str(node.config_path), command], cwd=repo_root,
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while f"http://127.0.0.1:{port}/" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=20) as resp:
            assert resp.status == 200
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
            assert b'name="password"' in resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-2000:]
