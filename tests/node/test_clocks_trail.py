"""Clocks read from a SQLite audit trail: a request we sent that failed for good or was
cancelled never reached the partner, so its clock does not count, until an operator's
resend revives it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
