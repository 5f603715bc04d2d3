"""Clock rules as data: what starts a deadline clock, what answers it, how long it runs and
who owes the answer. The shipped table is ``rules.toml`` beside this module; a node's
configuration may add rules, replace a shipped one (same name) or disable one.

A rule (TOML table; every key is checked, errors name the rule and the key):

``name``
    short identifier (``[a-z0-9][a-z0-9.-]*``), used in audit events and filters;
``title``, ``citation``, ``source``
    what the deadline is, the provision it comes from, and where that text was read;
``start`` / ``answer``
    lists of patterns (any one matches): ``"FUN ACT [REASON]"`` over a CSENet
    function / action / reason (each may be ``*``; no reason means any reason), or
    ``"doc:TYPE"`` over the document type (``doc:AcknowledgementForm``,
    ``doc:DocumentExchange/Transmittal1InitialRequest``; a trailing ``/*`` matches any form);
``period``
    ``"N working days"``, ``"N days"`` (calendar), ``"N weeks"`` or ``"N months"``;
``owes``
    ``"recipient"`` (whoever receives the starting document answers it: the usual case) or
    ``"sender"`` (whoever sent it owes a follow-up, e.g. a status report after an
    acknowledgement);
``direction``
    ``"any"`` (default), ``"in"`` or ``"out"``: which starting documents this node watches;
``enabled``
    default true; ``note``: free text for the reader (never copied anywhere).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from gateway.documents.deadlines.calendar import Period, parse_period
from gateway.documents.deadlines.facts import Facts

__all__ = ["Pattern", "Rule", "RuleError", "merge_rules", "parse_rule", "parse_rules",
           "shipped_rules"]

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,47}")
_CODE = re.compile(r"\*|[A-Z0-9]{1,5}")
_DOC = re.compile(r"[A-Za-z][A-Za-z0-9]*(/([A-Za-z][A-Za-z0-9]*|\*))?")
OWES = ("recipient", "sender")
DIRECTIONS = ("any", "in", "out")
RULE_KEYS = {"name", "title", "citation", "source", "start", "answer", "period", "owes",
         "direction", "enabled", "note"}


class RuleError(ValueError):
    """A rule that cannot be used; ``key`` names the offending key (``rules[3].period``)."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__(f"{key}: {text}")
        self.key = key
        self.text = text


@dataclass(frozen=True)
class Pattern:
    """One start or answer pattern (see the module docstring)."""

    text: str
    doc: str | None = None
    function: str = "*"
    action: str = "*"
    reason: str = "*"

    @classmethod
    def parse(cls, text: str) -> Pattern:
        if text.startswith("doc:"):
            doc = text[4:]
            if not _DOC.fullmatch(doc):
                raise ValueError("doc: is followed by a document type, optionally /FORM or /*")
            return cls(text, doc=doc)
        parts = text.split()
        if not 2 <= len(parts) <= 3 or not all(_CODE.fullmatch(p) for p in parts):
            raise ValueError("a pattern is 'FUN ACT [REASON]' (codes or *) or 'doc:TYPE'")
        return cls(text, None, *parts)

    def matches(self, facts: Facts) -> bool:
        if self.doc is not None:
            if self.doc.endswith("/*"):
                return facts.doc.startswith(self.doc[:-1])
            return facts.doc == self.doc
        if facts.action is None or facts.function is None:
            return False
        return ((self.function in ("*", facts.function))
                and (self.action in ("*", facts.action))
                and (self.reason in ("*", facts.reason or "")))


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    citation: str
    source: str
    start: tuple[Pattern, ...]
    answer: tuple[Pattern, ...]
    period: Period
    owes: str = "recipient"
    direction: str = "any"
    enabled: bool = True

    def starts(self, facts: Facts, *, outbound: bool) -> bool:
        if not self.enabled or (self.direction == "in" and outbound) or \
                (self.direction == "out" and not outbound):
            return False
        return any(p.matches(facts) for p in self.start)

    def answers(self, facts: Facts) -> bool:
        return self.enabled and any(p.matches(facts) for p in self.answer)

    def owed_by_us(self, start_outbound: bool) -> bool:
        """Whether this node owes the answer to a clock started by a document it sent
        (``start_outbound``) or received."""
        return start_outbound if self.owes == "sender" else not start_outbound


