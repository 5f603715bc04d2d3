"""Routing decisions: which partner a message for a destination party goes to.

Pure: a :class:`RoutingTable` is built once from the configuration, and :func:`decide`
takes a destination party (read from the business document or an envelope's ``To``, never
from a file name) and returns a :class:`RouteDecision`. Nothing here reads a clock, a file
or a socket.

Route patterns, most specific first (the most specific match wins):

=========================  =======  =============================================
pattern                    kind     matches
=========================  =======  =============================================
``fips:0600000``           exact    that party only (also ``iso3166:CC-ID``)
``fips:06001``             county   every FIPS party whose first 5 digits match
``fips:06``                state    every FIPS party of that state
``iso3166:NL``             country  ``iso3166:NL`` and ``iso3166:NL-*``
``default`` (or ``*``)     default  anything else (e.g. a federal hub)
=========================  =======  =============================================

Every partner is also an implicit exact route for its own party, unless an explicit route
with the same pattern says otherwise. Two explicit routes with the same pattern are
ambiguous: a configuration error reported at load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from gateway.errors import RoutingError
from gateway.protocol.party import PARTY_PATTERN

__all__ = [
    "PARTY_RE",
    "RouteDecision",
    "RouteKind",
    "RoutePattern",
    "RouteRule",
    "RoutingTable",
    "build_table",
    "decide",
    "parse_pattern",
    "valid_party",
]

PARTY_RE = re.compile(rf"^(?:{PARTY_PATTERN})$")
_FIPS_PREFIX = re.compile(r"^fips:([0-9]{2}|[0-9]{5}|[0-9]{7})$")
_ISO = re.compile(r"^iso3166:([A-Z]{2})(-[A-Z0-9]{1,8})?$")


def valid_party(text: str) -> bool:
    """True when ``text`` is a protocol party (``fips:SSCCCLL`` or ``iso3166:CC[-ID]``)."""
    return bool(PARTY_RE.match(text))


class RouteKind(IntEnum):
    """Rule kinds; a higher value is more specific and wins."""

    DEFAULT = 0
    COUNTRY = 1
    STATE = 2
    COUNTY = 3
    EXACT = 4


@dataclass(frozen=True)
class RoutePattern:
    kind: RouteKind
    key: str  # exact: the party; county/state: the digits; country: CC; default: ""

    def matches(self, party: str) -> bool:
        if self.kind is RouteKind.EXACT:
            return party == self.key
        if self.kind is RouteKind.DEFAULT:
            return True
        if self.kind is RouteKind.COUNTRY:
            return party == f"iso3166:{self.key}" or party.startswith(f"iso3166:{self.key}-")
        # STATE / COUNTY: digit prefix of a FIPS party
        return party.startswith("fips:") and party[5:].startswith(self.key)

    def __str__(self) -> str:
        if self.kind is RouteKind.EXACT:
            return self.key
        if self.kind is RouteKind.DEFAULT:
            return "default"
        if self.kind is RouteKind.COUNTRY:
            return f"iso3166:{self.key}"
        return f"fips:{self.key}"


def parse_pattern(text: str) -> RoutePattern:
    """Parse a route pattern; raises ``ValueError`` with a short reason when malformed."""
    text = text.strip()
    if text in ("default", "*"):
        return RoutePattern(RouteKind.DEFAULT, "")
    fips = _FIPS_PREFIX.match(text)
    if fips:
        digits = fips.group(1)
        if len(digits) == 7:
            return RoutePattern(RouteKind.EXACT, text)
        kind = RouteKind.COUNTY if len(digits) == 5 else RouteKind.STATE
        return RoutePattern(kind, digits)
    iso = _ISO.match(text)
    if iso:
        if iso.group(2):
            return RoutePattern(RouteKind.EXACT, text)
        return RoutePattern(RouteKind.COUNTRY, iso.group(1))
    raise ValueError(
        "not a route pattern: expected 'fips:SS', 'fips:SSCCC', 'fips:SSCCCLL', "
        "'iso3166:CC', 'iso3166:CC-ID' or 'default'"
    )


@dataclass(frozen=True)
class RouteRule:
    pattern: RoutePattern
    partner: str  # the partner's party
    source: str  # where it came from: "routes[2]" or "partners[0].party"


@dataclass(frozen=True)
class RouteDecision:
    """Where a message for ``destination`` goes. ``local`` means it is for this node."""

    destination: str
    local: bool
    partner: str | None
    rule: RouteRule | None

    def describe(self) -> str:
        if self.local:
            return f"{self.destination} is this node: deliver locally"
        assert self.rule is not None  # noqa: S101 - invariant of decide()
        kind = self.rule.pattern.kind.name.lower()
        return (f"{self.destination} -> partner {self.partner} by {kind} rule "
                f"'{self.rule.pattern}' ({self.rule.source})")


@dataclass(frozen=True)
class RoutingTable:
    local_party: str
    rules: tuple[RouteRule, ...]


def build_table(
    local_party: str,
    routes: Sequence[tuple[str, str, str]],
    partners: Iterable[str],
) -> tuple[RoutingTable, list[tuple[str, str]]]:
    """Build the table from explicit ``routes`` (pattern text, partner party, config key)
    and the ``partners``' own parties. Returns the table and every problem found as
    ``(config key, problem)``; the table is only meaningful when there are none."""
    problems: list[tuple[str, str]] = []
    known = list(partners)
    explicit: dict[RoutePattern, RouteRule] = {}
    for text, partner, key in routes:
        try:
            pattern = parse_pattern(text)
        except ValueError as exc:
            problems.append((f"{key}.to", str(exc)))
            continue
        if partner not in known:
            problems.append((f"{key}.partner", f"no partner with party '{partner}' is configured"))
            continue
        if pattern.kind is RouteKind.EXACT and pattern.key == local_party:
            problems.append((f"{key}.to", "a route cannot point at this node's own party"))
            continue
        previous = explicit.get(pattern)
        if previous is not None:
            if previous.partner != partner:
                problems.append((f"{key}.to", f"ambiguous: '{pattern}' is also routed to "
                                 f"{previous.partner} by {previous.source}"))
            else:
                problems.append((f"{key}.to", f"duplicate of {previous.source}"))
            continue
        explicit[pattern] = RouteRule(pattern, partner, key)
    rules = list(explicit.values())
    for index, party in enumerate(known):
        pattern = RoutePattern(RouteKind.EXACT, party)
        if party == local_party:
            problems.append((f"partners[{index}].party", "a partner cannot be this node itself"))
        elif pattern not in explicit:
            rules.append(RouteRule(pattern, party, f"partners[{index}].party"))
    rules.sort(key=lambda r: (-int(r.pattern.kind), str(r.pattern)))
    return RoutingTable(local_party, tuple(rules)), problems


def decide(table: RoutingTable, destination: str) -> RouteDecision:
    """The decision for ``destination``; :class:`RoutingError` when nothing matches."""
    if not valid_party(destination):
        raise RoutingError("destination is not a valid party", where="destination",
                           details={"destination": destination[:40]})
    if destination == table.local_party:
        return RouteDecision(destination, True, None, None)
    best: RouteRule | None = None
    for rule in table.rules:  # sorted most specific first
        if rule.pattern.matches(destination):
            best = rule
            break
    if best is None:
        raise RoutingError(f"no route to {destination}", details={"destination": destination})
    return RouteDecision(destination, False, best.partner, best)
