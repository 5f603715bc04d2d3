"""The CLI's output layer: the only place that writes to stdout/stderr for people."""

from __future__ import annotations

import json
import sys
from typing import Any


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


def out_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain left-aligned text table."""
    cells = [headers, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def confirm(question: str) -> bool:
    """Ask a yes/no question on stderr and read the answer from stdin (no answer, or end
    of input, is no)."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():  # the answer was not echoed
        sys.stderr.write(answer.strip() + "\n")
    return answer.strip().lower() in ("y", "yes")
