"""The rows the daemons' hot paths write, pinned: a fixed sequence of spool transactions as
the sender and the receiver record their messages (intake, claim, send and receipt;
arrival, delivery and receipt), with values new to the process and values seen before,
must store exactly the bytes recorded here (audit events with their hashes, receipts,
message rows, payloads), on every store.

The expected digests were recorded from the code before the per-event and per-row fast
paths of issue 18 (``audit_rows._prepare_seen`` checking new values itself, the cached
SQL of ``Txn.insert`` / ``Txn.transition``, ``Message.from_row``), so a change that alters
one byte of what is stored fails here rather than being compared with itself."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.store import audit_events
from gateway.store.spool import SELECT_MESSAGE, NewMessage
from gateway.store.states import Direction, State
from tests.store.conftest import Store

NOW = datetime(2026, 11, 3, 10, 0, 0, 250_000, tzinfo=UTC)
A, B = "fips:0600000", "fips:3400000"
URL = "https://127.0.0.1:8443/v1/messages/batch"

#: recorded before the fast paths (see the module docstring); not computed by this code
EXPECTED = {
    "audit_events": "2cc743c0cccd5d178a30a9acf7b7f93b05770ed301ef9cf775b6a4a972a55392",
    "audit_receipts": "a723e55218fddb531261a9fd4beedbfe652eacf81a8cfa72ad60d13591647ac8",
    "messages": "28d1e37ddc9e4a4a2294ea79948c11ab5f2fcc2f0442dc48d32ea249e9364886",
    "payloads": "93e8e9ee8fdbbdf64fbbe4180d3b7faa05a3ef1df9ce2f37cc8223c3158a9c40",
}
#: the chain's last hash, also recorded before
LAST_HASH = "298472749ebd752dd392ce64edac4f94e2b320077818bbd34acbbd44fcd727d8"


def _mid(run: str, i: int) -> str:
    """A message ID new to this process for each test run's ``run`` (so the first events
    of every message carry values not seen yet), deterministic for the digests."""
    return str(uuid.UUID(hashlib.sha256(f"{run}-{i}".encode()).hexdigest()[:32]))


def _hex(i: int, salt: str) -> str:
    return hashlib.sha256(f"{salt}-{i}".encode()).hexdigest()


def sender(spool: Any, run: str, now: datetime) -> None:
    """Intake of four documents, their claim, then the batch's receipts."""
    with spool.transaction(now) as txn:
        sealed = []
        for i in range(4):
            new = NewMessage(Direction.OUT, message_id=_mid(run, i), partner="B",
                             from_party=A, to_party=B, service="interstate",
                             action="InterstateTransaction", case_id=f"CASE{run}{i:04d}",
                             source=f"doc-{i}.xml", intake_key=f"outbox:doc-{i}.xml:{run}",
                             document_digest=_hex(i, "doc" + run),
                             envelope_digest=_hex(i, "env" + run),
                             expires_at=now.timestamp() + 86_400)
            msg = txn.insert(new, State.RECEIVED, payloads={"document": b"<d>%d</d>" % i},
                             detail={"bytes": 10_240 + i})
            txn.audit("validated", msg, detail={"root": "InterstateTransaction"})
            txn.audit("routed", msg, detail={"rule": "exact", "partner": "B"})
            sealed.append(txn.transition(msg.id, State.SEALED, expect=State.RECEIVED,
                                         payloads={"envelope": b"E%d" % i}))
    claimed = spool.claim_many([(m.id, State.SEALED) for m in sealed], now)
    later = now + timedelta(milliseconds=37)
    with spool.transaction(later) as txn:
        for i, m in enumerate(claimed):
            txn.audit("sent", m, transport=URL, detail={"duration_ms": 12, "batch": 4})
            current = txn.get(m.id)
            receipt = b"<receipt n='%d'/>" % i
            txn.store_receipt(current.message_id, "received", receipt)
            txn.audit("receipt_received", current,
                      detail={"status": "Delivered" if i else "Rejected"})
            if i:
                txn.transition(current.id, State.DELIVERED, payloads={"receipt": receipt},
                               changes={"next_attempt_at": None, "transport": URL})
            else:
                txn.transition(current.id, State.FAILED, payloads={"receipt": receipt},
                               error_code="SchemaInvalid",
                               changes={"next_attempt_at": None, "transport": URL,
                                        "error_text": "partner rejected the message"},
                               detail={"errors": 1})


def receiver(spool: Any, run: str, now: datetime) -> None:
    """Four arrivals recorded and moved to ``delivering``, then ``delivered``."""
    records = []
    with spool.transaction(now) as txn:
        for i in range(4, 8):
            new = NewMessage(Direction.IN, message_id=_mid(run, i), transport="https",
                             from_party=B, to_party=A, service="interstate",
                             action="InterstateTransaction",
                             envelope_digest=_hex(i, "in" + run),
                             expires_at=now.timestamp() + 86_400)
            record = txn.insert(new, State.RECEIVED, payloads={"envelope": b"I%d" % i},
                                detail={"bytes": 20_000 + i, "channel": "https"})
            txn.audit("opened", record)
            records.append(txn.transition(
                record.id, State.DELIVERING, expect=State.RECEIVED,
                payloads={"receipt": b"R%d" % i},
                changes={"case_id": f"CASE{run}{i:04d}", "source": f".tmp-{i}"}))
    with spool.transaction(now + timedelta(seconds=1)) as txn:
        for record in records:
            txn.transition(record.id, State.DELIVERED, expect=State.DELIVERING,
                           changes={"source": f"InterstateTransaction-{record.message_id}.xml"})
            txn.store_receipt(record.message_id or "", "sent", b"R%d" % record.id)
            txn.audit("receipt_sent", record, detail={"status": "Delivered"})


def _plain(value: Any) -> Any:
    return bytes(value).hex() if isinstance(value, bytes | memoryview) else value


def _digest(rows: list[Any]) -> str:
    text = json.dumps([[_plain(v) for v in row] for row in rows], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def stored(store: Store) -> dict[str, str]:
    conn = store.connect()
    queries = {
        "audit_events": "SELECT * FROM audit_events ORDER BY seq",
        "audit_receipts": "SELECT event_seq, message_id, direction, at, sha256, data "
                          "FROM audit_receipts ORDER BY event_seq",
        "messages": SELECT_MESSAGE + " ORDER BY id",
        "payloads": "SELECT message, kind, data FROM payloads ORDER BY message, kind",
    }
    return {name: _digest([tuple(r) for r in conn.execute(sql).fetchall()])
            for name, sql in queries.items()}


def test_the_hot_paths_store_the_recorded_bytes(store: Store) -> None:
    # every value is new to the process at its message's first events (its ID, case ID,
    # digests are checked there) and seen before at the later ones: both ways are pinned
    for cache in (audit_events._TOKENS_SEEN, audit_events._CODES_SEEN,
                  audit_events._DIGESTS_SEEN, audit_events._DETAIL_KEYS_SEEN,
                  audit_events._DETAIL_VALUES_SEEN):
        cache.clear()
    spool = store.open()
    sender(spool, "pin", NOW)
    receiver(spool, "pin", NOW + timedelta(seconds=2))
    got = stored(store)
    with spool.audit_log() as log:
        assert log.verify().ok
        last = log.tail()[1]
    assert (got, last) == (EXPECTED, LAST_HASH)
