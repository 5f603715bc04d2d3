"""Clock gauges in the metrics (``cse_clocks_open``, ``cse_clocks_overdue``) from a real
spool's audit trail on a fixed clock: per rule, partner and owing side; an answer closes a
clock; a request that failed for good never counts; the clock events are read
incrementally and the pairing is computed again only when something new came in (at most
once per ``refresh``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from gateway.documents.deadlines import Facts, observe, shipped_rules
from gateway.node.clocks import ClockKeeper, ClocksConfig, ClockWatch
from gateway.node.metrics import StoreCollector
from gateway.store.sqlite import SqliteSpool

ME, TX, NL = "fips:0600000", "fips:4800000", "iso3166:NL"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now.timestamp()


def record(spool: SqliteSpool, mid: str, facts: Facts, *, outbound: bool, partner: str,
           at: datetime) -> None:
    with spool.transaction(at) as txn:
        for code, detail in observe(facts, shipped_rules(), outbound=outbound):
            txn.audit(code, None, message_id=mid, from_party=ME if outbound else partner,
                      to_party=partner if outbound else ME, detail=detail)


def scrape(registry: CollectorRegistry) -> dict[Sample, float]:
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("cse_clocks_"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


Sample = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, rule: str, partner: str, owed_by: str) -> Sample:
    return (name, (("owed_by", owed_by), ("partner", partner), ("rule", rule)))


@pytest.fixture
def spool(tmp_path: Path) -> SqliteSpool:
    s = SqliteSpool(tmp_path / "gateway.db")
    yield s  # type: ignore[misc]
    s.close()


def test_open_and_overdue_clocks_per_rule_partner_and_side(spool: SqliteSpool) -> None:
    clock = Clock()
    watch = ClockWatch(ClockKeeper(ClocksConfig()), refresh=0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(spool, party=ME, clock=clock, clocks=watch))
    assert scrape(registry) == {}  # the families are there, empty

    # Texas asks us twice for a case status (we owe), we ask Texas once (Texas owes)
    for i in (1, 2):
        record(spool, f"in-{i}", Facts("InterstateTransaction", "CSI", "R", "FRINF",
                                       f"TX{i}", f"CA{i}"), outbound=False, partner=TX, at=T0)
    record(spool, "out-1", Facts("InterstateTransaction", "CSI", "R", "FRINF", "CA9", "TX9"),
           outbound=True, partner=TX, at=T0)
    record(spool, "out-2", Facts("MaintenanceApplication", case_id="REF-1"), outbound=True,
           partner=NL, at=T0)
    csi = "cfr-303.7b4-status-csi"
    hague = "hague-12.3-acknowledge"
    clock.now = T0 + timedelta(days=1)
    got = scrape(registry)
    assert got == {key("cse_clocks_open", csi, TX, "us"): 2,
                   key("cse_clocks_overdue", csi, TX, "us"): 0,
                   key("cse_clocks_open", csi, TX, "partner"): 1,
                   key("cse_clocks_overdue", csi, TX, "partner"): 0,
                   key("cse_clocks_open", hague, NL, "partner"): 1,
                   key("cse_clocks_overdue", hague, NL, "partner"): 0}

    # 5 working days from Monday: due Monday the 9th, overdue from Tuesday 00:00 UTC
    clock.now = datetime(2026, 3, 10, tzinfo=UTC) - timedelta(microseconds=1)
    assert scrape(registry)[key("cse_clocks_overdue", csi, TX, "us")] == 0
    clock.now = datetime(2026, 3, 10, tzinfo=UTC)
    got = scrape(registry)
    assert got[key("cse_clocks_overdue", csi, TX, "us")] == 2
    assert got[key("cse_clocks_overdue", csi, TX, "partner")] == 1
    assert got[key("cse_clocks_overdue", hague, NL, "partner")] == 0  # 6 weeks

    # we answer one inquiry (late); our own request failed for good: it never counted
    record(spool, "ans-1", Facts("InterstateTransaction", "CSI", "P", "FSINF", "CA1", "TX1"),
           outbound=True, partner=TX, at=clock.now)
    with spool.transaction(clock.now) as txn:
        txn.audit("failed", None, message_id="out-1", from_party=ME, to_party=TX)
    got = scrape(registry)
    assert got[key("cse_clocks_open", csi, TX, "us")] == 1
    assert got[key("cse_clocks_overdue", csi, TX, "us")] == 1
    assert key("cse_clocks_open", csi, TX, "partner") not in got
    seq = watch.seq
    assert seq > 0


def test_the_pairing_is_computed_again_only_for_news(spool: SqliteSpool) -> None:
    computed: list[datetime] = []

    class Counting(ClockKeeper):
        def compute(self, observations, now):  # type: ignore[no-untyped-def]
            computed.append(now)
            return super().compute(observations, now)

    watch = ClockWatch(Counting(ClocksConfig()), refresh=60)
    record(spool, "in-1", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX1", "CA1"),
           outbound=False, partner=TX, at=T0)
    now = T0 + timedelta(seconds=1)
    assert len(watch.clocks(spool, now).open()) == 1
    assert len(computed) == 1
    # nothing new: the same pairing, however late it is asked (overdue is judged at `now`)
    later = T0 + timedelta(days=30)
    [clock] = watch.clocks(spool, later).open()
    assert clock.overdue(later)
    assert len(computed) == 1
    # news: computed again, but at most once per `refresh`
    record(spool, "in-2", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX2", "CA2"),
           outbound=False, partner=TX, at=later)
    assert len(watch.clocks(spool, later).open()) == 2
    assert len(computed) == 2
    record(spool, "in-3", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX3", "CA3"),
           outbound=False, partner=TX, at=later)
    assert len(watch.clocks(spool, later + timedelta(seconds=30)).open()) == 2
    assert len(watch.clocks(spool, later + timedelta(seconds=60)).open()) == 3
    assert len(computed) == 3
    # an event recorded with a time after the last `now` counts once `now` reaches it
    record(spool, "in-4", Facts("InterstateTransaction", "CSI", "R", "FRINF", "TX4", "CA4"),
           outbound=False, partner=TX, at=later + timedelta(hours=1))
    assert len(watch.clocks(spool, later + timedelta(seconds=120)).open()) == 3
    assert len(watch.clocks(spool, later + timedelta(hours=1)).open()) == 4
