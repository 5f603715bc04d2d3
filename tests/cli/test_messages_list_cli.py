"""``gateway messages list`` on a node with more messages than one page (issue 12, items
3 and 4): the newest first, a note when the list is cut that says how to see more, and
the error column showing only the current state's error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool
from tests.support.opsdata import NOW, ops_node, populate


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ids(text: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^(\d+)\s+\d{4}-", text, re.M)]


def test_a_long_list_shows_the_newest_and_says_it_is_cut(
        tmp_path: Path, key_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = ops_node(tmp_path, key_cache)
    spool = SqliteSpool(load_config(node.config_path).spool.database)
    fixed = populate(spool, NOW, bulk=305)  # 310 messages in all
    spool.close()
    cfg = ("--config", str(node.config_path))
    code, out, _ = cli(capsys, *cfg, "messages", "list")
    assert code == 0
    ids = _ids(out)
    assert ids == list(range(310, 260, -1))  # the newest 50, newest first
    assert "showing 1-50 of 310 messages, newest first" in out
    assert "next page: --offset 50" in out
    assert "--limit N" in out
    code, out, _ = cli(capsys, *cfg, "messages", "list", "--offset", "300")
    assert _ids(out) == list(range(10, 0, -1))
    assert "showing 301-310 of 310" in out
    assert "next page" not in out
    code, out, _ = cli(capsys, *cfg, "messages", "list", "--limit", "400")
    assert len(_ids(out)) == 310
    assert "310 message(s), newest first" in out
    assert "showing" not in out
    code, out, _ = cli(capsys, *cfg, "messages", "list", "--state", "failed")
    assert _ids(out) == [fixed.failed]
    assert "1 message(s)" in out
    code, out, err = cli(capsys, *cfg, "messages", "list", "--format", "json", "--limit", "5")
    assert [m["id"] for m in json.loads(out)] == [310, 309, 308, 307, 306]
    assert "showing 1-5 of 310" in err
    code, out, _ = cli(capsys, *cfg, "messages", "list", "--oldest-first", "--limit", "3")
    assert _ids(out) == [1, 2, 3]
    assert "oldest first" in out


def test_a_delivered_message_shows_no_stale_error(
        tmp_path: Path, key_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = ops_node(tmp_path, key_cache)
    spool = SqliteSpool(load_config(node.config_path).spool.database)
    fixed = populate(spool, NOW)
    spool.close()
    cfg = ("--config", str(node.config_path))
    code, out, _ = cli(capsys, *cfg, "messages", "list")
    assert code == 0
    rows = {int(line.split()[0]): line for line in out.splitlines() if line[:1].isdigit()}
    assert " delivered " in rows[fixed.delivered_after_breaker]
    assert "BreakerOpen" not in rows[fixed.delivered_after_breaker]
    assert rows[fixed.failed].rstrip().endswith("TlsHandshakeFailed")
    assert rows[fixed.retrying].rstrip().endswith("ConnectionRefused")
    code, out, _ = cli(capsys, *cfg, "messages", "list", "--format", "json")
    listed = {m["id"]: m for m in json.loads(out)}
    assert listed[fixed.delivered_after_breaker]["error_code"] is None
    # the history stays in `messages show`
    code, out, _ = cli(capsys, *cfg, "messages", "show", str(fixed.delivered_after_breaker))
    assert code == 0
    assert "attempt 1 at" in out
    assert "failed BreakerOpen" in out
    assert "attempt 2 at" in out
    assert "delivered" in out


def test_audit_list_says_when_its_limit_cuts_it(
        tmp_path: Path, key_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = ops_node(tmp_path, key_cache)
    spool = SqliteSpool(load_config(node.config_path).spool.database)
    populate(spool, NOW)
    spool.close()
    cfg = ("--config", str(node.config_path))
    code, out, err = cli(capsys, *cfg, "audit", "list", "--limit", "3", "--reverse")
    assert code == 0
    assert len(out.strip().splitlines()) == 4  # the header and 3 events
    assert "the list is cut at 3 event(s)" in err
    code, out, err = cli(capsys, *cfg, "audit", "list")
    assert code == 0
    assert err == ""  # without --limit every event is printed: nothing cut
    assert len(out.strip().splitlines()) > 20
