"""``[clocks.reminders]``: draft CSENet M (reminder) transactions for overdue answers
(read by :func:`gateway.node.config.load_config` through :func:`read_reminders`; the
drafting itself is :mod:`gateway.node.reminders`).

Off unless ``folder`` is set and ``partners`` names at least one partner. The reader passed
in is ``config.py``'s ``_Reader`` (it records problems with the key that has them).

```toml
[clocks.reminders]
folder = "reminders"              # drafts for the state system to review and send
partners = ["fips:4800000"]       # whose overdue answers are reminded; ["*"] for every one
newline = "lf"                    # or "crlf": the line ending of the draft file
interval = "5m"                   # how often overdue clocks are looked for
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.node.routing import valid_party

__all__ = ["RemindersConfig", "read_reminders"]

ALL = "*"


@dataclass(frozen=True)
class RemindersConfig:
    folder: Path | None = None
    partners: tuple[str, ...] = ()
    newline: str = "lf"
    interval: float = 300.0

    @property
    def enabled(self) -> bool:
        return self.folder is not None and bool(self.partners)

    def wanted(self, partner: str) -> bool:
        """Whether overdue answers ``partner`` owes are reminded."""
        return self.enabled and (ALL in self.partners or partner in self.partners)


def read_reminders(r: Any, clocks: Mapping[str, Any]) -> RemindersConfig:
    """``[clocks.reminders]`` (defaults when absent); problems go to ``r``."""
    t = r.table(clocks, "reminders", "clocks.reminders")
    w = "clocks.reminders"
    r.known(t, w, {"folder", "partners", "newline", "interval"})
    raw = t.get("partners", [])
    partners: list[str] = []
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        r.problem(f"{w}.partners", 'expected an array of parties, or ["*"] for every partner')
    else:
        for i, party in enumerate(raw):
            if party != ALL and not valid_party(party):
                r.problem(f"{w}.partners[{i}]",
                          "not a party: expected 'fips:SSCCCLL', 'iso3166:CC' or \"*\"")
            else:
                partners.append(party)
    folder = r.path(t, "folder", f"{w}.folder")
    if partners and folder is None:
        r.problem(f"{w}.folder", "is required when partners are named (where drafts go)")
    return RemindersConfig(
        folder=folder, partners=tuple(partners),
        newline=r.choice(t, "newline", f"{w}.newline", "lf", ("lf", "crlf")) or "lf",
        interval=r.duration(t, "interval", f"{w}.interval", 300.0, positive=True))
