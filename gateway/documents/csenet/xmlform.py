"""The XML form of a CSENet 2000 transaction (``urn:cse-gateway:interstate:2``): one
element per IGD field, in IGD order, holding the field's wire text, so CSENet -> XML ->
CSENet is byte-identical.

- The root ``InterstateTransaction`` (``version="2"``) holds ``Header`` and the data blocks
  (``Case``, ``NCPIdentification``, ``NCPLocate``, ``Participant``\\*, ``Order``\\*,
  ``Collection``\\*, ``Information``) in IGD order.
- ``Header`` has ``form="from-server"`` for the 121-byte header a state receives; without
  it, it is the 127-byte header a state sends.
- A field's element is named from its IGD name (:func:`element_name`:
  ``Transaction-Serial-Number`` -> ``TransactionSerialNumber``). A blank field has no
  element. A numeric field's element holds its digits exactly as on the wire (zero-filled
  to the wire length: dates ``CCYYMMDD``, money in cents); an alphanumeric field's element
  holds its text without the trailing blanks that pad it.

The XSD (``xsd/interstate/interstate.xsd``) declares exactly these elements; a test checks
it against the layout.
"""

from __future__ import annotations

import functools
import re

from lxml import etree

from gateway.documents.csenet.issues import CsenetIssue
from gateway.documents.csenet.layout import BLOCK_RECORDS, FieldSpec, RecordSpec, record_spec
from gateway.documents.csenet.records import (
    BLOCK_CLASSES,
    Header,
    HeaderFromServer,
    HeaderToServer,
    Record,
    Transaction,
)
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import CsenetInvalid

__all__ = ["BLOCK_ELEMENTS", "INTERSTATE_NS", "element_name", "from_xml", "salvage",
           "to_xml", "to_xml_tree"]

INTERSTATE_NS = "urn:cse-gateway:interstate:2"
_NS = f"{{{INTERSTATE_NS}}}"
BLOCK_ELEMENTS = {"case": "Case", "ncp-identification": "NCPIdentification",
                  "ncp-locate": "NCPLocate", "participant": "Participant", "order": "Order",
                  "collection": "Collection", "information": "Information"}
# qualified block element tag -> (record name, its place in the IGD order)
_BLOCK_TAGS = {_NS + BLOCK_ELEMENTS[name]: (name, position)
               for position, (name, _, _) in enumerate(BLOCK_RECORDS)}


@functools.lru_cache(maxsize=2048)
def element_name(key: str) -> str:
    """The XML element for a field key: each hyphen-separated part capitalised, parts in
    capitals (FIPS, NCP, SSN, ...) kept (``Mother-s-Maiden-Or-Father-s-Name`` ->
    ``MothersMaidenOrFathersName``)."""
    parts = key.split("-")
    out = []
    for part in parts:
        if len(part) == 1 and part.islower():
            out.append(part)            # the "s" of an apostrophe
        elif part.isupper() or part == "CSENet":
            out.append(part)
        else:
            out.append(part[0].upper() + part[1:])
    name = "".join(out)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name):
        raise ValueError(f"field key {key} gives no element name")
    return name


def _fill(parent: etree._Element, record: Record) -> None:
    for spec, text in record.items():
        if not text.strip():
            continue
        child = etree.SubElement(parent, _NS + element_name(spec.key))
        child.text = text if spec.numeric else text.rstrip(" ")


def to_xml_tree(txn: Transaction) -> etree._Element:
    """The transaction as an ``InterstateTransaction`` element."""
    root = etree.Element(_NS + "InterstateTransaction",
                         nsmap={None: INTERSTATE_NS})  # type: ignore[dict-item]
    root.set("version", "2")
    header = etree.SubElement(root, _NS + "Header")
    if isinstance(txn.header, HeaderFromServer):
        header.set("form", "from-server")
    _fill(header, txn.header)
    for name, _, block in txn.blocks():
        _fill(etree.SubElement(root, _NS + BLOCK_ELEMENTS[name]), block)
    return root


