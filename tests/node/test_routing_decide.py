"""Routing decisions: most specific rule wins, implicit partner routes, local delivery."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import RoutingError
from gateway.node.routing import RouteKind, RoutingTable, build_table, decide, parse_pattern

LOCAL = "fips:0600000"
PARTNERS = ["fips:4800000", "fips:1100000", "fips:4820100", "iso3166:NL", "fips:3600000"]
ROUTES = [
    ("fips:48", "fips:4800000", "routes[0]"),
    ("fips:48201", "fips:4820100", "routes[1]"),
    ("iso3166:NL", "iso3166:NL", "routes[2]"),
    ("default", "fips:1100000", "routes[3]"),
    ("fips:3611100", "fips:1100000", "routes[4]"),
]


def table() -> RoutingTable:
    tbl, problems = build_table(LOCAL, ROUTES, PARTNERS)
    assert problems == []
    return tbl


@pytest.mark.parametrize(
    ("destination", "partner", "kind"),
    [
        ("fips:4800000", "fips:4800000", RouteKind.EXACT),  # implicit partner route
        ("fips:4812300", "fips:4800000", RouteKind.STATE),
        ("fips:4820155", "fips:4820100", RouteKind.COUNTY),
        ("fips:4820100", "fips:4820100", RouteKind.EXACT),
        ("iso3166:NL-2", "iso3166:NL", RouteKind.COUNTRY),
        ("iso3166:NL", "iso3166:NL", RouteKind.EXACT),
        ("iso3166:DE", "fips:1100000", RouteKind.DEFAULT),
        ("fips:1200000", "fips:1100000", RouteKind.DEFAULT),
        ("fips:3600000", "fips:3600000", RouteKind.EXACT),
        ("fips:3611100", "fips:1100000", RouteKind.EXACT),  # explicit exact via hub
    ],
)
def test_most_specific_wins(destination: str, partner: str, kind: RouteKind) -> None:
    decision = decide(table(), destination)
    assert not decision.local
    assert decision.partner == partner
    assert decision.rule is not None
    assert decision.rule.pattern.kind is kind
    assert destination in decision.describe()


def test_local_and_errors() -> None:
    assert decide(table(), LOCAL).local
    with pytest.raises(RoutingError):
        decide(table(), "fips:12")
    no_default, problems = build_table(LOCAL, [], ["fips:4800000"])
    assert problems == []
    with pytest.raises(RoutingError, match="no route"):
        decide(no_default, "fips:0100000")


def test_explicit_overrides_implicit_partner_route() -> None:
    tbl, problems = build_table(LOCAL, [("fips:4800000", "fips:1100000", "routes[0]")],
                                ["fips:4800000", "fips:1100000"])
    assert problems == []
    assert decide(tbl, "fips:4800000").partner == "fips:1100000"


def test_build_problems() -> None:
    _, problems = build_table(
        LOCAL,
        [("fips:48", "fips:4800000", "routes[0]"), ("fips:48", "fips:1100000", "routes[1]"),
         ("fips:48", "fips:4800000", "routes[2]"), ("fips:0600000", "fips:4800000", "routes[3]"),
         ("texas", "fips:4800000", "routes[4]"), ("default", "fips:9", "routes[5]")],
        ["fips:4800000", "fips:1100000", LOCAL],
    )
    text = dict(problems)
    assert "ambiguous" in text["routes[1].to"]
    assert "duplicate" in text["routes[2].to"]
    assert "own party" in text["routes[3].to"]
    assert "not a route pattern" in text["routes[4].to"]
    assert "no partner" in text["routes[5].partner"]
    assert "this node" in text["partners[2].party"]


def test_patterns() -> None:
    assert parse_pattern("fips:06").kind is RouteKind.STATE
    assert parse_pattern("fips:06001").kind is RouteKind.COUNTY
    assert parse_pattern("iso3166:NL-X1").kind is RouteKind.EXACT
    assert str(parse_pattern("*")) == "default"
    for bad in ("fips:0", "fips:0600", "iso3166:nl", "NL", ""):
        with pytest.raises(ValueError, match="route pattern"):
            parse_pattern(bad)


@given(st.from_regex(r"\Afips:[0-9]{7}\Z"))
def test_every_fips_routes_somewhere_consistent(destination: str) -> None:
    tbl = table()
    decision = decide(tbl, destination)
    if destination == LOCAL:
        assert decision.local
        return
    matching = [r for r in tbl.rules if r.pattern.matches(destination)]
    best = max(r.pattern.kind for r in matching)
    assert decision.rule is not None
    assert decision.rule.pattern.kind == best
    assert len([r for r in matching if r.pattern.kind == best]) == 1
