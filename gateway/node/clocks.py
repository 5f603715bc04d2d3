"""Deadline clocks at a node: the ``[clocks]`` configuration, the clock events written for
each document sent or delivered, and the clocks read back from the audit trail.

The events are ordinary audit events (``clock_started`` / ``clock_answer``, keys and codes
only) written in the same transaction as the message step they belong to, so the trail
stays the one record (no table of its own; the PostgreSQL store carries them unchanged).
Which answer stops which clock is computed from them on every read
(:func:`gateway.documents.deadlines.compute`): recording order does not matter, and
changed periods or holidays apply to clocks already running.

```toml
[clocks]
enabled = true                      # default
timezone = "America/Los_Angeles"    # local dates for due dates (default UTC)
holidays = ["03-31", "2026-11-27"]  # state holidays: MM-DD every year, or one date
disable = ["cfr-303.7d2-responding-75"]
[clocks.partner_holidays]
"fips:4800000" = ["03-02"]
[[clocks.rules]]                    # same keys as the shipped table; a shipped name replaces it
name = "..."
```
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lxml import etree

from gateway.documents.csenet.records import Transaction
from gateway.documents.deadlines import (
    START,
    STOP,
    ClockSet,
    Observation,
    Rule,
    RuleError,
    WorkCalendar,
    compute,
    facts_from_tree,
    merge_rules,
    observation_from_detail,
    observe,
    parse_holiday,
    parse_rules,
    shipped_rules,
)
from gateway.documents.deadlines.facts import facts_from_transaction
from gateway.node.reminder_config import RemindersConfig
from gateway.store.audit import AuditLog, StoredEvent
from gateway.store.spool import Spool

__all__ = ["ClockKeeper", "ClockWatch", "ClocksConfig", "clock_events", "parse_clocks",
           "read_clocks"]

log = logging.getLogger("gateway.node.clocks")


@dataclass(frozen=True)
class ClocksConfig:
    enabled: bool = True
    timezone: str = "UTC"
    holidays: tuple[str, ...] = ()
    partner_holidays: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    disable: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    reminders: RemindersConfig = field(default_factory=RemindersConfig)


def _strings(value: object) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse_clocks(table: Mapping[str, Any], problem: Callable[[str, str], None], *,
                 reminders: RemindersConfig | None = None) -> ClocksConfig:
    """``[clocks]`` into a :class:`ClocksConfig`; each problem is reported with its key
    (``problem(key, text)``) and a usable default is kept, so every problem is found.
    Unknown keys are the caller's to report (the loader checks them with every other
    section's)."""
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        problem("clocks.enabled", "expected true or false")
        enabled = True
    tz = table.get("timezone", "UTC")
    try:
        if not isinstance(tz, str):
            raise ValueError
        ZoneInfo(tz)
    except (ValueError, ZoneInfoNotFoundError):
        problem("clocks.timezone", "expected an IANA time zone name (e.g. America/Chicago)")
        tz = "UTC"

    def holidays(value: object, key: str) -> tuple[str, ...]:
        items = _strings(value)
        if items is None:
            problem(key, "expected an array of MM-DD or YYYY-MM-DD strings")
            return ()
        good = []
        for i, text in enumerate(items):
            try:
                parse_holiday(text)
                good.append(text)
            except ValueError as exc:
                problem(f"{key}[{i}]", str(exc))
        return tuple(good)

    own = holidays(table.get("holidays", []), "clocks.holidays")
    partner: dict[str, tuple[str, ...]] = {}
    raw = table.get("partner_holidays", {})
    if not isinstance(raw, Mapping):
        problem("clocks.partner_holidays", "expected a table of party = [dates]")
    else:
        for party, value in raw.items():
            partner[party] = holidays(value, f"clocks.partner_holidays.{party}")
    disable = _strings(table.get("disable", []))
    if disable is None:
        problem("clocks.disable", "expected an array of rule names")
        disable = []
    rules: list[Rule] = []
    tables = table.get("rules", [])
    if not isinstance(tables, list):
        problem("clocks.rules", "expected an array of tables ([[clocks.rules]])")
    else:
        try:
            rules = parse_rules(tables, "clocks.rules", strict=False)
        except RuleError as exc:
            problem(exc.key, exc.text)
    known = {r.name for r in shipped_rules()} | {r.name for r in rules}
    for i, name in enumerate(disable):
        if name not in known:
            problem(f"clocks.disable[{i}]", "no rule of this name")
    return ClocksConfig(enabled, tz, own, partner, tuple(disable), tuple(rules),
                        reminders or RemindersConfig())


