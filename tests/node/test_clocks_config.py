"""``[clocks]``: defaults, the keys, and every problem reported with its key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.node.clocks import ClockKeeper
from gateway.node.config import load_config

BASE = """
[node]
party = "fips:0600000"
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    clocks = load_config(write(tmp_path, "")).clocks
    assert clocks.enabled
    assert clocks.timezone == "UTC"
    keeper = ClockKeeper(clocks)
    assert "hague-12.3-acknowledge" in {r.name for r in keeper.active}
    assert "cfr-303.7a4-controlling-order" not in {r.name for r in keeper.active}


def test_every_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[clocks]
enabled = true
timezone = "America/Los_Angeles"
holidays = ["03-31", "2026-11-27"]
disable = ["cfr-303.7d2-responding-75"]
[clocks.partner_holidays]
"fips:4800000" = ["03-02"]
[[clocks.rules]]
name = "cfr-303.7a4-controlling-order"
citation = "45 CFR 303.7(a)(4)"
start = ["doc:DocumentExchange/LetterOfTransmittalRequestingRegistration"]
answer = ["MSC P"]
period = "30 working days"
[[clocks.rules]]
name = "local-locate"
title = "Quick locate answered"
citation = "state policy 12.3"
start = ["LO1 R"]
answer = ["LO1 P"]
period = "2 working days"
direction = "out"
"""))
    keeper = ClockKeeper(config.clocks)
    active = {r.name for r in keeper.active}
    assert {"cfr-303.7a4-controlling-order", "local-locate"} <= active
    assert "cfr-303.7d2-responding-75" not in active
    assert not keeper.ours.is_working_day(date(2026, 3, 31))
    assert keeper.calendar_for(False, "fips:4800000").is_working_day(date(2026, 3, 31))
    assert not keeper.calendar_for(False, "fips:4800000").is_working_day(date(2026, 3, 2))
    assert keeper.calendar_for(False, "fips:1200000").is_working_day(date(2026, 3, 2))
    assert str(keeper.tz) == "America/Los_Angeles"


def test_every_problem_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, """
[clocks]
enabled = "yes"
timezone = "Mars/Olympus"
holidays = ["31-03"]
disable = ["no-such-rule"]
colour = "red"
[clocks.partner_holidays]
"fips:4800000" = "03-02"
[[clocks.rules]]
name = "bad"
citation = "x"
start = ["ENF R"]
answer = ["ENF A"]
period = "10 fortnights"
"""))
    keys = {p["key"] for p in info.value.details["problems"]}
    assert keys == {"clocks.enabled", "clocks.timezone", "clocks.holidays[0]",
                    "clocks.disable[0]", "clocks.colour", "clocks.partner_holidays.fips:4800000",
                    "clocks.rules[0].period"}


@pytest.mark.parametrize(("rule", "key"), [
    ('name = "Bad Name"', "clocks.rules[0].name"),
    ('name = "r"\ncitation = "c"\nstart = ["ENF"]\nanswer = ["ENF A"]\nperiod = "1 day"',
     "clocks.rules[0].start[0]"),
    ('name = "r"\ncitation = "c"\nstart = ["doc:"]\nanswer = ["ENF A"]\nperiod = "1 day"',
     "clocks.rules[0].start[0]"),
    ('name = "r"\ncitation = "c"\nstart = []\nanswer = ["ENF A"]\nperiod = "1 day"',
     "clocks.rules[0].start"),
    ('name = "r"\ncitation = "c"\nstart = ["ENF R"]\nanswer = ["ENF A"]\nperiod = "1 day"\n'
     'owes = "nobody"', "clocks.rules[0].owes"),
    ('name = "r"\nstart = ["ENF R"]\nanswer = ["ENF A"]\nperiod = "1 day"',
     "clocks.rules[0].citation"),
    ('name = "r"\ncitation = "c"\nstart = ["ENF R"]\nanswer = ["ENF A"]\nperiod = "1 day"\n'
     'when = "always"', "clocks.rules[0].when"),
])
def test_rule_problems_name_the_rule_and_key(tmp_path: Path, rule: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"[[clocks.rules]]\n{rule}\n"))
    assert [p["key"] for p in info.value.details["problems"]] == [key]


def test_clocks_can_be_switched_off(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[clocks]\nenabled = false\n"))
    assert not config.clocks.enabled


def test_the_loader_and_the_rule_parser_know_the_same_rule_keys(tmp_path: Path) -> None:
    from gateway.documents.deadlines.rules import RULE_KEYS

    table = "\n".join(f'{k} = "x"' for k in sorted(RULE_KEYS))
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"[[clocks.rules]]\n{table}\nextra = 1\n"))
    unknown = [p["key"] for p in info.value.details["problems"] if p["problem"] == "unknown key"]
    assert unknown == ["clocks.rules[0].extra"]
