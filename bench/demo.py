"""``gateway demo`` end to end: wall time of the whole demo (key generation, four
``gateway run`` processes, sshd, five messages, receipts, audit checkpoint and verify on
every node) and drop-to-verified-receipt time per message kind, as a newcomer sees it.

Runs ``python -m gateway demo --json`` in a fresh folder, 3 times (``--quick``: once), and
reports the median of each figure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import Row, format_rows

NAME = "demo"


def _once(directory: Path) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gateway", "demo", "--json", "--dir",
                           str(directory)], capture_output=True, text=True, timeout=300,
                          check=False)
    wall = time.perf_counter() - started
    result = json.loads(proc.stdout)
    if not result["ok"]:
        raise RuntimeError(f"demo failed: {result['problems']}")
    return wall, {f"{m['file']} ({m['route']}, {m['transport']})": m["seconds"]
                  for m in result["messages"]}


def main(quick: bool = False) -> list[Row]:
    runs = 1 if quick else 3
    walls: list[float] = []
    per_message: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for i in range(runs):
            wall, seconds = _once(Path(tmp) / f"run{i}")
            walls.append(wall)
            for key, value in seconds.items():
                per_message.setdefault(key, []).append(value)
    rows = [Row(NAME, "gateway demo, whole run", statistics.median(walls), "s",
                f"median of {runs}; target < 60 s")]
    rows += [Row(NAME, f"drop to verified receipt: {key}", statistics.median(values), "s")
             for key, values in per_message.items()]
    return rows


if __name__ == "__main__":
    print(format_rows(main(quick="--quick" in sys.argv)))
