"""Benchmarks. Each module here defines ``main(quick: bool = False) -> list[Row]`` that
measures and returns its figures; ``python -m bench`` runs them all and prints one table,
``python -m bench.<name>`` runs one. Figures are printed, never asserted."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure: what, the value, its unit, and a note (e.g. a ratio)."""

    bench: str
    case: str
    value: float
    unit: str
    note: str = ""


_GROUPS = re.compile(r"spool: (\d+) transactions in (\d+) commits")


def commit_groups(log_text: str) -> tuple[int, int] | None:
    """(transactions, commits) from the last group-commit line a node's log holds (its
    spool logs it when it closes), or None."""
    found = _GROUPS.findall(log_text)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def format_rows(rows: list[Row]) -> str:
    headers = ["bench", "case", "value", "unit", "note"]
    cells = [[r.bench, r.case, f"{r.value:,.2f}", r.unit, r.note] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(headers, *cells, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
