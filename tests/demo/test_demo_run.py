"""`gateway demo --json` as CI runs it: a real four-node network (real `gateway run`
processes, mutual-TLS HTTPS, SFTP through OpenSSH sshd) on 127.0.0.1.

Checks what the issue promises — every valid message delivered byte for byte with a
verified receipt, the invalid file rejected with its error codes, every node's audit trail
verifies, every process stopped — and, for issue 6, the privacy scan of a whole run: no
SSN, name, street line, phone or e-mail from the demo's documents appears in any node's
log, audit trail / spool metadata or error file, and the federal hub holds none of them
anywhere (it relays sealed envelopes it cannot open)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.demo.tour import plan
from tests.support.privacy import readable, values_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PERSONAL = {"SSN", "Last", "First", "FamilyName", "GivenName", "Line", "Line1", "Email",
            "Phone", "HomePhone", "DateOfBirth", "Docket", "PaymentReference"}
EXPECTED_ROUTES = {
    "ca-to-tx-request.xml": ("ca -> hub -> tx", "https -> sftp"),
    "tx-to-ca-answer.xml": ("tx -> hub -> ca", "sftp -> https"),
    "ca-to-nl-application.xml": ("ca -> nl", "https"),
    "nl-to-ca-acknowledgement.xml": ("nl -> ca", "https"),
}


def running_under(directory: Path) -> list[str]:
    """Command lines of live processes that mention ``directory`` (daemons, sshd), read
    from /proc (no procps needed)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if str(directory) in args:
            found.append(args)
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """Run the demo once for every test in this file (it takes about 10 s)."""
    directory = tmp_path_factory.mktemp("demo") / "net"
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    # -vv: the daemons log at DEBUG, so the privacy scan covers every log line they have
    proc = subprocess.run([sys.executable, "-m", "gateway", "-vv", "demo", "--json", "--dir",
                           str(directory)], capture_output=True, text=True, timeout=180,
                          cwd=REPO, env=env, check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"demo printed no JSON (exit {proc.returncode}): {proc.stderr[-2000:]}")
    assert proc.returncode == (0 if result["ok"] else 1)
    return result, directory, proc.stderr


def test_demo_delivers_everything_with_verified_receipts(
        demo: tuple[dict[str, Any], Path, str]) -> None:
    result, directory, progress = demo
    assert result["problems"] == [], progress[-3000:]
    assert result["ok"] is True
    assert result["fallback"] is None, (
        "the SFTP link fell back to local folders: OpenSSH sshd must be installed "
        "(scripts/os-deps.sh installs openssh-server)")
    links = {(k["from"], k["to"]): k for k in result["links"]}
    assert {pair: k["transport"] for pair, k in links.items()} == {
        ("ca", "hub"): "https", ("hub", "ca"): "https", ("ca", "nl"): "https",
        ("nl", "ca"): "https", ("hub", "tx"): "sftp", ("tx", "hub"): "sftp"}
    assert links[("hub", "tx")]["url"].startswith("sftp://")
    by_file = {m["file"]: m for m in result["messages"]}
    assert set(by_file) == set(EXPECTED_ROUTES)
    documents = {p.file: p for p in plan()}
    for name, (route, transport) in EXPECTED_ROUTES.items():
        m = by_file[name]
        assert (m["route"], m["transport"]) == (route, transport), m
        assert m["status"] == "delivered"
        assert m["delivered_in_inbox"] is True
        assert m["receipt_verified"] is True
        assert m["receipt"]["status"] == "Delivered"
        # independent of the demo's own claim: the recipient's inbox holds the exact bytes
        recipient = directory / documents[name].recipient / "inbox"
        delivered = list(recipient.glob(f"*-{m['message_id']}.xml"))
        assert len(delivered) == 1
        assert delivered[0].read_bytes() == documents[name].data
    # the hub relayed twice each way's message and receipt, and opened nothing
    assert list((directory / "hub" / "inbox").iterdir()) == []


def test_demo_rejects_the_invalid_file_with_its_codes(
        demo: tuple[dict[str, Any], Path, str]) -> None:
    result, directory, _ = demo
    [rejected] = result["rejected"]
    assert rejected["file"] == "ca-invalid-request.xml"
    assert rejected["codes"] == ["Rule.FunctionActionReason", "SchemaPattern"]
    paths = {e["path"] for e in rejected["errors"]}
    assert "/InterstateTransaction/NCPIdentification/SSN" in paths
    report = json.loads(Path(rejected["error_file"]).read_text())
    assert {e["code"] for e in report["errors"]} == {"Rule.FunctionActionReason", "SchemaPattern"}
    invalid = next(p for p in plan() if not p.valid)
    assert (directory / "ca" / "rejected" / invalid.file).read_bytes() == invalid.data
    assert list((directory / "ca" / "outbox").iterdir()) == []
    assert len(list((directory / "tx" / "inbox").iterdir())) == 1  # the valid request only


def test_demo_audit_trails_verify_and_every_process_stopped(
        demo: tuple[dict[str, Any], Path, str]) -> None:
    result, directory, _ = demo
    assert [n["name"] for n in result["nodes"]] == ["ca", "hub", "tx", "nl"]
    for node in result["nodes"]:
        assert node["exit_code"] == 0, node
        assert node["audit"]["ok"] is True, node
        assert node["audit"]["checkpoints"] >= 1
        # once more with the operator's command, as the docs show it
        config = directory / node["name"] / "gateway.toml"
        verify = subprocess.run([sys.executable, "-m", "gateway", "--config", str(config),
                                 "audit", "verify"], capture_output=True, text=True,
                                timeout=60, check=False)
        assert verify.returncode == 0, verify.stderr
        assert verify.stdout.strip().endswith("OK")
    for pid_file in directory.glob("sshd/sshd.pid"):
        pid = int(pid_file.read_text().split()[0])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert running_under(directory) == [], "demo processes still running"


