"""Schema registry: which XSD validates a document, chosen by its root namespace and name.

Every ``*.xsd`` under the registry's roots is indexed by its target namespace and global
element names; a document is validated by the schema file that declares its root. Schemas
are compiled once and cached. Schema files are read through the hardened parser, and
imports/includes resolve from local files only.

(Minimal first version; the validation issue grows it: readable paths, Schematron,
operator-registered schema sets.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lxml import etree

from gateway.errors import ConfigError, SchemaInvalid, UnknownDocumentType
from gateway.resources import xsd_root
from gateway.xmlsafe import parse_xml

__all__ = ["Issue", "SchemaRegistry", "default_registry", "load_xsd"]

XS = "http://www.w3.org/2001/XMLSchema"


@dataclass(frozen=True)
class Issue:
    """One validation error: where (line, column, readable path), a stable code, a message."""

    line: int | None
    column: int | None
    code: str
    path: str
    message: str


_lock = threading.Lock()


@cache
def _compile(path: Path) -> etree.XMLSchema:
    tree = parse_xml(path.read_bytes(), source=str(path), base_url=str(path))
    try:
        return etree.XMLSchema(tree)
    except etree.XMLSchemaParseError as exc:
        raise ConfigError(f"schema cannot be compiled: {exc}", where=str(path)) from None


def load_xsd(path: Path) -> etree.XMLSchema:
    """The compiled schema for the XSD file at ``path`` (cached per path)."""
    with _lock:
        return _compile(path.resolve())


class SchemaRegistry:
    """Maps ``(namespace, local name)`` of a root element to the XSD that declares it."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self._index: dict[tuple[str, str], Path] = {}
        for root in roots:
            for xsd in sorted(Path(root).rglob("*.xsd")):
                self._add(xsd)

    def _add(self, xsd: Path) -> None:
        tree = parse_xml(xsd.read_bytes(), source=str(xsd))
        top = tree.getroot()
        namespace = top.get("targetNamespace", "")
        for element in top.iterfind(f"{{{XS}}}element"):
            name = element.get("name")
            if name:
                self._index.setdefault((namespace, name), xsd)

    def schema_path(self, namespace: str, name: str) -> Path:
        try:
            return self._index[(namespace, name)]
        except KeyError:
            raise UnknownDocumentType(
                f"no schema is registered for {{{namespace}}}{name}"
            ) from None

    def check(self, tree: etree._ElementTree, *, source: str | None = None) -> None:
        """Raise :class:`SchemaInvalid` (with every issue) unless ``tree`` is valid."""
        qname = etree.QName(tree.getroot())
        schema = load_xsd(self.schema_path(qname.namespace or "", qname.localname))
        if schema.validate(tree):
            return
        issues = [
            Issue(e.line, e.column, "SchemaInvalid", e.path or "", e.message)
            for e in schema.error_log  # type: ignore[attr-defined]
        ]
        raise SchemaInvalid(
            f"{len(issues)} schema error(s)", issues=issues, where=source
        )


@cache
def default_registry() -> SchemaRegistry:
    """The registry of the schemas shipped in ``xsd/``."""
    return SchemaRegistry([xsd_root()])
