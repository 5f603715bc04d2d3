"""The shipped CSENet tables are the federal ones, and the layouts add up as the IGD says."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from gateway.documents.csenet.layout import field_key, record_spec
from gateway.documents.csenet.table import lookup, rows


@pytest.mark.parametrize("name", ["layout.csv", "transactions.csv"])
def test_shipped_tables_are_the_fixtures(fixtures_dir: Path, name: str) -> None:
    shipped = resources.files("gateway.documents.csenet").joinpath("data", name).read_bytes()
    assert shipped == (fixtures_dir / "csenet" / name).read_bytes()


@pytest.mark.parametrize(("record", "length"), [
    ("header-to-server", 127), ("header-from-server", 121), ("case", 351),
    ("ncp-identification", 181), ("ncp-locate", 1421), ("participant", 341),
    ("order", 254), ("collection", 70), ("information", 416), ("error", 145),
])
def test_record_lengths(record: str, length: int) -> None:
    spec = record_spec(record)
    assert spec.length == length
    if record == "error":
        assert len(spec.gaps) == 11           # one blank between twelve fields
    else:
        assert spec.gaps == ()
        assert sum(f.length for f in spec.fields) == length


def test_field_kinds() -> None:
    header = record_spec("header-to-server")
    assert header.field("Transaction-Date").kind == "date"
    assert header.field("Sent-Time").kind == "time"
    assert header.field("Participant-Data-Ind").kind == "count"
    assert header.field("Transaction-Serial-Number").kind == "digits"
    assert record_spec("order").field("Order-Freq-Amount").kind == "money"
    assert record_spec("ncp-identification").field("SSN").kind == "digits"
    assert record_spec("participant").field("Participant-Address-Line-2").name == \
        "Participant Address-Line-2"
    assert field_key("Order-Freq.-Amount") == "Order-Freq-Amount"


def test_table_has_186_rows_and_the_corrected_meanings() -> None:
    table = rows()
    assert len(table) == 186
    assert len({row.key for row in table}) == 186
    assert sum(row.blocks is None for row in table) == 6
    luall = lookup("LO1", "P", "LUALL")
    assert luall is not None
    assert "NO INFORMATION FOUND" in luall.meaning
    gscoe = lookup("ENF", "P", "GSCOE")
    assert gscoe is not None
    assert "NEW CONTROLLING ORDER" in gscoe.meaning
    assert lookup("MSC", "P", "GSC04") is None
    assert lookup("CSI", "A", "") is None
    assert lookup("MSC", "R", "GSADD") is None
    closures = {row.reason for row in table if row.reason.startswith("GSC")}
    assert {"GSC02", "GSC03", "GSC4A", "GSC4B", "GSC4C", "GSC4D", "GSC05", "GSC5B",
            *(f"GSC{n:02d}" for n in range(6, 19))} <= closures | {"GSCOE", "GSCAS"}
