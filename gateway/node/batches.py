"""Two shapes of batch work the daemon's parts share.

- :func:`together_or_alone`: settle many records in one transaction, and when that is
  refused (one of them changed meanwhile, one cannot be written), each alone, so that no
  record holds up the others and none is settled twice: overdue receipts
  (:meth:`gateway.node.outbound.Sender.expire`), receipts that arrive in a batch
  (:mod:`gateway.node.inbound`), dead letters (:mod:`gateway.node.dead_letters`).
- :func:`split_evenly`: cut a batch into consecutive shares for the worker processes
  (:mod:`gateway.node.intake_pool`, :mod:`gateway.node.receive_pool`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["split_evenly", "together_or_alone"]

T = TypeVar("T")


def together_or_alone(items: Sequence[T], settle: Callable[[Sequence[T]], int],
                      refused: type[Exception] | tuple[type[Exception], ...], *,
                      refused_alone: Callable[[T, Exception], None] | None = None) -> int:
    """``settle(items)``, which settles all of them or none (one transaction) and returns
    how many it settled; when it raises ``refused`` (nothing kept), each item is settled
    alone, and one refused alone goes to ``refused_alone`` (else it is skipped). Returns
    how many were settled."""
    if len(items) > 1:
        try:
            return settle(items)
        except refused:
            pass  # each alone says which
    count = 0
    for item in items:
        try:
            count += settle([item])
        except refused as exc:
            if refused_alone is not None:
                refused_alone(item, exc)
    return count


def split_evenly(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """``items`` cut into ``parts`` consecutive shares (fewer when there are fewer items,
    none when there are none) whose sizes differ by at most one, in order."""
    parts = max(1, min(parts, len(items)))
    step, extra = divmod(len(items), parts)
    shares: list[Sequence[T]] = []
    first = 0
    for part in range(parts):
        size = step + (part < extra)
        if size:
            shares.append(items[first:first + size])
        first += size
    return shares
