"""A process's children and whether a process still runs, read from /proc (no procps):
for the tests that check a daemon's worker processes end with it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

__all__ = ["alive", "children", "recycled_by_sighup"]


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (live or not yet reaped)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (not ended, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


def recycled_by_sighup(daemon: Any, kind: str) -> set[int]:
    """Wait for a started ``gateway run`` (a :class:`tests.support.gwnodes.Daemon`)'s
    ``kind`` workers ("intake", "receive"), send it SIGHUP, check both workers are
    replaced and the old ones end; returns the new workers' ids."""
    from tests.support.gwnodes import wait_until

    pid = daemon.process.pid
    ready = f"{kind} workers ready"
    wait_until(lambda: ready in daemon.log.read_text(), 60, f"the {kind} workers")
    first = {p for p in children(pid) if alive(p)}
    assert len(first) >= 2  # the workers
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: daemon.log.read_text().count(ready) >= 2, 60, f"new {kind} workers")
    wait_until(lambda: len(first - {p for p in children(pid) if alive(p)}) == 2, 30,
               "the old workers to end")
    second = {p for p in children(pid) if alive(p)} - first
    assert len(second) == 2  # both workers replaced
    return second