class ClockKeeper:
    """The clock rules and calendars of one node (built from its configuration)."""

    def __init__(self, config: ClocksConfig) -> None:
        self.config = config
        self.rules = merge_rules(shipped_rules(), config.rules, config.disable)
        self.tz: tzinfo = ZoneInfo(config.timezone)
        self.ours = WorkCalendar.build(config.holidays)
        self._partners = {p: WorkCalendar.build(h)
                          for p, h in config.partner_holidays.items()}
        self._federal = WorkCalendar()

    @cached_property
    def active(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def calendar_for(self, owed_by_us: bool, partner: str) -> WorkCalendar:
        if owed_by_us:
            return self.ours
        return self._partners.get(partner, self._federal)

    def events(self, tree: etree._ElementTree | etree._Element, *, outbound: bool,
               conversation_id: str | None = None, ref_to: str | None = None,
               transaction: Transaction | None = None
               ) -> list[tuple[str, dict[str, str]]]:
        """The clock events for one validated document (none when clocks are off or the
        document starts and answers nothing); ``transaction``: the CSENet transaction its
        validation mapped it onto, read instead of the tree."""
        if not self.config.enabled:
            return []
        facts = facts_from_tree(tree, conversation_id=conversation_id, ref_to=ref_to) \
            if transaction is None else facts_from_transaction(
                transaction, conversation_id=conversation_id, ref_to=ref_to)
        if facts is None:
            return []
        return observe(facts, self.active, outbound=outbound)

    def compute(self, observations: Iterable[Observation], now: datetime) -> ClockSet:
        return compute(observations, self.rules, now=now, tz=self.tz,
                       calendar_for=self.calendar_for)


def clock_events(keeper: ClockKeeper | None, tree: etree._ElementTree | etree._Element, *,
                 outbound: bool, conversation_id: str | None = None,
                 ref_to: str | None = None, transaction: Transaction | None = None,
                 ) -> tuple[tuple[str, dict[str, str]], ...]:
    """:meth:`ClockKeeper.events`, never raising: a document the clocks cannot read is
    logged and sent or delivered all the same."""
    if keeper is None:
        return ()
    try:
        return tuple(keeper.events(tree, outbound=outbound, conversation_id=conversation_id,
                                   ref_to=ref_to, transaction=transaction))
    except Exception:  # the clocks must never stop a message
        log.exception("clock events could not be derived; the message goes on without them")
        return ()


#: Outbound messages whose last of these events is a failure or a cancellation never
#: reached the partner: their clock events do not count (an operator's resend revives them).
_ENDINGS = ("failed", "cancelled_by_operator", "resent_by_operator")


def observations(audit: AuditLog, *, since: datetime | None = None) -> list[Observation]:
    """Every clock observation in the audit trail, less those of documents we sent that
    failed for good or were cancelled (the partner never got them)."""
    out = []
    for stored in audit.query(code=(START, STOP), since=since):
        e = stored.event
        obs = observation_from_detail(e.code, e.at, e.detail, message_id=e.message_id,
                                      from_party=e.from_party, to_party=e.to_party)
        if obs is not None:
            out.append(obs)
    last: dict[str, str] = {}
    for stored in audit.query(code=_ENDINGS, since=since):
        if stored.event.message_id:
            last[stored.event.message_id] = stored.event.code
    dead = {mid for mid, code in last.items() if code != "resent_by_operator"}
    if dead:
        out = [o for o in out if not (o.outbound and o.message_id in dead)]
    return out


def read_clocks(audit: AuditLog, keeper: ClockKeeper, now: datetime) -> ClockSet:
    """The node's clocks as of ``now``, from its audit trail."""
    return keeper.compute(observations(audit), now)


class ClockWatch:
    """The node's clocks kept up to date from the store for the daemon's watchers (the
    metrics, the clock alerts, the reminders): the clock events are read incrementally
    (from the last sequence number seen, as the metrics' audit tally does) and the
    pairing is computed again only when something new was read, at most once per
    ``refresh`` seconds (its cost grows with the trail: about a second for a year of a
    5,000-case state). A clock set read between two computations is at most ``refresh``
    old; whether a clock is overdue is always judged at the caller's ``now``.
    Thread-safe: the watchers share one."""

    PAGE = 20_000
    CODES = (START, STOP, *_ENDINGS)

    def __init__(self, keeper: ClockKeeper, *, refresh: float = 60.0) -> None:
        self.keeper = keeper
        self.refresh = refresh
        self.seq = 0
        self._lock = threading.Lock()
        self._seen: list[Observation] = []
        self._last: dict[str, str] = {}  # message id -> its last ending code
        self._dirty = True
        self._set: ClockSet | None = None
        self._computed: datetime | None = None
        self._pending: datetime | None = None  # the first event after the last ``now``

    def _add(self, stored: StoredEvent) -> None:
        e = stored.event
        if e.code in _ENDINGS:
            if e.message_id:
                self._last[e.message_id] = e.code
            return
        obs = observation_from_detail(e.code, e.at, e.detail, message_id=e.message_id,
                                      from_party=e.from_party, to_party=e.to_party)
        if obs is not None:
            self._seen.append(obs)

    def update(self, spool: Spool) -> bool:
        """Read the events written since the last call; whether there were any."""
        read = False
        while True:
            events = spool.audit_after(self.seq, self.CODES, self.PAGE)
            for stored in events:
                self._add(stored)
                self.seq = stored.seq
            read = read or bool(events)
            if len(events) < self.PAGE:
                break
        self._dirty = self._dirty or read
        return read

    def clocks(self, spool: Spool, now: datetime) -> ClockSet:
        """The clocks as of ``now`` (computed again when new events were read and the
        last computation is ``refresh`` seconds old, or when ``now`` went back)."""
        with self._lock:
            self.update(spool)
            last = self._computed
            stale = (self._set is None or last is None or now < last
                     or (self._pending is not None and now >= self._pending)
                     or (self._dirty and (now - last).total_seconds() >= self.refresh))
            if stale:
                dead = {mid for mid, code in self._last.items()
                        if code != "resent_by_operator"}
                live = [o for o in self._seen if not (o.outbound and o.message_id in dead)]
                self._set = self.keeper.compute(live, now)
                self._computed = now
                self._pending = min((o.at for o in live if o.at > now), default=None)
                self._dirty = False
            assert self._set is not None  # noqa: S101 - set above
            return self._set
