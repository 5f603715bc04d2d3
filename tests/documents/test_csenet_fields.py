"""The compiled shortcuts of the CSENet checks say exactly what the rules say: the clean
patterns of csenet/fields.py against the field-by-field walk, the date, time and SSN
patterns against the readings they stand for, and the XML mapping's happy path against its
child-by-child walk. Each test fails if a shortcut lets through something the rule refuses
(or refuses what it lets through, for printable ASCII)."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from lxml import etree

from gateway.demo.csenet_samples import transaction
from gateway.documents.csenet import Record, Transaction, check, xmlform
from gateway.documents.csenet import fields as f
from gateway.documents.csenet.errorfile import error_record
from gateway.documents.csenet.layout import RECORD_NAMES, FieldSpec
from gateway.documents.csenet.records import BLOCK_CLASSES, HeaderToServer

TODAY = dt.date(2026, 12, 4)


def _real_date(text: str) -> bool:
    try:
        dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("year", ["0000", "0001", "0004", "0100", "0400", "1600", "1900",
                                  "1999", "2000", "2024", "2026", "2100", "9996", "9999"])
def test_date_pattern_is_a_real_date(year: str) -> None:
    pattern = re.compile(f.DATE_PATTERN)
    for mmdd in range(10_000):
        text = f"{year}{mmdd:04d}"
        assert (pattern.fullmatch(text) is not None) == _real_date(text), text


def test_time_pattern_is_a_real_time() -> None:
    pattern = re.compile(f.TIME_PATTERN)
    for hh in range(100):
        for mm in range(100):
            for ss in (0, 9, 30, 59, 60, 99):
                text = f"{hh:02d}{mm:02d}{ss:02d}"
                real = hh < 24 and mm < 60 and ss < 60
                assert (pattern.fullmatch(text) is not None) == real, text


def test_ssn_pattern_is_an_issued_ssn() -> None:
    pattern = re.compile(f.SSN_PATTERN)
    for area in range(1000):
        for rest in ("000000", "000001", "010000", "010001", "990000", "999999", "654320"):
            text = f"{area:03d}{rest}"
            assert (pattern.fullmatch(text) is not None) == (not f.ssn_never_issued(text)), text
    for last in range(10):
        assert pattern.fullmatch(f"98765432{last}")


def _texts(spec: FieldSpec, rng: random.Random) -> Iterator[str]:
    n = spec.length
    yield from (" " * n, "0" * n, "9" * n, "X" * n, "1" * n, ("-" + "1" * (n - 1)),
                (" " + "1" * (n - 1)), ("1" * (n - 1) + " "), ("\t" + " " * (n - 1)),
                ("\u00e9" + " " * (n - 1)), ("\u0663" * n))
    if n == 8:
        yield from ("20250229", "20240229", "20261332", "00000101", "99991231", "2026120 ")
    if n == 6:
        yield from ("235959", "240000", "235960")
    if n == 9:
        yield from ("987654321", "666123456", "123001234", "123450000", "123456789")
    values = set(spec.values) | f.EXTRA_VALUES.get((spec.record, spec.key), frozenset())
    for value in values:
        if len(value) <= n:
            yield value.ljust(n)
            yield value.rjust(n)
            yield (" " + value).ljust(n)[:n]
    for _ in range(40):
        yield "".join(rng.choice("0123456789 AZ-") for _ in range(n))


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_field_patterns_say_what_the_rules_say(name: str) -> None:
    rng = random.Random(name)
    for spec, what, ssn in f._plan(name):
        pattern = re.compile(f.field_pattern(spec, what, ssn), re.DOTALL)
        for text in _texts(spec, rng):
            clean = f._problem(spec, what, ssn, text) is None
            matched = pattern.fullmatch(text) is not None
            assert not matched or clean, (spec.key, what, text)
            if text.isascii() and text.isprintable():
                assert matched == clean, (spec.key, what, text)


def _records(txn: Transaction) -> Iterator[Record]:
    yield txn.header
    for _, _, block in txn.blocks():
        yield block


def _mutants(record: Record, rng: random.Random) -> Iterator[Record]:
    yield record
    for spec in record.spec().fields:
        for text in list(_texts(spec, rng))[:12]:
            yield type(record)(record.text[:spec.offset] + text
                               + record.text[spec.offset + spec.length:])


@pytest.mark.parametrize("row", [("ENF", "R", "ERARR"), ("LO1", "P", "LSADR"),
                                 ("MSC", "P", "GSTAI"), ("COL", "P", "CITAX")])
def test_check_fields_matches_the_walk(row: tuple[str, str, str]) -> None:
    """Every field of every record of a transaction changed in turn: the clean pattern
    passes a record exactly when the walk finds nothing."""
    rng = random.Random(1)
    txn = transaction(*row, today=TODAY)
    seen_clean = seen_walked = 0
    for record in _records(txn):
        for mutant in _mutants(record, rng):
            walked = f._walk(mutant)
            assert f.check_fields(mutant) == walked
            clean = f._clean_pattern(mutant.RECORD).fullmatch(mutant.text) is not None
            assert not clean or not walked
            if mutant.text.isascii() and mutant.text.isprintable():
                assert clean == (not walked), (mutant.RECORD, walked)
            seen_clean += clean
            seen_walked += not clean
    assert seen_clean
    assert seen_walked


def test_error_record_gaps_are_in_the_pattern() -> None:
    txn = transaction("ENF", "R", "ERARR", today=TODAY)
    bad = replace(txn, header=HeaderToServer(txn.header.text[:17] + "00000000000X"
                                             + txn.header.text[29:]))
    record = error_record(2, bad.to_bytes(), check(bad, today=TODAY))
    assert f.check_fields(record) == f._walk(record) == []
    for column in record.spec().gaps:
        gapped = type(record)(record.text[:column - 1] + "X" + record.text[column:])
        assert f.check_fields(gapped) == f._walk(gapped)
        assert ("-", "field.gap", f"column {column} separates two fields and must be "
                "blank") in f.check_fields(gapped)


def _xml_mutants(block: etree._Element) -> Iterator[etree._Element]:
    yield block
    for index in range(len(block)):
        for change in ("drop", "twice", "swap", "nest", "comment", "none", "empty", "blank",
                       "long", "short", "tab", "accent", "unknown"):
            copy = etree.fromstring(etree.tostring(block))
            child = copy[index]
            text = child.text or ""
            if change == "drop":
                copy.remove(child)
            elif change == "twice":
                child.addnext(etree.fromstring(etree.tostring(child)))
            elif change == "swap" and index + 1 < len(copy):
                child.addprevious(copy[index + 1])
            elif change == "nest":
                etree.SubElement(child, child.tag).text = "1"
            elif change == "comment":
                child.append(etree.Comment("x"))
            elif change == "none":
                child.text = None
            elif change == "empty":
                child.text = ""
            elif change == "blank":
                child.text = " " * len(text)
            elif change == "long":
                child.text = text + "1"
            elif change == "short":
                child.text = text[:-1]
            elif change == "tab":
                child.text = "\t" + text[1:]
            elif change == "accent":
                child.text = text[:-1] + "\u00e9"
            elif change == "unknown":
                child.tag = "{" + xmlform.INTERSTATE_NS + "}NoSuchField"
            yield copy


def test_xml_happy_path_matches_the_walk() -> None:
    """The XML mapping's happy path gives a record only where the child-by-child walk
    finds nothing to say, and then the same record."""
    txn = transaction("ENF", "R", "ERARR", today=TODAY)
    root = xmlform.to_xml_tree(txn)
    specs = [HeaderToServer.spec(), *(BLOCK_CLASSES[name].spec() for name, _, _ in
                                      txn.blocks())]
    fast_seen = 0
    for block, spec in zip(root, specs, strict=True):
        for mutant in _xml_mutants(block):
            issues: list[object] = []
            walked = xmlform._walk_record(mutant, spec, "x", issues)  # type: ignore[arg-type]
            fast = xmlform._fast_record(mutant, spec)
            if fast is not None:
                fast_seen += 1
                assert fast == walked
                assert not issues
    assert fast_seen >= len(specs)



def test_compile_patterns_compiles_the_ones_check_fields_uses() -> None:
    """compile_patterns (a worker's start) leaves every layout's clean pattern compiled,
    and check_fields then finds it instead of compiling its own."""
    f._clean_pattern.cache_clear()
    f.compile_patterns()
    assert f._clean_pattern.cache_info().currsize == len(RECORD_NAMES)
    hits = f._clean_pattern.cache_info().hits
    assert f.check_fields(transaction("ENF", "R", "ERARR", today=TODAY).header) == []
    assert f._clean_pattern.cache_info().hits == hits + 1
    assert f._clean_pattern.cache_info().currsize == len(RECORD_NAMES)
