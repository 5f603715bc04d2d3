"""``gateway audit list|show|verify|export`` end to end through the CLI entry point."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.store.audit import AuditEvent, AuditLog, KeySigner
from gateway.store.audit_chain import fingerprint
from tests.support.audit_keys import make_signer, write_signer

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
MID = "0b6f4a52-3f43-4d0e-b3d4-5c1c1e0a9f11"


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    return make_signer("rsa")


@pytest.fixture
def db(tmp_path: Path, signer: KeySigner) -> Path:
    path = tmp_path / "spool.db"
    log = AuditLog(sqlite3.connect(path, isolation_level=None))
    steps = [("intake", None), ("validated", None), ("sealed", None), ("routed", None),
             ("send_failed", "TransportFailed"), ("retry_scheduled", None), ("sent", None),
             ("receipt_received", None)]
    for i, (code, error) in enumerate(steps):
        log.append(AuditEvent(code, T0 + timedelta(minutes=i), message_id=MID,
                              case_id="CASE00000000042", from_party="fips:0600000",
                              to_party="fips:4800000", partner="fips:4800000",
                              transport="sftp", error_code=error))
    log.store_receipt(MID, "received", b"<Envelope>receipt</Envelope>",
                      T0 + timedelta(minutes=8))
    for i in range(20):
        log.append(AuditEvent("delivered", T0 + timedelta(days=1, minutes=i),
                              message_id=f"other-{i}", partner="iso3166:NL"))
    log.checkpoint(signer, T0 + timedelta(days=2))
    log.conn.close()
    return path


@pytest.fixture(autouse=True)
def no_ambient_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./gateway.toml or $GATEWAY_CONFIG: a test has a configuration only when it says."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_text_with_filters(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "list", "--db", str(db), "--message", MID)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SEQ", "TIME", "(UTC)"]
    assert [line.split()[3] for line in lines[1:]] == [
        "intake", "validated", "sealed", "routed", "send_failed", "retry_scheduled", "sent",
        "receipt_received", "receipt_stored"]
    assert "TransportFailed" in lines[5]


def test_list_filters_combine(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "list", "--db", str(db), "--partner", "iso3166:NL",
                       "--since", "2026-11-02T08:05:00Z", "--until", "2026-11-02T08:08",
                       "--format", "json")
    assert code == 0
    events = json.loads(out)
    assert [e["message_id"] for e in events] == ["other-5", "other-6", "other-7"]
    code, out, _ = run(capsys, "audit", "list", "--db", str(db), "--code", "send_failed",
                       "--code", "sent", "--format", "json")
    assert [e["code"] for e in json.loads(out)] == ["send_failed", "sent"]
    code, out, _ = run(capsys, "audit", "list", "--db", str(db), "--case", "CASE00000000042",
                       "--limit", "2", "--reverse", "--format", "json")
    assert [e["seq"] for e in json.loads(out)] == [8, 7]  # receipt_stored has no case ID


def test_list_csv(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "list", "--db", str(db), "--format", "csv",
                       "--since", "2026-11-01", "--until", "2026-11-02")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 9
    assert rows[8]["code"] == "receipt_stored"
    assert json.loads(rows[8]["detail"]) == {"bytes": 28, "direction": "received"}
    assert len(rows[0]["hash"]) == 64


def test_list_rejects_a_bad_time(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["audit", "list", "--db", str(db), "--since", "yesterday"])
    assert info.value.code == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_show_timeline_and_receipt(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    code, out, _ = run(capsys, "audit", "show", "--db", str(db), MID)
    assert code == 0
    assert f"message {MID}: 9 event(s), 1 receipt(s)" in out
    assert "match the digest recorded in the chain (event 9)" in out
    # no configuration, so no key directory: said plainly (test_audit_receipts verifies)
    assert "signature: unavailable: no configuration" in out
    assert "ALTERED" not in out


def test_show_marks_an_altered_event(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE audit_events SET transport = 'https' WHERE seq = 7")
    conn.execute("UPDATE audit_receipts SET data = X'00'")
    conn.close()
    code, out, _ = run(capsys, "audit", "show", "--db", str(db), MID, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert [e["seq"] for e in doc["events"] if not e["intact"]] == [7]
    assert doc["receipts"][0]["integrity"].startswith("DO NOT")


def test_show_unknown_message(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "show", "--db", str(db), "no-such-id")
    assert code == 1
    assert "MessageNotFound" in err


def test_verify_ok_and_pinned(db: Path, tmp_path: Path, signer: KeySigner,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "verify", "--db", str(db), "--any-signer")
    assert code == 0
    assert out.rstrip().endswith("OK")
    assert "checkpoint signer NOT pinned" in out
    assert f"checkpoints signed by {fingerprint(signer.certificate)}: not pinned" in out
    _, cert = write_signer(signer, tmp_path / "keys")
    code, out, _ = run(capsys, "audit", "verify", "--db", str(db), "--signer-cert", str(cert))
    assert code == 0
    assert "NOT pinned" not in out
    assert f"checkpoint signer pinned: {fingerprint(signer.certificate)} (--signer-cert " \
        in out
    other = make_signer("ec")
    _, other_cert = write_signer(other, tmp_path / "other")
    code, _, err = run(capsys, "audit", "verify", "--db", str(db), "--signer-cert",
                       str(other_cert))
    assert code == 1
    assert "pinned" in err


def test_verify_names_the_first_bad_event(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DELETE FROM audit_events WHERE seq = 4")
    conn.close()
    code, _, err = run(capsys, "audit", "verify", "--db", str(db), "--any-signer")
    assert code == 1
    assert "event 4: removed" in err
    assert "error: AuditTampered" in err
    assert "first bad event is 4" in err
    code, out, _ = run(capsys, "audit", "verify", "--db", str(db), "--any-signer",
                       "--format", "json")
    assert code == 1
    assert json.loads(out)["problems"][0]["seq"] == 4


def test_export_and_verify_bundle(db: Path, tmp_path: Path, signer: KeySigner,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "evidence.zip"
    code, out, _ = run(capsys, "audit", "export", "--db", str(db), "--since", "2026-11-01",
                       "--until", "2026-11-02", str(bundle))
    assert code == 0
    assert "wrote" in out
    _, cert = write_signer(signer, tmp_path / "keys")
    code, out, _ = run(capsys, "audit", "verify", "--bundle", str(bundle), "--signer-cert",
                       str(cert))
    assert code == 0, out
    assert out.rstrip().endswith("OK")
    code, _, err = run(capsys, "audit", "export", "--db", str(db), str(tmp_path / "x.zip"))
    assert code == 2
    assert "--since" in err


def test_database_from_the_configuration(db: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[node]\nparty = "fips:0600000"\n\n[spool]\ndatabase = "{db.name}"\n')
    code, out, _ = run(capsys, "--config", str(config), "audit", "list", "--message", MID)
    assert code == 0
    assert len(out.splitlines()) == 10


def test_no_database_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    code, _, err = run(capsys, "audit", "list")
    assert code == 2
    assert "--db" in err
    code, _, err = run(capsys, "audit", "verify", "--db", str(tmp_path / "missing.db"))
    assert code == 2
    assert "missing.db" in err
    sqlite3.connect(tmp_path / "empty.db").execute("CREATE TABLE t (x)").connection.close()
    code, _, err = run(capsys, "audit", "list", "--db", str(tmp_path / "empty.db"))
    assert code == 1
    assert "no audit trail" in err


@pytest.fixture
def configured(db: Path, tmp_path: Path) -> Path:
    from gateway.node.keystore import generate_node
    from gateway.protocol.party import Party

    keys = tmp_path / "keys"
    generate_node(keys, Party.parse("fips:0600000"), now=datetime.now(UTC) - timedelta(hours=1),
                  sign_algorithm="ecdsa-p256", rsa_bits=2048)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[node]\nparty = "fips:0600000"\nkeys_dir = "{keys}"\n\n'
                      f'[spool]\ndatabase = "{db}"\n')
    return config


def test_checkpoint_command_signs_with_the_node_key(
        configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import getpass

    code, out, err = run(capsys, "--config", str(configured), "audit", "checkpoint")
    assert code == 0, err
    assert out.startswith("checkpoint at seq 31 ")
    sign_crt = configured.parent / "keys" / "sign.crt"
    code, out, _ = run(capsys, "--config", str(configured), "audit", "list", "--code",
                       "checkpoint", "--format", "json")
    assert [e["actor"] for e in json.loads(out)] == ["daemon", getpass.getuser()]
    # the older checkpoint was signed by the test key, the new one by the node's key
    code, _, err = run(capsys, "--config", str(configured), "audit", "verify",
                       "--signer-cert", str(sign_crt))
    assert code == 1
    assert "event 30: checkpoint" in err


def test_prune_command_is_a_dry_run_unless_told(
        configured: Path, signer: KeySigner, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", str(configured), "audit", "prune", "--before",
                       "2026-11-02")
    assert code == 0
    assert "would remove 9 event(s) through seq 9" in out
    code, out, _ = run(capsys, "--config", str(configured), "audit", "list", "--limit", "1")
    assert out.splitlines()[1].split()[0] == "1"
    code, out, err = run(capsys, "--config", str(configured), "audit", "prune", "--before",
                         "2026-11-02", "--yes")
    assert code == 0, err
    assert "removed 9 event(s)" in out
    # the fixture's checkpoint at seq 30 was signed by a test key, not the node's: it is
    # accepted only once named, like a certificate the node signed with before a rotation
    code, _, err = run(capsys, "--config", str(configured), "audit", "verify")
    assert code == 1
    assert "event 30: checkpoint" in err
    _, earlier = write_signer(signer, configured.parent / "earlier")
    code, out, _ = run(capsys, "--config", str(configured), "audit", "verify",
                       "--signer-cert", str(earlier))
    assert code == 0
    # 31, 32: prune's events; 33: the failed verify above, recorded in the trail
    assert "seq 10..33" in out
    assert "recorded as event 34 (audit_verified)" in out
    code, out, _ = run(capsys, "--config", str(configured), "audit", "prune")
    assert "nothing to prune" in out


def test_verify_against_an_earlier_export(db: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    kept = tmp_path / "kept.zip"
    assert run(capsys, "audit", "export", "--db", str(db), "--message", MID, str(kept))[0] == 0
    code, out, _ = run(capsys, "audit", "verify", "--db", str(db), "--against", str(kept),
                       "--any-signer")
    assert code == 0, out
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DELETE FROM audit_events WHERE seq > 20")
    conn.execute("DELETE FROM audit_checkpoints")
    conn.close()
    # consistent on its own
    assert run(capsys, "audit", "verify", "--db", str(db), "--any-signer")[0] == 0
    code, _, err = run(capsys, "audit", "verify", "--db", str(db), "--against", str(kept),
                       "--any-signer")
    assert code == 1
    assert "event 21: truncated" in err


def test_list_over_a_mangled_event_names_it(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE audit_events SET detail = 'not json' WHERE seq = 3")
    conn.close()
    code, _, err = run(capsys, "audit", "list", "--db", str(db), "--message", MID)
    assert code == 1
    assert "AuditTampered: event 3" in err


# --- pinning the checkpoint signer to the node's own signing certificate -------------------


def node_fingerprint(configured: Path) -> str:
    from gateway.protocol.certs import load_certificates_file

    return fingerprint(load_certificates_file(configured.parent / "keys" / "sign.crt")[0])


def test_verify_pins_the_node_signing_certificate_by_default(
        configured: Path, signer: KeySigner, capsys: pytest.CaptureFixture[str]) -> None:
    # The fixture's checkpoint has a valid signature, but by another key than the node's
    # (what someone able to rewrite the database would produce): reported unless allowed.
    node_fp = node_fingerprint(configured)
    code, out, err = run(capsys, "--config", str(configured), "audit", "verify")
    assert code == 1
    assert "event 30: checkpoint: checkpoint signer certificate is not one of the pinned" in err
    sign_crt = configured.parent / "keys" / "sign.crt"
    assert f"checkpoint signer pinned: {node_fp} (node signing certificate {sign_crt})" in out
    assert f"checkpoints signed by {fingerprint(signer.certificate)}: NOT one of the pinned " \
        "certificates" in out
    code, out, _ = run(capsys, "--config", str(configured), "audit", "verify",
                       "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["pinned"] is True
    assert report["pinned_to"] == [{"fingerprint": node_fp,
                                    "source": f"node signing certificate {sign_crt}"}]
    # the same with an explicit --db: the configuration still names the node's keys
    db = configured.parent / "spool.db"
    assert run(capsys, "--config", str(configured), "audit", "verify", "--db", str(db))[0] == 1
    # the explicit opt-out
    code, out, _ = run(capsys, "--config", str(configured), "audit", "verify", "--any-signer")
    assert code == 0
    assert "checkpoint signer NOT pinned" in out


def test_verify_accepts_checkpoints_signed_by_the_node_key(
        configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.node.keystore import Keystore

    identity = Keystore(configured.parent / "keys").identity()
    node_signer = KeySigner(identity.signing_key, identity.signing_cert)
    fresh = configured.parent / "fresh.db"
    log = AuditLog(sqlite3.connect(fresh, isolation_level=None))
    for i in range(5):
        log.append(AuditEvent("sent", T0 + timedelta(minutes=i), message_id=f"m-{i}"))
        log.checkpoint(node_signer, T0 + timedelta(minutes=i, seconds=30))
    log.conn.close()
    code, out, err = run(capsys, "--config", str(configured), "audit", "verify", "--db",
                         str(fresh))
    assert code == 0, err
    assert f"checkpoints signed by {node_fingerprint(configured)}: pinned" in out
    assert out.rstrip().endswith("OK")


def test_verify_without_configuration_needs_a_pin_or_any_signer(
        db: Path, tmp_path: Path, signer: KeySigner,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "verify", "--db", str(db))
    assert code == 2
    assert "UsageError" in err
    assert "--any-signer" in err
    _, cert = write_signer(signer, tmp_path / "keys")
    code, _, err = run(capsys, "audit", "verify", "--db", str(db), "--any-signer",
                       "--signer-cert", str(cert))
    assert code == 2
    assert "--any-signer excludes" in err


def test_key_directory_without_a_signing_certificate(
        configured: Path, signer: KeySigner, capsys: pytest.CaptureFixture[str]) -> None:
    sign_crt = configured.parent / "keys" / "sign.crt"
    sign_crt.unlink()
    code, _, err = run(capsys, "--config", str(configured), "audit", "verify")
    assert code == 2
    assert str(sign_crt) in err
    _, cert = write_signer(signer, configured.parent / "earlier")
    code, out, err = run(capsys, "--config", str(configured), "audit", "verify",
                         "--signer-cert", str(cert))
    assert code == 0, err
    assert f"checkpoint signer pinned: {fingerprint(signer.certificate)} (--signer-cert" in out


def test_verify_bundle_pins_the_node_certificate_when_configured(
        configured: Path, signer: KeySigner, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = configured.parent / "spool.db"
    bundle = tmp_path / "evidence.zip"
    assert run(capsys, "audit", "export", "--db", str(db), "--since", "2026-11-01",
               str(bundle))[0] == 0
    # on the node: its own signing certificate is pinned, and the test key is not it
    code, _, err = run(capsys, "--config", str(configured), "audit", "verify", "--bundle",
                       str(bundle))
    assert code == 1
    assert "not one of the pinned certificates" in err
    # offline, no configuration: unpinned as before, and the output says so
    code, out, _ = run(capsys, "audit", "verify", "--bundle", str(bundle))
    assert code == 0
    assert "checkpoint signer NOT pinned" in out
    _, cert = write_signer(signer, tmp_path / "earlier")
    code, out, _ = run(capsys, "--config", str(configured), "audit", "verify", "--bundle",
                       str(bundle), "--signer-cert", str(cert))
    assert code == 0
    assert f"checkpoints signed by {fingerprint(signer.certificate)}: pinned" in out


def test_verify_of_the_node_trail_is_recorded_but_not_of_a_copy(
        configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import getpass

    def verified() -> list[dict[str, Any]]:
        code, out, _ = run(capsys, "--config", str(configured), "audit", "list", "--code",
                           "audit_verified", "--format", "json")
        assert code == 0
        return list(json.loads(out))

    # a failed verify is recorded too: the fixture's checkpoint is not the node's key's
    assert run(capsys, "--config", str(configured), "audit", "verify")[0] == 1
    (first,) = verified()
    assert first["seq"] == 31
    assert first["actor"] == getpass.getuser()
    assert first["detail"] == {"ok": 0, "events": 30, "problems": 1, "via": "cli",
                               "first_bad_seq": 30}
    code, out, _ = run(capsys, "--config", str(configured), "audit", "verify",
                       "--any-signer", "--format", "json")
    assert code == 0
    assert json.loads(out)["recorded_seq"] == 32
    assert verified()[1]["detail"] == {"ok": 1, "events": 31, "problems": 0, "via": "cli"}
    # a database named with --db (perhaps a copy kept as evidence) is left untouched
    db = configured.parent / "spool.db"
    code, out, _ = run(capsys, "--config", str(configured), "audit", "verify", "--db", str(db),
                       "--any-signer")
    assert code == 0
    assert "recorded as event" not in out
    assert len(verified()) == 2
