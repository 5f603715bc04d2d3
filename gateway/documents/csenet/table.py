"""The Valid Transactions Table (IGD Appendix B): the 186 function/action/reason
combinations, their meaning and the data blocks each requires, from ``data/transactions.csv``.

``blocks`` is ``None`` for the six rows whose Appendix B page was not available (``?`` in the
table): for those only the header's indicator rules apply.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["ACTIONS", "FUNCTIONS", "TableRow", "lookup", "rows"]

FUNCTIONS = ("LO1", "CSI", "ENF", "MSC", "PAT", "EST", "COL")
ACTIONS = ("R", "A", "P", "M", "U", "C")


@dataclass(frozen=True)
class TableRow:
    function: str
    action: str
    reason: str           # "" where the row has no reason code
    meaning: str
    blocks: tuple[str, ...] | None   # record names (case, ncp-identification, ...)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.function, self.action, self.reason)


@cache
def rows() -> tuple[TableRow, ...]:
    """Every row, in the table's order."""
    text = resources.files("gateway.documents.csenet").joinpath("data", "transactions.csv") \
        .read_text(encoding="utf-8")
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        blocks = row["blocks"].strip()
        out.append(TableRow(
            function=row["function"], action=row["action"], reason=row["reason"].strip(),
            meaning=row["meaning"],
            blocks=None if blocks == "?" else tuple(blocks.split())))
    return tuple(out)


@cache
def _index() -> dict[tuple[str, str, str], TableRow]:
    return {row.key: row for row in rows()}


def lookup(function: str, action: str, reason: str) -> TableRow | None:
    """The table row for a combination (``reason`` stripped of blanks), or ``None``."""
    return _index().get((function, action, reason.strip()))
