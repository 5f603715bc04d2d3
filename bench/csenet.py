"""CSENet 2000 throughput and memory.

- ``parse+validate``: :func:`check_file` on a mixed 10,000-transaction file (every row of
  the Valid Transactions Table in turn, one transaction in 20 broken), transactions/s;
- ``parse only``: :func:`read_file` (framing and cutting into header and blocks);
- ``bare slicing``: the floor: split the same bytes into lines and slice every field of
  every record with precomputed offsets, nothing else;
- ``peak memory``: the peak resident set of a process that streams a 100,000-transaction
  file through :func:`check_file`, next to one that only imports the gateway (the
  difference is what checking costs; it must not grow with the file).

Each rate is the best of several rounds (the machine is shared).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import Row, format_rows
from gateway.demo.csenet_samples import transaction_for
from gateway.documents.csenet import check_file, read_file
from gateway.documents.csenet.layout import BLOCK_RECORDS, record_spec
from gateway.documents.csenet.table import rows

BENCH = "csenet"
TODAY = dt.date(2026, 12, 4)


def _lines() -> list[bytes]:
    out = []
    for number, row in enumerate(rows(), 1):
        data = transaction_for(row, today=TODAY, serial=number).to_bytes()
        if number % 20 == 0:  # a letter in the serial number: refused by the edits
            data = data[:20] + b"X" + data[21:]
        out.append(data)
    return out


def mixed_file(count: int) -> bytes:
    lines = _lines()
    return b"".join(lines[i % len(lines)] + b"\n" for i in range(count))


def _offsets() -> tuple[list[tuple[int, int]], dict[str, list[tuple[int, int]]], int]:
    header = record_spec("header-to-server")
    head = [(f.offset, f.offset + f.length) for f in header.fields]
    blocks = {name: [(f.offset, f.offset + f.length) for f in record_spec(name).fields]
              for name, _, _ in BLOCK_RECORDS}
    return head, blocks, header.length


def bare_slicing(data: bytes) -> int:
    """Cut every line into every field of every record by offsets: the floor."""
    head, blocks, hlen = _offsets()
    sizes = {name: record_spec(name).length for name in blocks}
    names = [name for name, _, _ in BLOCK_RECORDS]
    count = 0
    for line in data.splitlines():
        fields = [line[a:b] for a, b in head]
        at = hlen
        for name, indicator in zip(names, line[89:96], strict=True):
            for _ in range(indicator - 48):
                fields.extend(line[at + a:at + b] for a, b in blocks[name])
                at += sizes[name]
        count += 1
    return count


def _rate(func: Callable[[], int], *, rounds: int) -> float:
    best = float("inf")
    done = 0
    for _ in range(rounds):
        start = time.perf_counter()
        done = func()
        best = min(best, time.perf_counter() - start)
    return done / best


# The peak is read from /proc/self/status (VmHWM, this process's own address space), not
# from getrusage's ru_maxrss: Linux carries the peak of the address space an exec replaces
# into ru_maxrss, so a child started from a large parent (this benchmark holds its test
# file) reports the parent's size.
_CHILD = """
import datetime, sys
from gateway.documents.csenet import check_file
if sys.argv[1] != "-":
    valid = 0
    with open(sys.argv[1], "rb") as stream:
        for item in check_file(stream, today=datetime.date(2026, 12, 4)):
            valid += item.valid
with open("/proc/self/status") as status:
    print([line.split()[1] for line in status if line.startswith("VmHWM:")][0])
"""


def _peak_kib(path: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", _CHILD, path], capture_output=True,
                          text=True, check=True, env=env, timeout=3600)
    return int(done.stdout.split()[-1])


def main(quick: bool = False) -> list[Row]:
    count = 2_000 if quick else 10_000
    rounds = 2 if quick else 3
    data = mixed_file(count)
    checked = _rate(lambda: sum(1 for _ in check_file(io.BytesIO(data), today=TODAY)),
                    rounds=rounds)
    parsed = _rate(lambda: sum(1 for _ in read_file(io.BytesIO(data))), rounds=rounds)
    bare = _rate(lambda: bare_slicing(data), rounds=rounds)
    size = f"{count:,} transactions, {len(data) / (1 << 20):.1f} MB"
    out = [
        Row(BENCH, f"bare slicing ({size})", bare, "txn/s", "floor"),
        Row(BENCH, f"parse only ({size})", parsed, "txn/s", f"{bare / parsed:.1f}x the time "
            "of bare slicing"),
        Row(BENCH, f"parse+validate ({size})", checked, "txn/s",
            f"{bare / checked:.1f}x the time of bare slicing"),
    ]
    big_count = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.txt"
        lines = _lines()
        with path.open("wb") as handle:
            for i in range(big_count):
                handle.write(lines[i % len(lines)] + b"\n")
        file_mb = path.stat().st_size / (1 << 20)
        base = _peak_kib("-")
        peak = _peak_kib(str(path))
    out.append(Row(BENCH, f"peak memory streaming {big_count:,} transactions "
                          f"({file_mb:.0f} MB file)", peak / 1024, "MB",
                   f"+{(peak - base) / 1024:.1f} MB over importing the gateway "
                   f"({base / 1024:.0f} MB)"))
    return out


if __name__ == "__main__":
    print(format_rows(main(quick="--quick" in sys.argv)))
