"""The corpus of the validation differential test (test_validation_differential.py): valid
documents and deliberately broken ones, and what the gateway reports for each.

The base documents are tests/samples/{valid,invalid}/*.xml and
tests/fixtures/validation-differential/*.xml; every InterstateTransaction among them is
also mutated (seeded, so the corpus is the same on every run): wrong lengths, bad codes,
blank, non-ASCII and tab texts, missing, repeated, reordered, unknown and extra blocks and
fields, wrong indicators, bad and future dates, comments, entities, CDATA, CRLF, prefixed
namespaces, the header's form, the Schematron header rules' edge cases.

:func:`observe` is everything a node derives from one document: the verdict and each
issue (line, column, code, path, message), ``describe``, the clock facts and events both
ways, the case ID the receiving node records, and the CSENet line it delivers. Run as a
script to record what the code on ``sys.path`` reports (the expectations were recorded
with the code before the validation fast paths)::

    python tests/documents/differential_corpus.py --record \
        tests/fixtures/validation-differential/expected.json.gz
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "samples"
FIXTURE = HERE.parent / "fixtures" / "validation-differential"
EXPECTED = FIXTURE / "expected.json.gz"
NS = "urn:cse-gateway:interstate:2"
N = f"{{{NS}}}"
BLOCKS = ("Case", "NCPIdentification", "NCPLocate", "Participant", "Order", "Collection",
          "Information")
NOW = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)

Mutation = Callable[[etree._Element, random.Random], bytes | None]


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _fields(root: etree._Element) -> list[etree._Element]:
    return [f for block in root for f in block if isinstance(f.tag, str)]


def _pick(items: list[etree._Element], rng: random.Random) -> etree._Element | None:
    return rng.choice(items) if items else None


def _header(root: etree._Element) -> etree._Element:
    found = root.find(N + "Header")
    assert found is not None
    return found


def _set_text(text: Callable[[str, random.Random], str]) -> Mutation:
    def mutate(root: etree._Element, rng: random.Random) -> bytes | None:
        field = _pick(_fields(root), rng)
        if field is None:
            return None
        field.text = text(field.text or "", rng)
        return _bytes(root)
    return mutate


def _header_field(name: str, value: str | None) -> Mutation:
    def mutate(root: etree._Element, rng: random.Random) -> bytes | None:
        head = _header(root)
        field = head.find(N + name)
        if value is None:
            if field is None:
                return None
            head.remove(field)
        elif field is None:
            etree.SubElement(head, N + name).text = value
        else:
            field.text = value
        return _bytes(root)
    return mutate


def _remove_field(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    field.getparent().remove(field)  # type: ignore[union-attr]
    return _bytes(root)


def _repeat_field(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    field.addnext(copy.deepcopy(field))
    return _bytes(root)


def _swap_fields(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick([f for f in _fields(root) if f.getnext() is not None], rng)
    if field is None:
        return None
    after = field.getnext()
    assert after is not None
    after.addnext(field)
    return _bytes(root)


def _unknown_field(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    field.tag = N + "NotAField"
    return _bytes(root)


def _field_child(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    etree.SubElement(field, N + "Inner").text = "X"
    return _bytes(root)


def _comment_in_block(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    field.addprevious(etree.Comment(" note "))
    return _bytes(root)


def _comment_in_field(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick([f for f in _fields(root) if len(f.text or "") > 1], rng)
    if field is None:
        return None
    text = field.text or ""
    field.text = text[:1]
    comment = etree.Comment("x")
    comment.tail = text[1:]
    field.append(comment)
    return _bytes(root)


def _other_namespace(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    field.tag = "{urn:example:other}" + etree.QName(field).localname
    return _bytes(root)


def _block(action: str) -> Mutation:
    def mutate(root: etree._Element, rng: random.Random) -> bytes | None:
        blocks = [b for b in root if isinstance(b.tag, str) and b.tag != N + "Header"]
        block = _pick(blocks, rng)
        if block is None:
            return None
        if action == "remove":
            root.remove(block)
        elif action == "repeat":
            block.addnext(copy.deepcopy(block))
        elif action == "first":
            root.insert(0, block)
        elif action == "last":
            root.append(copy.deepcopy(blocks[0]))
        elif action == "unknown":
            block.tag = N + "Extra"
        elif action == "empty":
            for child in list(block):
                block.remove(child)
        elif action == "text":
            block.text = "stray"
        return _bytes(root)
    return mutate


def _indicator(root: etree._Element, rng: random.Random) -> bytes | None:
    head = _header(root)
    fields = [f for f in head if isinstance(f.tag, str) and str(f.tag).endswith("Ind")]
    field = _pick(fields, rng)
    if field is None:
        return None
    field.text = rng.choice(["0", "2", "9", "A", " 1", "1 ", "01", "-1", "1.0", "+1", " ",
                             "\t1\n", "1e0", ".5"])
    return _bytes(root)


_READ_TWICE = ("CaseID", "OtherCaseID", "FunctionalTypeCode", "ActionCode", "ActionReason",
               "LocalFIPSState", "LocalFIPSCounty", "LocalFIPSSub", "OtherFIPSState",
               "OtherFIPSCounty", "OtherFIPSSub", "CaseDataInd", "ParticipantDataInd")


def _header_twice(root: etree._Element, rng: random.Random) -> bytes | None:
    """A header field the routing, the clocks or the Schematron read, given twice with
    different values (which one counts?)."""
    head = _header(root)
    field = head.find(N + rng.choice(_READ_TWICE))
    if field is None:
        return None
    second = copy.deepcopy(field)
    text = field.text or ""
    second.text = rng.choice([text[::-1], "0" * len(text), "AB", "1", text + "9"])
    (field.addnext if rng.random() < 0.5 else field.addprevious)(second)
    return _bytes(root)


def _deep(root: etree._Element, rng: random.Random) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    inner = field
    for _ in range(rng.choice([3, 300])):
        inner = etree.SubElement(inner, N + "Deep")
    inner.text = "1"
    return _bytes(root)


def _fips_same(root: etree._Element, rng: random.Random) -> bytes | None:
    head = _header(root)
    local, other = head.find(N + "LocalFIPSState"), head.find(N + "OtherFIPSState")
    if local is None or other is None:
        return None
    other.text = local.text if rng.random() < 0.7 else f" {local.text}"
    return _bytes(root)


def _code(root: etree._Element, rng: random.Random) -> bytes | None:
    head = _header(root)
    name = rng.choice(["FunctionalTypeCode", "ActionCode", "ActionReason"])
    field = head.find(N + name)
    value = rng.choice(["ZZZ", "R", "P", " ENF", "EN F", "", "A|B", "ERARR", "enf"])
    if field is None:
        field = etree.SubElement(head, N + name)
    field.text = value or None
    return _bytes(root)


def _form(root: etree._Element, rng: random.Random) -> bytes | None:
    head = _header(root)
    head.set("form", rng.choice(["from-server", "to-server", "sideways", ""]))
    return _bytes(root)


def _date(root: etree._Element, rng: random.Random) -> bytes | None:
    fields = [f for f in _fields(root) if "Date" in str(f.tag)]
    field = _pick(fields, rng)
    if field is None:
        return None
    field.text = rng.choice(["20260231", "20261301", "99991231", "00000000", "2026-03-0",
                             "19000229", "20000229", "20260230", "20251231", "2026031"])
    return _bytes(root)


def _text_edit(root: etree._Element, rng: random.Random, how: str) -> bytes | None:
    field = _pick(_fields(root), rng)
    if field is None:
        return None
    text = field.text or ""
    field.text = {"longer": text + "9" * rng.randint(1, 5), "shorter": text[:-1] or " ",
                  "blank": " " * max(1, len(text)), "letter": "X" + text[1:],
                  "nonascii": text[:-1] + "\u00e9", "tab": "\t" + text[1:],
                  "padded": " " + text[:-1] if len(text) > 1 else text + " ",
                  "lt": text[:-1] + "<" if text else "<",
                  "amp": text[:-1] + "&" if text else "&",
                  "gt": text[:-1] + ">" if text else ">"}[how]
    return _bytes(root)


def _raw(how: str) -> Mutation:
    """Byte-level variants of the same tree (or nearly): what a hand-written file holds."""
    def mutate(root: etree._Element, rng: random.Random) -> bytes | None:
        data = _bytes(root)
        fields = _fields(root)
        field = _pick(fields, rng)
        if field is None:
            return None
        name = etree.QName(field).localname
        text = field.text or ""
        start = f"<{name}>{text}</{name}>".encode()
        if start not in data:
            return None
        if how == "entity" and text:
            new = f"<{name}>&#{ord(text[0])};{text[1:]}</{name}>".encode()
        elif how == "cdata":
            new = f"<{name}><![CDATA[{text}]]></{name}>".encode()
        elif how == "crlf":
            new = f"<{name}>{text[:1]}\r\n{text[1:]}</{name}>".encode()
        elif how == "pi":
            new = f"<?note here?><{name}>{text}</{name}>".encode()
        elif how == "spaces":
            new = f"<{name} >{text}</{name} >".encode()
        else:
            raise ValueError(how)
        return data.replace(start, new, 1)
    return mutate


def _prefixed(root: etree._Element, rng: random.Random) -> bytes | None:
    data = _bytes(root).decode()
    data = data.replace("<", "<it:").replace("<it:/", "</it:").replace("<it:?", "<?")
    data = data.replace('xmlns="', 'xmlns:it="')
    return data.encode()


def _crlf_lines(root: etree._Element, rng: random.Random) -> bytes | None:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                          pretty_print=True).replace(b"\n", b"\r\n")


def _declared(encoding: str) -> Mutation:
    def mutate(root: etree._Element, rng: random.Random) -> bytes | None:
        return etree.tostring(root, xml_declaration=True, encoding=encoding)
    return mutate


def _bom(root: etree._Element, rng: random.Random) -> bytes | None:
    return b"\xef\xbb\xbf" + _bytes(root)


MUTATIONS: dict[str, Mutation] = {
    "longer": lambda r, g: _text_edit(r, g, "longer"),
    "shorter": lambda r, g: _text_edit(r, g, "shorter"),
    "blank": lambda r, g: _text_edit(r, g, "blank"),
    "letter": lambda r, g: _text_edit(r, g, "letter"),
    "nonascii": lambda r, g: _text_edit(r, g, "nonascii"),
    "tab": lambda r, g: _text_edit(r, g, "tab"),
    "padded": lambda r, g: _text_edit(r, g, "padded"),
    "lt": lambda r, g: _text_edit(r, g, "lt"),
    "amp": lambda r, g: _text_edit(r, g, "amp"),
    "gt": lambda r, g: _text_edit(r, g, "gt"),
    "empty-field": _set_text(lambda t, g: ""),
    "bad-date": _date,
    "remove-field": _remove_field,
    "repeat-field": _repeat_field,
    "swap-fields": _swap_fields,
    "unknown-field": _unknown_field,
    "field-child": _field_child,
    "comment-in-block": _comment_in_block,
    "comment-in-field": _comment_in_field,
    "other-namespace": _other_namespace,
    "remove-block": _block("remove"),
    "repeat-block": _block("repeat"),
    "block-first": _block("first"),
    "block-last": _block("last"),
    "unknown-block": _block("unknown"),
    "empty-block": _block("empty"),
    "block-text": _block("text"),
    "indicator": _indicator,
    "same-state": _fips_same,
    "header-twice": _header_twice,
    "deep": _deep,
    "code": _code,
    "form": _form,
    "no-reason": _header_field("ActionReason", None),
    "no-case-id": _header_field("CaseID", None),
    "no-local-state": _header_field("LocalFIPSState", None),
    "no-local-sub": _header_field("LocalFIPSSub", None),
    "sub-letters": _header_field("LocalFIPSSub", "AB"),
    "case-id-ssn": _header_field("CaseID", "123456789"),
    "case-id-spaced": _header_field("CaseID", "TST 1"),
    "entity": _raw("entity"),
    "cdata": _raw("cdata"),
    "crlf-in-text": _raw("crlf"),
    "pi": _raw("pi"),
    "tag-spaces": _raw("spaces"),
    "prefixed": _prefixed,
    "crlf-lines": _crlf_lines,
    "latin1": _declared("ISO-8859-1"),
    "utf16": _declared("UTF-16"),
    "bom": _bom,
}


def bases() -> Iterator[tuple[str, bytes]]:
    for folder in (SAMPLES / "valid", SAMPLES / "invalid", FIXTURE):
        for path in sorted(folder.glob("*.xml")):
            yield f"{folder.name}/{path.name}", path.read_bytes()


def corpus() -> Iterator[tuple[str, bytes]]:
    """(name, document) for every base document and every mutation of each interstate
    transaction among them (two draws per mutation and base, seeded by the names)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for name, data in bases():
        yield name, data
        if b"<InterstateTransaction" not in data:
            continue
        try:
            tree = etree.fromstring(data, parser).getroottree()
        except etree.XMLSyntaxError:  # a broken base is only itself in the corpus
            continue
        if tree.getroot().tag != N + "InterstateTransaction" or \
                tree.getroot().find(N + "Header") is None:
            continue
        for label, mutate in MUTATIONS.items():
            for draw in range(2):
                seed = int.from_bytes(hashlib.sha256(f"{name}|{label}|{draw}".encode())
                                      .digest()[:8], "big")
                mutant = mutate(copy.deepcopy(tree.getroot()), random.Random(seed))
                if mutant is not None:
                    yield f"{name}~{label}.{draw}", mutant


