"""The extra decryption keys (KEYS/decrypt/NAME.key + NAME.crt) are watched like the
node's other certificates: `gateway status` lists them when they expire soon (or have
expired), and the daemon's certificate check logs and audits them (`key_expiring`)."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.keystore import generate_node
from gateway.protocol.certs import fingerprint, load_certificates_file
from gateway.protocol.party import Party
from tests.support.gwnodes import NodeSpec, PartnerSpec, write_config
from transports.memory import MemoryNetwork

A, B = "fips:0600000", "fips:4800000"



def add_decryption_key(keys: Path, name: str, *, issued: datetime, days: int) -> str:
    """Put an encryption key pair valid from ``issued`` for ``days`` into ``keys/decrypt/``
    as NAME.key/NAME.crt; returns the label the checks use for it."""
    spare = keys.parent / f"spare-{name}"
    generate_node(spare, Party.parse(A), now=issued, days=days, rsa_bits=2048,
                  self_signed=True)
    (keys / "decrypt").mkdir(exist_ok=True)
    shutil.copy2(spare / "encrypt.key", keys / "decrypt" / f"{name}.key")
    shutil.copy2(spare / "encrypt.crt", keys / "decrypt" / f"{name}.crt")
    cert = load_certificates_file(keys / "decrypt" / f"{name}.crt")[0]
    return f"decrypt:{fingerprint(cert)[:16]}"


@pytest.fixture
def node(tmp_path: Path, key_cache: Path) -> tuple[NodeSpec, str, str]:
    """Node A with a decryption key expiring in 10 days and one that expired 5 days ago
    (its main keys last two years; the warning window is the default 30 days)."""
    a = NodeSpec("a", A, tmp_path / "a")
    b = NodeSpec("b", B, tmp_path / "b")
    a.partners = [PartnerSpec(B, [("memory://b-https", {})])]
    b.partners = [PartnerSpec(A, [("memory://a-https", {})])]
    write_config(a, key_cache, [a, b])
    now = datetime.now(UTC)
    soon = add_decryption_key(a.keys, "next", issued=now - timedelta(days=1), days=11)
    gone = add_decryption_key(a.keys, "previous", issued=now - timedelta(days=40), days=35)
    return a, soon, gone


def test_daemon_check_logs_and_audits_expiring_decryption_certificates(
        node: tuple[NodeSpec, str, str], caplog: pytest.LogCaptureFixture) -> None:
    spec, soon, gone = node
    config = load_config(spec.config_path)
    assert config.security.cert_warn_days < 300  # the main keys are not in the window
    gw = Gateway(config, transport_options={"memory": {"network": MemoryNetwork()}})
    try:
        with caplog.at_level(logging.WARNING, logger="gateway"):
            found = dict(gw.check_certificates())
        assert set(found) == {soon, gone}
        assert 9 < found[soon] <= 10
        assert -6 < found[gone] <= -5
        assert f"certificate {soon} expires in" in caplog.text
        rows = gw.spool._conn().execute(
            "SELECT detail FROM audit_events WHERE code = 'key_expiring'").fetchall()
    finally:
        gw.stop()
    details = sorted((json.loads(d)["what"], json.loads(d)["days"]) for (d,) in rows)
    assert details == sorted([(soon, 9), (gone, -5)])


def test_status_lists_expiring_decryption_certificates(
        node: tuple[NodeSpec, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    spec, soon, gone = node
    assert main(["--config", str(spec.config_path), "status", "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["keys_error"] is None
    listed = {c["certificate"]: c["days_left"] for c in status["certificates_expiring"]}
    assert set(listed) == {soon, gone}
    assert 9 < listed[soon] <= 10
    assert -6 < listed[gone] <= -5
    assert main(["--config", str(spec.config_path), "status"]) == 0
    text = capsys.readouterr().out
    assert f"certificate {soon} expires in " in text
    assert f"certificate {gone} EXPIRED " in text
