"""A message search as a value: the filters, the sort and the page an operator asks for
(``gateway messages list``, the console's message list), and the SQL ``WHERE`` /
``ORDER BY`` they mean for any spool with the ``messages`` table of
:mod:`gateway.store.spool` (SQLite ``?`` or PostgreSQL ``%s`` placeholders).

Newest first by default: an operator looks for what just happened, and a list that is
cut must never hide the newest messages (issue 12: the list used to show the 100 oldest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.store.states import Direction, State

__all__ = ["SORT_COLUMNS", "MessageQuery", "query_sql"]

#: Columns a search may be sorted by (a whitelist: the name goes into the SQL text).
SORT_COLUMNS: tuple[str, ...] = ("id", "created_at", "updated_at", "state", "direction",
                                 "partner", "action", "attempts", "next_attempt_at",
                                 "error_code", "case_id", "message_id")


@dataclass(frozen=True)
class MessageQuery:
    """Which messages, in which order, which page. Every filter given must match.

    ``message_id`` matches the message's own MessageId or the one it answers
    (``ref_to``); ``conversation`` matches either too, so a request and its answers are
    found together; ``since``/``until`` bound the creation time (inclusive/exclusive),
    ``changed_since`` the last change."""

    message_id: str | None = None
    conversation: str | None = None
    case_id: str | None = None
    partner: str | None = None
    direction: Direction | None = None
    states: Sequence[State] = ()
    action: str | None = None
    error_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    changed_since: datetime | None = None
    sort: str = "id"
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORT_COLUMNS:
            raise ValueError(f"cannot sort by {self.sort!r}: one of {', '.join(SORT_COLUMNS)}")
        if self.offset < 0 or self.limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")


def query_sql(q: MessageQuery, mark: str = "?") -> tuple[str, str, list[Any]]:
    """``(where, order, params)`` for ``q``: ``where`` starts with ``WHERE`` (or is
    empty), ``order`` is ``ORDER BY ...`` without the page; ``mark`` is the driver's
    placeholder. Times are compared as epoch seconds (the spool's columns)."""
    where: list[str] = []
    params: list[Any] = []
    if q.message_id:
        where.append(f"(message_id = {mark} OR ref_to = {mark})")
        params += [q.message_id, q.message_id]
    if q.conversation:
        where.append(f"(message_id = {mark} OR ref_to = {mark})")
        params += [q.conversation, q.conversation]
    for column, value in (("case_id", q.case_id), ("partner", q.partner),
                          ("action", q.action), ("error_code", q.error_code)):
        if value:
            where.append(f"{column} = {mark}")
            params.append(value)
    if q.direction is not None:
        where.append(f"direction = {mark}")
        params.append(str(q.direction))
    if q.states:
        where.append(f"state IN ({', '.join(mark for _ in q.states)})")
        params += [str(s) for s in q.states]
    for column, op, moment in (("created_at", ">=", q.since), ("created_at", "<", q.until),
                               ("updated_at", ">=", q.changed_since)):
        if moment is not None:
            where.append(f"{column} {op} {mark}")
            params.append(moment.timestamp())
    text = ("WHERE " + " AND ".join(where)) if where else ""
    direction = "DESC" if q.descending else "ASC"
    # NULLs last either way, then the id so that pages never overlap
    order = (f"ORDER BY {q.sort} IS NULL, {q.sort} {direction}"
             + ("" if q.sort == "id" else f", id {direction}"))
    return text, order, params
