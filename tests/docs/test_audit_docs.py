"""docs/audit.md is the auditor's reference: its script and commands must actually work."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.store.audit import EVENT_CODES, AuditEvent, AuditLog
from gateway.store.audit_bundle import export_bundle
from tests.support.audit_keys import make_signer

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def doc(repo_root: Path) -> str:
    return (repo_root / "docs" / "audit.md").read_text(encoding="utf-8")


def test_every_event_code_is_documented(repo_root: Path) -> None:
    text = doc(repo_root)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert set(EVENT_CODES) <= documented


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_hand_verification_script_and_openssl(repo_root: Path, tmp_path: Path,
                                              kind: str) -> None:
    script = doc(repo_root).split("<!-- verify-script -->\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "check.py").write_text(script)
    signer = make_signer(kind)
    log = AuditLog(sqlite3.connect(tmp_path / "spool.db", isolation_level=None))
    for i in range(30):
        log.append(AuditEvent("sent", T0 + timedelta(minutes=i), message_id=f"m-{i % 4}",
                              detail={"attempt": i % 3}))
        if i % 10 == 9:
            log.checkpoint(signer, T0 + timedelta(minutes=i))
    bundle = export_bundle(log, tmp_path / "b.zip", since=T0 + timedelta(minutes=12),
                           until=T0 + timedelta(minutes=20), now=T0 + timedelta(days=1)).path

    done = subprocess.run([sys.executable, "check.py", str(bundle)], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "chain OK" in done.stdout

    with zipfile.ZipFile(bundle) as zf:
        checkpoints = [json.loads(x) for x in zf.read("checkpoints.jsonl").splitlines()]
        assert checkpoints
        pem = zf.read(f"certs/{checkpoints[0]['signer']}.pem")
    (tmp_path / "signer.pem").write_bytes(pem)
    assert pem == signer.certificate.public_bytes(serialization.Encoding.PEM)
    subprocess.run(["openssl", "x509", "-in", "signer.pem", "-pubkey", "-noout", "-out",
                    "signer.pub"], cwd=tmp_path, check=True, capture_output=True)
    pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"] \
        if kind == "rsa" else []
    for cp in checkpoints:
        n = cp["seq"]
        ok = subprocess.run(["openssl", "dgst", "-sha256", "-verify", "signer.pub", *pss,
                             "-signature", f"checkpoint-{n}.sig", f"checkpoint-{n}.payload"],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stderr

    # and the script does catch a changed event
    with zipfile.ZipFile(bundle) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    files["events.jsonl"] = files["events.jsonl"].replace(b'"attempt":1', b'"attempt":2', 1)
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["events.jsonl"] = hashlib.sha256(files["events.jsonl"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    bad = subprocess.run([sys.executable, "check.py", "bad.zip"], cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    assert "altered" in bad.stderr
