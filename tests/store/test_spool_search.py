"""The message search the CLI and the console share (Spool.search and Spool.count) on
every store: filters, newest first, pages that never overlap, and the total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.store.query import MessageQuery
from gateway.store.spool import NewMessage
from gateway.store.states import Direction, State

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_search_and_count_on_every_store(spool: Any) -> None:
    for n in range(1, 8):
        with spool.transaction(T0 + timedelta(seconds=n)) as txn:
            txn.insert(NewMessage(Direction.OUT, message_id=f"m-{n}", partner="fips:4800000"
                                  if n % 2 else "fips:1100000", case_id=f"C-{n % 3}",
                                  action="InterstateTransaction"), State.RECEIVED)
    newest = spool.search(MessageQuery(limit=3))
    assert [m.message_id for m in newest] == ["m-7", "m-6", "m-5"]
    second = spool.search(MessageQuery(limit=3, offset=3))
    assert [m.message_id for m in second] == ["m-4", "m-3", "m-2"]
    assert spool.count(MessageQuery(limit=3)) == 7
    odd = MessageQuery(partner="fips:4800000", descending=False, limit=10)
    assert [m.message_id for m in spool.search(odd)] == ["m-1", "m-3", "m-5", "m-7"]
    assert spool.count(MessageQuery(case_id="C-1")) == 3
    assert spool.count(MessageQuery(since=T0 + timedelta(seconds=5))) == 3
    assert spool.count(MessageQuery(states=[State.FAILED])) == 0
    by_case = spool.search(MessageQuery(sort="case_id", limit=7))
    assert [m.case_id for m in by_case][:3] == ["C-2", "C-2", "C-1"]
