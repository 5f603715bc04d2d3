"""The demo's processes end with the demo.

``gateway demo`` starts four ``gateway run`` daemons and an ``sshd``, each in a session
of its own (so a Ctrl-C in the terminal reaches the demo, which stops them in order).
When the demo itself is killed without a chance to clean up (``kill -9``, an OOM kill)
they would keep running. On Linux each child asks the kernel for SIGTERM when the demo
dies (``prctl(PR_SET_PDEATHSIG)``): the daemons then shut down as on any SIGTERM.

The signal is tied to the *thread* that started the child: start them from a thread that
lives as long as they should (the demo starts and stops its network on one thread).
Elsewhere (not Linux, no libc) nothing is set up and the demo's own cleanup is all there
is.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["end_with_this_process"]

_PR_SET_PDEATHSIG = 1


def end_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child receive SIGTERM
    when this process (the starting thread) ends, or None where that is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the demo died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