def to_xml(txn: Transaction) -> bytes:
    """The transaction as an XML document (UTF-8, indented)."""
    return etree.tostring(to_xml_tree(txn), xml_declaration=True, encoding="UTF-8",
                          pretty_print=True)


def _issue(block: str, field: str, message: str) -> CsenetIssue:
    return CsenetIssue(1, block, field, None, "xml.form", message)


_PRINTABLE = bytes(range(0x20, 0x7F))
_ELEMENTS: dict[str, dict[str, tuple[int, FieldSpec]]] = {}
# record name -> qualified element tag -> (position in the record, 0-based offset, fewest
# and most characters its element may hold): what _fast_record reads
_FAST: dict[str, dict[str, tuple[int, int, int, int]]] = {}


def _elements(spec: RecordSpec) -> dict[str, tuple[int, FieldSpec]]:
    """Qualified element tag -> (position in the record, field) for ``spec``; built once
    per record layout (every validated transaction reads it), keyed by the record's name.
    The layouts' fields follow each other without overlap, which :func:`_walk_record` and
    :func:`_fast_record` use."""
    index = _ELEMENTS.get(spec.name)
    if index is None:
        if any(a.offset + a.length > b.offset for a, b in zip(spec.fields, spec.fields[1:],
                                                                strict=False)):
            raise ValueError(f"the {spec.name} layout's fields are not in column order")
        index = {_NS + element_name(f.key): (i, f) for i, f in enumerate(spec.fields)}
        # _FAST first: a thread that finds the record in _ELEMENTS finds it in _FAST too
        _FAST[spec.name] = {tag: (i, f.offset, f.length if f.numeric else 1, f.length)
                            for tag, (i, f) in index.items()}
        _ELEMENTS[spec.name] = index
    return index


def _fast_record(element: etree._Element, spec: RecordSpec) -> str | None:
    """The record an element renders when nothing about it needs a word (every child a
    field of the layout, in order, once, holding printable ASCII that is not blank, of its
    field's width or less, exactly its width when numeric, and no elements); else ``None``
    and :func:`_walk_record` says what is wrong. Each condition is one :func:`_walk_record`
    checks, so the text is the one it would build."""
    by_tag = _FAST.get(spec.name)
    if by_tag is None:
        _elements(spec)
        by_tag = _FAST[spec.name]
    pieces: list[str] = []
    append = pieces.append
    end = 0  # the column after the last text written
    last = -1
    for child in element:
        found = by_tag.get(child.tag)
        if found is None:
            return None
        index, offset, fewest, most = found
        text = child.text
        if index <= last or text is None:
            return None
        size = len(text)
        if not fewest <= size <= most or text.isspace() or len(child):
            return None
        last = index
        if offset != end:
            append(" " * (offset - end))
        append(text)
        end = offset + size
    append(" " * (spec.length - end))
    record = "".join(pieces)
    # printable ASCII throughout (so "not blank" above meant "not only spaces"): for ASCII
    # text that is isprintable(), but deleting the printable bytes is several times faster
    if record.isascii() and not record.encode("ascii").translate(None, _PRINTABLE):
        return record
    return None


def _record(element: etree._Element, spec: RecordSpec, label: str,
            issues: list[CsenetIssue]) -> str:
    """The record an element renders; what keeps a field from mapping goes to ``issues``
    (the field is left blank)."""
    fast = _fast_record(element, spec)
    return fast if fast is not None else _walk_record(element, spec, label, issues)


def _walk_record(element: etree._Element, spec: RecordSpec, label: str,
                 issues: list[CsenetIssue]) -> str:
    """:func:`_record` child by child, saying what is wrong with each."""
    by_tag = _elements(spec)
    pieces: list[str] = []
    end = 0  # the column after the last field written
    last = -1
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # comments and processing instructions carry nothing
        found = by_tag.get(tag)
        if found is None:
            issues.append(_issue(label, etree.QName(child).localname,
                                 "not a field of this block"))
            continue
        index, fspec = found
        if index <= last:
            issues.append(_issue(label, fspec.name, "out of IGD order or repeated"))
            continue
        last = index
        text = child.text or ""
        if len(child):
            issues.append(_issue(label, fspec.name, "a field holds text, not elements"))
            continue
        if not text.isascii() or not text.isprintable():
            issues.append(_issue(label, fspec.name, "printable ASCII only"))
            continue
        if fspec.numeric and len(text) != fspec.length:
            issues.append(_issue(label, fspec.name,
                                 f"a numeric field holds exactly {fspec.length} characters"))
            continue
        if len(text) > fspec.length or not text.strip():
            issues.append(_issue(label, fspec.name,
                                 f"1 to {fspec.length} characters (omit a blank field)"))
            continue
        pieces.append(" " * (fspec.offset - end))
        pieces.append(text.ljust(fspec.length))
        end = fspec.offset + fspec.length
    pieces.append(" " * (spec.length - end))
    return "".join(pieces)


