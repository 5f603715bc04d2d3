"""``gateway store purge`` and ``gateway store migrate`` on a node's configured store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.store.spool import NewMessage
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State


def delivered(spool: SqliteSpool, mid: str, at: datetime) -> int:
    with spool.transaction(at) as txn:
        row = txn.insert(NewMessage(Direction.OUT, message_id=mid), State.RECEIVED,
                         payloads={"document": b"<d/>", "envelope": b"<e/>"}).id
        for state in (State.SEALED, State.SENDING, State.DELIVERED):
            txn.transition(row, state)
        txn.put_payload(row, "receipt", b"<r/>")
    return row


def test_purge_dry_run_then_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[node]\nparty = "fips:0600000"\n\n[store]\nkeep_payloads = "30d"\n')
    spool = SqliteSpool(tmp_path / "spool" / "gateway.db")
    now = datetime.now(UTC)
    old = delivered(spool, "m-old", now - timedelta(days=31))
    new = delivered(spool, "m-new", now - timedelta(days=2))
    assert main(["--config", str(config), "store", "purge", "--dry-run"]) == 0
    assert "would remove 2 payloads" in capsys.readouterr().out
    assert spool.payload(old, "document") is not None
    assert main(["--config", str(config), "store", "purge"]) == 0
    assert "removed 2 payloads" in capsys.readouterr().out
    assert (spool.payload(old, "document"), spool.payload(old, "receipt")) == (None, b"<r/>")
    before = (now - timedelta(days=1)).date().isoformat()
    assert main(["--config", str(config), "store", "purge", "--before", before]) == 0
    assert "removed 4 payloads" in capsys.readouterr().out  # both receipts, m-new's bulk
    assert spool.payload(new, "envelope") is None
    with spool.audit_log() as log:
        actors = [e.event.actor for e in log.query(code="payloads_purged")]
    assert actors == ["operator", "operator"]
    assert main(["--config", str(config), "store", "purge", "--before", "2999-01-01"]) == 2
    assert main(["--config", str(config), "store", "migrate"]) == 0
    assert "SQLite" in capsys.readouterr().out
    spool.close()


@pytest.mark.integration
def test_operator_commands_on_a_postgresql_store(tmp_path: Path, pg_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.store.postgres import PostgresSpool

    config = tmp_path / "gateway.toml"
    config.write_text(f'[node]\nparty = "fips:0600000"\n\n[store]\nurl = "{pg_url}"\n')
    spool = PostgresSpool(pg_url, holder="test")
    row = delivered(spool, "m-pg-1", datetime.now(UTC) - timedelta(days=40))  # type: ignore[arg-type]
    spool.close()
    assert main(["--config", str(config), "store", "migrate"]) == 0
    assert "schema version" in capsys.readouterr().out
    assert main(["--config", str(config), "messages", "list"]) == 0
    assert "m-pg-1" in capsys.readouterr().out
    assert main(["--config", str(config), "audit", "list", "--message", "m-pg-1"]) == 0
    listed = capsys.readouterr().out
    assert "intake" in listed
    assert "delivered" in listed
    assert main(["--config", str(config), "store", "purge"]) == 0
    assert "removed 2 payloads" in capsys.readouterr().out
    spool = PostgresSpool(pg_url, holder="test")
    assert spool.payload(row, "document") is None
    spool.close()
