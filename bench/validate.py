"""Validation throughput: documents/s for a ~10 KB InterstateTransaction and a ~1 MB
DocumentExchange (EDE with a PDF), each measured four ways:

- ``lxml parse``: ``etree.fromstring`` alone (the floor);
- ``lxml parse+XSD``: ``etree.fromstring`` + ``XMLSchema.validate`` (bare lxml validation);
- ``gateway validate``: ``validate_bytes`` (hardened parse + XSD + Schematron + Python
  rules), what the gateway does for every document;
- ``gateway rules only``: the Schematron rules on a parsed tree (no parse, no XSD): for a
  transaction whose header the Python check of :mod:`gateway.documents.quiet_rules`
  proves clean, without running their XSLT; ``rules' XSLT alone`` runs the XSLT anyway.

The note on ``gateway validate`` gives the ratio to bare lxml parse+XSD (target for 10 KB:
within 3x). For the transaction, two more rows measure the CSENet part of its rules (the
XML mapped onto the CSENet records, then the federal edits: ``Rule.csenet.*``) against its
floor, reading every field element's tag and text; two more what the daemon reads after
validation (``describe`` and the clock facts), from the tree and from the transaction
validation mapped (``validate_parsed(derived=...)``). Each figure is the best of several
timed rounds (the machine is shared).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from lxml import etree

from bench import Row, format_rows
from gateway.demo import samples
from gateway.documents.deadlines.facts import facts_from_transaction, facts_from_tree
from gateway.documents.describe import describe, describe_csenet
from gateway.documents.schemas import default_registry
from gateway.documents.schematron import INTERSTATE_NS, PYTHON_RULES, Derived, RuleSet
from gateway.documents.validate import validate_bytes
from gateway.documents.xmlsafe import parse_xml

BENCH = "validate"


def _rate(func: Callable[[], object], *, budget: float, rounds: int) -> float:
    """Documents per second: best round of ``rounds`` rounds of about ``budget`` s each."""
    func()  # warm up (compiles and caches schemas)
    start = time.perf_counter()
    func()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(budget / once))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, (time.perf_counter() - start) / number)
    return 1.0 / best


def _measure(label: str, data: bytes, *, budget: float, rounds: int) -> list[Row]:
    tree = parse_xml(data, huge_text=True)
    compiled = default_registry().schema_for(tree)
    xsd = compiled.xsd
    big = etree.XMLParser(huge_tree=True)
    report = validate_bytes(data, source=label)
    if not report.valid:
        raise RuntimeError(f"benchmark document is invalid: {report.issues[:3]}")

    def parse() -> object:
        return etree.fromstring(data, big)

    def bare() -> object:
        return xsd.validate(etree.fromstring(data, big))

    def gateway() -> object:
        return validate_bytes(data, source=label)

    rules = compiled.rules
    xslt = None
    if rules is not None and rules.quiet is not None and rules.quiet(tree, rules.tables):
        xslt = RuleSet(rules.path)
        xslt.quiet = None  # the same rules, always through their XSLT

    def rules_only() -> object:
        return rules.run(tree) if rules is not None else None

    def xslt_only() -> object:
        return xslt.run(tree) if xslt is not None else None

    # interleave so that a burst of load elsewhere hits every variant alike
    rates: dict[str, float] = {}
    for _ in range(2):
        for name, func in (("parse", parse), ("bare", bare), ("gateway", gateway),
                           ("rules", rules_only), ("xslt", xslt_only)):
            rate = _rate(func, budget=budget, rounds=rounds)
            rates[name] = max(rates.get(name, 0.0), rate)
    size = f"{len(data) / 1024:,.0f} KB" if len(data) < 1 << 20 else \
        f"{len(data) / (1 << 20):,.2f} MB"
    ratio = rates["bare"] / rates["gateway"]
    return [
        Row(BENCH, f"{label} ({size}) lxml parse", rates["parse"], "docs/s", "floor"),
        Row(BENCH, f"{label} ({size}) lxml parse+XSD", rates["bare"], "docs/s", "bare lxml"),
        Row(BENCH, f"{label} ({size}) gateway validate", rates["gateway"], "docs/s",
            f"{ratio:.2f}x the time of bare lxml parse+XSD"),
        Row(BENCH, f"{label} ({size}) gateway rules only", rates["rules"], "docs/s",
            "Schematron rules on a parsed tree"),
    ] + ([Row(BENCH, f"{label} ({size}) rules' XSLT alone", rates["xslt"], "docs/s",
              f"{rates['rules'] / rates['xslt']:.1f}x the time of rules only "
              "(the Python check proves them clean)")] if xslt is not None else [])


def _csenet(label: str, data: bytes, *, budget: float, rounds: int) -> list[Row]:
    """The interstate rule's CSENet part (mapping + federal edits) and its floor."""
    tree = parse_xml(data, huge_text=True)
    root = tree.getroot()
    csenet = PYTHON_RULES[(INTERSTATE_NS, "InterstateTransaction")]
    if csenet(tree):
        raise RuntimeError("benchmark transaction breaks a CSENet edit")

    def floor() -> object:
        return [(field.tag, field.text) for block in root for field in block]

    def rules() -> object:
        return csenet(tree)

    derived = Derived()
    csenet(tree, derived)
    txn = derived.csenet
    if txn is None:
        raise RuntimeError("validation handed no transaction over")

    def from_tree() -> object:
        return describe(tree), facts_from_tree(tree)

    def from_txn() -> object:
        return describe_csenet(txn), facts_from_transaction(txn)

    rates: dict[str, float] = {}
    for _ in range(2):
        for name, func in (("floor", floor), ("csenet", rules), ("tree", from_tree),
                           ("txn", from_txn)):
            rates[name] = max(rates.get(name, 0.0),
                              _rate(func, budget=budget, rounds=rounds))
    size = f"{len(data) / 1024:,.0f} KB"
    fields = sum(len(block) for block in root)
    return [
        Row(BENCH, f"{label} ({size}) read {fields} field elements", rates["floor"],
            "docs/s", "floor: tag and text of every field"),
        Row(BENCH, f"{label} ({size}) CSENet rules (map + edits)", rates["csenet"], "docs/s",
            f"{rates['floor'] / rates['csenet']:.2f}x the time of the floor"),
        Row(BENCH, f"{label} ({size}) describe + clock facts, tree", rates["tree"], "docs/s",
            "read from the tree"),
        Row(BENCH, f"{label} ({size}) describe + clock facts, mapped", rates["txn"], "docs/s",
            f"{rates['txn'] / rates['tree']:.1f}x faster than from the tree"),
    ]


def main(quick: bool = False) -> list[Row]:
    budget, rounds = (0.05, 3) if quick else (0.3, 5)
    small = samples.interstate_transaction(participants=9, orders=4, collections=6,
                                           information_lines=5)
    large = samples.document_exchange(pdf_bytes=740_000)
    rows = _measure("transaction", small, budget=budget, rounds=rounds)
    rows += _csenet("transaction", small, budget=budget, rounds=rounds)
    rows += _measure("EDE document", large, budget=budget, rounds=rounds)
    return rows


if __name__ == "__main__":
    print(format_rows(main(quick="--quick" in sys.argv)))
