"""Taking what waits in a pull transport (a partner's SFTP outbox, our own inbound folder)
in batches: :func:`pull_batches`, which :meth:`gateway.node.inbound.Inbound.pull` runs
with its accept.

A blob is acknowledged (removed) only after the accept of its batch returned, so every
blob taken is recorded first; a crash in between leaves it to come again, and the
receiver answers a message it has already taken as a duplicate. The pulling thread
fetches the next batch while up to ``in_flight`` batches are accepted, and acknowledges
them in order. A batch is cut by count and by bytes (a blob larger than the byte limit
goes alone), so what a pull holds stays near ``in_flight`` batches whatever the size of
the messages.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from transports import Transport, TransportError

__all__ = ["IN_PROGRESS", "pull_batches"]

log = logging.getLogger("gateway.node.pulls")

#: the status an accept gives a blob that is being taken elsewhere: left for the next pull
IN_PROGRESS = 503

#: ``accept(blobs)``: one status per blob, in order, once every blob is recorded
Accept = Callable[[list[bytes]], list[int]]


def pull_batches(transport: Transport, accept: Accept, *, batch: int, in_flight: int,
                 max_bytes: int) -> int:
    """Fetch every blob listed in ``transport`` and ``accept`` them in batches of up to
    ``batch`` blobs and ``max_bytes`` bytes (a larger blob alone), up to ``in_flight``
    batches at once, in threads of their own; acknowledge each blob of a batch once its
    accept returned, unless its status is :data:`IN_PROGRESS`. A blob that cannot be
    fetched is logged and left for the next pull. Returns how many blobs were taken.
    The bytes held at once stay near ``in_flight`` batches and the blob being fetched."""
    size, in_flight = max(1, batch), max(1, in_flight)
    taken = 0
    window: deque[tuple[list[str], Future[list[int]]]] = deque()
    names: list[str] = []
    blobs: list[bytes] = []
    held = 0
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="gateway-pull") as pool:

        def hand_over() -> None:
            nonlocal taken, names, blobs, held
            if len(window) >= in_flight:
                taken += _acknowledge(transport, *window.popleft())
            window.append((names, pool.submit(accept, blobs)))
            names, blobs, held = [], [], 0

        try:
            for name in transport.list():
                try:
                    data = transport.fetch(name)
                except TransportError as exc:
                    log.warning("could not fetch %s from %s: %s", name, transport.endpoint,
                                exc.code)
                    continue
                if blobs and held + len(data) > max_bytes:
                    hand_over()
                names.append(name)
                blobs.append(data)
                held += len(data)
                if len(blobs) >= size or held >= max_bytes:
                    hand_over()
            if blobs:
                hand_over()
            while window:
                taken += _acknowledge(transport, *window.popleft())
        finally:
            for _, future in window:  # an error above: let the rest finish, unacknowledged
                future.cancel()
    return taken


def _acknowledge(transport: Transport, names: list[str], future: Future[list[int]]) -> int:
    taken = 0
    for name, status in zip(names, future.result(), strict=True):
        if status == IN_PROGRESS:
            continue  # being taken elsewhere: look again next time
        transport.acknowledge(name)
        taken += 1
    return taken
