"""The validation fast paths change no report: every document of the differential corpus
(valid and deliberately broken ones, see differential_corpus.py) gets exactly what the
gateway reported before them, recorded in tests/fixtures/validation-differential: verdict,
every issue's code, message, path, line and column, ``describe``, clock facts and events,
the receiver's case ID and delivered CSENet line."""

from __future__ import annotations

import gzip
import json
from typing import Any

from gateway.documents.csenet.xmlform import from_xml, salvage
from gateway.documents.quiet_rules import interstate_quiet
from gateway.documents.schematron import RuleSet, load_rules
from gateway.documents.validate import Derived, validate_parsed
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import XmlError
from gateway.resources import xsd_root
from tests.documents.differential_corpus import (
    EXPECTED,
    FIXTURE,
    N,
    corpus,
    digest,
    observe,
    observe_derived,
)


def _expected() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(gzip.decompress(EXPECTED.read_bytes()))
    return loaded


def test_every_report_is_the_recorded_one() -> None:
    expected = _expected()
    seen: set[str] = set()
    drifted: list[str] = []
    differ: list[str] = []
    for name, data in corpus():
        seen.add(name)
        want = expected.get(name)
        if want is None or want["input"] != digest(data):
            drifted.append(name)
            continue
        got = observe(data, name)
        if got != want["seen"]:
            keys = sorted(k for k in set(got) | set(want["seen"])
                          if got.get(k) != want["seen"].get(k))
            differ.append(f"{name}: {keys[0]}: got {str(got.get(keys[0]))[:300]}, "
                          f"recorded {str(want['seen'].get(keys[0]))[:300]}")
    missing = sorted(set(expected) - seen)
    assert not drifted + missing, (
        f"the corpus is not the recorded one ({len(drifted)} changed or new, "
        f"{len(missing)} gone, e.g. {(drifted + missing)[:3]}): re-record with a reference "
        "tree (see tests/fixtures/validation-differential/README.md)")
    assert not differ, f"{len(differ)} of {len(seen)} documents differ:\n" + "\n".join(
        differ[:10])


def test_the_corpus_covers_valid_and_broken_documents() -> None:
    """The comparison means something: thousands of documents, valid ones and every kind
    of issue the CSENet rules and the Schematron header rules report among the rest."""
    expected = _expected()
    assert len(expected) > 3000
    valid = [item for item in expected.values() if item["seen"]["valid"]]
    assert len(valid) > 500
    assert len(valid) < len(expected) - 2000
    codes = {issue[2] for item in expected.values() for issue in item["seen"]["issues"]}
    assert {"Rule.csenet.xml.form", "Rule.csenet.field.enumeration", "Rule.csenet.date.order",
            "Rule.FunctionActionReason", "Rule.InterstateFIPS", "Rule.BlockCountCase",
            "Rule.BlockCountParticipant", "SchemaUnexpectedElement"} <= codes
    assert sum("csenet" in item["seen"] for item in expected.values()) > 500


def test_the_quiet_check_is_sound_over_the_corpus() -> None:
    """Wherever the Python check says interstate.sch reports nothing, the rules' XSLT run
    on its own (no check) reports nothing either; and the check holds for most documents
    the XSLT passes (else it saves nothing)."""
    path = xsd_root() / "interstate" / "interstate.sch"
    shipped = load_rules(xsd_root() / "interstate" / "interstate.xsd")
    assert shipped is not None
    assert shipped.quiet is interstate_quiet, \
        "interstate.sch changed: bring quiet_rules.interstate_quiet (and its digest) along"
    xslt_only = RuleSet(path)
    xslt_only.quiet = None
    quiet = loud = missed = 0
    for name, data in corpus():
        try:
            tree = parse_xml(data, huge_text=True)
        except XmlError:
            continue
        failures = xslt_only.run(tree)
        if interstate_quiet(tree, shipped.tables):
            quiet += 1
            assert failures == [], f"{name}: the check passed what the rules refuse"
        elif failures:
            loud += 1
        else:
            missed += 1
    assert quiet > 2000  # 2568 when written
    assert loud > 500    # 983
    assert missed < quiet / 10          # 61


def test_what_validation_maps_reads_as_the_tree() -> None:
    """The daemon's path: describe, the clock facts and events, the case ID and the CSENet
    line read from the transaction validation handed over are the recorded ones (read
    from the tree) for every valid transaction; validation hands one over for each."""
    expected = _expected()
    valid = 0
    for name, data in corpus():
        want = expected[name]["seen"]
        got = observe_derived(data, name)
        if not (want["valid"] and want["root"] == N + "InterstateTransaction"):
            continue
        valid += 1
        assert got is not None, f"{name}: validation handed no transaction over"
        for key, value in got.items():
            assert value == want[key], f"{name}: {key}: got {value!r}, recorded {want[key]!r}"
    assert valid > 800


def test_validation_hands_over_only_what_from_xml_would_give() -> None:
    """The transaction handed over is the one ``from_xml`` maps the tree onto; none is
    handed over when the header's indicators do not match the blocks (``from_xml``
    refuses that, even where no Schematron rule would report it)."""
    data = (FIXTURE / "pipeline.xml").read_bytes()
    derived = Derived()
    report, tree = validate_parsed(data, source="pipeline.xml", derived=derived)
    assert report.valid
    assert tree is not None
    assert derived.csenet == from_xml(tree)
    wrong = data.replace(b"<ParticipantDataInd>8<", b"<ParticipantDataInd>7<")
    assert wrong != data
    derived = Derived()
    _, tree = validate_parsed(wrong, source="wrong.xml", derived=derived)
    assert tree is not None
    assert salvage(tree.getroot(), check_counts=False)[1] == []
    assert derived.csenet is None
