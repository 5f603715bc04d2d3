"""Audit trail at volume: append rate, listing and filtering, verification and export with
a million events (``--quick``: 100,000).

The chain is built through the real ``AuditLog.append`` path (every event checked, hashed
and linked), in transactions of 10,000 events, with a signed checkpoint after each. The
events look like a year of traffic: message lifecycles of 8 events, 20,000 cases, 40
partners, a few failures. Queries are timed as a person runs them: query plus fetching
every row.

First, what a spool transaction's audit events cost: the events of 16 messages (15 each,
receipts among them, as the daemon records them) appended when the transaction commits as
one run (``Txn.audit`` and ``Txn.flush``), against the same events appended one by one
through ``AuditLog.append`` / ``store_receipt`` in the same kind of transaction (what the
spool did before): CPU time per event, the two ways alternated in one process, and their
ratio. ``--txn`` runs only this part.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import Row
from gateway.store.audit import AuditEvent, AuditLog, check_event
from gateway.store.audit_bundle import export_bundle, verify_bundle
from gateway.store.audit_rows import prepare_checked, prepare_event
from gateway.store.spool import Message, NewMessage, Txn
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State

NAME = "audit"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIFECYCLE = ("intake", "validated", "sealed", "routed", "sent", "receipt_received",
             "receipt_stored", "delivered")
PARTNERS = [f"fips:{state:02d}00000" for state in range(1, 42) if state != 6]  # 06: this node


def _event(i: int, rng: random.Random) -> AuditEvent:
    message = i // len(LIFECYCLE)
    code = LIFECYCLE[i % len(LIFECYCLE)]
    error = None
    if code == "sent" and rng.random() < 0.05:
        code, error = "send_failed", "TransportFailed"
    partner = PARTNERS[message % len(PARTNERS)]
    return AuditEvent(
        code, T0 + timedelta(seconds=30 * i),
        message_id=f"{message:08x}-0000-4000-8000-000000000000",
        case_id=f"CASE{message % 20_000:011d}", from_party="fips:0600000", to_party=partner,
        partner=partner, transport="sftp" if message % 2 else "https",
        digest=f"{i:064x}", error_code=error, detail={"attempt": 1 + (i % 3)})


def _append(log: AuditLog, i: int, rng: random.Random) -> None:
    """Append event ``i``; a ``receipt_stored`` one with the receipt it anchors, as the
    daemon stores it (``audit verify`` reports a receipt_stored event without its
    receipt)."""
    event = _event(i, rng)
    if event.code == "receipt_stored":
        log.store_receipt(event.message_id or "", "received", b"receipt %d" % i, event.at)
    else:
        log.append(event)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _timed_query(log: AuditLog, repeat: int, make_args: object) -> tuple[float, float]:
    """Median milliseconds per query (all rows fetched) and the mean row count."""
    times, rows = [], []
    for k in range(repeat):
        kwargs = make_args(k)  # type: ignore[operator]
        start = time.perf_counter()
        found = list(log.query(**kwargs))
        times.append((time.perf_counter() - start) * 1000)
        rows.append(len(found))
    return statistics.median(times), statistics.mean(rows)


#: One message's events as the daemon records them over its life on both nodes (code,
#: fields besides the message's own); "receipt" stores a receipt's bytes.
MESSAGE_EVENTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("intake", {"detail": {"folder": "outbox", "bytes": 10_240}}),
    ("validated", {}),
    ("sealed", {"detail": {"bytes": 14_822}}),
    ("routed", {"detail": {"transport": "https"}}),
    ("sending", {"detail": {"attempt": 1}}),
    ("sent", {"transport": "https://127.0.0.1:8443/cse", "detail": {"took_ms": 14}}),
    ("receipt", {}),
    ("receipt_received", {"detail": {"status": "Delivered"}}),
    ("received", {"detail": {"bytes": 14_822}}),
    ("opened", {}),
    ("validated", {}),
    ("delivered", {"detail": {"file": "in-0001.xml"}}),
    ("receipt", {}),
    ("receipt_sent", {"detail": {"status": "Delivered"}}),
    ("relayed", {"actor": "daemon", "detail": {}}),
)
TXN_MESSAGES = 16


def _messages(spool: SqliteSpool) -> list[Message]:
    with spool.transaction(datetime.now(UTC)) as txn:
        return [txn.insert(NewMessage(
            Direction.OUT, message_id=f"{i:08x}-0000-4000-8000-000000000000",
            case_id=f"CASE{i:011d}", from_party="fips:0600000", to_party=PARTNERS[i],
            partner=PARTNERS[i], transport="https",
            document_digest=f"{i:064x}"), State.RECEIVED) for i in range(TXN_MESSAGES)]


def _as_a_run(txn: Txn, messages: list[Message]) -> int:
    for message in messages:
        for code, fields in MESSAGE_EVENTS:
            if code == "receipt":
                txn.store_receipt(message.message_id or "", "sent", b"<receipt/>" * 300)
            else:
                txn.audit(code, message, **fields)  # type: ignore[arg-type]
    return TXN_MESSAGES * len(MESSAGE_EVENTS)  # appended by the commit's flush


def _one_by_one(txn: Txn, messages: list[Message]) -> int:
    log = AuditLog(txn.conn, create=False)
    for message in messages:
        own = {"message_id": message.message_id, "case_id": message.case_id,
               "from_party": message.from_party, "to_party": message.to_party,
               "partner": message.partner, "transport": message.transport,
               "digest": message.envelope_digest or message.document_digest}
        for code, fields in MESSAGE_EVENTS:
            if code == "receipt":
                log.store_receipt(message.message_id or "", "sent", b"<receipt/>" * 300,
                                  txn.now)
            else:
                log.append(AuditEvent(code, txn.now, **{**own, **fields}))  # type: ignore[arg-type]
    return TXN_MESSAGES * len(MESSAGE_EVENTS)


def transaction_rows(rounds: int = 40) -> list[Row]:
    """CPU microseconds per event: one transaction's events as one run vs one by one
    (median of ``rounds`` transactions each, alternated)."""
    per_event: dict[str, list[float]] = {"run": [], "one": []}
    with tempfile.TemporaryDirectory() as tmp:
        spool = SqliteSpool(Path(tmp) / "spool.db")
        messages = _messages(spool)
        for k in range(rounds + 4):
            for name, body in (("run", _as_a_run), ("one", _one_by_one))[::1 - 2 * (k % 2)]:
                start = time.process_time()
                with spool.transaction(datetime.now(UTC)) as txn:
                    count = body(txn, messages)
                if k >= 4:  # the first rounds warm up
                    per_event[name].append((time.process_time() - start) / count * 1e6)
        with spool.audit_log() as log:
            if not log.verify().ok:
                raise RuntimeError("benchmark chain does not verify")
        spool.close()
    run, one = (statistics.median(per_event[n]) for n in ("run", "one"))
    events = TXN_MESSAGES * len(MESSAGE_EVENTS)
    return [
        Row(NAME, f"{events} events in one transaction, one by one (AuditLog.append)", one,
            "us CPU/event", f"median of {rounds} transactions, commit included"),
        Row(NAME, f"{events} events in one transaction, as one run (Txn.flush)", run,
            "us CPU/event", f"{run / one:.2f} x one by one, same run"),
    ]


def first_event_rows(count: int = 4000, rounds: int = 9) -> list[Row]:
    """CPU microseconds to check and prepare a message's first event, whose ID, case ID
    and digest the process has not seen yet (each node records a few per message): the
    general way (``AuditEvent`` built, ``check_event``, ``prepare_checked``) against
    ``prepare_event`` now (each new value checked on its own), alternated, same values
    shape."""
    fields = {"from_party": "fips:0600000", "to_party": PARTNERS[0], "partner": PARTNERS[0],
              "transport": "https", "detail": {"bytes": 14_822, "channel": "https"}}

    def values(tag: str, i: int) -> dict[str, object]:
        return {**fields, "message_id": f"{i:08x}-{tag}-4000-8000-000000000000",
                "case_id": f"CASE{tag}{i:07d}", "digest": f"{tag}{i:060x}"}

    def general(tag: str) -> None:
        for i in range(count):
            event = AuditEvent("received", T0, **values(tag, i))  # type: ignore[arg-type]
            check_event(event)
            prepare_checked(event)

    def now(tag: str) -> None:
        for i in range(count):
            prepare_event("received", T0, values(tag, i))

    times: dict[str, list[float]] = {"general": [], "now": []}
    for k in range(rounds):
        for name, body in (("general", general), ("now", now)):
            start = time.process_time()
            body(f"{k:02x}{name == 'now':d}a")  # 4 hex digits: values no round saw
            times[name].append((time.process_time() - start) / count * 1e6)
    old, new = (statistics.median(times[n]) for n in ("general", "now"))
    return [
        Row(NAME, "first event of a message, new values (general way)", old, "us CPU/event",
            f"median of {rounds} x {count}"),
        Row(NAME, "first event of a message, new values (prepare_event)", new, "us CPU/event",
            f"{new / old:.2f} x the general way, same run"),
    ]


def main(quick: bool = False) -> list[Row]:
    from tests.support.audit_keys import make_signer

    total = 100_000 if quick else 1_000_000
    batch = 10_000
    rng = random.Random(7)
    signer = make_signer("ec")
    rows: list[Row] = first_event_rows(1000 if quick else 4000)
    rows += transaction_rows(20 if quick else 40)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spool.db"
        conn = _connect(path)
        log = AuditLog(conn)

        # single-event transactions, synchronous=FULL: what the daemon pays per transition
        single = 500
        start = time.perf_counter()
        for i in range(single):
            _append(log, i, rng)
        per_txn = single / (time.perf_counter() - start)
        rows.append(Row(NAME, "append, one event per committed transaction", per_txn,
                        "events/s", "WAL, synchronous=FULL"))

        start = time.perf_counter()
        done = single
        while done < total:
            conn.execute("BEGIN IMMEDIATE")
            for i in range(done, min(done + batch, total)):
                _append(log, i, rng)
            done = min(done + batch, total)
            log.checkpoint(signer, T0 + timedelta(seconds=30 * done))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        count = log.tail()[0]
        rows.append(Row(NAME, f"append {total:,} events (batches of {batch:,} + checkpoint)",
                        (total - single) / elapsed, "events/s", f"{elapsed:.1f} s total"))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_mb = path.stat().st_size / 1e6
        rows.append(Row(NAME, f"database size, {count:,} events", size_mb, "MB",
                        f"{size_mb * 1e6 / count:.0f} bytes/event incl. indexes"))

        messages = total // len(LIFECYCLE)
        probes = [rng.randrange(messages) for _ in range(200)]
        ms, n = _timed_query(log, 200, lambda k: {
            "message_id": f"{probes[k]:08x}-0000-4000-8000-000000000000"})
        rows.append(Row(NAME, "list --message (one message's timeline)", ms, "ms",
                        f"median of 200, {n:.0f} rows"))
        ms, n = _timed_query(log, 50, lambda k: {"case_id": f"CASE{probes[k] % 20_000:011d}"})
        rows.append(Row(NAME, "list --case", ms, "ms", f"median of 50, {n:.0f} rows"))
        day = timedelta(days=1)
        ms, n = _timed_query(log, 20, lambda k: {
            "code": "send_failed", "since": T0 + k * day, "until": T0 + (k + 1) * day})
        rows.append(Row(NAME, "list --code send_failed, one day", ms, "ms",
                        f"median of 20, {n:.0f} rows"))
        ms, n = _timed_query(log, 20, lambda k: {
            "partner": PARTNERS[k], "since": T0 + k * day, "until": T0 + (k + 1) * day})
        rows.append(Row(NAME, "list --partner P, one day", ms, "ms",
                        f"median of 20, {n:.0f} rows"))
        ms, n = _timed_query(log, 5, lambda k: {"partner": PARTNERS[k], "limit": 100})
        rows.append(Row(NAME, "list --partner P --limit 100", ms, "ms",
                        f"median of 5, {n:.0f} rows"))

        start = time.perf_counter()
        report = log.verify()
        elapsed = time.perf_counter() - start
        if not report.ok:
            raise RuntimeError(f"benchmark chain does not verify: {report.problems[:3]}")
        rows.append(Row(NAME, f"verify {report.events:,} events, {report.checkpoints} "
                    "checkpoints", elapsed, "s", f"{report.events / elapsed:,.0f} events/s"))

        bundle = Path(tmp) / "day.zip"
        start = time.perf_counter()
        summary = export_bundle(log, bundle, since=T0 + 30 * day, until=T0 + 37 * day,
                                now=datetime.now(UTC))
        exported = time.perf_counter() - start
        start = time.perf_counter()
        bundle_report = verify_bundle(bundle)
        checked = time.perf_counter() - start
        if not bundle_report.ok:
            raise RuntimeError("benchmark bundle does not verify")
        rows.append(Row(NAME, f"export one week ({summary.events:,} events)", exported, "s",
                        f"{bundle.stat().st_size / 1e6:.1f} MB zip"))
        rows.append(Row(NAME, "verify --bundle of that week", checked, "s"))
        conn.close()
    return rows


if __name__ == "__main__":
    from bench import format_rows

    if "--txn" in sys.argv:
        print(format_rows(first_event_rows() + transaction_rows()))
    else:
        print(format_rows(main(quick="--quick" in sys.argv)))
