"""Clocks read from a SQLite audit trail: a request we sent that failed for good or was
cancelled never reached the partner, so its clock does not count, until an operator's
resend revives it."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.documents.deadlines import Facts, observe, shipped_rules
from gateway.node.clocks import ClockKeeper, ClocksConfig, read_clocks
from gateway.store.audit import AuditEvent, AuditLog

ME, PARTNER = "fips:0600000", "fips:4800000"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_failed_and_cancelled_requests_start_no_clock(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "spool.db", isolation_level=None)
    log = AuditLog(conn)
    keeper = ClockKeeper(ClocksConfig())

    def request(mid: str, case: str, at: datetime) -> None:
        facts = Facts("InterstateTransaction", "CSI", "R", "FRINF", case, None)
        for code, detail in observe(facts, shipped_rules(), outbound=True):
            log.append(AuditEvent(code, at, message_id=mid, from_party=ME, to_party=PARTNER,
                                  detail=detail))

    def step(code: str, mid: str, at: datetime) -> None:
        log.append(AuditEvent(code, at, message_id=mid, from_party=ME, to_party=PARTNER))

    request("m-ok", "CA1", T0)
    request("m-failed", "CA2", T0)
    request("m-cancelled", "CA3", T0)
    request("m-resent", "CA4", T0)
    step("failed", "m-failed", T0 + timedelta(hours=1))
    step("cancelled_by_operator", "m-cancelled", T0 + timedelta(hours=1))
    step("failed", "m-resent", T0 + timedelta(hours=1))
    step("resent_by_operator", "m-resent", T0 + timedelta(hours=2))
    now = T0 + timedelta(days=1)
    cases = sorted(c.start.our_case or "" for c in read_clocks(log, keeper, now).clocks)
    assert cases == ["CA1", "CA4"]
    # and a resend that fails again is dead again
    step("failed", "m-resent", T0 + timedelta(hours=3))
    cases = sorted(c.start.our_case or "" for c in read_clocks(log, keeper, now).clocks)
    assert cases == ["CA1"]


def test_gateway_clocks_on_a_bare_database(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--db`` without a configuration: the shipped rules, UTC; text output marks
    overdue clocks; ``--unmatched`` lists the answers that fit no request."""
    db = tmp_path / "spool.db"
    log = AuditLog(sqlite3.connect(db, isolation_level=None))
    for mid, facts, outbound, at in (
            ("r1", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX1", "CA1"), False, T0),
            ("r2", Facts("InterstateTransaction", "MSC", "R", "GRUPD", "TX2", "CA2"), False,
             T0 + timedelta(days=20)),
            ("a9", Facts("InterstateTransaction", "CSI", "P", "FSINF", "CA9", "TX9"), True,
             T0 + timedelta(days=1))):
        for code, detail in observe(facts, shipped_rules(), outbound=outbound):
            log.append(AuditEvent(code, at, message_id=mid,
                                  from_party=ME if outbound else PARTNER,
                                  to_party=PARTNER if outbound else ME, detail=detail))
    log.conn.close()
    argv = ["clocks", "--db", str(db), "--at", "2026-03-24T12:00Z"]
    assert main(argv) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[:2] == ["due", "status"]
    assert text[2].split()[:3] == ["2026-03-09", "OVERDUE", "cfr-303.7b4-status-csi"]
    assert text[3].split()[:3] == ["2026-03-27", "open", "cfr-303.7b4-status-msc"]
    assert text[-1] == "1 answer(s) match no recorded request"
    assert main([*argv, "--overdue", "--format", "json"]) == 0
    assert [c["our_case"] for c in json.loads(capsys.readouterr().out)["clocks"]] == ["CA1"]
    # Tuesday 2026-03-24: 3 working days left to Friday the 27th
    assert main([*argv, "--due-within", "3", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["clocks"]) == 2
    assert main([*argv, "--due-within", "2", "--format", "json"]) == 0
    assert [c["our_case"] for c in json.loads(capsys.readouterr().out)["clocks"]] == ["CA1"]
    assert main([*argv, "--unmatched", "--format", "json"]) == 0
    [stray] = json.loads(capsys.readouterr().out)
    assert (stray["message_id"], stray["sent_by"], stray["our_case"]) == ("a9", "us", "CA9")
    assert main([*argv, "--rule", "no-such-rule"]) == 2
    assert "no clock rule named no-such-rule" in capsys.readouterr().err
