"""Validate documents: bytes in, a :class:`Report` out (pure: no clock, no network).

Bad input never raises: malformed, hostile, oversized, unknown or invalid documents all
become issues in the report. Only usage and configuration errors (a schema that cannot be
read or compiled) raise :class:`~gateway.errors.GatewayError` subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.documents.issues import Issue, element_position, readable_path
from gateway.documents.schemas import SchemaRegistry, default_registry, load_schema
from gateway.documents.schematron import Derived
from gateway.documents.xmlsafe import DEFAULT_MAX_BYTES, parse_xml
from gateway.errors import FileUnreadable, TooLarge, UnknownDocumentType, XmlError

__all__ = ["Derived", "Report", "validate_bytes", "validate_file", "validate_parsed"]


@dataclass(frozen=True)
class Report:
    """The outcome for one document: ``root`` is the root element in Clark notation
    (``{urn:cse-gateway:interstate:2}InterstateTransaction``) when it could be parsed."""

    source: str
    valid: bool
    issues: tuple[Issue, ...]
    root: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "valid": self.valid,
                "errors": [issue.to_dict() for issue in self.issues]}


def _report(source: str, issues: list[Issue], root: str | None) -> Report:
    return Report(source, not issues, tuple(issues), root)


def validate_bytes(
    data: bytes,
    *,
    source: str,
    registry: SchemaRegistry | None = None,
    schema: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Report:
    """Parse ``data`` with the hardened parser and validate it: against ``schema`` (an
    entry XSD, plus its sibling ``.sch`` if any) when given, else against the schema the
    registry (default: the shipped one) finds for the root element."""
    return validate_parsed(data, source=source, registry=registry, schema=schema,
                           max_bytes=max_bytes)[0]


def validate_parsed(
    data: bytes,
    *,
    source: str,
    registry: SchemaRegistry | None = None,
    schema: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    derived: Derived | None = None,
) -> tuple[Report, etree._ElementTree | None]:
    """:func:`validate_bytes`, also handing back the parsed tree (None when the bytes did
    not parse), so a caller that reads the document next (the daemon's ``describe``) does
    not parse it a second time. Read the tree only when the report is valid. ``derived``
    receives what the rules worked out on the way (the CSENet transaction of an
    ``InterstateTransaction``, which ``describe_csenet``, the clock facts and the CSENet
    delivery read instead of mapping the tree again); read it only when the report is
    valid too."""
    compiled = load_schema(schema) if schema is not None else None  # ConfigError: exit 2
    try:
        # huge_text: an EDE document carries a multi-MB PDF in one text node; the byte
        # limit and the DOCTYPE refusal still apply.
        tree = parse_xml(data, max_bytes=max_bytes, source=source, huge_text=True)
    except XmlError as exc:
        return _report(source, [Issue(exc.line, exc.column, exc.code, "", exc.message)],
                       None), None
    root_element = tree.getroot()
    root = str(root_element.tag)
    if compiled is None:
        try:
            compiled = (registry or default_registry()).schema_for(tree)
        except UnknownDocumentType as exc:
            line, column = element_position(tree, data)(root_element)
            issue = Issue(line, column, exc.code, readable_path(root_element), exc.message)
            return _report(source, [issue], root), tree
    return _report(source, compiled.issues(tree, data=data, derived=derived), root), tree


def validate_file(
    path: Path,
    *,
    registry: SchemaRegistry | None = None,
    schema: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Report:
    """:func:`validate_bytes` on a file; a missing or unreadable file is an issue too."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return _report(source, [Issue(None, None, TooLarge.code, "",
                                          f"file is {size} bytes, over the limit of "
                                          f"{max_bytes}")], None)
        data = path.read_bytes()
    except FileNotFoundError:
        return _report(source, [Issue(None, None, FileUnreadable.code, "",
                                      "file not found")], None)
    except IsADirectoryError:
        return _report(source, [Issue(None, None, FileUnreadable.code, "",
                                      "is a directory, not a file")], None)
    except OSError as exc:
        return _report(source, [Issue(None, None, FileUnreadable.code, "",
                                      f"cannot read the file ({exc.strerror})")], None)
    return validate_bytes(data, source=source, registry=registry, schema=schema,
                          max_bytes=max_bytes)

