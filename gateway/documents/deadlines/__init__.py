"""Deadline clocks: rules as data (``rules.toml``), a working-day calendar, the business
keys of a document and the matcher that pairs requests with their answers. Pure: no disk
(beyond the shipped table), no clock (``now`` is an argument). docs/clocks.md."""

from gateway.documents.deadlines.calendar import (
    Period,
    WorkCalendar,
    federal_holidays,
    parse_holiday,
    parse_period,
)
from gateway.documents.deadlines.engine import (
    START,
    STOP,
    Clock,
    ClockSet,
    Observation,
    compute,
    observation_from_detail,
    observe,
)
from gateway.documents.deadlines.facts import Facts, facts_from_tree
from gateway.documents.deadlines.rules import (
    Pattern,
    Rule,
    RuleError,
    merge_rules,
    parse_rule,
    parse_rules,
    shipped_rules,
)

__all__ = [
    "START",
    "STOP",
    "Clock",
    "ClockSet",
    "Facts",
    "Observation",
    "Pattern",
    "Period",
    "Rule",
    "RuleError",
    "WorkCalendar",
    "compute",
    "facts_from_tree",
    "federal_holidays",
    "merge_rules",
    "observation_from_detail",
    "observe",
    "parse_holiday",
    "parse_period",
    "parse_rule",
    "parse_rules",
    "shipped_rules",
]
