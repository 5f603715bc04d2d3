"""``pip install .`` (a real wheel, not editable) gives a gateway that finds every schema,
rule file and code table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SHIPPED = [
    "gateway/_xsd/common/common.xsd",
    "gateway/_xsd/common/structures.xsd",
    "gateway/_xsd/interstate/interstate.xsd",
    "gateway/_xsd/interstate/interstate.sch",
    "gateway/_xsd/interstate/codes.xml",
    "gateway/_xsd/international/hague.xsd",
    "gateway/_xsd/international/hague.sch",
]


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False,
                          **kwargs)  # type: ignore[call-overload]


@pytest.mark.integration
def test_wheel_ships_schemas_and_rules(repo_root: Path, tmp_path: Path) -> None:
    python = sys.executable
    built = _run([python, "-m", "pip", "wheel", str(repo_root), "--no-deps",
                  "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")])
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("cse_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in SHIPPED if name not in names]
    assert not missing, missing
    # every schema file in the repository is shipped
    for xsd in (repo_root / "xsd").rglob("*"):
        if xsd.is_file():
            assert f"gateway/_xsd/{xsd.relative_to(repo_root / 'xsd').as_posix()}" in names

    target = tmp_path / "site"
    installed = _run([python, "-m", "pip", "install", "--no-deps", "-q", "--target",
                      str(target), str(wheel)])
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "work"  # not the checkout: nothing may come from the source tree
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("GATEWAY_CONFIG", None)
    where = _run([python, "-c", "import gateway, gateway.resources as r; "
                  "print(gateway.__file__); print(r.xsd_root())"], cwd=work, env=env)
    assert where.returncode == 0, where.stderr
    module_file, xsd_root = where.stdout.split()
    assert module_file.startswith(str(target))
    assert xsd_root == str(target / "gateway" / "_xsd")

    samples = repo_root / "tests" / "samples"
    valid = sorted(str(p) for p in (samples / "valid").glob("*.xml"))
    ok = _run([python, "-m", "gateway", "validate", *valid], cwd=work, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # the rules and the baked code table work from the wheel too
    invalid = [samples / "invalid" / "interstate-transaction.reason-code.xml",
               samples / "invalid" / "acknowledgement-form.after-6-weeks.xml"]
    bad = _run([python, "-m", "gateway", "validate", "--format", "json",
                *map(str, invalid)], cwd=work, env=env)
    assert bad.returncode == 1, bad.stderr
    codes = [[e["code"] for e in r["errors"]] for r in json.loads(bad.stdout)]
    assert codes == [["Rule.FunctionActionReason"], ["Rule.AcknowledgementWithin6Weeks"]]
