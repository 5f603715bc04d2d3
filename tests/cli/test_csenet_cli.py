"""``gateway csenet check|to-xml|from-xml`` and ``route explain`` on a CSENet file."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.demo.csenet_samples import transaction
from gateway.documents.csenet import Framing, encode_file
from tests.support.gwnodes import NodeSpec, PartnerSpec, write_config

TODAY = dt.date(2026, 12, 4)
ARGS = ["--today", TODAY.isoformat()]
LINE = re.compile(r"^(?P<file>[^:]+):(?P<pos>\d+): (?P<where>[^:]+): (?P<code>G[A-Z]\d\d) "
                  r"(?P<rule>[\w.-]+): (?P<message>.+)$")


@pytest.fixture(autouse=True)
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mixed_file(tmp_path: Path) -> Path:
    good = [transaction("LO1", "R", today=TODAY, serial=1),
            transaction("ENF", "R", "ERARR", today=TODAY, serial=2)]
    bad_ssn = transaction("ENF", "R", "ERARR", today=TODAY, serial=3)
    assert bad_ssn.ncp_identification is not None
    data = bytearray(encode_file([good[0], bad_ssn, good[1]], framing=Framing("crlf")))
    line2 = data.index(b"\r\n") + 2
    ssn_at = line2 + len(bad_ssn.header.text) + len(bad_ssn.case.text if bad_ssn.case else "")
    data[ssn_at + 56:ssn_at + 65] = b"98765432Z"
    path = tmp_path / "outgoing.txt"
    path.write_bytes(bytes(data))
    return path


def test_check_reports_every_error_and_exits_1(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = mixed_file(tmp_path)
    code, out, _ = cli(capsys, "csenet", "check", str(path), *ARGS)
    assert code == 1
    lines = out.splitlines()
    match = LINE.match(lines[0])
    assert match is not None, lines[0]
    assert match["pos"] == "2"
    assert match["rule"] == "field.numeric"
    assert "ncp-identification SSN columns" in match["where"]
    assert lines[-1].endswith("3 transaction(s), 2 valid, 1 refused")
    assert "98765432Z" not in out
    code, out, _ = cli(capsys, "csenet", "check", str(path), "--format", "json", *ARGS)
    report = json.loads(out)
    assert (code, report["transactions"], report["rejected"]) == (1, 3, 1)
    assert report["errors"][0]["columns"][1] - report["errors"][0]["columns"][0] == 8
    code, out, _ = cli(capsys, "csenet", "check", str(path), "--newline", "lf", *ARGS)
    assert code == 1
    assert out.count("framing.line-ending") == 3


def test_check_valid_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.txt"
    path.write_bytes(encode_file([transaction("CSI", "P", "FSINF", today=TODAY)]))
    assert cli(capsys, "csenet", "check", str(path), *ARGS)[0] == 0
    missing = cli(capsys, "csenet", "check", str(tmp_path / "nope.txt"))
    assert missing[0] == 1
    assert "FileUnreadable" in missing[2]


def test_to_xml_and_back_is_byte_identical(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    txn = transaction("MSC", "P", "GSFWD", today=TODAY, serial=9)
    src = tmp_path / "one.txt"
    src.write_bytes(encode_file([txn], framing=Framing("crlf")))
    code, out, _ = cli(capsys, "csenet", "to-xml", str(src), *ARGS)
    assert code == 0
    assert "<InterstateTransaction" in out
    assert "urn:cse-gateway:interstate:2" in out
    xml = tmp_path / "one.xml"
    assert cli(capsys, "csenet", "to-xml", str(src), "-o", str(xml), *ARGS)[0] == 0
    back = tmp_path / "back.txt"
    code, _, _ = cli(capsys, "csenet", "from-xml", str(xml), "-o", str(back), "--newline",
                     "crlf", *ARGS)
    assert code == 0
    assert back.read_bytes() == src.read_bytes()


def test_to_xml_needs_a_position_for_several_and_refuses_invalid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = mixed_file(tmp_path)
    code, _, err = cli(capsys, "csenet", "to-xml", str(path), *ARGS)
    assert code == 2
    assert "--position" in err
    assert cli(capsys, "csenet", "to-xml", str(path), "--position", "3", *ARGS)[0] == 0
    code, out, _ = cli(capsys, "csenet", "to-xml", str(path), "--position", "2", *ARGS)
    assert code == 1
    assert "field.numeric" in out


def test_from_xml_refuses_what_does_not_map(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(b"<InterstateTransaction xmlns='urn:cse-gateway:interstate:2'>"
                     b"<Header><Nonsense>1</Nonsense></Header></InterstateTransaction>")
    code, out, _ = cli(capsys, "csenet", "from-xml", str(path), *ARGS)
    assert code == 1
    assert "xml.form" in out
    assert "Nonsense" in out


def test_route_explain_csenet_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = NodeSpec("a", "fips:0600000", tmp_path / "a",
                 routes=[("fips:48", "fips:4800000"), ("default", "fips:1100000")])
    a.partners = [PartnerSpec("fips:4800000", [("memory://b", {})]),
                  PartnerSpec("fips:1100000", [("memory://hub", {})])]
    others = [NodeSpec("b", "fips:4800000", tmp_path / "b"),
              NodeSpec("hub", "fips:1100000", tmp_path / "hub")]
    write_config(a, tmp_path / "keys", [a, *others])
    path = tmp_path / "two.txt"
    path.write_bytes(encode_file([
        transaction("LO1", "R", today=TODAY, other_fips="4812300"),
        transaction("LO1", "R", today=TODAY, other_fips="1200000")]))
    code, out, _ = cli(capsys, "--config", str(a.config_path), "route", "explain", str(path))
    assert code == 0
    assert "transaction 1" in out
    assert "destination: fips:4812300" in out
    assert "memory://b" in out
    assert "destination: fips:1200000" in out
    code, out, _ = cli(capsys, "--config", str(a.config_path), "route", "explain", str(path),
                       "--format", "json")
    results = json.loads(out)
    assert [r["partner"] for r in results] == ["fips:4800000", "fips:1100000"]
