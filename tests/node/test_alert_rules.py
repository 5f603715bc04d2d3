"""Alert rules against a real spool and audit trail, with a fixed clock: each rule fires
once when its condition holds and not when it does not; the per-rule rate limit holds
alerts back and sends them as one digest; a restart does not raise an alert again; every
delivery is an `alert_sent` audit event. The channels here record what they are given
(the real e-mail and webhook delivery is tested in test_alert_delivery.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.node.alert_channels import AlertDeliveryError, Delivery
from gateway.node.alerts import AlertEngine, VerifyResult
from gateway.node.metrics import CertInfo
from gateway.node.monitor_config import AlertRules, AlertsConfig
from gateway.store.spool import NewMessage
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TX, NL = "fips:4800000", "iso3166:NL"
OFF = AlertRules(message_failed=False, breaker_open=None, oldest_pending=None,
                 certificate_expiry=(), audit_verify=None, login_failures=None)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    """A channel that keeps what it is given (or refuses, to test a failed delivery)."""

    name = "recorder"

    def __init__(self) -> None:
        self.got: list[Delivery] = []
        self.refuse = False

    def send(self, delivery: Delivery) -> None:
        if self.refuse:
            raise AlertDeliveryError("refused for the test", where="recorder")
        self.got.append(delivery)

    def rules(self) -> list[str]:
        return [d.rule for d in self.got]


@pytest.fixture
def spool(tmp_path: Path) -> SqliteSpool:
    return SqliteSpool(tmp_path / "gateway.db")


def engine(spool: SqliteSpool, clock: Clock, recorder: Recorder, rules: AlertRules, *,
           rate_limit: float = 0.0, **kwargs: object) -> AlertEngine:
    config = AlertsConfig(rate_limit=rate_limit, rules=rules)
    return AlertEngine(config, spool, node="fips:0600000", clock=clock,
                       channels=[recorder], **kwargs)  # type: ignore[arg-type]


def audit(spool: SqliteSpool, at: datetime, code: str, **values: object) -> None:
    with spool.transaction(at) as txn:
        txn.audit(code, None, **values)


def sent_events(spool: SqliteSpool) -> list[dict[str, object]]:
    return [dict(e.event.detail) for e in spool.audit_after(0, ["alert_sent"])]


def test_message_failed_fires_once_per_failure(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    eng = engine(spool, clock, rec, replace(OFF, message_failed=True))
    audit(spool, T0, "sent", message_id="m-ok", partner=TX)
    assert eng.run_once() == 0
    assert rec.got == []
    audit(spool, T0, "failed", message_id="m-1", partner=TX, error_code="SchemaInvalid")
    assert eng.run_once() == 1
    assert rec.rules() == ["message_failed"]
    assert rec.got[0].alerts[0].facts == {"message_id": "m-1", "partner": TX,
                                          "error_code": "SchemaInvalid"}
    clock.advance(60)
    assert eng.run_once() == 0  # the same failure does not fire again
    assert len(rec.got) == 1
    assert sent_events(spool) == [{"rule": "message_failed", "alerts": 1,
                                   "channels": "recorder"}]
    # a restarted daemon reads back what was raised: no second alert for m-1
    again = engine(spool, clock, rec, replace(OFF, message_failed=True))
    assert again.run_once() == 0
    assert len(rec.got) == 1


def test_rate_limit_holds_back_and_sends_a_digest(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    eng = engine(spool, clock, rec, replace(OFF, message_failed=True), rate_limit=600)
    audit(spool, T0, "failed", message_id="m-1", partner=TX, error_code="Expired")
    eng.run_once()
    for i in range(2, 6):  # four more within the rate limit: held back
        clock.advance(30)
        audit(spool, clock.now, "failed", message_id=f"m-{i}", partner=TX, error_code="X")
        assert eng.run_once() == 0
    assert len(rec.got) == 1
    clock.advance(600)
    assert eng.run_once() == 1
    digest = rec.got[1]
    assert [a.key for a in digest.alerts] == ["m-2", "m-3", "m-4", "m-5"]
    assert "4 alerts (digest)" in digest.subject
    assert "held back by the rate limit" in digest.text()
    assert digest.document()["digest"] is True
    assert [d["alerts"] for d in sent_events(spool)] == [1, 4]
    clock.advance(600)
    assert eng.run_once() == 0  # nothing new, nothing sent


def test_an_undelivered_alert_is_kept_and_sent_later(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    eng = engine(spool, clock, rec, replace(OFF, message_failed=True))
    rec.refuse = True
    audit(spool, T0, "failed", message_id="m-1", partner=TX, error_code="X")
    assert eng.run_once() == 0
    assert sent_events(spool) == []  # not sent: no alert_sent event
    rec.refuse = False
    clock.advance(30)
    assert eng.run_once() == 1
    assert rec.rules() == ["message_failed"]


def test_breaker_open_longer_than_the_threshold(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    eng = engine(spool, clock, rec, replace(OFF, breaker_open=600.0))
    audit(spool, T0, "breaker_opened", partner=TX)
    audit(spool, T0, "breaker_opened", partner=NL)
    clock.advance(300)
    audit(spool, clock.now, "breaker_closed", partner=NL)  # NL recovered in time
    assert eng.run_once() == 0  # open 5 minutes: not yet
    clock.advance(301)
    assert eng.run_once() == 1
    assert [a.facts["partner"] for a in rec.got[0].alerts] == [TX]
    clock.advance(3600)
    assert eng.run_once() == 0
    assert len(rec.got) == 1


def test_oldest_pending_fires_when_it_holds_and_again_after_it_cleared(
        spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    eng = engine(spool, clock, rec, replace(OFF, oldest_pending=3600.0))
    with spool.transaction(T0) as txn:
        first = txn.insert(NewMessage(Direction.OUT, message_id="m-1", partner=TX),
                           State.RECEIVED)
    clock.advance(1800)
    assert eng.run_once() == 0  # 30 minutes old: fine
    clock.advance(1801)
    assert eng.run_once() == 1
    assert rec.rules() == ["oldest_pending"]
    clock.advance(60)
    assert eng.run_once() == 0  # still the same condition
    with spool.transaction(clock.now) as txn:
        txn.transition(first.id, State.REJECTED, error_code="X")
    assert eng.run_once() == 0  # cleared
    with spool.transaction(clock.now) as txn:
        txn.insert(NewMessage(Direction.OUT, message_id="m-2", partner=TX), State.RECEIVED)
    clock.advance(3601)
    assert eng.run_once() == 1
    assert rec.rules() == ["oldest_pending"] * 2


def test_certificate_expiry_at_30_7_and_1_days(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    day = 86400.0
    certs = [CertInfo("sign", "fips:0600000", "aa" * 8, T0.timestamp() + 40 * day),
             CertInfo("partner_encrypt", TX, "bb" * 8, T0.timestamp() + 400 * day)]
    eng = engine(spool, clock, rec, replace(OFF, certificate_expiry=(30, 7, 1)),
                 certificates=lambda: certs)
    assert eng.run_once() == 0  # 40 days left: nothing
    fired = []
    for days_later in (10, 11, 33, 34, 38.5, 39, 45):
        clock.now = T0 + timedelta(days=days_later)
        eng.run_once()
        fired.append(len(rec.got))
    # 30 days left at day 10, 7 at day 33, 1 at day 39; each once; never the other cert
    assert fired == [1, 1, 2, 2, 2, 3, 3]
    assert [a.facts["threshold_days"] for d in rec.got for a in d.alerts] == [30, 7, 1]
    assert all(a.facts["fingerprint"] == "aa" * 8 for d in rec.got for a in d.alerts)


def test_audit_verify_failure(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    results = [VerifyResult(True), VerifyResult(False, 42, "altered")]
    calls: list[int] = []

    def verify() -> VerifyResult:
        calls.append(1)
        return results[0]

    eng = engine(spool, clock, rec, replace(OFF, audit_verify=3600.0), verify=verify)
    assert eng.run_once() == 0
    assert len(calls) == 1
    clock.advance(60)
    results.pop(0)
    assert eng.run_once() == 0
    assert len(calls) == 1
    clock.advance(3600)
    assert eng.run_once() == 1
    assert len(calls) == 2
    assert rec.got[0].alerts[0].facts == {"problem": "altered", "seq": 42}
    clock.advance(3600)
    assert eng.run_once() == 0
    assert len(rec.got) == 1


def test_repeated_failed_console_logins(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    eng = engine(spool, clock, rec, replace(OFF, login_failures=3, login_window=600.0))
    for _ in range(2):
        audit(spool, clock.now, "console_login_failed", actor="alice")
        clock.advance(200)
    assert eng.run_once() == 0  # two in the window
    clock.advance(500)  # the first two are now outside the window
    audit(spool, clock.now, "console_login_failed", actor="alice")
    assert eng.run_once() == 0
    audit(spool, clock.now, "console_login_failed", actor="alice")
    audit(spool, clock.now, "console_login_failed", actor="alice")
    assert eng.run_once() == 1
    assert rec.rules() == ["login_failures"]
    assert rec.got[0].alerts[0].facts == {"count": 3}


def test_rules_that_are_off_never_fire(spool: SqliteSpool) -> None:
    clock, rec = Clock(), Recorder()
    eng = engine(spool, clock, rec, OFF, verify=lambda: VerifyResult(False, 1, "altered"),
                 certificates=lambda: [CertInfo("sign", "x", "cc" * 8, T0.timestamp())])
    audit(spool, T0, "failed", message_id="m-1", partner=TX, error_code="X")
    audit(spool, T0, "breaker_opened", partner=TX)
    clock.advance(86400)
    assert eng.run_once() == 0
    assert rec.got == []

