"""A process's children and whether a process still runs, read from /proc (no procps):
for the tests that check a daemon's worker processes end with it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["alive", "children"]


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
