"""The clock matcher: which documents start a deadline clock, which answer one, and the
state of every clock at a given moment. Pure: the time is an argument.

A node records, for each document it sends (validated) or delivers, one *observation* per
rule the document starts or answers (:func:`observe`; the daemon writes them as the audit
events ``clock_started`` and ``clock_answer``). :func:`compute` pairs them afresh every time
it is asked, so the result does not depend on the order observations were recorded in:

- an answer belongs to a start of the same rule, with the same counterpart party, sent by
  the side that owes it, no earlier than the start (less ``tolerance``) and with the same
  keys: its ``ref_to`` naming the start's message, else the same conversation ID when
  both have one, else the same case pair: the reference the start's sender gave as its
  own must be repeated, and the other side's must agree when both documents carry it (a
  first request often has no other-state case ID yet);
- an answer stops every open clock it matches (a request sent twice is answered once),
  and the earliest matching answer is the one that counts (a request answered twice keeps
  its first answer; the second changes nothing);
- an answer recorded before its request (or with no request at all) waits: it is
  reported as unmatched until a start it fits is observed;
- observations of the same message and rule count once (a crash-recovered delivery may
  record them again).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from gateway.documents.deadlines.calendar import WorkCalendar
from gateway.documents.deadlines.facts import Facts
from gateway.documents.deadlines.rules import Rule

__all__ = ["START", "STOP", "Clock", "ClockSet", "Observation", "compute",
           "observation_from_detail", "observe"]

START, STOP = "clock_started", "clock_answer"
DEFAULT_TOLERANCE = timedelta(minutes=10)


@dataclass(frozen=True)
class Observation:
    """One document seen by this node, as the start or answer (``kind``: START / STOP) of
    rule ``rule``. ``partner`` is the counterpart party (the receiver of what we sent,
    the sender of what we received); ``our_case`` / ``their_case`` are normalised."""

    kind: str
    rule: str
    at: datetime
    outbound: bool
    partner: str
    message_id: str | None = None
    our_case: str | None = None
    their_case: str | None = None
    conversation_id: str | None = None
    ref_to: str | None = None
    code: str = ""
    our_fips: str | None = None
    their_fips: str | None = None


def _code(facts: Facts) -> str:
    if facts.function and facts.action:
        return "-".join(p for p in (facts.function, facts.action, facts.reason) if p)
    return facts.doc


def observe(facts: Facts, rules: Sequence[Rule], *, outbound: bool
            ) -> list[tuple[str, dict[str, str]]]:
    """The clock events (code, detail) for one document: one per rule it starts or
    answers. Details hold keys and codes only (short tokens, no personal data)."""
    out: list[tuple[str, dict[str, str]]] = []
    base = {"dir": "out" if outbound else "in", "code": _code(facts)}
    keys = {"case": facts.case_id, "other_case": facts.other_case_id,
            "local_fips": facts.local_fips, "other_fips": facts.other_fips,
            "conv": facts.conversation_id, "ref": facts.ref_to}
    base.update({k: v for k, v in keys.items() if v})
    for rule in rules:
        if rule.starts(facts, outbound=outbound):
            owes = "us" if rule.owed_by_us(outbound) else "partner"
            out.append((START, {"rule": rule.name, "owes": owes, **base}))
        if rule.answers(facts):
            out.append((STOP, {"rule": rule.name, **base}))
    return out


def observation_from_detail(code: str, at: datetime, detail: Mapping[str, object], *,
                            message_id: str | None, from_party: str | None,
                            to_party: str | None) -> Observation | None:
    """Read an observation back from a stored clock event (None when it is not one or
    lacks what matching needs)."""
    if code not in (START, STOP):
        return None
    rule, direction = detail.get("rule"), detail.get("dir")
    if not isinstance(rule, str) or direction not in ("in", "out"):
        return None
    outbound = direction == "out"
    partner = to_party if outbound else from_party
    if not partner:
        return None

    def get(key: str) -> str | None:
        value = detail.get(key)
        return value if isinstance(value, str) and value else None

    case, other = get("case"), get("other_case")
    ours, theirs = (case, other) if outbound else (other, case)
    local, remote = get("local_fips"), get("other_fips")
    our_fips, their_fips = (local, remote) if outbound else (remote, local)
    return Observation(code, rule, at, outbound, partner, message_id, ours, theirs,
                       get("conv"), get("ref"), get("code") or "", our_fips, their_fips)


@dataclass(frozen=True)
class Clock:
    """One deadline: started by ``start``, due at the end of ``due`` (local date), overdue
    from ``overdue_at``; ``answer`` is the observation that stopped it, if any."""

    rule: Rule
    start: Observation
    owed_by_us: bool
    start_date: date
    due: date
    overdue_at: datetime
    answer: Observation | None = None
    calendar: WorkCalendar = field(default_factory=WorkCalendar, compare=False, repr=False)

    @property
    def partner(self) -> str:
        return self.start.partner

    @property
    def is_open(self) -> bool:
        return self.answer is None

    @property
    def answered_late(self) -> bool:
        return self.answer is not None and self.answer.at >= self.overdue_at

    def overdue(self, now: datetime) -> bool:
        return self.answer is None and now >= self.overdue_at

    def status(self, now: datetime) -> str:
        if self.answer is not None:
            return "answered-late" if self.answered_late else "answered"
        return "overdue" if self.overdue(now) else "open"

    def working_days_left(self, today: date) -> int:
        """Working days from ``today`` to the due date (negative once past it)."""
        return self.calendar.working_days_between(today, self.due)


@dataclass(frozen=True)
class ClockSet:
    clocks: tuple[Clock, ...]
    unmatched: tuple[Observation, ...]   # answering documents that fit no start (yet)
    unknown_rules: frozenset[str] = frozenset()   # events of rules no longer configured

    def open(self) -> list[Clock]:
        """Open clocks, soonest due first."""
        return sorted((c for c in self.clocks if c.is_open),
                      key=lambda c: (c.overdue_at, c.start.at, c.rule.name))


def _primary(obs: Observation, start_outbound: bool) -> tuple[str | None, str | None]:
    """(the reference the start's sender wrote as its own, the other side's) as carried
    by ``obs``: a first request often has no other-side case ID yet, so the start's own
    reference is the one every answer repeats."""
    if start_outbound:
        return obs.our_case, obs.their_case
    return obs.their_case, obs.our_case


def _keys_match(start: Observation, answer: Observation) -> bool:
    if answer.ref_to and start.message_id and answer.ref_to == start.message_id:
        return True
    if start.conversation_id and answer.conversation_id:
        return start.conversation_id == answer.conversation_id
    own, other = _primary(start, start.outbound)
    answer_own, answer_other = _primary(answer, start.outbound)
    if not own or own != answer_own:
        return False
    return not (other and answer_other) or other == answer_other


def compute(observations: Iterable[Observation], rules: Sequence[Rule], *, now: datetime,
            tz: tzinfo, calendar_for: Callable[[bool, str], WorkCalendar] | None = None,
            tolerance: timedelta = DEFAULT_TOLERANCE) -> ClockSet:
    """Every clock as of ``now`` (observations after ``now`` are not yet known).
    ``calendar_for(owed_by_us, partner)`` gives the working-day calendar of whoever owes
    the answer (default: federal holidays only); dates are local dates in ``tz``."""
    by_name = {r.name: r for r in rules}
    default = WorkCalendar()
    pick = calendar_for or (lambda _us, _partner: default)
    starts: list[Observation] = []
    answers: list[Observation] = []
    seen: set[tuple[str, str, str]] = set()
    unknown: set[str] = set()
    for obs in observations:
        if obs.at > now:
            continue
        if obs.rule not in by_name:
            unknown.add(obs.rule)
            continue
        if obs.message_id:
            key = (obs.kind, obs.rule, obs.message_id)
            if key in seen:
                continue
            seen.add(key)
        (starts if obs.kind == START else answers).append(obs)
    answers.sort(key=lambda o: o.at)
    # candidate answers by case, by conversation and by the message they refer to
    by_case: dict[tuple[str, str, bool, bool, str], list[Observation]] = defaultdict(list)
    by_conv: dict[tuple[str, str, bool, str], list[Observation]] = defaultdict(list)
    by_ref: dict[str, list[Observation]] = defaultdict(list)
    for obs in answers:
        group = (obs.rule, obs.partner, obs.outbound)
        if obs.our_case:
            by_case[(*group, True, obs.our_case)].append(obs)
        if obs.their_case:
            by_case[(*group, False, obs.their_case)].append(obs)
        if obs.conversation_id:
            by_conv[(*group, obs.conversation_id)].append(obs)
        if obs.ref_to:
            by_ref[obs.ref_to].append(obs)
    used: set[int] = set()
    clocks: list[Clock] = []
    due_dates: dict[tuple[object, date, int], tuple[date, datetime]] = {}
    for start in sorted(starts, key=lambda o: o.at):
        rule = by_name[start.rule]
        us = rule.owed_by_us(start.outbound)
        cal = pick(us, start.partner)
        start_date = start.at.astimezone(tz).date()
        dated = (rule.period, start_date, id(cal))
        found = due_dates.get(dated)
        if found is None:
            due = rule.period.due(start_date, cal)
            found = due_dates[dated] = (
                due, datetime.combine(due + timedelta(days=1), time(0), tzinfo=tz))
        due, overdue_at = found
        group = (rule.name, start.partner, us)
        candidates: list[Observation] = []
        own = _primary(start, start.outbound)[0]
        if own:
            candidates += by_case.get((*group, start.outbound, own), ())
        if start.conversation_id:
            candidates += by_conv.get((*group, start.conversation_id), ())
        if start.message_id:
            candidates += [a for a in by_ref.get(start.message_id, ())
                           if (a.rule, a.partner, a.outbound) == group]
        earliest = start.at - tolerance
        fitting = [a for a in candidates if a.at >= earliest and _keys_match(start, a)]
        used.update(id(a) for a in fitting)
        answer = min(fitting, key=lambda a: a.at, default=None)
        clocks.append(Clock(rule, start, us, start_date, due, overdue_at, answer, cal))
    # an answer is stray when it fits no start under any rule (one document is often an
    # answer of several rules: an ENF A acknowledges a case and answers a status request)
    fitted = {a.message_id for a in answers if id(a) in used and a.message_id}
    stray: dict[str, Observation] = {}
    for a in answers:
        if id(a) not in used and a.message_id not in fitted:
            stray.setdefault(a.message_id or f"#{id(a)}", a)
    unmatched = tuple(stray.values())
    return ClockSet(tuple(clocks), unmatched, frozenset(unknown))
