"""Each shipped clock rule with fixed clocks: started by its document, stopped by the right
answer and not by a wrong one, overdue at exactly the right moment (local midnight after
the due date; working days across weekends and federal or configured holidays).

Observations go through :func:`observe` and back through the audit event detail
(:func:`observation_from_detail`), the path the daemon takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.documents.deadlines import (
    Facts,
    Observation,
    WorkCalendar,
    compute,
    merge_rules,
    observation_from_detail,
    observe,
    parse_rule,
    shipped_rules,
)
from gateway.documents.deadlines.rules import Rule

CHICAGO = ZoneInfo("America/Chicago")
ME_US, CA, TX, NL = "fips:0600000", "fips:0600000", "fips:4800000", "iso3166:NL"


def tx(code: str, case: str | None, other: str | None, local: str = "4800000",
       remote: str = "0600000") -> Facts:
    function, action, reason = code.split()
    return Facts(doc="InterstateTransaction", function=function, action=action, reason=reason,
                 case_id=case, other_case_id=other, local_fips=local, other_fips=remote)


def doc(name: str, case: str | None, other: str | None) -> Facts:
    return Facts(doc=name, case_id=case, other_case_id=other)


def seen(facts: Facts, *, outbound: bool, at: datetime, me: str, partner: str,
         message_id: str, rules: tuple[Rule, ...] | None = None) -> list[Observation]:
    out = []
    for code, detail in observe(facts, rules or shipped_rules(), outbound=outbound):
        obs = observation_from_detail(
            code, at, detail, message_id=message_id,
            from_party=me if outbound else partner, to_party=partner if outbound else me)
        assert obs is not None
        out.append(obs)
    return out


@dataclass
class Case:
    rule: str
    me: str
    partner: str
    start: Facts
    start_outbound: bool
    started: datetime          # local time (America/Chicago)
    owed_by_us: bool
    due: date
    right: Facts
    wrong: list[Facts] = field(default_factory=list)
    holidays: tuple[str, ...] = ()

    @property
    def answer_outbound(self) -> bool:
        return self.owed_by_us


CASES = [
    # Friday evening (local) + 10 working days over Christmas and New Year's Day.
    Case("cfr-303.7b2-registry-ack", TX, CA, tx("ENF R ERARR", "CA0000000000001", None,
                                               "0600000", "4800000"),
         False, datetime(2025, 12, 19, 22, 30, tzinfo=CHICAGO), True, date(2026, 1, 6),
         right=tx("ENF A AADIN", "TX0000000000001", "CA0000000000001"),
         wrong=[tx("ENF A AADIN", "TX0000000000002", "CA0000000000099"),   # other case
                tx("CSI P FSINF", "TX0000000000001", "CA0000000000001"),   # not an ack
                tx("ENF P GSCOE", "TX0000000000001", "CA0000000000001")]),
    Case("cfr-303.7b2-registry-ack", TX, CA,
         doc("DocumentExchange/Transmittal1InitialRequest", "CA0000000000002", None),
         False, datetime(2026, 5, 22, 9, 0, tzinfo=CHICAGO), True, date(2026, 6, 8),  # Memorial Day
         right=doc("DocumentExchange/Transmittal1Acknowledgment", "TX0000000000002",
                   "CA0000000000002"),
         wrong=[doc("DocumentExchange/GeneralTestimony", "TX0000000000002",
                    "CA0000000000002")]),
    # Wednesday before Thanksgiving, with the day after configured as a state holiday.
    Case("cfr-303.7b4-status-csi", TX, CA, tx("CSI R FRINF", "CA0000000000003",
                                             "TX0000000000003", "0600000", "4800000"),
         False, datetime(2026, 11, 25, 8, 0, tzinfo=CHICAGO), True, date(2026, 12, 4),
         right=tx("CSI P FSINF", "TX0000000000003", "CA0000000000003"),
         wrong=[tx("CSI P FSINF", "TX0000000000004", "CA0000000000003"),   # their case
                tx("CSI R FRINF", "TX0000000000003", "CA0000000000003")],
         holidays=("2026-11-27",)),
    # We ask (outbound): the partner owes; Friday 2026-07-03 is the observed July 4.
    Case("cfr-303.7b4-status-msc", CA, TX, tx("MSC R GRUPD", "CA0000000000005",
                                             "TX0000000000005", "0600000", "4800000"),
         True, datetime(2026, 7, 2, 16, 0, tzinfo=CHICAGO), False, date(2026, 7, 10),
         right=tx("MSC P GSPUD", "TX0000000000005", "CA0000000000005"),
         wrong=[tx("MSC P GSADD", "TX0000000000005", "CA0000000000005")]),
    # Martin Luther King Jr. Day inside the 5 working days.
    Case("cfr-303.7b4-status-enf", TX, CA, tx("ENF R ERSTA", "CA0000000000006",
                                             "TX0000000000006", "0600000", "4800000"),
         False, datetime(2026, 1, 12, 10, 0, tzinfo=CHICAGO), True, date(2026, 1, 20),
         right=tx("ENF P GSCOE", "TX0000000000006", "CA0000000000006"),
         wrong=[tx("EST P SSEST", "TX0000000000006", "CA0000000000006")]),
    # 75 calendar days may end on a Saturday: it is not moved.
    Case("cfr-303.7d2-responding-75", TX, CA, tx("EST R SRORD", "CA0000000000007", None,
                                                "0600000", "4800000"),
         False, datetime(2026, 3, 2, 12, 0, tzinfo=CHICAGO), True, date(2026, 5, 16),
         right=tx("EST P SSEST", "TX0000000000007", "CA0000000000007"),
         wrong=[tx("EST A ANOAD", "TX0000000000007", "CA0000000000007")]),
    # Hague: an application received from the Netherlands, 6 weeks to acknowledge.
    Case("hague-12.3-acknowledge", CA, NL, doc("MaintenanceApplication", "NL-REQ-8", None),
         False, datetime(2026, 11, 20, 11, 0, tzinfo=CHICAGO), True, date(2027, 1, 1),
         right=doc("AcknowledgementForm", "US-RSP-8", "NL-REQ-8"),
         wrong=[doc("StatusOfApplicationReport", "US-RSP-8", "NL-REQ-8"),
                doc("AcknowledgementForm", "US-RSP-9", "NL-REQ-9")]),
    # Hague: the Netherlands acknowledged our application and owes a status report
    # within 3 months (clamped to February's end).
    Case("hague-12.3-status", CA, NL, doc("AcknowledgementForm", "NL-RSP-10", "US-REQ-10"),
         False, datetime(2026, 11, 30, 15, 0, tzinfo=CHICAGO), False, date(2027, 2, 28),
         right=doc("StatusOfApplicationReport", "NL-RSP-10", "US-REQ-10"),
         wrong=[doc("AcknowledgementForm", "NL-RSP-10", "US-REQ-10"),
                doc("StatusOfApplicationReport", "NL-RSP-11", "US-REQ-11")]),
]


def run(case: Case, observations: list[Observation], now: datetime) -> list:
    cal = WorkCalendar.build(case.holidays)
    result = compute(observations, shipped_rules(), now=now, tz=CHICAGO,
                     calendar_for=lambda _us, _partner: cal)
    return [c for c in result.clocks if c.rule.name == case.rule]


def start_of(case: Case) -> list[Observation]:
    return seen(case.start, outbound=case.start_outbound, at=case.started.astimezone(UTC),
                me=case.me, partner=case.partner, message_id="start-1")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.rule}:{c.start.doc}")
def test_started_due_and_overdue_at_the_exact_moment(case: Case) -> None:
    observations = start_of(case)
    [clock] = run(case, observations, case.started + timedelta(minutes=1))
    assert clock.is_open
    assert clock.owed_by_us is case.owed_by_us
    assert clock.start_date == case.started.date()
    assert clock.due == case.due
    midnight = datetime.combine(case.due + timedelta(days=1), time(0), tzinfo=CHICAGO)
    assert clock.overdue_at == midnight
    assert clock.status(midnight - timedelta(microseconds=1)) == "open"
    assert clock.status(midnight) == "overdue"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.rule}:{c.start.doc}")
def test_stopped_by_the_right_answer_on_time_or_late(case: Case) -> None:
    midnight = datetime.combine(case.due + timedelta(days=1), time(0), tzinfo=CHICAGO)
    for answered, status in ((midnight - timedelta(seconds=1), "answered"),
                             (midnight, "answered-late")):
        answer = seen(case.right, outbound=case.answer_outbound, at=answered.astimezone(UTC),
                      me=case.me, partner=case.partner, message_id="answer-1")
        assert answer, "the right answer must be an answer of the rule"
        [clock] = run(case, start_of(case) + answer, midnight + timedelta(days=30))
        assert clock.answer is not None
        assert clock.answer.message_id == "answer-1"
        assert clock.status(midnight + timedelta(days=30)) == status


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.rule}:{c.start.doc}")
def test_not_stopped_by_a_wrong_answer(case: Case) -> None:
    midnight = datetime.combine(case.due + timedelta(days=1), time(0), tzinfo=CHICAGO)
    observations = start_of(case)
    for i, wrong in enumerate(case.wrong):
        observations += seen(wrong, outbound=case.answer_outbound,
                             at=(case.started + timedelta(hours=1)).astimezone(UTC),
                             me=case.me, partner=case.partner, message_id=f"wrong-{i}")
    # the right answer, but sent by the side that does not owe it
    observations += seen(case.right, outbound=not case.answer_outbound,
                         at=(case.started + timedelta(hours=2)).astimezone(UTC),
                         me=case.me, partner=case.partner, message_id="wrong-side")
    # the right answer, but from another partner
    observations += seen(case.right, outbound=case.answer_outbound,
                         at=(case.started + timedelta(hours=3)).astimezone(UTC),
                         me=case.me, partner="fips:1200000", message_id="wrong-partner")
    # (a wrong answer may start clocks of its own: a repeated request, a second
    # acknowledgement; only the first clock is looked at)
    [clock] = [c for c in run(case, observations, midnight) if c.start.message_id == "start-1"]
    assert clock.answer is None
    assert clock.status(midnight) == "overdue"


def test_every_enabled_shipped_rule_is_exercised_and_cites_its_source() -> None:
    tested = {c.rule for c in CASES}
    for rule in shipped_rules():
        assert rule.citation
        assert rule.source
        assert ("45 CFR 303.7" in rule.citation) or ("Hague" in rule.citation)
        if rule.enabled:
            assert rule.name in tested
        else:
            assert not rule.start, "a rule shipped disabled starts nothing"


def test_disabled_rules_start_nothing_until_a_configuration_enables_them() -> None:
    facts = doc("DocumentExchange/LetterOfTransmittalRequestingRegistration", "CA1", None)
    assert not [e for e in observe(facts, shipped_rules(), outbound=False)
                if e[1]["rule"] == "cfr-303.7a4-controlling-order"]
    enabled = parse_rule({
        "name": "cfr-303.7a4-controlling-order", "citation": "45 CFR 303.7(a)(4)",
        "start": ["doc:DocumentExchange/LetterOfTransmittalRequestingRegistration"],
        "answer": ["MSC P"], "period": "30 working days"}, "clocks.rules[0]")
    rules = merge_rules(shipped_rules(), [enabled])
    events = observe(facts, rules, outbound=False)
    assert ("clock_started", "cfr-303.7a4-controlling-order", "us") in \
        {(code, d["rule"], d.get("owes")) for code, d in events}
    # and switched off again by name
    off = merge_rules(shipped_rules(), [enabled], ["cfr-303.7a4-controlling-order",
                                                   "hague-12.3-status"])
    assert not [e for e in observe(facts, off, outbound=False)
                if e[1]["rule"] == "cfr-303.7a4-controlling-order"]
    assert not observe(doc("AcknowledgementForm", "a", "b"), off, outbound=True)[1:]
