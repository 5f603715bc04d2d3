"""Open transports per partner URL, kept for reuse across sends (:class:`TransportPool`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from gateway.node.config import TransportConfig
from transports import Transport, open_transport

__all__ = ["TransportPool"]


class TransportPool:
    """Open transports per URL, reused across sends; an instance is used by one thread at
    a time and discarded after a failure (the next send reconnects)."""

    def __init__(self, opener: Callable[..., Transport] = open_transport,
                 extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._opener = opener
        self._extra = dict(extra or {})  # per-scheme extra options (tests: memory network)
        self._lock = threading.Lock()
        self._idle: dict[str, list[Transport]] = {}
        self._closed = False

    @contextlib.contextmanager
    def lease(self, tc: TransportConfig) -> Iterator[Transport]:
        with self._lock:
            idle = self._idle.setdefault(tc.url, [])
            transport = idle.pop() if idle else None
        if transport is None:
            options = {**tc.options(), **self._extra.get(tc.scheme, {})}
            transport = self._opener(tc.url, **options)
        ok = False
        try:
            yield transport
            ok = True
        finally:
            with self._lock:
                keep = ok and not self._closed
                if keep:
                    self._idle[tc.url].append(transport)
            if not keep:
                with contextlib.suppress(Exception):
                    transport.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for transport in idle:
                with contextlib.suppress(Exception):
                    transport.close()
