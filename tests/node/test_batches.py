"""gateway/node/batches.py: together, else each alone; even shares."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.node.batches import split_evenly, together_or_alone


class Refused(Exception):
    pass


def settler(bad: set[int], calls: list[list[int]]):  # type: ignore[no-untyped-def]
    """Settles a batch of numbers all or none: refused when one of them is in ``bad``."""
    def settle(batch: Sequence[int]) -> int:
        calls.append(list(batch))
        if bad & set(batch):
            raise Refused(f"{sorted(bad & set(batch))}")
        return len(batch)
    return settle


def test_together_when_none_is_refused() -> None:
    calls: list[list[int]] = []
    assert together_or_alone([1, 2, 3], settler(set(), calls), Refused) == 3
    assert calls == [[1, 2, 3]]


def test_each_alone_when_one_is_refused_and_that_one_reported() -> None:
    calls: list[list[int]] = []
    refused: list[tuple[int, str]] = []
    done = together_or_alone([1, 2, 3], settler({2}, calls), Refused,
                             refused_alone=lambda item, exc: refused.append((item, str(exc))))
    assert done == 2
    assert calls == [[1, 2, 3], [1], [2], [3]]
    assert refused == [(2, "[2]")]


def test_one_item_is_tried_once_and_other_errors_pass() -> None:
    calls: list[list[int]] = []
    assert together_or_alone([7], settler({7}, calls), Refused) == 0
    assert calls == [[7]]
    assert together_or_alone([], settler(set(), calls), Refused) == 0

    def broken(batch: Sequence[int]) -> int:
        raise ValueError("not a refusal")

    with pytest.raises(ValueError, match="not a refusal"):
        together_or_alone([1, 2], broken, Refused)


@pytest.mark.parametrize(("count", "parts", "sizes"), [
    (16, 5, [4, 3, 3, 3, 3]), (16, 2, [8, 8]), (3, 5, [1, 1, 1]), (5, 4, [2, 1, 1, 1]),
    (1, 3, [1]), (0, 3, []), (4, 0, [4])])
def test_split_evenly(count: int, parts: int, sizes: list[int]) -> None:
    items = list(range(count))
    shares = split_evenly(items, parts)
    assert [len(share) for share in shares] == sizes
    assert [x for share in shares for x in share] == items