def from_xml(document: bytes | etree._Element | etree._ElementTree, *,
             source: str | None = None) -> Transaction:
    """A transaction from its XML form; :class:`~gateway.errors.CsenetInvalid` (issues
    naming the block and field, never a value) when the XML does not map onto the layout.
    Bytes are parsed with the hardened parser."""
    if isinstance(document, bytes):
        document = parse_xml(document, source=source)
    root = document.getroot() if isinstance(document, etree._ElementTree) else document
    if root.tag != _NS + "InterstateTransaction":
        raise CsenetInvalid("not an InterstateTransaction of " + INTERSTATE_NS, where=source)
    txn, issues = salvage(root)
    if issues or txn is None:
        raise CsenetInvalid("the XML does not map onto a CSENet transaction", where=source,
                            issues=issues)
    return txn


def salvage(root: etree._Element, *, check_counts: bool = True,
            ) -> tuple[Transaction | None, list[CsenetIssue]]:
    """The transaction an ``InterstateTransaction`` element renders, as far as it maps onto
    the layout, and every way it does not (a field that does not fit is left blank). With
    ``check_counts=False`` the header's indicators stay as written even when they do not
    match the blocks (the Schematron rules report that). ``None`` without a Header."""
    issues: list[CsenetIssue] = []
    children = [c for c in root if isinstance(c.tag, str)]
    if not children or children[0].tag != _NS + "Header":
        return None, [_issue("header", "-", "Header comes first")]
    head = children[0]
    form = head.get("form", "to-server")
    header_cls: type[Header] = HeaderFromServer if form == "from-server" else HeaderToServer
    if form not in ("to-server", "from-server"):
        issues.append(_issue("header", "-", "form is to-server or from-server"))
    header = header_cls(_record(head, header_cls.spec(), "header", issues))
    found: dict[str, list[Record]] = {}
    last = -1
    for child in children[1:]:
        known = _BLOCK_TAGS.get(child.tag)
        if known is None:
            issues.append(_issue(etree.QName(child).localname, "-", "not a data block"))
            continue
        name, position = known
        if position < last:
            issues.append(_issue(name, "-", "data blocks follow the IGD order"))
        last = position
        cls = BLOCK_CLASSES[name]
        spec = cls.spec()
        same = found.setdefault(name, [])
        text = _fast_record(child, spec)
        if text is None:
            many = name in ("participant", "order", "collection")
            label = f"{name} {len(same) + 1}" if many else name
            text = _walk_record(child, spec, label, issues)
        same.append(cls(text))
    try:
        counts = header.counts()
    except ValueError:
        counts = None
        issues.append(_issue("header", "-", "every block indicator is one digit"))
    if counts is not None and check_counts:
        for (name, indicator, _), count in zip(BLOCK_RECORDS, counts, strict=True):
            if count != len(found.get(name, ())):
                issues.append(_issue("header", record_spec(header.RECORD).field(indicator).name,
                                     f"the indicator does not match the {name} blocks given"))

    def one(name: str) -> Record | None:
        got = found.get(name)
        return got[0] if got else None

    return Transaction(
        header, one("case"), one("ncp-identification"), one("ncp-locate"),  # type: ignore[arg-type]
        tuple(found.get("participant", ())), tuple(found.get("order", ())),  # type: ignore[arg-type]
        tuple(found.get("collection", ())), one("information")), issues  # type: ignore[arg-type]
