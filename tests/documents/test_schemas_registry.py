"""The schema registry: root element -> schema, operator sets, local-only imports, caching."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from gateway.demo import samples
from gateway.documents.schemas import (
    SchemaRegistry,
    default_registry,
    load_schema,
    registry_with_sets,
)
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import ConfigError, SchemaInvalid, UnknownDocumentType
from gateway.resources import xsd_root
from tests.support.listener import recording_listener

INTERSTATE = "urn:cse-gateway:interstate:2"
INTERNATIONAL = "urn:cse-gateway:international:1"
ETSI_NS = "http://uri.etsi.org/02640/v2#"


def test_every_business_root_is_registered() -> None:
    roots = default_registry().roots()
    for name in ("InterstateTransaction", "TransactionError", "InterstateAcknowledgment",
                 "DocumentExchange"):
        assert roots[(INTERSTATE, name)] == xsd_root() / "interstate" / "interstate.xsd"
    for name in ("TransmittalForm", "MaintenanceApplication", "AcknowledgementForm",
                 "StatusOfApplicationReport"):
        assert roots[(INTERNATIONAL, name)] == xsd_root() / "international" / "hague.xsd"
    # helper schemas declare no roots
    assert not [k for k, v in roots.items() if v.parent.name == "common"]


def test_namespaces_are_versioned() -> None:
    for path in xsd_root().rglob("*.xsd"):
        tns = parse_xml(path.read_bytes()).getroot().get("targetNamespace")
        if tns is not None:
            assert tns.startswith("urn:cse-gateway:"), path
            assert re.search(r":[0-9]+$", tns), path


def test_unknown_root_raises() -> None:
    tree = parse_xml(b"<Other xmlns='urn:x'/>")
    with pytest.raises(UnknownDocumentType) as info:
        default_registry().check(tree)
    assert "urn:x" in str(info.value)


def test_check_raises_with_every_issue() -> None:
    data = samples.interstate_transaction().replace(b"<FunctionalTypeCode>ENF",
                                                    b"<FunctionalTypeCode>XYZ")
    with pytest.raises(SchemaInvalid) as info:
        default_registry().check(parse_xml(data), source="t.xml", data=data)
    codes = [issue.code for issue in info.value.issues]
    assert sorted(codes) == ["Rule.FunctionActionReason", "Rule.csenet.field.enumeration"]
    assert info.value.where == "t.xml"


def test_compiled_once() -> None:
    path = xsd_root() / "interstate" / "interstate.xsd"
    assert load_schema(path) is load_schema(path)
    assert load_schema(path) is load_schema(path.parent / ".." / "interstate" / path.name)


def test_operator_set_etsi(fixtures_dir: Path) -> None:
    etsi = fixtures_dir / "etsi-rem" / "schema"
    registry = SchemaRegistry([xsd_root()], extra_sets=[(etsi, Path("TS102640_v2.xsd"))])
    assert registry.schema_path(ETSI_NS, "SubmissionAcceptanceRejection") == \
        etsi / "TS102640_v2.xsd"
    document = fixtures_dir / "etsi-rem" / "documents" / "submission-acceptance-3.xml"
    data = document.read_bytes()
    issues = registry.issues(parse_xml(data), data=data)
    assert [i.line for i in issues] == [35, 45, 54]
    # built-in roots still there
    assert registry.schema_path(INTERSTATE, "InterstateTransaction")


class _ConfigSet:
    """Shaped like gateway.node.config.SchemaSet (directory + absolute entry)."""

    def __init__(self, directory: Path, entry: Path | None) -> None:
        self.directory = directory
        self.entry = entry


def test_sets_from_config_objects(fixtures_dir: Path) -> None:
    etsi = fixtures_dir / "etsi-rem" / "schema"
    registry = registry_with_sets([_ConfigSet(etsi, etsi / "TS102640_v2.xsd")])
    assert registry.schema_path(ETSI_NS, "SubmissionAcceptanceRejection").name == \
        "TS102640_v2.xsd"


def test_set_without_entry_indexes_directory(tmp_path: Path, fixtures_dir: Path) -> None:
    etsi = fixtures_dir / "etsi-rem" / "schema"
    copy = tmp_path / "etsi"
    shutil.copytree(etsi, copy)
    registry = SchemaRegistry([])
    added = registry.add_set(copy)
    assert (ETSI_NS, "SubmissionAcceptanceRejection") in added


def test_set_errors_are_config_errors(tmp_path: Path) -> None:
    registry = SchemaRegistry([])
    with pytest.raises(ConfigError, match="directory not found"):
        registry.add_set(tmp_path / "nope", "a.xsd")
    with pytest.raises(ConfigError, match="entry XSD not found"):
        registry.add_set(tmp_path, "a.xsd")
    (tmp_path / "bad.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        '<xs:element name="a" type="nope"/></xs:schema>')
    with pytest.raises(ConfigError, match="cannot be compiled"):
        registry.add_set(tmp_path, "bad.xsd")
    (tmp_path / "notxml.xsd").write_text("not xml")
    with pytest.raises(ConfigError, match="not acceptable XML"):
        registry.add_set(tmp_path, "notxml.xsd")


def test_network_import_refused_and_never_fetched(tmp_path: Path) -> None:
    with recording_listener() as (port, seen):
        url = f"http://127.0.0.1:{port}/x.xsd"
        (tmp_path / "entry.xsd").write_text(
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:a"'
            ' xmlns:b="urn:b">'
            f'<xs:import namespace="urn:b" schemaLocation="{url}"/>'
            '<xs:element name="r" type="xs:string"/></xs:schema>')
        with pytest.raises(ConfigError) as info:
            SchemaRegistry([]).add_set(tmp_path, "entry.xsd")
        time.sleep(0.3)
        assert seen == []
    assert url in str(info.value)
    assert "must be local files" in str(info.value)


def test_include_with_doctype_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.xsd").write_text(
        '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>')
    (tmp_path / "entry.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        '<xs:include schemaLocation="evil.xsd"/><xs:element name="r" type="xs:string"/>'
        "</xs:schema>")
    with pytest.raises(ConfigError, match=r"evil\.xsd"):
        SchemaRegistry([]).add_set(tmp_path, "entry.xsd")


def test_concurrent_validation_is_consistent() -> None:
    registry = default_registry()
    good = samples.interstate_transaction()
    bad = good.replace(b"<FunctionalTypeCode>ENF", b"<FunctionalTypeCode>XYZ")
    results: list[tuple[bool, int]] = []
    lock = threading.Lock()

    def work(data: bytes, expect_valid: bool) -> None:
        for _ in range(30):
            issues = registry.issues(parse_xml(data), data=data)
            with lock:
                results.append((expect_valid, len(issues)))

    threads = [threading.Thread(target=work, args=(d, v))
               for d, v in ((good, True), (bad, False)) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 180
    assert all((count == 0) == valid for valid, count in results)
    assert {count for valid, count in results if not valid} == {2}
