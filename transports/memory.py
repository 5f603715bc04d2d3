"""An in-memory transport for tests: two nodes in one process talk through a shared
``MemoryNetwork`` of named mailboxes.

A mailbox behaves like a partner's SFTP inbox (send, then list/fetch/acknowledge), or,
when a responder is attached with ``network.serve(mailbox, responder)``, like an HTTPS
endpoint: the blob is handed to the responder and its answer returned by ``send``.
``network.fail_next(...)`` injects failures for retry tests.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from transports.base import PeerInfo, check_name
from transports.errors import (
    AlreadyExists,
    ConnectFailed,
    NotFound,
    TransportClosed,
    TransportError,
    http_error,
)

__all__ = [
    "DEFAULT_NETWORK",
    "MemoryNetwork",
    "MemoryTransport",
    "Responder",
    "http_responder",
]

Responder = Callable[[str, bytes], bytes | None]
"""``(name, data) -> answer``; may raise a ``TransportError`` (e.g. ``HttpStatus``)."""


@dataclass
class _Fault:
    error: TransportError
    remaining: int
    operations: frozenset[str]


@dataclass
class _Mailbox:
    blobs: dict[str, bytes] = field(default_factory=dict)
    done: dict[str, bytes] = field(default_factory=dict)
    responder: Responder | None = None
    faults: builtins.list[_Fault] = field(default_factory=list)
    delivered: int = 0


class MemoryNetwork:
    """Named mailboxes shared by every ``MemoryTransport`` opened on this network."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._boxes: dict[str, _Mailbox] = {}

    def _box(self, mailbox: str) -> _Mailbox:
        box = self._boxes.get(mailbox)
        if box is None:
            box = self._boxes[mailbox] = _Mailbox()
        return box

    def open(self, mailbox: str, *, move_to_done: bool = False) -> MemoryTransport:
        return MemoryTransport(self, mailbox, move_to_done=move_to_done)

    def serve(self, mailbox: str, responder: Responder | None) -> None:
        """Attach (or with ``None`` detach) a responder: sends to ``mailbox`` then go to
        it instead of being stored, and ``send`` returns its answer (like HTTPS)."""
        with self._lock:
            self._box(mailbox).responder = responder

    def fail_next(
        self,
        mailbox: str,
        count: int = 1,
        *,
        error: TransportError | None = None,
        operations: tuple[str, ...] = ("send",),
    ) -> None:
        """Make the next ``count`` calls of ``operations`` on ``mailbox`` raise ``error``
        (default: a retryable ``ConnectFailed``) without doing anything."""
        if error is None:
            error = ConnectFailed("injected fault: partner unreachable", endpoint=mailbox)
        with self._lock:
            self._box(mailbox).faults.append(_Fault(error, count, frozenset(operations)))

    def blobs(self, mailbox: str) -> dict[str, bytes]:
        """A copy of what is waiting in ``mailbox`` (for assertions)."""
        with self._lock:
            return dict(self._box(mailbox).blobs)

    def done(self, mailbox: str) -> dict[str, bytes]:
        with self._lock:
            return dict(self._box(mailbox).done)

    def delivered(self, mailbox: str) -> int:
        """How many sends to ``mailbox`` succeeded (stored or answered)."""
        with self._lock:
            return self._box(mailbox).delivered

    def _check_fault(self, box: _Mailbox, operation: str) -> None:
        for fault in box.faults:
            if operation in fault.operations and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    box.faults.remove(fault)
                raise fault.error


DEFAULT_NETWORK = MemoryNetwork()
"""The network ``open_transport("memory://NAME")`` uses unless given ``network=``."""


class MemoryTransport:
    """A ``Transport`` over one mailbox of a ``MemoryNetwork``."""

    def __init__(
        self, network: MemoryNetwork, mailbox: str, *, move_to_done: bool = False
    ) -> None:
        self.network = network
        self.mailbox = mailbox
        self.endpoint = f"memory://{mailbox}"
        self.move_to_done = move_to_done
        self._closed = False

    def _enter(self, operation: str) -> _Mailbox:
        if self._closed:
            raise TransportClosed("transport is closed", endpoint=self.endpoint)
        box = self.network._box(self.mailbox)
        self.network._check_fault(box, operation)
        return box

    def send(self, name: str, data: bytes) -> bytes | None:
        check_name(name, endpoint=self.endpoint)
        data = bytes(data)
        with self.network._lock:
            box = self._enter("send")
            responder = box.responder
            if responder is None:
                existing = box.blobs.get(name)
                if existing is not None and existing != data:
                    raise AlreadyExists(
                        f"a different blob named {name} is already there", endpoint=self.endpoint
                    )
                box.blobs[name] = data
                box.delivered += 1
                return None
        answer = responder(name, data)  # outside the lock: it may send back to us
        with self.network._lock:
            box.delivered += 1
        return answer

    def list(self) -> builtins.list[str]:
        with self.network._lock:
            return builtins.list(self._enter("list").blobs)

    def fetch(self, name: str) -> bytes:
        check_name(name, endpoint=self.endpoint)
        with self.network._lock:
            data = self._enter("fetch").blobs.get(name)
        if data is None:
            raise NotFound(f"no blob named {name}", endpoint=self.endpoint)
        return data

    def acknowledge(self, name: str) -> None:
        check_name(name, endpoint=self.endpoint)
        with self.network._lock:
            box = self._enter("acknowledge")
            data = box.blobs.pop(name, None)
            if data is not None and self.move_to_done:
                box.done[name] = data

    def close(self) -> None:
        self._closed = True


def http_responder(
    handler: Callable[[bytes, PeerInfo], tuple[int, bytes]],
    *,
    peer: PeerInfo | None = None,
    endpoint: str | None = None,
) -> Responder:
    """Wrap an ``HttpsServer``-style handler as a responder, mapping its status the way the
    HTTPS client does: 2xx returns the body, anything else raises ``http_error``."""
    who = peer or PeerInfo(address="memory")

    def respond(name: str, data: bytes) -> bytes | None:
        status, body = handler(data, who)
        if 200 <= status < 300:
            return body
        raise http_error(status, body, endpoint=endpoint)

    return respond