def _strings(table: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{where}.{key}", "expected an array of strings")
    return value


def _string(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise RuleError(f"{where}.{key}", "expected a string" if key in table else "missing")
    return value


def parse_rule(table: Mapping[str, Any], where: str, *, strict: bool = True) -> Rule:
    """One rule from its TOML table; raises :class:`RuleError` naming ``where.key``.
    ``strict``: unknown keys are errors (the configuration loader checks them itself)."""
    if not isinstance(table, Mapping):
        raise RuleError(where, "expected a table")
    unknown = sorted(set(table) - RULE_KEYS)
    if unknown and strict:
        raise RuleError(f"{where}.{unknown[0]}", "unknown key")
    name = _string(table, "name", where)
    if not _NAME.fullmatch(name):
        raise RuleError(f"{where}.name", "lowercase letters, digits, '.' and '-' (at most 48)")
    patterns: dict[str, tuple[Pattern, ...]] = {}
    for key in ("start", "answer"):
        found = []
        for i, text in enumerate(_strings(table, key, where)):
            try:
                found.append(Pattern.parse(text))
            except ValueError as exc:
                raise RuleError(f"{where}.{key}[{i}]", str(exc)) from None
        patterns[key] = tuple(found)
    try:
        period = parse_period(_string(table, "period", where))
    except ValueError as exc:
        raise RuleError(f"{where}.period", str(exc)) from None
    owes = _string(table, "owes", where, "recipient")
    if owes not in OWES:
        raise RuleError(f"{where}.owes", "expected 'recipient' or 'sender'")
    direction = _string(table, "direction", where, "any")
    if direction not in DIRECTIONS:
        raise RuleError(f"{where}.direction", "expected 'any', 'in' or 'out'")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError(f"{where}.enabled", "expected true or false")
    if enabled and (not patterns["start"] or not patterns["answer"]):
        raise RuleError(f"{where}.start", "an enabled rule needs start and answer patterns")
    _string(table, "note", where, "")
    return Rule(name=name, title=_string(table, "title", where, name),
                citation=_string(table, "citation", where),
                source=_string(table, "source", where, ""), start=patterns["start"],
                answer=patterns["answer"], period=period, owes=owes, direction=direction,
                enabled=enabled)


def parse_rules(tables: Iterable[Mapping[str, Any]], prefix: str, *,
                strict: bool = True) -> list[Rule]:
    """Rules from an array of tables (``prefix[i]`` names each in errors); names unique."""
    out: list[Rule] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        rule = parse_rule(table, f"{prefix}[{i}]", strict=strict)
        if rule.name in seen:
            raise RuleError(f"{prefix}[{i}].name", "a second rule with this name")
        seen.add(rule.name)
        out.append(rule)
    return out


@cache
def shipped_rules() -> tuple[Rule, ...]:
    """The rules shipped with the package (``rules.toml``)."""
    text = resources.files("gateway.documents.deadlines").joinpath("rules.toml") \
        .read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    return tuple(parse_rules(doc.get("rule", []), "rule"))


def merge_rules(shipped: Sequence[Rule], extra: Sequence[Rule],
                disabled: Iterable[str] = ()) -> tuple[Rule, ...]:
    """The shipped rules with ``extra`` ones added (or replacing a shipped rule of the same
    name) and those named in ``disabled`` switched off. Disabled rules stay in the
    result (so events recorded under them are still explained) but start nothing."""
    off = set(disabled)
    by_name = {r.name: r for r in shipped}
    for rule in extra:
        by_name[rule.name] = rule
    out = []
    for rule in by_name.values():
        off_now = rule.name in off and rule.enabled
        out.append(Rule(**{**rule.__dict__, "enabled": False}) if off_now else rule)
    return tuple(out)
