"""`gateway init` and `gateway partner export/import` on real folders, keys and TOML."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.node.config import load_config
from gateway.node.provision import OPTIONAL_EXAMPLES, render_config, supported_sections
from gateway.protocol import certs
from gateway.protocol.party import Party

A, B = "fips:0600000", "fips:4800000"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def init(capsys: pytest.CaptureFixture[str], root: Path, party: str, port: int,
         *extra: str) -> str:
    code, text = cli(capsys, "init", str(root), "--party", party, "--listen",
                     f"127.0.0.1:{port}", "--rsa-bits", "2048", *extra)
    assert code == 0, text
    return text


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two initialised nodes (generated once for the module's read-only checks)."""
    root = tmp_path_factory.mktemp("init")
    for name, party, port in (("a", A, 18601), ("b", B, 18602)):
        assert main(["init", str(root / name), "--party", party, "--listen",
                     f"127.0.0.1:{port}", "--rsa-bits", "2048"]) == 0
    return root


def test_init_lays_out_a_node_that_passes_config_check(
        pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = pair / "a"
    code, text = cli(capsys, "--config", str(a / "gateway.toml"), "config", "check")
    assert code == 0, text
    assert "OK (node fips:0600000, 0 partner(s)" in text
    config = load_config(a / "gateway.toml")
    assert config.https is not None
    assert config.https.port == 18601
    assert config.outboxes[0].path == a / "outbox"
    # the server certificate names what partners connect to, and is issued by the TLS CA
    server = certs.load_certificates_file(a / "tls" / "server.crt")[0]
    tls_ca = certs.load_certificates_file(a / "tls" / "ca.crt")[0]
    assert certs.issued_by(server, tls_ca)
    assert certs.issued_by(certs.load_certificates_file(a / "tls" / "client.crt")[0], tls_ca)
    assert (a / "keys" / "party").read_text().strip() == A
    text = (a / "gateway.toml").read_text()
    assert "# Partners and their routes are added by `gateway partner import BUNDLE`." in text
    assert text.count("\n#") > 20  # commented: every section says what it is


def test_init_folders_and_keys_are_owner_only(pair: Path) -> None:
    a = pair / "a"
    for name in ("", "keys", "keys/trust", "keys/partners", "tls", "tls/partners", "outbox",
                 "inbox", "rejected", "spool"):
        mode = stat.S_IMODE((a / name).stat().st_mode)
        assert mode == 0o700, f"{name or '.'}: {mode:04o}"
    keys = sorted(a.rglob("*.key"))
    assert {k.name for k in keys} == {"ca.key", "sign.key", "encrypt.key", "server.key",
                                      "client.key"}
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((a / "gateway.toml").stat().st_mode) == 0o600


def test_init_refuses_to_overwrite(pair: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    a = pair / "a"
    before = {p: p.read_bytes() for p in a.rglob("*") if p.is_file()}
    code, text = cli(capsys, "init", str(a), "--party", A, "--rsa-bits", "2048")
    assert code == 2
    assert "refusing to overwrite" in text
    assert "a node is already there" in text
    assert {p: p.read_bytes() for p in a.rglob("*") if p.is_file()} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    code, text = cli(capsys, "init", str(other), "--party", A, "--rsa-bits", "2048")
    assert code == 2
    assert "not empty" in text
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_init_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = cli(capsys, "init", str(tmp_path / "n"), "--party", "fips:06")
    assert code == 2
    assert "--party" in text
    code, text = cli(capsys, "init", str(tmp_path / "n"), "--party", A, "--listen", "8443")
    assert code == 2
    assert "HOST:PORT" in text
    assert not (tmp_path / "n").exists()


def test_agency_tls_leaves_the_listener_to_the_operator(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = init(capsys, tmp_path / "n", A, 18603, "--agency-tls")
    assert "uncomment [listeners.https]" in text
    config = load_config(tmp_path / "n" / "gateway.toml")
    assert config.https is None
    assert not (tmp_path / "n" / "tls" / "ca.crt").exists()
    assert "# [listeners.https]" in (tmp_path / "n" / "gateway.toml").read_text()


def test_export_writes_one_bundle_with_the_fingerprints(
        pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.json"
    code, text = cli(capsys, "--config", str(pair / "a" / "gateway.toml"), "partner",
                     "export", "-o", str(out))
    assert code == 0, text
    doc = json.loads(out.read_text())
    assert doc["party"] == A
    assert doc["endpoint"] == "https://127.0.0.1:18601/v1/messages"
    assert set(doc["certificates"]) == {"node_ca", "sign", "encrypt", "tls_ca"}
    assert "PRIVATE" not in out.read_text()
    sign = certs.load_certificates_file(pair / "a" / "keys" / "sign.crt")[0]
    assert certs.fingerprint(sign) in text
    code, text = cli(capsys, "--config", str(pair / "a" / "gateway.toml"), "partner",
                     "export", "-o", str(out))
    assert code == 2
    assert "refusing to overwrite" in text


def test_init_checks_the_store_url_before_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = cli(capsys, "init", str(tmp_path / "n"), "--party", A, "--store",
                     "mysql://db.example/cse", "--rsa-bits", "2048")
    assert code == 2, text
    assert "store" in text
    assert not (tmp_path / "n").exists()


def test_optional_sections_follow_what_the_loader_knows(tmp_path: Path) -> None:
    assert supported_sections(["audit", "retry", "no_such_section"]) == ["audit", "retry"]
    known = supported_sections(list(OPTIONAL_EXAMPLES))
    text = render_config(Party.parse(A), listen=("127.0.0.1", 8443), agency_tls=False,
                         store=None, now=datetime.now(UTC))
    for name, lines in OPTIONAL_EXAMPLES.items():
        shown = f"# [{name}]" in text
        assert shown == (name in known), name
        if name not in known:
            continue
        # uncommented, the example loads as it is (keys and values this version takes)
        file = tmp_path / f"{name}.toml"
        file.write_text(f'[node]\nparty = "{A}"\n' + "\n".join(lines[1:]) + "\n")
        load_config(file)
