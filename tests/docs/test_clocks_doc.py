"""docs/clocks.md lists every shipped clock rule with its period and who owes the answer."""

from __future__ import annotations

from pathlib import Path

from gateway.documents.deadlines import shipped_rules

DOC = Path(__file__).resolve().parents[2] / "docs" / "clocks.md"


def test_every_shipped_rule_is_in_the_table() -> None:
    section = DOC.read_text(encoding="utf-8").split("## The rules", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip().split(":")[0].strip("` "): line
            for line in section.splitlines() if line.startswith("| `")}
    assert set(rows) == {r.name for r in shipped_rules()}
    for rule in shipped_rules():
        cells = [c.strip() for c in rows[rule.name].split("|")]
        assert cells[4] == str(rule.period), rule.name
        assert cells[5] == rule.owes, rule.name
        assert rule.citation.replace("Hague Child Support Convention 2007", "Hague 2007") \
            in cells[1], rule.name
