"""packaging/cse-gateway.service, checked by systemd itself (`systemd-analyze`, from
Debian's systemd package; scripts/os-deps.sh installs it). The container has no running
systemd, so `verify` and `security --offline=yes` are what can run here; starting the unit
cannot."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "cse-gateway.service"
INSTALLED = "/opt/cse-gateway/bin/gateway"


def analyze(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: run scripts/os-deps.sh (Debian's systemd)")
    return subprocess.run([tool, *argv], capture_output=True, text=True, cwd=cwd, timeout=60,
                          check=False)


def installed_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit as installed, with ExecStart pointing at this checkout's `gateway` (verify
    checks that the commands exist and are executable)."""
    gateway = Path(sys.executable).parent / "gateway"
    assert gateway.is_file(), gateway
    unit = tmp_path / "cse-gateway.service"
    unit.write_text((text or UNIT.read_text()).replace(INSTALLED, str(gateway)))
    return unit


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = analyze("verify", str(installed_copy(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == ""


@pytest.mark.parametrize(("good", "bad", "complaint"), [
    ("Restart=on-failure", "Restrat=on-failure", "Unknown key 'Restrat'"),
    ("Type=notify\n", "Type=notifyy\n", "Failed to parse service type"),
    (f"ExecStart={INSTALLED}", "ExecStart=/nonexistent/gateway", "is not executable"),
])
def test_verify_would_catch_a_mistake(tmp_path: Path, good: str, bad: str,
                                      complaint: str) -> None:
    """The check above can fail: systemd-analyze verify exits 0 even for unknown keys, so
    the test also requires its output to be empty; here each planted mistake shows up."""
    text = UNIT.read_text()
    assert good in text
    result = analyze("verify", str(installed_copy(tmp_path, text.replace(good, bad))),
                     cwd=tmp_path)
    assert complaint in result.stderr


def test_security_exposure_is_low(tmp_path: Path) -> None:
    result = analyze("security", "--offline=yes", str(installed_copy(tmp_path)), cwd=tmp_path)
    match = re.search(r"Overall exposure level for cse-gateway\.service: ([0-9.]+) (\w+)",
                      result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout  # docs/operations.md reports 1.3


def test_unit_has_the_required_settings() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["Type"] == "notify"  # gateway run sends READY=1 (tests/cli)
    assert service["User"] == "cse-gateway"
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    node = service["ReadWritePaths"]
    assert service["WorkingDirectory"] == node
    assert f"\nEnvironment=GATEWAY_CONFIG={node}/gateway.toml\n" in UNIT.read_text()
