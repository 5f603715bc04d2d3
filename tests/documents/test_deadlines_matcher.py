"""The matcher: order of recording does not matter, an answer may come before its request
is recorded, a request answered twice keeps its first answer, a request sent twice is
answered once, references and conversation IDs take precedence over case keys."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from gateway.documents.deadlines import (
    START,
    STOP,
    Observation,
    compute,
    observation_from_detail,
    shipped_rules,
)

RULE = "cfr-303.7b4-status-csi"     # 5 working days, owed by the recipient
ME, PARTNER = "fips:4800000", "fips:0600000"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)   # a Monday


def start(at: datetime, mid: str, ours: str | None = "TX1", theirs: str | None = "CA1", *,
          conv: str | None = None, partner: str = PARTNER) -> Observation:
    """An inbound CSI R: the partner's request, which we owe an answer to."""
    return Observation(START, RULE, at, False, partner, mid, ours, theirs, conv, None,
                       "CSI-R-FRINF")


def answer(at: datetime, mid: str, ours: str | None = "TX1", theirs: str | None = "CA1", *,
           conv: str | None = None, ref: str | None = None,
           partner: str = PARTNER) -> Observation:
    """Our outbound CSI P."""
    return Observation(STOP, RULE, at, True, partner, mid, ours, theirs, conv, ref,
                       "CSI-P-FSINF")


def clocks(observations: list[Observation], now: datetime | None = None):  # type: ignore[no-untyped-def]
    return compute(observations, shipped_rules(), now=now or T0 + timedelta(days=60), tz=UTC)


def test_recording_order_does_not_matter() -> None:
    rng = random.Random(7)
    observations = []
    for i in range(40):
        at = T0 + timedelta(hours=7 * i)
        observations.append(start(at, f"r{i}", f"TX{i}", f"CA{i}"))
        if i % 3:
            observations.append(answer(at + timedelta(days=i % 9), f"a{i}", f"TX{i}", f"CA{i}"))
    baseline = clocks(observations)
    for _ in range(5):
        rng.shuffle(observations)
        again = clocks(observations)
        assert [(c.start.message_id, c.answer and c.answer.message_id) for c in again.clocks] \
            == [(c.start.message_id, c.answer and c.answer.message_id) for c in baseline.clocks]
    answered = {c.start.message_id for c in baseline.clocks if c.answer}
    assert answered == {f"r{i}" for i in range(40) if i % 3}


def test_an_answer_recorded_before_its_request_waits_for_it() -> None:
    a = answer(T0 + timedelta(hours=2), "a1")
    # only the answer is known: it matches nothing yet
    early = clocks([a])
    assert early.clocks == ()
    assert [o.message_id for o in early.unmatched] == ["a1"]
    # the request is recorded afterwards (it happened earlier): the answer now stops it
    later = clocks([a, start(T0, "r1")])
    [clock] = later.clocks
    assert clock.answer == a
    assert later.unmatched == ()


def test_an_answer_stamped_slightly_before_the_request_still_counts() -> None:
    # the request's event may be stamped a moment after our answer's (two threads)
    [clock] = clocks([start(T0, "r1"), answer(T0 - timedelta(minutes=5), "a1")]).clocks
    assert clock.answer is not None
    # but an answer from well before the request belongs to an earlier one
    result = clocks([start(T0, "r1"), answer(T0 - timedelta(days=2), "a0")])
    assert result.clocks[0].answer is None
    assert [o.message_id for o in result.unmatched] == ["a0"]


def test_a_request_answered_twice_keeps_its_first_answer() -> None:
    result = clocks([start(T0, "r1"), answer(T0 + timedelta(days=1), "a1"),
                     answer(T0 + timedelta(days=9), "a2")])
    [clock] = result.clocks
    assert clock.answer is not None
    assert clock.answer.message_id == "a1"
    assert result.unmatched == ()          # the second answer fits; it is no stray
    # a later request in the same case is not stopped by the old answers
    result = clocks([start(T0, "r1"), answer(T0 + timedelta(days=1), "a1"),
                     answer(T0 + timedelta(days=2), "a2"),
                     start(T0 + timedelta(days=20), "r2")])
    by_id = {c.start.message_id: c for c in result.clocks}
    assert by_id["r2"].answer is None
    assert by_id["r2"].overdue(T0 + timedelta(days=60))


def test_a_request_sent_twice_is_answered_once() -> None:
    result = clocks([start(T0, "r1"), start(T0 + timedelta(days=2), "r1-again"),
                     answer(T0 + timedelta(days=3), "a1")])
    assert [c.answer.message_id if c.answer else None for c in result.clocks] == ["a1", "a1"]


