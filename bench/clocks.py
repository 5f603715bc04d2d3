"""Deadline clocks over a year of synthetic traffic (default 5,000 cases with 40 partner
states and 3 foreign authorities; ``--quick``: 1,000).

Each case gets what a busy state sees in a year: an enforcement, establishment or paternity
request in either direction (acknowledged, usually within the 10 working days, sometimes
late or never; a provision of information later), one to three status inquiries (mostly
answered within 5 working days), a few requests sent twice and answers sent twice; one case
in twenty is a Hague application with its acknowledgement and status report. Clock events
are made by the real path (:func:`observe` on the documents' keys) and appended to a real
SQLite audit trail (checked, hashed, chained), in random order within each day.

Figures: the engine alone (observations in memory -> every clock), what ``gateway
clocks`` does (read the events from the trail, then compute), and what the daemon's
watchers (the clock metrics at each scrape, the clock alerts, the reminders) pay through
:class:`~gateway.node.clocks.ClockWatch`: the first read of the whole trail, a read with
nothing new (the pairing kept), and a read after one new event (read from the last
sequence number, then paired again). The baseline, measured in
the same run, is reading the same events from the trail without computing anything: the
notes give each figure as a ratio to it.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import Row, format_rows
from gateway.documents.deadlines import Facts, observe
from gateway.node.clocks import (
    ClockKeeper,
    ClocksConfig,
    ClockWatch,
    observations,
    read_clocks,
)
from gateway.store.audit import AuditEvent, AuditLog
from gateway.store.sqlite import SqliteSpool

NAME = "clocks"
ME = "fips:0600000"
STATES = [f"fips:{s:02d}00000" for s in range(1, 42) if s != 6]
COUNTRIES = ["iso3166:NL", "iso3166:DE", "iso3166:NO"]
T0 = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)


def _tx(code: str, case: str, other: str | None) -> Facts:
    function, action, reason = [*code.split(), ""][:3]
    return Facts(doc="InterstateTransaction", function=function, action=action,
                 reason=reason or None, case_id=case, other_case_id=other)


def traffic(cases: int, seed: int = 1) -> list[tuple[datetime, bool, str, Facts, str]]:
    """(time, outbound, partner, facts, message id) for a year of exchanges."""
    rng = random.Random(seed)
    out: list[tuple[datetime, bool, str, Facts, str]] = []
    serial = 0

    def add(at: datetime, outbound: bool, partner: str, facts: Facts) -> None:
        nonlocal serial
        serial += 1
        out.append((at, outbound, partner, facts, f"m{serial:08d}"))

    for n in range(cases):
        start = T0 + timedelta(days=rng.randrange(330), minutes=rng.randrange(600))
        ours, theirs = f"CA{n:013d}", f"XX{n:013d}"
        if n % 20 == 0:
            partner = rng.choice(COUNTRIES)
            we_ask = rng.random() < 0.5
            req, rsp = (ours, theirs) if we_ask else (theirs, ours)
            add(start, we_ask, partner, Facts("MaintenanceApplication", case_id=req))
            ack_at = start + timedelta(days=rng.randrange(10, 50))
            add(ack_at, not we_ask, partner, Facts("AcknowledgementForm", case_id=rsp,
                                                   other_case_id=req))
            if rng.random() < 0.8:
                add(ack_at + timedelta(days=rng.randrange(30, 100)), not we_ask, partner,
                    Facts("StatusOfApplicationReport", case_id=rsp, other_case_id=req))
            continue
        partner = rng.choice(STATES)
        we_ask = rng.random() < 0.5
        mine, other = (ours, theirs) if we_ask else (theirs, ours)
        function = rng.choice(["ENF R ERARR", "EST R SRORD", "PAT R"])
        for _ in range(2 if rng.random() < 0.03 else 1):          # sent twice
            add(start, we_ask, partner, _tx(function, mine, None))
        if rng.random() < 0.9:
            ack = start + timedelta(days=rng.choice([1, 3, 7, 12, 20]))
            for _ in range(2 if rng.random() < 0.03 else 1):      # answered twice
                add(ack, not we_ask, partner, _tx(function[:3] + " A AADIN", other, mine))
            if rng.random() < 0.7:
                add(ack + timedelta(days=rng.randrange(20, 90)), not we_ask, partner,
                    _tx(function[:3] + " P GSFIL", other, mine))
        for _ in range(rng.randrange(1, 4)):
            asked = start + timedelta(days=rng.randrange(5, 300))
            asker = rng.random() < 0.5
            a, b = (mine, other) if asker == we_ask else (other, mine)
            add(asked, asker, partner, _tx("CSI R FRINF", a, b))
            if rng.random() < 0.85:
                add(asked + timedelta(days=rng.choice([1, 2, 4, 6, 9])), not asker, partner,
                    _tx("CSI P FSINF", b, a))
    # within a day, recording order is arbitrary
    out.sort(key=lambda item: (item[0].date(), rng.random()))
    return out


def build_trail(path: Path, items: list[tuple[datetime, bool, str, Facts, str]],
                keeper: ClockKeeper) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    log = AuditLog(conn)
    count = 0
    conn.execute("BEGIN IMMEDIATE")
    for at, outbound, partner, facts, mid in items:
        for code, detail in observe(facts, keeper.active, outbound=outbound):
            log.append(AuditEvent(code, at, message_id=mid, case_id=facts.case_id,
                                  from_party=ME if outbound else partner,
                                  to_party=partner if outbound else ME, detail=detail))
            count += 1
            if count % 10_000 == 0:
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
    conn.execute("COMMIT")
    conn.close()
    return count


def _best(func: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def main(quick: bool = False) -> list[Row]:
    cases = 1_000 if quick else 5_000
    rounds = 2 if quick else 3
    keeper = ClockKeeper(ClocksConfig(timezone="America/Los_Angeles", holidays=("03-31",)))
    items = traffic(cases)
    now = T0 + timedelta(days=365)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        started = time.perf_counter()
        events = build_trail(db, items, keeper)
        built = time.perf_counter() - started
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
        log = AuditLog(conn, create=False)
        obs = observations(log)
        base = _best(lambda: sum(1 for _ in log.query(code=("clock_started",
                                                              "clock_answer"))), rounds)
        parse = _best(lambda: observations(log), rounds)
        engine = _best(lambda: keeper.compute(obs, now), rounds)
        full = _best(lambda: read_clocks(log, keeper, now), rounds)
        result = read_clocks(log, keeper, now)
        conn.close()
        spool = SqliteSpool(db)
        try:
            first = _best(lambda: ClockWatch(keeper).clocks(spool, now), rounds)
            watch = ClockWatch(keeper, refresh=0)
            watch.clocks(spool, now)
            cached = _best(lambda: watch.clocks(spool, now), rounds)
            news: list[float] = []
            for i in range(rounds):
                with spool.transaction(now) as txn:
                    txn.audit("clock_started", None, message_id=f"new-{i}", from_party=ME,
                              to_party=STATES[0], detail={
                                  "rule": "cfr-303.7b4-status-csi", "owes": "partner",
                                  "dir": "out", "code": "CSI-R-FRINF", "case": f"NEW{i}"})
                news.append(_best(lambda: watch.clocks(spool, now), 1))
            fresh = min(news)
        finally:
            spool.close()
    answered = sum(1 for c in result.clocks if c.answer is not None)
    if not answered or not result.open():
        raise RuntimeError("the synthetic year paired nothing: the figures would be empty")
    clocks = len(result.clocks)
    open_ = len(result.open())
    overdue = sum(1 for c in result.open() if c.overdue(now))
    late = sum(1 for c in result.clocks if c.answered_late)
    return [
        Row(NAME, f"{cases:,} cases, {len(items):,} documents, {events:,} clock events",
            built, "s", "appended to a real audit trail (setup, not a figure of the clocks)"),
        Row(NAME, "read the clock events (baseline)", base, "s", "1.00x"),
        Row(NAME, "read + decode observations", parse, "s", f"{parse / base:.2f}x baseline"),
        Row(NAME, "engine: pair and date every clock", engine, "s",
            f"{engine / base:.2f}x baseline; {clocks / engine:,.0f} clocks/s"),
        Row(NAME, "gateway clocks (read + compute)", full, "s",
            f"{full / base:.2f}x baseline; {clocks:,} clocks, {open_:,} open, "
            f"{overdue:,} overdue, {late:,} answered late"),
        Row(NAME, "watch: first read (metrics, alerts, reminders)", first, "s",
            f"{first / base:.2f}x baseline"),
        Row(NAME, "watch: a scrape with nothing new", cached, "s",
            f"{cached / base:.4f}x baseline"),
        Row(NAME, "watch: a scrape after one new event", fresh, "s",
            f"{fresh / base:.2f}x baseline (read from the last seq, paired again; at most "
            "once a minute in the daemon)"),
    ]


if __name__ == "__main__":
    print(format_rows(main(quick="--quick" in sys.argv)))
