"""``gateway validate``: output formats, exit codes, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.demo import samples

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>[\w.]+): "
                  r"(?P<path>\S+): (?P<message>.+)$")


@pytest.fixture(autouse=True)
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_valid_files_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            repo_root: Path) -> None:
    files = sorted(str(p) for p in (repo_root / "tests" / "samples" / "valid").glob("*.xml"))
    assert len(files) >= 8
    assert main(["validate", *files]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""


def test_text_output_one_line_per_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good.xml", samples.transaction_error())
    bad = write(tmp_path, "bad.xml", samples.interstate_transaction().replace(
        b"<FunctionalTypeCode>ENF", b"<FunctionalTypeCode>XYZ"))
    assert main(["validate", good, bad]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert {(m["file"], m["code"], m["path"]) for m in parsed if m} == {
        (bad, "Rule.csenet.field.enumeration",
         "/InterstateTransaction/Header/FunctionalTypeCode"),
        (bad, "Rule.FunctionActionReason", "/InterstateTransaction/Header"),
    }


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good.xml", samples.status_report())
    bad = write(tmp_path, "bad.xml", b"<a>")
    missing = str(tmp_path / "missing.xml")
    assert main(["validate", "--format", "json", good, bad, missing]) == 1
    result = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in result] == [good, bad, missing]
    assert [r["valid"] for r in result] == [True, False, False]
    assert result[0]["errors"] == []
    assert result[1]["errors"][0]["code"] == "XmlMalformed"
    assert set(result[1]["errors"][0]) == {"line", "column", "code", "path", "message"}
    assert result[2]["errors"][0]["code"] == "FileUnreadable"


def test_explicit_schema(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    etsi = fixtures_dir / "etsi-rem"
    documents = sorted(str(p) for p in (etsi / "documents").glob("*.xml"))
    assert main(["validate", "--schema", str(etsi / "schema" / "TS102640_v2.xsd"),
                 *documents]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 17
    assert {m["file"] for m in map(LINE.match, lines) if m} == set(documents)


def test_explicit_schema_not_matching_root(tmp_path: Path, fixtures_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    doc = write(tmp_path, "t.xml", samples.status_report())
    xsd = fixtures_dir / "etsi-rem" / "schema" / "TS102640_v2.xsd"
    assert main(["validate", "--schema", str(xsd), doc]) == 1
    assert "SchemaUnknownRoot" in capsys.readouterr().out


def test_usage_and_config_errors_exit_2(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = write(tmp_path, "t.xml", samples.status_report())
    assert main(["validate", "--schema", str(tmp_path / "nope.xsd"), doc]) == 2
    assert "ConfigInvalid" in capsys.readouterr().err
    bad_xsd = write(tmp_path, "bad.xsd", b"<xs:schema xmlns:xs='http://www.w3.org/2001/"
                    b"XMLSchema'><xs:element name='a' type='missing'/></xs:schema>")
    assert main(["validate", "--schema", bad_xsd, doc]) == 2
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["validate", "--format", "xml", doc])
    assert info.value.code == 2
    assert main(["validate", "--max-bytes", "0", doc]) == 2


def test_broken_configuration_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = write(tmp_path, "t.xml", samples.status_report())
    config = write(tmp_path, "gateway.toml", b"this is [not toml")
    monkeypatch.setenv("GATEWAY_CONFIG", config)
    assert main(["validate", doc]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_hostile_and_odd_inputs_never_traceback(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    files = [
        write(tmp_path, "xxe.xml", b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
              b"<r>&x;</r>"),
        write(tmp_path, "empty.xml", b""),
        write(tmp_path, "binary.xml", bytes(range(256))),
        write(tmp_path, "latin1.xml", "<?xml version='1.0'?><a>é</a>".encode("latin-1")),
        str(tmp_path),  # a directory
    ]
    assert main(["validate", "--format", "json", *files]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    codes = [r["errors"][0]["code"] for r in json.loads(captured.out)]
    assert codes == ["XmlForbidden", "XmlEmpty", "XmlMalformed", "XmlEncoding",
                     "FileUnreadable"]
    assert "passwd" not in captured.out


def test_max_bytes_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = write(tmp_path, "t.xml", samples.status_report())
    assert main(["validate", "--max-bytes", "100", doc]) == 1
    assert ": TooLarge: " in capsys.readouterr().out


@pytest.mark.integration
def test_console_script(repo_root: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "gateway"
    assert script.exists(), f"console script missing: {script}"
    sample = repo_root / "tests" / "samples" / "invalid" / "interstate-transaction.ssn-area-666.xml"
    proc = subprocess.run([str(script), "validate", str(sample)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stdout.count("\n") == 1
    assert ": SchemaPattern: /InterstateTransaction/NCPIdentification/SSN: " in proc.stdout
    assert "666" not in proc.stdout.split(": SchemaPattern: ")[1]


def test_operator_schema_set_from_configuration(tmp_path: Path, fixtures_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    etsi = fixtures_dir / "etsi-rem"
    config = tmp_path / "gw.toml"
    config.write_text(
        '[node]\nparty = "fips:0600000"\n\n[[schema_sets]]\n'
        f'directory = "{etsi / "schema"}"\nentry = "TS102640_v2.xsd"\n', encoding="utf-8")
    document = str(etsi / "documents" / "submission-acceptance-3.xml")
    # without the configuration the ETSI root is unknown
    assert main(["validate", document]) == 1
    assert ": UnknownDocumentType: " in capsys.readouterr().out
    assert main(["--config", str(config), "validate", document]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1] for line in lines] == ["35", "45", "54"]
    # the shipped schemas still apply alongside the operator's set
    sample = write(tmp_path, "t.xml", samples.status_report())
    assert main(["--config", str(config), "validate", sample]) == 0
