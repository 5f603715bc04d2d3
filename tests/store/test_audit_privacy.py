"""No personal data leaks: after an end-to-end run of the whole test corpus through real
daemons (three nodes over mutual-TLS HTTPS), the audit store, the spool database file
(payloads are sealed at rest), the daemons' log output and every error file hold none of
the corpus's SSNs, names, addresses, phones or e-mails.

The corpus is every sample in tests/samples (valid documents dropped at their sender's
node, the invalid and hostile ones at node A), so delivery, rejection and error reporting
paths all run. A positive control checks the scanner finds the values where they belong
(the delivered documents)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from lxml import etree

from gateway.documents.describe import describe
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import GatewayError
from gateway.node.config import load_config
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import TERMINAL
from tests.support.gwnodes import (
    Daemon,
    NodeSpec,
    PartnerSpec,
    free_port,
    https_node,
    https_to,
    wait_until,
    write_config,
)
from tests.support.pki import TestPki
from tests.support.privacy import leaks, values_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PERSONAL = {"SSN", "Last", "First", "FamilyName", "GivenName", "Line", "Line1", "City",
            "Email", "Phone", "HomePhone", "DateOfBirth"}
A, B, NL = "fips:0600000", "fips:4800000", "iso3166:NL"
FAST = """
[retry]
base = "200ms"
max_delay = "1s"
expiry = "20s"
[schedule]
outbox_scan = "200ms"
retry_scan = "200ms"
"""


def personal_values(samples: Path) -> set[str]:
    found: set[str] = set()
    for path in samples.glob("*/*.xml"):
        try:
            tree = etree.fromstring(path.read_bytes(), etree.XMLParser(
                resolve_entities=False, no_network=True, load_dtd=False))
        except etree.XMLSyntaxError:
            continue
        found |= values_in(tree, PERSONAL)
    return found


def sender_of(data: bytes) -> str | None:
    try:
        return describe(parse_xml(data)).sender
    except GatewayError:
        return None




def settled(spec: NodeSpec) -> bool:
    if any(p for p in spec.outbox.iterdir() if not p.name.startswith(".")):
        return False
    spool = SqliteSpool(load_config(spec.config_path).spool.database)
    try:
        return all(m.state in TERMINAL[m.direction] for m in spool.select(limit=100_000))
    finally:
        spool.close()


def audit_text(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        parts = [" ".join("" if v is None else str(v) for v in row)
                 for row in conn.execute("SELECT * FROM audit_events")]
        parts += [bytes(row[0]).decode("latin-1")
                  for row in conn.execute("SELECT data FROM audit_receipts")]
        parts += [" ".join(str(v) for v in row[:6])
                  for row in conn.execute("SELECT * FROM audit_checkpoints")]
        columns = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
        if "error_text" in columns:
            parts += [row[0] for row in conn.execute(
                "SELECT error_text FROM messages WHERE error_text IS NOT NULL")]
        return "\n".join(parts)
    finally:
        conn.close()


def test_corpus_run_leaves_no_personal_data(tmp_path: Path, repo_root: Path) -> None:
    samples = repo_root / "tests" / "samples"
    values = personal_values(samples)
    assert len(values) > 20  # the corpus does carry personal data

    pki = TestPki(tmp_path / "pki")
    ports = {n: free_port() for n in ("a", "b", "nl")}
    a, b, nl = (https_node(n, p, tmp_path, pki, ports[n], extra=FAST)
                for n, p in (("a", A), ("b", B), ("nl", NL)))
    a.partners = [PartnerSpec(B, [https_to(pki, "a", ports["b"])]),
                  PartnerSpec(NL, [https_to(pki, "a", ports["nl"])])]
    b.partners = [PartnerSpec(A, [https_to(pki, "b", ports["a"])])]
    nl.partners = [PartnerSpec(A, [https_to(pki, "nl", ports["a"])])]
    specs = [a, b, nl]
    for spec in specs:
        write_config(spec, tmp_path / "keycache", specs)
        spec.outbox.mkdir(parents=True, exist_ok=True)
    by_party = {A: a, B: b, NL: nl}
    daemons = [Daemon(s).start() for s in specs]
    try:
        dropped = 0
        for path in sorted(samples.glob("*/*.xml")):
            data = path.read_bytes()
            spec = by_party.get(sender_of(data) or "", a) if path.parent.name == "valid" else a
            (spec.outbox / path.name).write_bytes(data)
            (spec.outbox / f"{path.name}.ready").write_bytes(b"")
            dropped += 1
        assert dropped >= 40
        wait_until(lambda: all(settled(s) for s in specs), 120,
                   "every corpus message to reach a final state")
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes == [0, 0, 0], "\n".join(d.tail() for d in daemons)

    # Positive control: the personal data did travel (in the delivered documents).
    delivered = "".join(p.read_bytes().decode("utf-8", "replace")
                        for s in specs if s.inbox.exists() for p in s.inbox.iterdir())
    assert len(leaks(delivered, values)) > 10

    for spec in specs:
        db = load_config(spec.config_path).spool.database
        text = audit_text(db)
        assert "receipt_stored" in text  # the audit store was written
        assert leaks(text, values) == [], f"{spec.name}: audit store or error_text"
        # the whole database file, as copied by anyone: payloads are sealed at rest
        raw = "".join(p.read_bytes().decode("latin-1")
                      for p in (db, db.with_name(db.name + "-wal")) if p.exists())
        assert leaks(raw, values) == [], f"{spec.name}: spool database file"
        log = (spec.root / "daemon.log").read_text(errors="replace")
        assert leaks(log, values) == [], f"{spec.name}: daemon log"
        if spec.rejected.exists():
            for file in spec.rejected.iterdir():
                if ".error" in file.name:
                    assert leaks(file.read_text(errors="replace"), values) == [], \
                        f"{spec.name}: {file.name}"