def _safe(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}


def observe(data: bytes, source: str) -> dict[str, Any]:
    """Everything the nodes derive from one document, as plain data."""
    from gateway.documents.deadlines.facts import facts_from_tree
    from gateway.documents.describe import describe
    from gateway.documents.validate import validate_parsed
    from gateway.node.clocks import ClockKeeper, ClocksConfig, clock_events
    from gateway.node.examine import _case_id, as_received_csenet

    report, tree = validate_parsed(data, source=source)
    out: dict[str, Any] = {
        "valid": report.valid, "root": report.root,
        "issues": [[i.line, i.column, i.code, i.path, i.message] for i in report.issues]}
    if tree is None:
        return out
    keeper = ClockKeeper(ClocksConfig())
    out["describe"] = _safe(lambda: describe(tree).__dict__)

    def facts() -> dict[str, Any] | None:
        found = facts_from_tree(tree, conversation_id="conv-1", ref_to="ref-1")
        return found and found.__dict__

    out["facts"] = _safe(facts)
    out["clock_out"] = _safe(lambda: clock_events(keeper, tree, outbound=True))
    out["clock_in"] = _safe(lambda: clock_events(keeper, tree, outbound=False,
                                                 conversation_id="conv-1"))
    out["case_id"] = _safe(lambda: _case_id(tree))
    if report.valid and report.root == N + "InterstateTransaction":
        out["csenet"] = _safe(lambda: as_received_csenet(tree, NOW, b"\n").decode())
    if report.root == N + "InterstateTransaction":
        out["salvage"] = [_salvaged(tree.getroot(), counts) for counts in (True, False)]
    return json.loads(json.dumps(out, default=str))


