"""tests/samples/: every valid sample passes through the registry, every invalid one fails
with exactly the issues listed in invalid/expected.json, and the files match their generator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from gateway.documents.describe import describe, document_types
from gateway.documents.validate import validate_file
from gateway.documents.xmlsafe import parse_xml

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
EXPECTED: dict[str, list[list[str]]] = json.loads(
    (SAMPLES / "invalid" / "expected.json").read_text())


def _regenerate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("regenerate", SAMPLES / "regenerate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted((SAMPLES / "valid").glob("*.xml")), ids=lambda p: p.name)
def test_valid_sample(path: Path) -> None:
    report = validate_file(path)  # through the registry: no --schema
    assert report.valid, report.issues
    info = describe(parse_xml(path.read_bytes()))
    assert info.sender
    assert info.destination
    assert info.case_id


def test_every_document_type_has_valid_and_invalid_samples() -> None:
    valid_roots = {describe(parse_xml(p.read_bytes())).name
                   for p in (SAMPLES / "valid").glob("*.xml")}
    names = {name for _, name in document_types()}
    assert valid_roots == names
    prefixes = {name.split(".")[0] for name in EXPECTED}
    for prefix in ("interstate-transaction", "transaction-error", "interstate-acknowledgment",
                   "document-exchange", "transmittal-form", "maintenance-application",
                   "acknowledgement-form", "status-report"):
        assert prefix in prefixes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_sample(name: str) -> None:
    report = validate_file(SAMPLES / "invalid" / name)
    assert not report.valid
    assert sorted([i.code, i.path] for i in report.issues) == sorted(EXPECTED[name])
    for issue in report.issues:
        assert "987654" not in issue.message
        assert "TESTPERSON" not in issue.message


def test_invalid_samples_cover_each_kind_of_rule() -> None:
    codes = {code for issues in EXPECTED.values() for code, _ in issues}
    for kind in ("SchemaPattern", "SchemaEnumeration", "SchemaUnexpectedElement",
                 "SchemaMissingElement", "SchemaDigits", "XmlForbidden"):
        assert kind in codes
    assert sum(code.startswith("Rule.") for code in codes) >= 10


def test_files_match_the_generator() -> None:
    regenerate = _regenerate()
    for name, make in regenerate.VALID.items():
        assert (SAMPLES / "valid" / f"{name}.xml").read_bytes() == make(), name
    generated = regenerate.invalid()
    assert set(generated) == set(EXPECTED)
    for name, (data, issues) in generated.items():
        assert (SAMPLES / "invalid" / name).read_bytes() == data, name
        assert EXPECTED[name] == issues
    on_disk = {p.name for p in (SAMPLES / "invalid").glob("*.xml")}
    assert on_disk == set(EXPECTED)
