"""Deadline clocks on the PostgreSQL store: the clock events go through its audit trail like
any other event, and ``gateway clocks`` / ``gateway status`` read them back from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.documents.deadlines import Facts, observe, shipped_rules
from gateway.store.postgres import PostgresSpool

pytestmark = pytest.mark.integration

ME, PARTNER = "fips:4800000", "fips:0600000"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)   # a Monday


def record(spool: PostgresSpool, facts: Facts, *, outbound: bool, at: datetime,
           message_id: str) -> None:
    with spool.transaction(at) as txn:
        for code, detail in observe(facts, shipped_rules(), outbound=outbound):
            txn.audit(code, None, message_id=message_id,
                      from_party=ME if outbound else PARTNER,
                      to_party=PARTNER if outbound else ME, detail=detail)


def test_clocks_read_from_a_postgresql_store(pg_url: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    spool = PostgresSpool(pg_url, holder="clocks-test")
    try:
        inquiry = Facts("InterstateTransaction", "CSI", "R", "FRINF", "CA1", "TX1")
        answer = Facts("InterstateTransaction", "CSI", "P", "FSINF", "TX1", "CA1")
        other = Facts("InterstateTransaction", "CSI", "R", "FRINF", "CA2", "TX2")
        # the answer is recorded first: the pairing does not depend on the order
        record(spool, answer, outbound=True, at=T0 + timedelta(days=1), message_id="a1")
        record(spool, inquiry, outbound=False, at=T0, message_id="r1")
        record(spool, other, outbound=False, at=T0, message_id="r2")
    finally:
        spool.close()
    config = tmp_path / "gateway.toml"
    config.write_text(f'[node]\nparty = "{ME}"\n[store]\nurl = "{pg_url}"\n', encoding="utf-8")
    code = main(["--config", str(config), "clocks", "--all", "--format", "json",
                 "--at", "2026-03-10T12:00Z"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {c["our_case"]: c for c in result["clocks"]}
    assert rows["TX1"]["status"] == "answered"
    assert rows["TX1"]["answered_by"] == "a1"
    assert rows["TX2"]["status"] == "overdue"     # due Monday 2026-03-09
    assert rows["TX2"]["due"] == "2026-03-09"
    assert result["unmatched_answers"] == 0
    code = main(["--config", str(config), "status", "--format", "json"])
    status = json.loads(capsys.readouterr().out)
    assert code == 0
    assert status["clocks"]["overdue_owed_by_us"] == 1