# --- issue 6: privacy scan of a whole demo run ---------------------------------------------


def personal_values(*, valid_only: bool = False) -> set[str]:
    found: set[str] = set()
    for planned in plan():
        if valid_only and not planned.valid:
            continue
        tree = etree.fromstring(planned.data, etree.XMLParser(resolve_entities=False,
                                                              no_network=True))
        found |= values_in(tree, PERSONAL)
    return found


def metadata_dump(database: Path) -> str:
    """Every table of a spool/audit database as text, except the payloads table (which
    holds the documents and envelopes themselves, by design)."""
    conn = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'payloads'")]
        lines = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608
                lines.append(" ".join(r.decode("latin-1") if isinstance(r, bytes) else str(r)
                                      for r in row))
        return "\n".join(lines)
    finally:
        conn.close()


def scanned(directory: Path) -> Iterator[tuple[str, str]]:
    for node in ("ca", "hub", "tx", "nl"):
        root = directory / node
        yield f"{node}/daemon.log", (root / "daemon.log").read_text(errors="replace")
        yield f"{node} spool+audit", metadata_dump(root / "spool" / "gateway.db")
        for report in root.glob("rejected/*.error.json"):
            yield str(report.relative_to(directory)), report.read_text()
        # the hub must hold nothing readable at all: every file, raw bytes
        if node == "hub":
            for path in root.rglob("*"):
                if path.is_file():
                    yield str(path.relative_to(directory)), path.read_bytes().decode("latin-1")
    for node in ("ca", "hub", "tx", "nl"):  # what an auditor is handed: the export bundle
        bundle = directory / f"{node}-export.zip"
        subprocess.run([sys.executable, "-m", "gateway", "--config",
                        str(directory / node / "gateway.toml"), "audit", "export", "--since",
                        "2000-01-01", str(bundle)], capture_output=True, check=True,
                       timeout=60)
        with zipfile.ZipFile(bundle) as archive:
            for name in archive.namelist():
                yield f"{bundle.name}:{name}", archive.read(name).decode("latin-1")
    for path in directory.glob("sftp/**/*"):
        if path.is_file():  # whatever is left in transit folders is sealed
            yield str(path.relative_to(directory)), path.read_bytes().decode("latin-1")
    yield "sshd.log", (directory / "sshd" / "sshd.log").read_text(errors="replace")


def test_demo_privacy_scan_no_personal_data_outside_inboxes(
        demo: tuple[dict[str, Any], Path, str]) -> None:
    result, directory, progress = demo
    values = personal_values()
    assert len(values) >= 20  # SSNs, names, street lines, phones, e-mails...
    # positive control: the scanner finds them where they belong (delivered documents)
    inbox_text = "\n".join(p.read_text() for p in directory.glob("*/inbox/*.xml"))
    delivered = {v for v in personal_values(valid_only=True) if not re.fullmatch(
        r"[0-9]{3}-[0-9]{2}-[0-9]{4}", v)}
    assert delivered
    assert [v for v in delivered if v not in inbox_text] == []
    texts = list(scanned(directory))
    exported = "".join(text for where, text in texts if where.startswith("ca-export.zip:"))
    assert result["messages"][0]["message_id"] in exported  # the export was really scanned
    # read as a person would: base64 (envelopes, receipts, the bundle's) for what it decodes to
    views = [(where, readable(text)) for where, text in texts]
    leaks = {(where, value) for where, text in views for value in values if value in text}
    leaks |= {("demo output", v) for v in values
              if v in progress or v in json.dumps(result)}
    assert not leaks, sorted(leaks)[:20]


def test_demo_exits_1_with_json_problems_when_receipts_do_not_arrive_in_time(
        tmp_path: Path) -> None:
    """The exit status is earned: with no time to wait for receipts the demo says which
    messages did not finish, exits 1, and still stops every node cleanly."""
    directory = tmp_path / "net"
    proc = subprocess.run([sys.executable, "-m", "gateway", "demo", "--json", "--no-sshd",
                           "--timeout", "0.01", "--dir", str(directory)], capture_output=True,
                          text=True, timeout=180, cwd=REPO, check=False)
    result = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert result["ok"] is False
    assert any("not finished after" in p for p in result["problems"])
    assert "file://" in result["fallback"]
    assert [n["exit_code"] for n in result["nodes"]] == [0, 0, 0, 0]
    assert all(n["audit"]["ok"] for n in result["nodes"])


def test_ctrl_c_stops_every_node_and_sshd(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--dir",
                                 str(directory)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO)
    try:
        for _ in range(600):
            if "started nl" in log.read_text() or demo.poll() is not None:
                break
            time.sleep(0.05)
        assert "started nl" in log.read_text(), log.read_text()
        assert len(running_under(directory)) >= 5  # four nodes and sshd: the check sees them
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
    assert code == 130
    assert "interrupted" in log.read_text()
    assert running_under(directory) == [], "demo processes still running after Ctrl-C"
