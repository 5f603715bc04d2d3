"""systemd's readiness protocol (``sd_notify``), without libsystemd.

Under ``Type=notify`` systemd sets ``$NOTIFY_SOCKET`` to a Unix datagram socket (a path,
or an abstract name written ``@name``) and waits for ``READY=1`` before it counts the
service as started; ``RELOADING=1`` and ``STOPPING=1`` report reloads and shutdown. One
datagram per message; nothing happens when the variable is not set (any other supervisor,
a terminal).
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["notify", "reloading"]

log = logging.getLogger("gateway.node.sdnotify")


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1\\nSTATUS=running"``) to systemd; returns whether
    it was sent. Errors are logged, never raised: supervision must not stop the daemon."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.warning("cannot notify systemd at $NOTIFY_SOCKET: %s", exc.strerror or exc)
        return False
    return True


def reloading() -> bool:
    """``RELOADING=1`` with the monotonic timestamp systemd 253+ asks for."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")
