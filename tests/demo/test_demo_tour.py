"""The README's five-minute tour, run as written: `gateway demo --keep-running`, then every
command of steps 2-4 (drop a file, watch it flow, inspect the trail, check a message with
stock OpenSSL) in a shell from the repository root, with the demo folder moved under
tmp_path. Then Ctrl-C: the demo stops, verifies and exits 0."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.demoproc import REPO, start_kept_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README_DIR = "/tmp/cse-demo"


def tour_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = readme.index("**2. Drop a file"), readme.index("\n## ", readme.index(
        "## A five-minute tour") + 5)
    commands: list[str] = []
    for block in re.findall(r"^```\n(.*?)^```", readme[start:end], re.S | re.M):
        commands += [line for line in block.strip().splitlines() if line.strip()]
    return commands


def test_the_tour_has_all_its_steps() -> None:
    commands = tour_commands()
    assert any(c.startswith("cp tests/samples/valid/") for c in commands)
    assert any(" audit show " in c for c in commands)
    assert any(c.startswith("openssl cms -verify") for c in commands)


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    demo, directory, log = start_kept_demo(tmp_path)
    try:
        ca = [sys.executable, "-m", "gateway", "--config", f"{directory}/ca/gateway.toml"]
        outputs: dict[str, str] = {}
        cwd = REPO
        for command in tour_commands():
            line = command.replace(README_DIR, str(directory))
            line = line.replace(".venv/bin/gateway", f"{sys.executable} -m gateway")
            if "MESSAGE_ID" in line:
                listed = subprocess.run([*ca, "messages", "list", "--format", "json"],
                                        capture_output=True, text=True, check=True)
                delivered = [m for m in json.loads(listed.stdout)
                             if m["direction"] == "out" and m["state"] == "delivered"]
                line = line.replace("MESSAGE_ID", delivered[-1]["message_id"])
            if line.startswith("cd "):  # the shell's working directory for what follows
                cwd = Path(line[3:].strip())
                continue
            result = None
            for _ in range(1 if line.startswith("cp ") else 50):
                # what was dropped a moment ago may still be on its way: look again
                result = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                                        cwd=cwd, timeout=60, check=False)
                if result.returncode == 0 and not (line.startswith("ls ")
                                                   and len(result.stdout.split()) < 2):
                    break
                time.sleep(0.2)
            assert result is not None
            assert result.returncode == 0, f"README tour: `{command}` failed: {result.stderr}"
            outputs[command] = result.stdout + result.stderr
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(120)
    assert code == 0, log.read_text()[-3000:]
    assert "ALL GOOD" in log.read_text()
    joined = "\n".join(outputs.values())
    assert "signature: verified: Delivered" in joined
    assert "Verification successful" in joined
    assert len(list((directory / "tx" / "inbox").iterdir())) == 2  # demo's + the tour's
    report = directory / "ca" / "rejected" / "interstate-transaction.ssn-area-666.xml.error.json"
    assert json.loads(report.read_text())["errors"][0]["code"] == "SchemaPattern"
    assert (directory / "sealed.xml").read_bytes().startswith(b"<?xml")
