"""``gateway audit show`` verifies stored receipts with the node's keys (real receipts)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.node.keystore import Keystore, generate_node
from gateway.protocol.envelope import Header
from gateway.protocol.party import Party
from gateway.protocol.receipts import build_receipt
from gateway.store.audit import AuditEvent, AuditLog

NOW = datetime.now(UTC).replace(microsecond=0)
A, B = Party.parse("fips:0600000"), Party.parse("fips:4800000")
MID = "3e0c7e59-2b0b-4c55-9a0f-6a1f0f5d2c10"
SENT_DIGEST = hashlib.sha256(b"the envelope A sent").hexdigest()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("nodes")
    for party, name in ((A, "a"), (B, "b")):
        generate_node(base / name, party, now=NOW - timedelta(hours=1),
                      sign_algorithm="ecdsa-p256", rsa_bits=2048)
    # A knows B: B's node CA in A's trust store, B's signing certificate registered for B.
    shutil.copy(base / "b" / "ca.crt", base / "a" / "trust" / "b-ca.pem")
    (base / "a" / "partners" / B.dirname).mkdir(parents=True)
    shutil.copy(base / "b" / "sign.crt", base / "a" / "partners" / B.dirname / "sign.pem")
    return base / "a", base / "b"


def receipt_from_b(keys_b: Path, digest: str) -> bytes:
    header = Header(message_id=MID, from_party=A, to_party=B, service="interstate",
                    action="InterstateTransaction", created=NOW)
    return build_receipt(for_header=header, envelope_digest=digest, status="Delivered",
                         errors=[], received=NOW, node=Keystore(keys_b).identity(), now=NOW)


def setup(tmp_path: Path, keys_a: Path, receipt: bytes) -> Path:
    db = tmp_path / "spool.db"
    log = AuditLog(sqlite3.connect(db, isolation_level=None))
    for code in ("sealed", "sending", "sent"):
        log.append(AuditEvent(code, NOW, message_id=MID, from_party=str(A), to_party=str(B),
                              partner=str(B), transport="https", digest=SENT_DIGEST))
    log.store_receipt(MID, "received", receipt, NOW + timedelta(seconds=1))
    log.conn.close()
    config = tmp_path / "gateway.toml"
    config.write_text(f'[node]\nparty = "{A}"\nkeys_dir = "{keys_a}"\n\n'
                      f'[spool]\ndatabase = "{db}"\n')
    return config


def show(capsys: pytest.CaptureFixture[str], config: Path) -> dict[str, str]:
    assert main(["--config", str(config), "audit", "show", MID, "--format", "json"]) == 0
    receipts = json.loads(capsys.readouterr().out)["receipts"]
    assert len(receipts) == 1
    signature: dict[str, str] = receipts[0]["signature"]
    return signature


def test_a_genuine_receipt_verifies(tmp_path: Path, nodes: tuple[Path, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    keys_a, keys_b = nodes
    config = setup(tmp_path, keys_a, receipt_from_b(keys_b, SENT_DIGEST))
    signature = show(capsys, config)
    assert signature["status"] == "verified", signature
    assert "Delivered" in signature["reason"]
    assert main(["--config", str(config), "audit", "show", MID]) == 0
    assert "signature: verified" in capsys.readouterr().out


def test_a_receipt_for_other_bytes_is_invalid(tmp_path: Path, nodes: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    keys_a, keys_b = nodes
    other = hashlib.sha256(b"something else").hexdigest()
    config = setup(tmp_path, keys_a, receipt_from_b(keys_b, other))
    signature = show(capsys, config)
    assert signature["status"] == "INVALID"
    assert "EnvelopeDigest" in signature["reason"]


def test_a_receipt_signed_by_an_unregistered_key_is_invalid(
        tmp_path: Path, nodes: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    keys_a, _ = nodes
    impostor = tmp_path / "impostor"
    generate_node(impostor, B, now=NOW - timedelta(hours=1), sign_algorithm="ecdsa-p256",
                  rsa_bits=2048)
    config = setup(tmp_path, keys_a, receipt_from_b(impostor, SENT_DIGEST))
    assert show(capsys, config)["status"] == "INVALID"


def test_without_configuration_verification_is_unavailable(
        tmp_path: Path, nodes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    keys_a, keys_b = nodes
    setup(tmp_path, keys_a, receipt_from_b(keys_b, SENT_DIGEST))
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    assert main(["audit", "show", "--db", str(tmp_path / "spool.db"), MID]) == 0
    out = capsys.readouterr().out
    assert "signature: unavailable: no configuration" in out
