"""Deadline clocks as an operator sees them: the open clocks (soonest due first, overdue
ones marked) with filters, the answers no request matches, the rules in effect and the
summary ``gateway status`` shows. ``gateway clocks`` and the console's Clocks page call
these (docs/clocks.md). Read from the audit trail; values in, values out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from gateway.documents.deadlines import Clock, ClockSet
from gateway.errors import GatewayError, UsageError
from gateway.node.clocks import ClockKeeper, ClocksConfig, read_clocks
from gateway.node.config import Config
from gateway.service.context import NodeContext
from gateway.store.audit import AuditLog

__all__ = ["OWED_BY", "ClockFilter", "ClockListing", "clock_status", "keeper_for",
           "list_clocks", "rule_rows", "summary", "unmatched_rows"]

OWED_BY = ("us", "partner")


@dataclass(frozen=True)
class ClockFilter:
    """Which clocks to list: open ones unless ``all`` (answered ones too); the others
    narrow it (``due_within``: open clocks due within N working days, overdue included)."""

    partner: str | None = None
    rule: str | None = None
    owed_by: str | None = None  # "us" or "partner"
    overdue: bool = False
    due_within: int | None = None
    all: bool = False


@dataclass(frozen=True)
class ClockListing:
    at: datetime
    rows: list[dict[str, Any]]
    unmatched: int  # answers that match no recorded request
    partners: list[str]  # every partner with a clock (for a filter's choices)


def keeper_for(config: Config | None) -> ClockKeeper:
    """The node's rules and calendars (the shipped rules, UTC, for a bare database)."""
    return ClockKeeper(config.clocks if config is not None else ClocksConfig())


def row(clock: Clock, now: datetime, today: date) -> dict[str, Any]:
    """One clock as a flat record: keys, codes and dates only."""
    start, answer = clock.start, clock.answer
    return {
        "rule": clock.rule.name, "citation": clock.rule.citation,
        "status": clock.status(now), "owed_by": "us" if clock.owed_by_us else "partner",
        "partner": clock.partner, "our_case": start.our_case, "their_case": start.their_case,
        "code": start.code, "message_id": start.message_id,
        "started": start.at.isoformat(), "due": clock.due.isoformat(),
        "overdue_at": clock.overdue_at.isoformat(),
        "working_days_left": None if answer else clock.working_days_left(today),
        "answered": answer.at.isoformat() if answer else None,
        "answered_by": answer.message_id if answer else None,
    }


def select(clocks: ClockSet, f: ClockFilter, now: datetime, today: date) -> list[Clock]:
    """The clocks ``f`` keeps, soonest due first."""
    chosen = clocks.open() if not f.all else sorted(
        clocks.clocks, key=lambda c: (c.overdue_at, c.start.at, c.rule.name))
    out = []
    for clock in chosen:
        if f.partner and clock.partner != f.partner:
            continue
        if f.rule and clock.rule.name != f.rule:
            continue
        if f.owed_by and clock.owed_by_us != (f.owed_by == "us"):
            continue
        if f.overdue and not clock.overdue(now):
            continue
        if f.due_within is not None and (
                not clock.is_open or clock.working_days_left(today) > f.due_within):
            continue
        out.append(clock)
    return out


def list_clocks(audit: AuditLog, keeper: ClockKeeper, f: ClockFilter,
                now: datetime) -> ClockListing:
    """The clocks ``f`` asks for, as of ``now``. :class:`UsageError` for a rule that is
    not in effect."""
    if f.rule and f.rule not in {r.name for r in keeper.rules}:
        raise UsageError(f"no clock rule named {f.rule} (gateway clocks --rules lists them)")
    if f.owed_by is not None and f.owed_by not in OWED_BY:
        raise UsageError("owed by is us or partner")
    clocks = read_clocks(audit, keeper, now)
    today = now.astimezone(keeper.tz).date()
    rows = [row(c, now, today) for c in select(clocks, f, now, today)]
    partners = sorted({c.partner for c in clocks.clocks})
    return ClockListing(now, rows, len(clocks.unmatched), partners)


def unmatched_rows(audit: AuditLog, keeper: ClockKeeper, now: datetime,
                   partner: str | None = None) -> list[dict[str, Any]]:
    """The answers that match no recorded request (yet), oldest first."""
    clocks = read_clocks(audit, keeper, now)
    return [{"answered": o.at.isoformat(), "partner": o.partner,
             "sent_by": "us" if o.outbound else "partner", "code": o.code,
             "our_case": o.our_case, "their_case": o.their_case, "message_id": o.message_id}
            for o in sorted(clocks.unmatched, key=lambda o: o.at)
            if not partner or o.partner == partner]


def rule_rows(keeper: ClockKeeper) -> list[dict[str, Any]]:
    """The rules in effect (shipped, configured, disabled), with their citations."""
    return [{"name": r.name, "title": r.title, "citation": r.citation, "source": r.source,
             "period": str(r.period), "owes": r.owes, "direction": r.direction,
             "enabled": r.enabled, "start": [p.text for p in r.start],
             "answer": [p.text for p in r.answer]} for r in keeper.rules]


def summary(config: Config, audit: AuditLog, now: datetime) -> dict[str, Any]:
    """Open and overdue clocks by owing side, and the next due date (``gateway status``)."""
    clocks = read_clocks(audit, keeper_for(config), now)
    open_ = clocks.open()
    counts: Counter[tuple[str, str]] = Counter()
    for clock in open_:
        side = "us" if clock.owed_by_us else "partner"
        counts[(side, "overdue" if clock.overdue(now) else "open")] += 1
    return {
        "enabled": config.clocks.enabled,
        "open_owed_by_us": counts[("us", "open")] + counts[("us", "overdue")],
        "overdue_owed_by_us": counts[("us", "overdue")],
        "open_owed_by_partners": counts[("partner", "open")] + counts[("partner", "overdue")],
        "overdue_owed_by_partners": counts[("partner", "overdue")],
        "next_due": open_[0].due.isoformat() if open_ else None,
    }


def clock_status(ctx: NodeContext, now: datetime) -> dict[str, Any]:
    """:func:`summary` for a node, or what kept it from being read (the rest of a status
    is still worth showing)."""
    try:
        with ctx.audit() as audit:
            return summary(ctx.config, audit, now)
    except GatewayError as exc:
        return {"enabled": True, "error": f"{exc.code}: {exc}"}
