"""The console's Clocks page, in process, on clock events written through the spool: open
clocks soonest due first, overdue ones marked, the filters (partner, rule, owed by,
overdue, due within, answered too), the same rows as ``gateway clocks``, and the nav
entry."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from gateway.cli import main
from gateway.documents.deadlines import Facts, observe, shipped_rules
from tests.console.conftest import Setup
from tests.console.test_pages import get, login
from tests.support.opsdata import NOW

ME, TX, NL = "fips:0600000", "fips:4800000", "iso3166:NL"
CSI, ACK = "cfr-303.7b4-status-csi", "hague-12.3-acknowledge"


def record(setup: Setup, mid: str, facts: Facts, *, outbound: bool, partner: str,
           at: datetime) -> None:
    with setup.ctx.spool.transaction(at) as txn:
        for code, detail in observe(facts, shipped_rules(), outbound=outbound):
            txn.audit(code, None, message_id=mid, from_party=ME if outbound else partner,
                      to_party=partner if outbound else ME, detail=detail)


def rows(html: str) -> list[list[str]]:
    body = html.split('<table id="clocks">', 1)[1].split("</table>", 1)[0]
    out = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S):
        out.append([re.sub(r"<[^>]+>", "", td).strip()
                    for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)])
    return out


def test_the_clocks_page_lists_filters_and_marks_overdue(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    long_ago = NOW - timedelta(days=20)
    # Texas asked us for a case status 20 days ago (we owe it: overdue) and again today
    record(setup, "in-old", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX1", "CA1"),
           outbound=False, partner=TX, at=long_ago)
    record(setup, "in-new", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX2", "CA2"),
           outbound=False, partner=TX, at=NOW)
    # we sent the Netherlands an application (it owes the acknowledgement in 6 weeks)
    record(setup, "out-app", Facts("MaintenanceApplication", case_id="REF-1"), outbound=True,
           partner=NL, at=NOW)
    # and answered a third inquiry in time
    record(setup, "in-3", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX3", "CA3"),
           outbound=False, partner=TX, at=long_ago)
    record(setup, "ans-3", Facts("InterstateTransaction", "CSI", "P", "FSINF", "CA3", "TX3"),
           outbound=True, partner=TX, at=long_ago + timedelta(days=1))

    app = setup.app()
    token, _ = login(app, setup, "vic")  # a viewer may look
    page = get(app, token, "/")
    assert '<a href="/clocks">Clocks</a>' in page.body.decode()
    resp = get(app, token, "/clocks")
    assert resp.status == 200
    html = resp.body.decode()
    listed = rows(html)
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in listed] == [
        ("OVERDUE", CSI, "us", TX, "CA1"),
        ("open", CSI, "us", TX, "CA2"),
        ("open", ACK, "partner", NL, "REF-1")]
    assert html.count('class="warn"') == 1  # the overdue row is marked
    assert "3 clock(s), 1 overdue." in html
    assert 'href="/messages/in-old"' in html

    # the same rows as `gateway clocks` (one service function behind both)
    at = datetime.fromtimestamp(setup.clock.now, NOW.tzinfo).isoformat()
    assert main(["--config", str(setup.ctx.config.path), "clocks", "--at", at,
                 "--format", "json"]) == 0
    cli = json.loads(capsys.readouterr().out)["clocks"]
    assert [(c["due"], c["rule"], c["our_case"]) for c in cli] == \
        [(r[0], r[2], r[5]) for r in listed]

    def cases(query: str) -> list[str]:
        got = get(app, token, f"/clocks?{query}")
        assert got.status == 200, got.body[:300]
        text = got.body.decode()
        return [r[5] for r in rows(text)] if '<table id="clocks">' in text else []

    assert cases(f"partner={NL.replace(':', '%3A')}") == ["REF-1"]
    assert cases(f"rule={CSI}") == ["CA1", "CA2"]
    assert cases("owed_by=partner") == ["REF-1"]
    assert cases("owed_by=us") == ["CA1", "CA2"]
    assert cases("overdue=1") == ["CA1"]
    assert cases("due_within=5") == ["CA1", "CA2"]
    assert cases("due_within=0") == ["CA1"]
    assert cases("all=1") == ["CA1", "CA3", "CA2", "REF-1"]
    assert cases("owed_by=nobody&due_within=x") == ["CA1", "CA2", "REF-1"]  # ignored
    assert "No open clock matches." in get(app, token, "/clocks?partner=fips%3A1200000") \
        .body.decode()
    bad = get(app, token, "/clocks?rule=no-such-rule")
    assert bad.status == 400
    assert "no clock rule named no-such-rule" in bad.body.decode()
