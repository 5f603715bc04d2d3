"""Signed checkpoints, pinning, the OpenSSL cross-check, scheduling helpers and retention."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.errors import AuditError, AuditTampered
from gateway.store.audit import (
    AuditEvent,
    AuditLog,
    KeySigner,
    checkpoint_due,
    retention_cutoff,
)
from gateway.store.audit_chain import GENESIS_HASH, fingerprint, verify_checkpoint_signature
from tests.support.audit_keys import make_signer, write_signer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rsa_signer() -> KeySigner:
    return make_signer("rsa")


@pytest.fixture(scope="module")
def ec_signer() -> KeySigner:
    return make_signer("ec")


def fill(log: AuditLog, n: int, start: datetime = T0) -> None:
    for i in range(n):
        log.append(AuditEvent("sent", start + timedelta(hours=i), message_id=f"m-{i}"))


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_checkpoint_signs_seq_hash_count(conn: Any, kind: str,
                                         rsa_signer: KeySigner, ec_signer: KeySigner) -> None:
    signer = rsa_signer if kind == "rsa" else ec_signer
    log = AuditLog(conn)
    fill(log, 5)
    cp = log.checkpoint(signer, T0 + timedelta(days=1))
    assert (cp.seq, cp.count) == (6, 6)
    assert cp.algorithm == ("rsa-pss-sha256" if kind == "rsa" else "ecdsa-p256-sha256")
    assert cp.signer == fingerprint(signer.certificate)
    assert cp.hash == conn.execute("SELECT hash FROM audit_events WHERE seq = 6").fetchone()[0]
    assert verify_checkpoint_signature(cp) is None
    ev = next(log.query(code="checkpoint"))
    assert ev.event.digest == cp.signer
    assert log.last_checkpoint() == cp
    report = log.verify(pinned={cp.signer})
    assert report.ok
    assert report.pinned
    assert report.signers == (cp.signer,)


def test_checkpoint_on_an_empty_chain(conn: Any, ec_signer: KeySigner) -> None:
    cp = AuditLog(conn).checkpoint(ec_signer, T0)
    assert cp.seq == 1
    assert conn.execute("SELECT prev_hash FROM audit_events").fetchone()[0] == GENESIS_HASH


def test_unpinned_signer_is_a_problem(conn: Any, ec_signer: KeySigner,
                                      rsa_signer: KeySigner) -> None:
    log = AuditLog(conn)
    fill(log, 3)
    log.checkpoint(ec_signer, T0)
    report = log.verify(pinned={fingerprint(rsa_signer.certificate)})
    assert (report.first_problem.kind, report.first_problem.seq) == ("checkpoint", 4)
    assert "pinned" in report.first_problem.message


@pytest.mark.parametrize(("column", "value"), [
    ("signature", b"\x00" * 64),
    ("hash", "a" * 64),
    ("count", 99),
    ("at", "2020-01-01T00:00:00.000000Z"),
])
def test_altered_checkpoint_is_named(conn: Any, ec_signer: KeySigner,
                                     column: str, value: object) -> None:
    log = AuditLog(conn)
    fill(log, 3)
    log.checkpoint(ec_signer, T0)
    conn.execute(f"UPDATE audit_checkpoints SET {column} = ?", (value,))  # noqa: S608
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("checkpoint", 4)


def test_checkpoint_resigned_by_another_key_fails_pinning(
        conn: Any, ec_signer: KeySigner) -> None:
    """An attacker rewrites history and re-signs with their own key and certificate."""
    log = AuditLog(conn)
    fill(log, 3)
    log.checkpoint(ec_signer, T0)
    attacker = make_signer("ec")
    cp = log.last_checkpoint()
    assert cp is not None
    fp = fingerprint(attacker.certificate)
    forged = dataclasses.replace(cp, signer=fp, certificate=attacker.certificate.public_bytes(
        serialization.Encoding.DER), signature=b"")
    forged = dataclasses.replace(forged, signature=attacker.sign(forged.payload()))
    conn.execute("UPDATE audit_checkpoints SET signer = ?, certificate = ?, signature = ?",
                 (forged.signer, forged.certificate, forged.signature))
    assert log.verify().ok  # self-consistent: this is why pinning matters
    report = log.verify(pinned={fingerprint(ec_signer.certificate)})
    assert report.first_problem.kind == "checkpoint"


def test_key_must_match_certificate(rsa_signer: KeySigner, ec_signer: KeySigner) -> None:
    with pytest.raises(AuditError, match="does not match"):
        KeySigner(ec_signer._key, rsa_signer.certificate)


def test_checkpoint_due() -> None:
    hour = timedelta(hours=1)
    assert checkpoint_due(T0, last_at=None, last_seq=0, tail_seq=1, interval=hour)
    assert not checkpoint_due(T0, last_at=None, last_seq=0, tail_seq=0, interval=hour)
    assert not checkpoint_due(T0 + hour, last_at=T0, last_seq=5, tail_seq=5, interval=hour)
    assert not checkpoint_due(T0 + hour / 2, last_at=T0, last_seq=5, tail_seq=9,
                              interval=hour)
    assert checkpoint_due(T0 + hour, last_at=T0, last_seq=5, tail_seq=9, interval=hour)


def test_checkpoint_if_due(conn: Any, ec_signer: KeySigner) -> None:
    log = AuditLog(conn)
    fill(log, 2)
    first = log.checkpoint_if_due(ec_signer, T0, timedelta(hours=1))
    assert first is not None
    assert log.checkpoint_if_due(ec_signer, T0 + timedelta(hours=2)) is None  # nothing new
    fill(log, 1)
    assert log.checkpoint_if_due(ec_signer, T0 + timedelta(minutes=10)) is None  # too soon
    assert log.checkpoint_if_due(ec_signer, T0 + timedelta(hours=2)) is not None


def test_failed_signer_rolls_back_the_checkpoint_event(conn: Any,
                                                       ec_signer: KeySigner) -> None:
    class Broken:
        certificate = ec_signer.certificate

        def sign(self, data: bytes) -> bytes:
            return b"not a signature"

    log = AuditLog(conn)
    fill(log, 2)
    with pytest.raises(AuditError, match="signing failed"):
        log.checkpoint(Broken(), T0)
    assert log.tail()[0] == 2
    assert not conn.in_transaction


# --- cross-implementation: OpenSSL verifies and produces the same signatures ----------


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=False)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_openssl_verifies_checkpoint_signatures(tmp_path: Path, conn: Any,
                                                kind: str, rsa_signer: KeySigner,
                                                ec_signer: KeySigner) -> None:
    signer = rsa_signer if kind == "rsa" else ec_signer
    log = AuditLog(conn)
    fill(log, 3)
    cp = log.checkpoint(signer, T0)
    (tmp_path / "payload").write_bytes(cp.payload())
    (tmp_path / "sig").write_bytes(cp.signature)
    (tmp_path / "cert.pem").write_bytes(signer.certificate.public_bytes(
        serialization.Encoding.PEM))
    assert openssl("x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem",
                   cwd=tmp_path).returncode == 0
    pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"] \
        if kind == "rsa" else []
    ok = openssl("dgst", "-sha256", "-verify", "pub.pem", *pss, "-signature", "sig", "payload",
                 cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "payload").write_bytes(cp.payload() + b" ")
    bad = openssl("dgst", "-sha256", "-verify", "pub.pem", *pss, "-signature", "sig", "payload",
                  cwd=tmp_path)
    assert bad.returncode != 0


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_openssl_signed_checkpoint_verifies(tmp_path: Path, conn: Any,
                                            kind: str, rsa_signer: KeySigner,
                                            ec_signer: KeySigner) -> None:
    signer = rsa_signer if kind == "rsa" else ec_signer
    key_path, _ = write_signer(signer, tmp_path / "keys")
    log = AuditLog(conn)
    fill(log, 3)
    cp = log.checkpoint(signer, T0)
    (tmp_path / "payload").write_bytes(cp.payload())
    pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"] \
        if kind == "rsa" else []
    made = openssl("dgst", "-sha256", "-sign", str(key_path), *pss, "-out", "sig", "payload",
                   cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    theirs = dataclasses.replace(cp, signature=(tmp_path / "sig").read_bytes())
    assert theirs.signature != cp.signature  # PSS and ECDSA are randomized
    assert verify_checkpoint_signature(theirs) is None


# --- retention --------------------------------------------------------------------------


def test_retention_cutoff_defaults_to_seven_years() -> None:
    assert retention_cutoff(datetime(2033, 3, 1, tzinfo=UTC)) == datetime(2026, 3, 1,
                                                                          tzinfo=UTC)


def test_prune_removes_a_prefix_and_the_chain_still_verifies(
        conn: Any, ec_signer: KeySigner) -> None:
    log = AuditLog(conn)
    fill(log, 10)  # seq 1..10 at T0 + 0..9 h
    log.checkpoint(ec_signer, T0 + timedelta(hours=10))  # 11
    log.store_receipt("m-2", "received", b"receipt", T0 + timedelta(hours=3))  # 12, before cut
    removed = log.prune(T0 + timedelta(hours=4), ec_signer, T0 + timedelta(days=1))
    assert removed == 4
    assert log.anchor() is not None
    seqs = [e.seq for e in log.query()]
    assert seqs[0] == 5
    codes = [e.event.code for e in log.query(from_seq=13)]
    assert codes == ["audit_pruned", "checkpoint"]
    report = log.verify(pinned={fingerprint(ec_signer.certificate)})
    assert report.ok, report.problems
    assert report.first_seq == 5
    assert log.receipts() != []  # its event (12) is newer than the cut
    # events keep coming after pruning
    fill(log, 2, start=T0 + timedelta(days=2))
    assert log.verify().ok
    assert log.prune(T0 + timedelta(hours=4), ec_signer, T0 + timedelta(days=3)) == 0


def test_prune_refuses_a_tampered_chain(conn: Any,
                                        ec_signer: KeySigner) -> None:
    log = AuditLog(conn)
    fill(log, 6)
    conn.execute("UPDATE audit_events SET message_id = 'x' WHERE seq = 2")
    with pytest.raises(AuditTampered, match="event 2"):
        log.prune(T0 + timedelta(hours=4), ec_signer, T0 + timedelta(days=1))
    assert log.tail()[0] == 6


@pytest.mark.parametrize(("tamper", "first"), [
    ("UPDATE audit_anchor SET seq = seq + 1", 5),
    ("UPDATE audit_anchor SET hash = 'aaaa'", 5),
    ("DELETE FROM audit_anchor", 1),  # the pruned events then count as removed
])
def test_tampered_anchor_is_detected(conn: Any, ec_signer: KeySigner,
                                     tamper: str, first: int) -> None:
    log = AuditLog(conn)
    fill(log, 8)
    log.prune(T0 + timedelta(hours=4), ec_signer, T0 + timedelta(days=1))
    assert log.verify().ok
    conn.execute(tamper)
    report = log.verify()
    assert not report.ok
    assert report.first_problem.seq == first


def test_more_events_pruned_by_hand_are_detected(conn: Any,
                                                 ec_signer: KeySigner) -> None:
    """Deleting further events and moving the anchor to match is caught: the anchor must be
    the one an audit_pruned event in the chain records."""
    log = AuditLog(conn)
    fill(log, 8)
    log.prune(T0 + timedelta(hours=4), ec_signer, T0 + timedelta(days=1))
    h6 = conn.execute("SELECT hash FROM audit_events WHERE seq = 6").fetchone()[0]
    conn.execute("DELETE FROM audit_events WHERE seq <= 6")
    conn.execute("UPDATE audit_anchor SET seq = 6, hash = ?", (h6,))
    report = log.verify()
    assert (report.first_problem.kind, report.first_problem.seq) == ("anchor", 7)
