"""The clock alert rules against a real spool and audit trail, on a fixed clock:
``clock_due_within`` fires once when an open clock comes within N working days of its due
date, ``clock_overdue`` once when it is past it; an answered clock raises nothing;
``clock_owed_by`` narrows both; alerts raised together go out as one digest; a restarted
engine raises none again; the alerts hold keys and codes only. The channel here records
what it is given (real delivery: test_alert_delivery.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.documents.deadlines import Facts, observe, shipped_rules
from gateway.errors import ConfigError
from gateway.node.alerts import AlertEngine
from gateway.node.clocks import ClockKeeper, ClocksConfig, ClockWatch
from gateway.node.config import load_config
from gateway.node.monitor_config import AlertRules, AlertsConfig
from gateway.store.sqlite import SqliteSpool
from tests.node.test_alert_rules import OFF, Clock, Recorder

ME, TX = "fips:0600000", "fips:4800000"
CSI = "cfr-303.7b4-status-csi"
MON = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday: 5 working days, due Monday 9th
RULES = replace(OFF, clock_due_within=2, clock_overdue=True)


@pytest.fixture
def spool(tmp_path: Path) -> SqliteSpool:
    return SqliteSpool(tmp_path / "gateway.db")


def record(spool: SqliteSpool, mid: str, facts: Facts, *, outbound: bool,
           at: datetime) -> None:
    with spool.transaction(at) as txn:
        for code, detail in observe(facts, shipped_rules(), outbound=outbound):
            txn.audit(code, None, message_id=mid, from_party=ME if outbound else TX,
                      to_party=TX if outbound else ME, detail=detail)


def inquiry(case: str) -> Facts:
    """A CSI R from Texas (we owe the answer in 5 working days)."""
    return Facts("InterstateTransaction", "CSI", "R", "FRINF", f"TX{case}", f"CA{case}")


def engine(spool: SqliteSpool, clock: Clock, recorder: Recorder, rules: AlertRules = RULES,
           rate_limit: float = 0.0) -> AlertEngine:
    watch = ClockWatch(ClockKeeper(ClocksConfig()), refresh=0)
    return AlertEngine(AlertsConfig(rate_limit=rate_limit, rules=rules), spool, node=ME,
                       clock=clock, channels=[recorder], clocks=watch)


def raised(spool: SqliteSpool) -> list[tuple[str, str]]:
    return [(str(e.event.detail["rule"]), str(e.event.detail["key"]))
            for e in spool.audit_after(0, ["alert_raised"])]


def test_due_within_and_overdue_fire_once_per_clock(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    clock.now = MON
    record(spool, "m-1", inquiry("1"), outbound=False, at=MON)
    record(spool, "m-2", inquiry("2"), outbound=False, at=MON)
    eng = engine(spool, clock, rec)
    assert eng.run_once() == 0  # 5 working days left
    clock.now = datetime(2026, 3, 4, 23, 0, tzinfo=UTC)  # Wednesday: 3 left
    assert eng.run_once() == 0
    # we answer the second inquiry in time: its clock raises nothing more
    record(spool, "a-2", Facts("InterstateTransaction", "CSI", "P", "FSINF", "CA2", "TX2"),
           outbound=True, at=clock.now)
    clock.now = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)  # Thursday: Friday, Monday left
    assert eng.run_once() == 1
    [delivery] = rec.got
    [alert] = delivery.alerts
    assert (alert.rule, alert.key) == ("clock_due_within", f"{CSI}:m-1")
    assert alert.facts == {"clock_rule": CSI, "partner": TX, "owed_by": "us",
                           "due": "2026-03-09", "message_id": "m-1", "case": "CA1",
                           "working_days_left": 2}
    assert "due 2026-03-09" in alert.summary
    clock.advance(3600)
    assert eng.run_once() == 0  # once per clock
    clock.now = datetime(2026, 3, 10, tzinfo=UTC) - timedelta(microseconds=1)
    assert eng.run_once() == 0
    clock.now = datetime(2026, 3, 10, tzinfo=UTC)  # overdue from midnight
    assert eng.run_once() == 1
    assert [(a.rule, a.key) for a in rec.got[-1].alerts] == [("clock_overdue", f"{CSI}:m-1")]
    assert "was due 2026-03-09" in rec.got[-1].alerts[0].summary
    clock.advance(86400)
    assert eng.run_once() == 0
    assert raised(spool) == [("clock_due_within", f"{CSI}:m-1"),
                             ("clock_overdue", f"{CSI}:m-1")]
    sent = [dict(e.event.detail) for e in spool.audit_after(0, ["alert_sent"])]
    assert [d["rule"] for d in sent] == ["clock_due_within", "clock_overdue"]
    # a restarted daemon raises none of them again, a week and more later too
    clock.advance(10 * 86400)
    again = engine(spool, clock, Recorder())
    assert again.run_once() == 0
    assert len(raised(spool)) == 2


def test_owed_by_history_and_digest(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    # Texas has owed us an answer since long ago (overdue for months: history, not news)
    old = MON - timedelta(days=120)
    record(spool, "o-1", Facts("InterstateTransaction", "CSI", "R", "FRINF", "CA7", None),
           outbound=True, at=old)
    # and two inquiries to us go overdue together
    record(spool, "m-1", inquiry("1"), outbound=False, at=MON)
    record(spool, "m-2", inquiry("2"), outbound=False, at=MON)
    clock.now = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    eng = engine(spool, clock, rec, replace(RULES, clock_due_within=None), rate_limit=900)
    assert eng.run_once() == 1
    [delivery] = rec.got
    assert sorted(a.key for a in delivery.alerts) == [f"{CSI}:m-1", f"{CSI}:m-2"]
    assert delivery.subject.endswith("clock_overdue: 2 alerts (digest)")
    # the partner's late answer, when it becomes overdue now, is raised (owed_by any) ...
    record(spool, "o-2", Facts("InterstateTransaction", "CSI", "R", "FRINF", "CA8", None),
           outbound=True, at=MON)
    clock.now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    eng.run_once()
    assert ("clock_overdue", f"{CSI}:o-2") in raised(spool)
    assert ("clock_overdue", f"{CSI}:o-1") not in raised(spool)
    # ... but not when only the answers we owe are watched
    only_us = engine(spool, clock, Recorder(), replace(RULES, clock_owed_by="us"))
    record(spool, "o-3", Facts("InterstateTransaction", "CSI", "R", "FRINF", "CA9", None),
           outbound=True, at=MON)
    only_us.run_once()
    assert ("clock_overdue", f"{CSI}:o-3") not in raised(spool)
    assert ("clock_due_within", f"{CSI}:o-3") not in raised(spool)


def test_clock_rules_in_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    base = '[node]\nparty = "fips:0600000"\n[alerts.webhook]\nurl = "https://h.example/x"\n'
    config.write_text(base, encoding="utf-8")
    rules = load_config(config).alerts.rules
    assert (rules.clock_due_within, rules.clock_overdue, rules.clock_owed_by) == (2, True,
                                                                                   "any")
    config.write_text(base + '[alerts.rules]\nclock_due_within = false\nclock_overdue = '
                      'false\nclock_owed_by = "us"\n', encoding="utf-8")
    rules = load_config(config).alerts.rules
    assert (rules.clock_due_within, rules.clock_overdue, rules.clock_owed_by) == (None, False,
                                                                                   "us")
    config.write_text(base + '[alerts.rules]\nclock_due_within = "soon"\nclock_owed_by = '
                      '"them"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert {p["key"] for p in caught.value.details["problems"]} == {
        "alerts.rules.clock_due_within", "alerts.rules.clock_owed_by"}
