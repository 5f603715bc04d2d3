"""The CSENet 2000 record layouts (IGD Appendix C), read from the package's ``data/layout.csv``.

Every record is a run of fixed-width fields. A field is ``N`` (numeric: digits, zero-filled,
right-justified; blank when an optional field is unused) or ``A/N`` (alphanumeric:
blank-filled, left-justified). Each :class:`FieldSpec` also carries a *kind* derived from its
name and type, which decides how its text is read as a Python value:

- ``date``: 8-digit ``N`` fields named ``...Date...`` (CCYYMMDD);
- ``time``: 6-digit ``N`` fields named ``...Time...`` (HHMMSS);
- ``money``: 12-digit ``N`` fields named ``...Amount`` (cents, no decimal point);
- ``count``: the one-digit block indicators of the header;
- ``digits``: every other ``N`` field (kept as text: leading zeros matter in a ZIP or SSN);
- ``text``: ``A/N``.

The records are contiguous except the 145-byte error record, whose fields are separated by
one blank (its gaps are part of :attr:`RecordSpec.gaps`).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

__all__ = [
    "BLOCK_RECORDS",
    "FieldSpec",
    "RecordSpec",
    "field_key",
    "record_spec",
]

# The data blocks in the order they follow the header, with the header column of the
# indicator that announces each (1-based) and the most that may appear.
BLOCK_RECORDS: tuple[tuple[str, str, int], ...] = (
    ("case", "Case-Data-Ind", 1),
    ("ncp-identification", "NCP-Identification-Ind", 1),
    ("ncp-locate", "NCP-Locate-Data-Ind", 1),
    ("participant", "Participant-Data-Ind", 9),
    ("order", "Order-Data-Ind", 9),
    ("collection", "Collection-Data-Ind", 9),
    ("information", "Information-Ind", 1),
)

RECORD_NAMES = ("header-to-server", "header-from-server", *(r for r, _, _ in BLOCK_RECORDS),
                "error")


def field_key(name: str) -> str:
    """A field's key: the IGD name with every run of other characters made one hyphen
    (``Order-Freq.-Amount`` -> ``Order-Freq-Amount``, ``Participant Address-Line-2`` ->
    ``Participant-Address-Line-2``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


@dataclass(frozen=True)
class FieldSpec:
    """One field: where it sits in its record (1-based ``start``), how long, and its rules."""

    record: str
    name: str          # as the IGD spells it
    key: str           # field_key(name): what the codec and the XML use
    start: int         # 1-based column within the record
    length: int
    numeric: bool      # IGD type N (else A/N)
    required: bool     # the IGD's "required" mark (often conditional: see the edits)
    values: tuple[str, ...]
    kind: str          # date, time, money, count, digits, text
    rule: str = field(repr=False, compare=False, default="")
    offset: int = field(init=False, repr=False, compare=False)   # 0-based, within the record

    def __post_init__(self) -> None:
        object.__setattr__(self, "offset", self.start - 1)

    @property
    def end(self) -> int:
        """1-based last column within the record."""
        return self.start + self.length - 1

    def blank(self) -> str:
        return " " * self.length


@dataclass(frozen=True)
class RecordSpec:
    """A record: its fields in order, its length and, for the error record, the gap columns
    (1-based) that must hold a blank."""

    name: str
    length: int
    fields: tuple[FieldSpec, ...]
    gaps: tuple[int, ...]

    def field(self, key: str) -> FieldSpec:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"{self.name} has no field {key}") from None

    @property
    def _by_key(self) -> dict[str, FieldSpec]:
        index: dict[str, FieldSpec] | None = self.__dict__.get("_index")
        if index is None:
            index = {spec.key: spec for spec in self.fields}
            object.__setattr__(self, "_index", index)
        return index

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(spec.key for spec in self.fields)


def _kind(name: str, numeric: bool, length: int, record: str) -> str:
    if not numeric:
        return "text"
    if record.startswith("header") and name.endswith("-Ind") and length == 1:
        return "count"
    if length == 8 and "Date" in name:
        return "date"
    if length == 6 and "Time" in name:
        return "time"
    if length == 12 and name.endswith("Amount"):
        return "money"
    return "digits"


@cache
def _records() -> dict[str, RecordSpec]:
    text = resources.files("gateway.documents.csenet").joinpath("data", "layout.csv") \
        .read_text(encoding="utf-8")
    rows: dict[str, list[FieldSpec]] = {name: [] for name in RECORD_NAMES}
    for row in csv.DictReader(io.StringIO(text)):
        record = row["record"]
        numeric = row["type"] == "N"
        length = int(row["length"])
        rows[record].append(FieldSpec(
            record=record, name=row["field"], key=field_key(row["field"]),
            start=int(row["start"]), length=length, numeric=numeric,
            required=row["required"] == "Y", values=tuple(row["values"].split()),
            kind=_kind(row["field"], numeric, length, record), rule=row["rule"]))
    out: dict[str, RecordSpec] = {}
    for name, fields in rows.items():
        fields.sort(key=lambda f: f.start)
        column, gaps = 1, list[int]()
        for spec in fields:
            if spec.start < column:
                raise RuntimeError(f"layout.csv: {name}.{spec.name} overlaps its neighbour")
            gaps.extend(range(column, spec.start))
            column = spec.end + 1
        if gaps and name != "error":
            raise RuntimeError(f"layout.csv: {name} has gaps at columns {gaps}")
        if len({f.key for f in fields}) != len(fields):
            raise RuntimeError(f"layout.csv: {name} has two fields with one key")
        out[name] = RecordSpec(name=name, length=column - 1, fields=tuple(fields),
                               gaps=tuple(gaps))
    return out


def record_spec(name: str) -> RecordSpec:
    """The layout of one record (``header-to-server``, ``case``, ..., ``error``)."""
    try:
        return _records()[name]
    except KeyError:
        raise KeyError(f"no CSENet record named {name}") from None
