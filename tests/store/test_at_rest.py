"""Payloads at rest (every store): sealed to the node's encryption key, so a copy of the
database file (SQLite) or a dump (PostgreSQL, ``pg_dump``) holds none of the synthetic
corpus's personal values; key rollover keeps old payloads readable; a payload moved to
another message does not open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from gateway.errors import SpoolError
from gateway.store.sealing import Sealer
from gateway.store.spool import NewMessage
from gateway.store.states import Direction, State
from tests.store.conftest import Store
from tests.support.privacy import leaks, store_copy, values_in
from tests.support.security import issue

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PERSONAL = {"SSN", "Last", "First", "FamilyName", "GivenName", "Line", "Line1", "City",
            "Email", "Phone", "HomePhone", "DateOfBirth"}


def encryption_key(name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue(issuer_key=key, issuer_cert=None, subject=name, key=key, not_before=NOW,
                 not_after=NOW + timedelta(days=365), usage="encrypt")
    return key, cert


def corpus(repo_root: Path) -> tuple[list[bytes], set[str]]:
    documents, values = [], set()
    for path in sorted((repo_root / "tests" / "samples").glob("*/*.xml")):
        data = path.read_bytes()
        try:
            tree = etree.fromstring(data, etree.XMLParser(resolve_entities=False,
                                                          no_network=True, load_dtd=False))
        except etree.XMLSyntaxError:
            continue
        found = values_in(tree, PERSONAL)
        if found:
            documents.append(data)
            values |= found
    return documents, values


def record(spool: Any, documents: list[bytes], prefix: str = "m") -> list[int]:
    rows = []
    for i, data in enumerate(documents):
        with spool.transaction(NOW) as txn:
            row = txn.insert(NewMessage(Direction.OUT, message_id=f"{prefix}-{i}"), State.RECEIVED,
                             payloads={"document": data}).id
            txn.put_payload(row, "error", b'{"code": "SchemaPattern"}')
        rows.append(row)
    return rows


def copy_of(store: Store) -> str:
    """What someone who copies the store gets (see :func:`store_copy`)."""
    return store_copy(store.kind, store.where)


def test_a_copy_of_the_store_holds_no_personal_values(store: Store, repo_root: Path) -> None:
    documents, values = corpus(repo_root)
    assert len(documents) >= 10
    assert len(values) > 20
    spool = store.open()
    spool.use_sealer(Sealer(encryption_key("node")))
    rows = record(spool, documents)
    assert [spool.payload(r, "document") for r in rows] == documents  # they open again
    assert leaks(copy_of(store), values) == []
    # positive control: the same documents stored without sealing are found by the scan
    plain = store.open()
    record(plain, documents[:3], prefix="plain")
    assert leaks(copy_of(store), values) != []


def test_old_payloads_stay_readable_after_a_key_rollover(store: Store) -> None:
    first, second = encryption_key("2026"), encryption_key("2027")
    spool = store.open()
    spool.use_sealer(Sealer(first))
    old = record(spool, [b"<doc>sealed in 2026</doc>"])[0]
    spool.use_sealer(Sealer(second, older=[first]))  # what SIGHUP does after a rollover
    new = record(spool, [b"<doc>sealed in 2027</doc>"], prefix="n")[0]
    assert spool.payload(old, "document") == b"<doc>sealed in 2026</doc>"
    assert spool.payload(new, "document") == b"<doc>sealed in 2027</doc>"
    forgotten = store.open()
    forgotten.use_sealer(Sealer(second))  # the 2026 key was thrown away
    assert forgotten.payload(new, "document") == b"<doc>sealed in 2027</doc>"
    with pytest.raises(SpoolError, match="KEYS/decrypt"):
        forgotten.payload(old, "document")
    keyless = store.open()
    with pytest.raises(SpoolError, match="sealed"):
        keyless.payload(new, "document")
    assert keyless.has_payload(new, "document")
    assert "document" in keyless.payload_kinds(new)  # names only: nothing is opened


def test_a_payload_moved_to_another_message_does_not_open(store: Store) -> None:
    spool = store.open()
    spool.use_sealer(Sealer(encryption_key("node")))
    a, b = record(spool, [b"<doc>a</doc>", b"<doc>b</doc>"])
    conn = store.connect()
    conn.execute("UPDATE payloads SET data = (SELECT data FROM payloads WHERE message = ? "
                 "AND kind = 'document') WHERE message = ? AND kind = 'document'", (a, b))
    assert spool.payload(a, "document") == b"<doc>a</doc>"
    with pytest.raises(SpoolError, match="does not open"):
        spool.payload(b, "document")


def test_an_ec_encryption_key_seals_too(store: Store) -> None:
    """Nodes may have EC P-256 encryption keys (ECDH key agreement): the data key is then
    wrapped by ECDH, HKDF and AES key wrap."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(issuer_key=key, issuer_cert=None, subject="ec-node", key=key, not_before=NOW,
                 not_after=NOW + timedelta(days=365), usage="encrypt")
    spool = store.open()
    spool.use_sealer(Sealer((key, cert)))
    row = record(spool, [b"<doc>ec</doc>"])[0]
    again = store.open()
    again.use_sealer(Sealer((key, cert)))  # another node: unwraps the stored data key
    assert again.payload(row, "document") == b"<doc>ec</doc>"
    other = ec.generate_private_key(ec.SECP256R1())
    stranger = store.open()
    stranger.use_sealer(Sealer((other, issue(
        issuer_key=other, issuer_cert=None, subject="x", key=other, not_before=NOW,
        not_after=NOW + timedelta(days=365), usage="encrypt"))))
    with pytest.raises(SpoolError, match="KEYS/decrypt"):
        stranger.payload(row, "document")
