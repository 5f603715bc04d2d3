"""Validation issues: stable codes, readable element paths, messages without values.

libxml2 reports schema errors with positional paths (``/*/*[2]/*[6]``) and messages that
quote the offending value (``The value '987654320' is not accepted...``). This module turns
each into an :class:`Issue`: the element's readable path (local names, ``[n]`` only where
same-named siblings repeat, ``/@attr`` for an attribute), a stable code by error kind, and a
message rewritten from the parts that come from the schema (facets, expected elements,
type names), never from the document.

Codes: SchemaPattern, SchemaEnumeration, SchemaLength, SchemaRange, SchemaDigits,
SchemaType, SchemaFixed, SchemaMissingElement, SchemaUnexpectedElement,
SchemaMissingAttribute, SchemaUnexpectedAttribute, SchemaContent, SchemaIdentity,
SchemaUnknownRoot, SchemaInvalid (anything else); rules add Rule.<id>.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import xmlschema
from lxml import etree

__all__ = ["Issue", "complete_issues", "element_position", "lxml_issues", "readable_path"]

log = logging.getLogger("gateway.documents.schemas")


@dataclass(frozen=True)
class Issue:
    """One validation error: where (line, column, readable path), a stable code, a message."""

    line: int | None
    column: int | None
    code: str
    path: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "code": self.code,
                "path": self.path, "message": self.message}


# --- paths ------------------------------------------------------------------------------


def readable_path(element: etree._Element, attribute: str | None = None) -> str:
    """``/Root/Child[2]/Leaf``: local names; an index only where same-named siblings repeat."""
    parts: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        tag = node.tag
        name = etree.QName(node).localname if isinstance(tag, str) else "?"
        parent = node.getparent()
        if parent is not None and isinstance(tag, str):
            same = list(parent.iterchildren(tag))
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    path = "/" + "/".join(reversed(parts))
    return f"{path}/@{attribute}" if attribute else path


_STEP = re.compile(r"^(?:(?P<prefix>[^:\[\]]+):)?(?P<name>[^\[\]]+)(?:\[(?P<index>\d+)\])?$")


def _resolve(tree: etree._ElementTree, path: str) -> etree._Element | None:
    """The element a libxml2 error path (``/*/ds:Sig/*[2]``) points at, walked by hand."""
    if not path.startswith("/"):
        return None
    node: etree._Element | None = None
    for step in path.strip("/").split("/"):
        match = _STEP.match(step)
        if match is None or step.startswith("@"):
            break
        name, index = match.group("name"), int(match.group("index") or 1)
        candidates = [tree.getroot()] if node is None else [
            c for c in node.iterchildren() if isinstance(c.tag, str)]
        if name != "*":
            candidates = [c for c in candidates if etree.QName(c).localname == name]
        if len(candidates) < index:
            return node
        node = candidates[index - 1]
    return node


_START_TAG = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<([^\s/!?<>])", re.S)


def element_position(
    tree: etree._ElementTree, data: bytes | None
) -> Callable[[etree._Element], tuple[int | None, int | None]]:
    """A function giving an element's (line, column) of its start tag.

    The line is libxml2's ``sourceline``; the column is found by matching the n-th start tag
    in ``data`` to the n-th element in document order (no DTD or entities are ever
    expanded, so the two orders agree). Without ASCII-compatible ``data`` the column is 0
    (libxml2 gives none for validity errors). Computed lazily: only for invalid documents.
    """
    offsets: list[int] | None = None
    index: dict[etree._Element, int] | None = None
    usable = data is not None and not data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00"))

    def position(element: etree._Element) -> tuple[int | None, int | None]:
        nonlocal offsets, index
        line = cast("int | None", element.sourceline)
        if not usable or data is None:
            return line, 0
        if offsets is None:
            offsets = [m.start() for m in _START_TAG.finditer(data) if m.group(1)]
            index = {e: i for i, e in enumerate(tree.getroot().iter(etree.Element))}
        i = index.get(element) if index is not None else None
        if i is None or i >= len(offsets):
            return line, 0
        offset = offsets[i]
        start = data.rfind(b"\n", 0, offset) + 1
        if start == 0 and data.startswith(b"\xef\xbb\xbf"):
            start = 3  # a UTF-8 byte order mark is not a column
        column = len(data[start:offset].decode("utf-8", errors="replace")) + 1
        actual_line = data.count(b"\n", 0, offset) + 1
        return (line if line is not None else actual_line), column

    return position


# --- messages ---------------------------------------------------------------------------

_PREFIX = re.compile(r"^Element '(?P<el>[^']*)'(?:, attribute '(?P<attr>[^']*)')?: ")
_FACET = re.compile(r"\[facet '(?P<facet>\w+)'\]")
_TYPE = re.compile(r"of the (?:local )?(?:atomic|list|union) type(?: '(?P<type>[^']*)')?")
_EXPECTED = re.compile(r"Expected is (?:one of )?\( (?P<list>.*?) \)")
_QUOTED_LIST = re.compile(r"\{(?P<set>'.*')\}")
_NUMBER_IN = re.compile(r"'(\d+)'")
_ATTRIBUTE = re.compile(r"The attribute '(?P<attr>[^']*)'")


def _local(qname: str) -> str:
    return qname.rsplit("}", 1)[-1]


def _names(listing: str) -> str:
    names = [_local(n.strip()) for n in listing.split(",")]
    return ", ".join(n for n in names if n)


def _type_name(text: str) -> str | None:
    match = _TYPE.search(text)
    if match is None:
        return None
    name = match.group("type")
    return _local(name) if name else "its local type"


def _translate(body: str) -> tuple[str, str]:
    """(code, value-free message) for one libxml2 message body."""
    facet = _FACET.search(body)
    if facet:
        kind = facet.group("facet")
        numbers = _NUMBER_IN.findall(body)
        if kind == "pattern":
            return "SchemaPattern", "value does not match the required pattern"
        if kind == "enumeration":
            listing = _QUOTED_LIST.search(body)
            values = re.findall(r"'([^']*)'", listing.group("set")) if listing else []
            if values and len(values) <= 12:
                return "SchemaEnumeration", "value is not one of the allowed codes: " + \
                    ", ".join(values)
            return "SchemaEnumeration", f"value is not one of the {len(values)} allowed codes"
        if kind in ("length", "minLength", "maxLength"):
            limit = numbers[-1] if numbers else "?"
            got = numbers[0] if len(numbers) > 1 else "?"
            word = {"length": "exactly", "minLength": "at least", "maxLength": "at most"}[kind]
            return "SchemaLength", f"value has {got} character(s); {word} {limit} required"
        if kind in ("minInclusive", "maxInclusive", "minExclusive", "maxExclusive"):
            limit = re.search(r"\('([^']*)'\)", body)
            bound = limit.group(1) if limit else "?"
            relation = {"minInclusive": "at least", "maxInclusive": "at most",
                        "minExclusive": "more than", "maxExclusive": "less than"}[kind]
            return "SchemaRange", f"value must be {relation} {bound}"
        if kind in ("fractionDigits", "totalDigits"):
            limit = re.search(r"\('([^']*)'\)", body)
            what = "fraction digits" if kind == "fractionDigits" else "digits in total"
            return "SchemaDigits", f"value has more {what} than allowed " \
                f"({limit.group(1) if limit else '?'})"
        return "SchemaInvalid", f"value violates the {kind} facet"
    if "Missing child element" in body:
        expected = _EXPECTED.search(body)
        return "SchemaMissingElement", "missing child element; expected: " + \
            (_names(expected.group("list")) if expected else "?")
    if "This element is not expected" in body:
        expected = _EXPECTED.search(body)
        if expected:
            return "SchemaUnexpectedElement", \
                "element not expected here; expected: " + _names(expected.group("list"))
        return "SchemaUnexpectedElement", "element not expected here"
    if "is not allowed" in body and "attribute" in body:
        attr = _ATTRIBUTE.search(body)
        return "SchemaUnexpectedAttribute", \
            f"attribute {attr.group('attr') if attr else '?'} is not allowed"
    if "is required but missing" in body:
        attr = _ATTRIBUTE.search(body)
        return "SchemaMissingAttribute", \
            f"required attribute {attr.group('attr') if attr else '?'} is missing"
    if "No matching global declaration" in body:
        return "SchemaUnknownRoot", "the schema declares no such root element"
    if "fixed value constraint" in body:
        fixed = re.search(r"constraint '([^']*)'", body)
        return "SchemaFixed", f"value must be {fixed.group(1) if fixed else 'the fixed value'}"
    if "Character content" in body or "Element content is not allowed" in body \
            or "content type is" in body:
        return "SchemaContent", "content not allowed here: " + \
            ("text" if "Character" in body else "child elements")
    if "key-sequence" in body or ("key" in body and "identity" in body):
        return "SchemaIdentity", "identity constraint violated (duplicate or unknown key)"
    type_name = _type_name(body)
    if type_name is not None:
        return "SchemaType", f"value is not a valid {type_name}"
    return "SchemaInvalid", re.sub(r"'[^']*'", "'…'", body).rstrip(".")


def lxml_issues(
    tree: etree._ElementTree,
    entries: Sequence[Any],
    positions: Callable[[etree._Element], tuple[int | None, int | None]],
) -> list[Issue]:
    """Turn libxml2 error-log entries into issues; a facet error and the type error libxml2
    adds after it for the same value become one issue naming the type."""
    out: list[Issue] = []
    previous: tuple[str, str] | None = None  # (path, code) of the last facet issue
    for entry in entries:
        text = str(entry.message or "")
        prefix = _PREFIX.match(text)
        body = text[prefix.end():] if prefix else text
        attribute = prefix.group("attr") if prefix else None
        element = _resolve(tree, str(entry.path or ""))
        code, message = _translate(body)
        path = readable_path(element, attribute) if element is not None else ""
        if code == "SchemaType" and previous == (path, "facet") and out:
            last = out[-1]
            type_name = _type_name(body)
            out[-1] = Issue(last.line, last.column, last.code, last.path,
                            f"{last.message} (type {type_name})")
            previous = None
            continue
        if element is not None:
            line, column = positions(element)
        else:
            line, column = entry.line, entry.column
        out.append(Issue(line, column, code, path, message))
        previous = (path, "facet") if _FACET.search(body) else None
    return out


# --- completing libxml2's report with xmlschema (slow path, invalid documents only) ------

_xmlschema_cache: dict[Path, Any] = {}
_xmlschema_lock = threading.Lock()


def _xmlschema(path: Path) -> Any:
    with _xmlschema_lock:
        schema = _xmlschema_cache.get(path)
        if schema is None:
            # allow="local": imports never leave the local file system; defuse: no DTDs.
            schema = xmlschema.XMLSchema(str(path), allow="local", defuse="always")
            _xmlschema_cache[path] = schema
        return schema


def _xmlschema_translate(error: Any) -> tuple[str, str]:
    validator = type(getattr(error, "validator", None)).__name__
    if "Pattern" in validator:
        return "SchemaPattern", "value does not match the required pattern"
    if "Enumeration" in validator:
        values = [str(v) for v in getattr(error.validator, "enumeration", [])]
        if values and len(values) <= 12:
            return "SchemaEnumeration", "value is not one of the allowed codes: " + \
                ", ".join(values)
        return "SchemaEnumeration", f"value is not one of the {len(values)} allowed codes"
    if "Length" in validator:
        return "SchemaLength", "value length is outside the allowed range"
    if "Inclusive" in validator or "Exclusive" in validator:
        return "SchemaRange", "value is outside the allowed range"
    if "Digits" in validator:
        return "SchemaDigits", "value has more digits than allowed"
    return "SchemaType", "value is not valid for its type"


def complete_issues(
    path: Path,
    tree: etree._ElementTree,
    found: Sequence[Issue],
    positions: Callable[[etree._Element], tuple[int | None, int | None]],
) -> list[Issue]:
    """Value errors xmlschema finds on elements libxml2 did not report on."""
    try:
        schema = _xmlschema(path)
        errors = list(schema.iter_errors(tree))
    except (xmlschema.XMLSchemaException, OSError, ValueError) as exc:
        log.warning("could not complete the error report with xmlschema: %s",
                    type(exc).__name__)
        return []
    seen = {issue.path for issue in found}
    out: list[Issue] = []
    for error in errors:
        if isinstance(error, xmlschema.XMLSchemaChildrenValidationError):
            continue  # content-model errors: libxml2 already reported them
        element = getattr(error, "elem", None)
        if not isinstance(element, etree._Element):
            continue
        attribute = None
        reason = str(getattr(error, "reason", "") or "")
        match = re.match(r"attribute (\S+?)=", reason)
        if match:
            attribute = _local(match.group(1))
        where = readable_path(element, attribute)
        if where in seen:
            continue
        seen.add(where)
        code, message = _xmlschema_translate(error)
        line, column = positions(element)
        out.append(Issue(line, column, code, where, message))
    return out
