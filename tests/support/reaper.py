"""No process a test starts outlives it: gateway daemons, ``gateway demo``/``console``,
sshd and PostgreSQL all run with a command line naming a folder of the test's own (its
``--config``, ``--dir``, ``-f`` or ``-D``), so what is left behind can be found by that
folder in /proc, without procps and without guessing at names.

- :func:`stop_leftovers` (used after every integration test, see tests/conftest.py): the
  live processes that name a folder are asked to stop (SIGTERM, which the gateway, the demo,
  sshd and PostgreSQL all take as "shut down cleanly"), then killed (SIGKILL).
- :func:`watch`: for when the test process itself dies without cleaning up (SIGKILL, a
  second Ctrl-C during teardown, a CI timeout). A small watchdog process, started on first
  use in a session of its own (a terminal's Ctrl-C does not reach it), holds the read end
  of a pipe only this process writes to. When this process exits, however it exits, the
  pipe reads end-of-file and the watchdog stops every process naming a watched folder,
  then removes the folders marked for removal (a PostgreSQL cluster's temporary data).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["close", "running_under", "stop_leftovers", "watch"]

_ROOT = Path(__file__).resolve().parents[2]
_START = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from tests.support.reaper import _watchdog_main; _watchdog_main()")


def _watchdog_main() -> None:
    """The watchdog: reads ``watch``/``remove``/``unwatch`` lines until end-of-file (the
    test process is gone or done), then stops what is left and removes folders."""
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched: list[str] = []
    remove: list[str] = []
    for line in sys.stdin:
        kind, _, path = line.rstrip("\n").partition(" ")
        if kind == "watch":
            watched.append(path)
        elif kind == "remove":
            remove.append(path)
        elif kind == "unwatch":
            watched = [w for w in watched if w != path]
            remove = [r for r in remove if r != path]
    _stop({pid for folder in watched for pid in running_under(folder, exclude={parent})})
    for path in remove:
        shutil.rmtree(path, ignore_errors=True)


_lock = threading.Lock()
_watchdog: list[subprocess.Popen[str]] = []  # the one of this process, once started
_closed: list[subprocess.Popen[str]] = []  # kept: it may still be working when we exit


def _send(line: str) -> None:
    with _lock:
        if not _watchdog:
            _watchdog.append(subprocess.Popen([sys.executable, "-c", _START, str(_ROOT)],
                                              stdin=subprocess.PIPE, text=True,
                                              start_new_session=True))
            atexit.register(close)
        pipe = _watchdog[0].stdin
        assert pipe is not None
        pipe.write(line + "\n")
        pipe.flush()


def watch(folder: Path | str, *, remove: bool = False) -> None:
    """When this process exits, stop every process whose command line names ``folder``
    (and delete the folder when ``remove``)."""
    _send(f"watch {folder}")
    if remove:
        _send(f"remove {folder}")


def unwatch(folder: Path | str) -> None:
    """Forget ``folder`` (it was cleaned up normally)."""
    if _watchdog:
        _send(f"unwatch {folder}")


def close() -> None:
    """Let the watchdog act now (end of the test session): it stops what is left, if
    anything, and exits. It does not wait for it."""
    with _lock:
        if _watchdog:
            _closed.append(_watchdog.pop())
            if _closed[-1].stdin is not None:
                _closed[-1].stdin.close()


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process, from /proc (zombies,
    which have no command line, left out)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        if args:
            found[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), args.strip())
    return found


def running_under(folder: Path | str, exclude: set[int] | None = None) -> dict[int, str]:
    """pid -> command line of every live process whose command line names ``folder`` or a
    path under it, and of their descendants (a daemon's helpers), read from /proc; this
    process and ``exclude`` left out."""
    prefix = str(folder).rstrip("/")
    skip = {os.getpid(), *(exclude or set())}
    table = _processes()
    found = {pid for pid, (_, args) in table.items()
             if pid not in skip and (f"{prefix}/" in args + " " or f"{prefix} " in args + " ")}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items()
                if ppid in found and pid not in found and pid not in skip}
        found |= more
        grew = bool(more)
    return {pid: table[pid][1] for pid in found}


def stop_leftovers(folder: Path | str, grace: float = 5.0) -> list[str]:
    """Command lines of the processes still naming ``folder`` after ``grace`` seconds
    (some may be finishing a shutdown already asked for); those are then stopped: SIGTERM,
    up to 10 s, SIGKILL."""
    end = time.monotonic() + grace
    left = running_under(folder)
    while left and time.monotonic() < end:
        time.sleep(0.2)
        left = running_under(folder)
    if left:
        _stop(set(left))
    return sorted(left.values())


def _stop(pids: set[int], timeout: float = 10.0) -> None:
    """SIGTERM to ``pids``, up to ``timeout`` seconds for them to go, SIGKILL to the rest."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        table = _processes()
        pids = {p for p in pids if p in table}
        if not pids:
            return
        time.sleep(0.2)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