def test_the_same_event_recorded_twice_counts_once() -> None:
    result = clocks([start(T0, "r1"), start(T0, "r1"), answer(T0 + timedelta(days=1), "a1"),
                     answer(T0 + timedelta(days=1), "a1")])
    assert len(result.clocks) == 1
    assert result.unmatched == ()


def test_a_first_request_without_the_other_case_id() -> None:
    # their first request does not know our case ID; our answer names both
    [clock] = clocks([start(T0, "r1", ours=None, theirs="CA1"),
                      answer(T0 + timedelta(days=1), "a1", ours="TX1", theirs="CA1")]).clocks
    assert clock.answer is not None
    # the requester's own reference is what must be repeated
    [clock] = clocks([start(T0, "r1", ours=None, theirs="CA1"),
                      answer(T0 + timedelta(days=1), "a1", ours="TX1", theirs="CA2")]).clocks
    assert clock.answer is None
    # and when both sides wrote the other's ID, it must agree
    [clock] = clocks([start(T0, "r1", ours="TX1", theirs="CA1"),
                      answer(T0 + timedelta(days=1), "a1", ours="TX9", theirs="CA1")]).clocks
    assert clock.answer is None


def test_reference_and_conversation_take_precedence() -> None:
    # an answer that names the request's message ID matches whatever its case keys say
    [clock] = clocks([start(T0, "r1"), answer(T0 + timedelta(days=1), "a1", ours="X",
                                              theirs="Y", ref="r1")]).clocks
    assert clock.answer is not None
    # both carry a conversation ID: it decides, case keys or not
    [clock] = clocks([start(T0, "r1", conv="c-1"),
                      answer(T0 + timedelta(days=1), "a1", conv="c-2")]).clocks
    assert clock.answer is None
    [clock] = clocks([start(T0, "r1", conv="c-1", ours=None, theirs=None),
                      answer(T0 + timedelta(days=1), "a1", conv="c-1", ours="Q")]).clocks
    assert clock.answer is not None


def test_what_happens_after_now_is_not_known_yet() -> None:
    obs = [start(T0, "r1"), answer(T0 + timedelta(days=3), "a1")]
    assert clocks(obs, now=T0 + timedelta(days=1)).clocks[0].is_open
    assert not clocks(obs, now=T0 + timedelta(days=3)).clocks[0].is_open
    assert clocks(obs, now=T0 - timedelta(seconds=1)).clocks == ()


def test_events_of_rules_no_longer_configured_are_reported() -> None:
    stray = Observation(START, "retired-rule", T0, False, PARTNER, "r9", "TX1", "CA1")
    result = clocks([stray, start(T0, "r1")])
    assert result.unknown_rules == frozenset({"retired-rule"})
    assert [c.start.message_id for c in result.clocks] == ["r1"]


def test_open_clocks_come_soonest_due_first() -> None:
    obs = [start(T0 + timedelta(days=5), "late", "TX2", "CA2"), start(T0, "early"),
           start(T0 + timedelta(days=2), "middle", "TX3", "CA3")]
    assert [c.start.message_id for c in clocks(obs).open()] == ["early", "middle", "late"]


def test_reading_events_back_needs_rule_direction_and_partner() -> None:
    detail = {"rule": RULE, "dir": "in", "case": "CA1", "other_case": "TX1"}
    obs = observation_from_detail(START, T0, detail, message_id="m", from_party=PARTNER,
                                  to_party=ME)
    assert obs is not None
    assert (obs.partner, obs.our_case, obs.their_case) == (PARTNER, "TX1", "CA1")
    assert observation_from_detail("delivered", T0, detail, message_id="m",
                                   from_party=PARTNER, to_party=ME) is None
    assert observation_from_detail(START, T0, {**detail, "dir": "up"}, message_id="m",
                                   from_party=PARTNER, to_party=ME) is None
    assert observation_from_detail(START, T0, detail, message_id="m", from_party=None,
                                   to_party=ME) is None


def test_a_document_that_answers_one_rule_is_no_stray_for_another() -> None:
    ack = Observation(STOP, "cfr-303.7b2-registry-ack", T0 + timedelta(days=1), True,
                      PARTNER, "a1", "TX1", "CA1", code="ENF-A-AADIN")
    also = Observation(STOP, "cfr-303.7b4-status-enf", T0 + timedelta(days=1), True,
                       PARTNER, "a1", "TX1", "CA1", code="ENF-A-AADIN")
    request = Observation(START, "cfr-303.7b2-registry-ack", T0, False, PARTNER, "r1",
                          None, "CA1", code="ENF-R-ERARR")
    result = clocks([request, ack, also])
    assert result.clocks[0].answer == ack
    assert result.unmatched == ()
    assert [o.message_id for o in clocks([ack, also]).unmatched] == ["a1"]
