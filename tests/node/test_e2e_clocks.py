"""Deadline clocks end to end: two real ``gateway run`` daemons over mutual-TLS HTTPS.

California sends a case status inquiry (CSI R) and an enforcement request (ENF R); both
clocks open at both ends (owed by Texas). Later Texas answers the inquiry (CSI P) and
acknowledges the request (ENF A): the status and registry clocks close at both ends, while
the 75-day clock of the enforcement request (answered only by a provision of information)
stays open. Read with ``gateway clocks`` and ``gateway status`` on each node, and in
California's metrics (``cse_clocks_open``, ``cse_clocks_overdue``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.cli import main
from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.node.test_metrics_endpoint import samples, scrape
from tests.support.gwnodes import (
    Daemon,
    NodeSpec,
    PartnerSpec,
    drop,
    free_port,
    https_node,
    https_to,
    wait_until,
    write_config,
)
from tests.support.pki import TestPki

pytestmark = [pytest.mark.integration]

CA, TX = "fips:0600000", "fips:4800000"
FAST = """
[retry]
base = "300ms"
max_delay = "2s"
expiry = "5m"
[schedule]
outbox_scan = "200ms"
retry_scan = "200ms"
[clocks]
timezone = "America/Chicago"
"""


def transaction(route: str, code: str, case: str, other_case: str) -> bytes:
    local, other = route.split("->")
    function, action, reason = code.split()
    data = interstate_transaction(local, other, function=function, action=action,
                                  reason=reason, case_id=case, seed=5)
    root = etree.fromstring(data)
    [element] = root.xpath("*[local-name()='Header']/*[local-name()='OtherCaseID']")
    element.text = other_case
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def count(spec: NodeSpec, direction: Direction) -> int:
    spool = SqliteSpool(load_config(spec.config_path).spool.database)
    try:
        return sum(1 for m in spool.select(direction=direction, limit=1000)
                   if m.state is State.DELIVERED)
    finally:
        spool.close()


def clocks(spec: NodeSpec, capsys: pytest.CaptureFixture[str], *extra: str) -> Any:
    code = main(["--config", str(spec.config_path), "clocks", "--format", "json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def summary(clock_rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return sorted((c["rule"], c["owed_by"], c["status"], c["partner"]) for c in clock_rows)


def test_clocks_open_and_close_at_both_ends(tmp_path: Path, key_cache: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pki = TestPki(tmp_path / "pki")
    ca_port, tx_port = free_port(), free_port()
    metrics_port = free_port()
    ca = https_node("ca", CA, tmp_path, pki, ca_port,
                    extra=FAST + f"[metrics]\nenabled = true\nport = {metrics_port}\n")
    tx = https_node("tx", TX, tmp_path, pki, tx_port, extra=FAST)
    ca.partners = [PartnerSpec(TX, [https_to(pki, "ca", tx_port)])]
    tx.partners = [PartnerSpec(CA, [https_to(pki, "tx", ca_port)])]
    for spec in (ca, tx):
        write_config(spec, key_cache, [ca, tx])
    daemons = [Daemon(ca), Daemon(tx)]
    try:
        for daemon in daemons:
            daemon.start()
        drop(ca, "inquiry.xml", transaction("0600000->4800000", "CSI R FRINF",
                                            "CA0000000000001", "TX0000000000001"))
        drop(ca, "request.xml", transaction("0600000->4800000", "ENF R ERARR",
                                            "CA0000000000002", "TX0000000000002"))
        wait_until(lambda: count(tx, Direction.IN) == 2, 60, "Texas to receive both")
        wait_until(lambda: count(ca, Direction.OUT) == 2, 30, "California's receipts")

        opened = {"partner": TX, "owed_by": "partner"}
        at_ca = clocks(ca, capsys)["clocks"]
        assert summary(at_ca) == [
            ("cfr-303.7b2-registry-ack", "partner", "open", TX),
            ("cfr-303.7b4-status-csi", "partner", "open", TX),
            ("cfr-303.7d2-responding-75", "partner", "open", TX)]
        assert all(c["partner"] == opened["partner"] for c in at_ca)
        at_tx = clocks(tx, capsys)["clocks"]
        assert summary(at_tx) == [
            ("cfr-303.7b2-registry-ack", "us", "open", CA),
            ("cfr-303.7b4-status-csi", "us", "open", CA),
            ("cfr-303.7d2-responding-75", "us", "open", CA)]
        # the same clock, the same due date at both ends (both on America/Chicago dates)
        due = {c["rule"]: c["due"] for c in at_ca}
        assert {c["rule"]: c["due"] for c in at_tx} == due
        # soonest due first: the 5-working-day inquiry, then the 10-day acknowledgement
        assert [c["rule"] for c in at_ca][:2] == ["cfr-303.7b4-status-csi",
                                                  "cfr-303.7b2-registry-ack"]
        assert [c["our_case"] for c in at_tx if c["rule"] == "cfr-303.7b4-status-csi"] == \
            ["TX0000000000001"]
        assert clocks(tx, capsys, "--owed-by", "partner")["clocks"] == []
        assert len(clocks(tx, capsys, "--rule", "cfr-303.7b4-status-csi")["clocks"]) == 1

        # later, Texas answers
        drop(tx, "answer.xml", transaction("4800000->0600000", "CSI P FSINF",
                                           "TX0000000000001", "CA0000000000001"))
        drop(tx, "ack.xml", transaction("4800000->0600000", "ENF A AADIN",
                                        "TX0000000000002", "CA0000000000002"))
        wait_until(lambda: count(ca, Direction.IN) == 2, 60, "California to receive both")
        wait_until(lambda: count(tx, Direction.OUT) == 2, 30, "Texas's receipts")

        for spec, side, partner in ((ca, "partner", TX), (tx, "us", CA)):
            assert summary(clocks(spec, capsys)["clocks"]) == [
                ("cfr-303.7d2-responding-75", side, "open", partner)]
            everything = clocks(spec, capsys, "--all")
            assert summary(everything["clocks"]) == [
                ("cfr-303.7b2-registry-ack", side, "answered", partner),
                ("cfr-303.7b4-status-csi", side, "answered", partner),
                ("cfr-303.7d2-responding-75", side, "open", partner)]
            assert everything["unmatched_answers"] == 0
            answered_by = {c["rule"]: c["answered_by"] for c in everything["clocks"]}
            assert answered_by["cfr-303.7b4-status-csi"] is not None
            code = main(["--config", str(spec.config_path), "status", "--format", "json"])
            status = json.loads(capsys.readouterr().out)
            assert code == 0
            owed = "open_owed_by_us" if side == "us" else "open_owed_by_partners"
            assert status["clocks"][owed] == 1
        # the daemon's metrics count the same open clock (one scrape: a fresh pairing)
        got = samples(scrape(metrics_port))
        clock_samples = {k: v for k, v in got.items() if k[0].startswith("cse_clocks_")}
        labels = (("owed_by", "partner"), ("partner", TX),
                  ("rule", "cfr-303.7d2-responding-75"))
        assert clock_samples == {("cse_clocks_open", labels): 1,
                                 ("cse_clocks_overdue", labels): 0}
        # the trail holds the events, keys and codes only
        code = main(["--config", str(ca.config_path), "audit", "list", "--code",
                     "clock_started", "--format", "json"])
        events = json.loads(capsys.readouterr().out)
        assert code == 0
        assert {e["detail"]["rule"] for e in events} == {
            "cfr-303.7b2-registry-ack", "cfr-303.7b4-status-csi", "cfr-303.7d2-responding-75"}
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes == [0, 0], daemons[0].tail() + daemons[1].tail()

