"""The interstate XSD and codes.xml are generated from the shipped IGD tables and kept in
step with them; the XSD accepts the XML form of every table row."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from types import ModuleType

from lxml import etree

from gateway.demo.csenet_samples import transaction_for
from gateway.documents.csenet.table import rows
from gateway.documents.csenet.xmlform import to_xml
from gateway.documents.validate import validate_bytes


def _generator(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_interstate", repo_root / "scripts" / "generate_interstate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_parts_are_up_to_date(repo_root: Path) -> None:
    gen = _generator(repo_root)
    xsd = (repo_root / "xsd" / "interstate" / "interstate.xsd").read_text(encoding="utf-8")
    assert gen.updated_xsd(xsd) == xsd, "run scripts/generate_interstate.py"
    codes = (repo_root / "xsd" / "interstate" / "codes.xml").read_text(encoding="utf-8")
    assert gen.codes() == codes, "run scripts/generate_interstate.py"


def test_codes_xml_is_the_186_row_table(repo_root: Path) -> None:
    table = etree.parse(str(repo_root / "xsd" / "interstate" / "codes.xml")).getroot()
    got = [(c.get("function"), c.get("action"), c.get("reason")) for c in table
           if isinstance(c.tag, str)]
    assert got == [row.key for row in rows()]
    assert len(got) == 186
    assert ("MSC", "P", "GSC04") not in got


def test_every_table_row_validates_as_xml() -> None:
    today = dt.date(2026, 12, 4)
    for number, row in enumerate(rows(), 1):
        data = to_xml(transaction_for(row, today=today, serial=number))
        report = validate_bytes(data, source=f"{row.key}")
        assert report.valid, (row.key, report.issues)