def _salvaged(root: etree._Element, check_counts: bool) -> list[Any]:
    """The XML form mapped onto the CSENet layout, without the XSD in front (what
    ``gateway csenet`` conversions and the CSENet delivery read): a digest of the records'
    text, and every issue."""
    from gateway.documents.csenet.xmlform import salvage

    txn, issues = salvage(root, check_counts=check_counts)
    records = None if txn is None else digest("\n".join(
        [txn.header.text] + [block.text for _, _, block in txn.blocks()]).encode())
    return [records, [[i.block, i.field, i.rule, i.message] for i in issues]]


def observe_derived(data: bytes, source: str) -> dict[str, Any] | None:
    """What :func:`observe` gives for ``describe``, the clocks, the case ID and the CSENet
    line, read from the transaction validation mapped the document onto (the daemon's
    path), or None when validation handed none over."""
    from gateway.documents.deadlines.facts import facts_from_transaction
    from gateway.documents.describe import describe_csenet
    from gateway.documents.validate import Derived, validate_parsed
    from gateway.node.clocks import ClockKeeper, ClocksConfig, clock_events
    from gateway.node.examine import _case_id, as_received_csenet

    derived = Derived()
    report, tree = validate_parsed(data, source=source, derived=derived)
    txn = derived.csenet
    if txn is None or tree is None:
        return None
    keeper = ClockKeeper(ClocksConfig())
    out: dict[str, Any] = {
        "describe": describe_csenet(txn).__dict__,
        "facts": facts_from_transaction(txn, conversation_id="conv-1",
                                        ref_to="ref-1").__dict__,
        "clock_out": clock_events(keeper, tree, outbound=True, transaction=txn),
        "clock_in": clock_events(keeper, tree, outbound=False, conversation_id="conv-1",
                                 transaction=txn),
        "case_id": _case_id(tree, txn)}
    if report.valid:
        out["csenet"] = as_received_csenet(tree, NOW, b"\n", transaction=txn).decode()
    return json.loads(json.dumps(out, default=str))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def record(path: Path) -> int:
    items = {name: {"input": digest(data), "seen": observe(data, name)}
             for name, data in corpus()}
    text = json.dumps(items, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(gzip.compress(text, mtime=0))
    return len(items)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--record"] or len(sys.argv) != 3:
        sys.exit("usage: differential_corpus.py --record OUT.json.gz")
    import gateway
    print("recording with", Path(gateway.__file__).parent)
    print(record(Path(sys.argv[2])), "documents")
