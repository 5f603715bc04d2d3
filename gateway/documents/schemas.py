"""Schema registry: which XSD (and rules) validate a document, chosen by its root element.

Every ``*.xsd`` under the registry's roots is indexed by its target namespace and global
element names; a document is validated by the schema file that declares its root, then by
the Schematron rules next to it (``foo.sch``, see :mod:`gateway.documents.schematron`).
Operators add schema sets (a directory and its entry XSD) with :meth:`SchemaRegistry.add_set`.

Schemas are compiled once and cached. Schema files (and everything they import or include)
are read through the hardened parser; imports resolve from local files only: a network
``schemaLocation`` is refused with a :class:`~gateway.errors.ConfigError`.

Issues are value-free: libxml2's messages quote the offending value, so every message is
rewritten (:mod:`gateway.documents.issues`); paths are readable (``/InterstateTransaction/
Participant[2]/SSN``) and columns point at the element's start tag when the source bytes
are known.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlparse

from lxml import etree

from gateway.documents.issues import (
    Issue,
    complete_issues,
    element_position,
    lxml_issues,
    readable_path,
)
from gateway.documents.schematron import (
    PYTHON_RULES,
    Derived,
    RuleFailure,
    RuleSet,
    load_rules,
)
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import ConfigError, SchemaInvalid, UnknownDocumentType, XmlError
from gateway.resources import xsd_root

__all__ = [
    "CompiledSchema",
    "Issue",
    "SchemaRegistry",
    "SchemaSet",
    "default_registry",
    "load_schema",
    "load_xsd",
    "registry_with_sets",
]

log = logging.getLogger("gateway.documents.schemas")

XS = "http://www.w3.org/2001/XMLSchema"
SCHEMA_MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class SchemaSet:
    """An operator-registered schema set: a directory and its entry XSD (relative to it)."""

    directory: Path
    entry: Path

    @property
    def entry_path(self) -> Path:
        return self.entry if self.entry.is_absolute() else self.directory / self.entry


class _LocalOnly(etree.Resolver):
    """Resolves schema imports/includes from local files only, through the hardened checks."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []
        self.failed: list[str] = []

    def resolve(self, system_url: str | None, public_id: str | None,  # type: ignore[override]
                context: object) -> object:
        url = system_url or ""
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file") or (parsed.scheme == "file" and parsed.netloc
                                                 not in ("", "localhost")):
            self.refused.append(url)
            # An empty schema: compiling then fails or lacks the types; the caller reports
            # the refused location, which is the real cause.
            return self.resolve_string(f'<xs:schema xmlns:xs="{XS}"/>', context, base_url=None)
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else url)
        try:
            data = path.read_bytes()
            parse_xml(data, max_bytes=SCHEMA_MAX_BYTES, source=str(path))
        except (OSError, XmlError):
            self.failed.append(str(path))
            return self.resolve_string(f'<xs:schema xmlns:xs="{XS}"/>', context, base_url=None)
        return self.resolve_string(data, context, base_url=str(path))


def _compile_xsd(path: Path) -> etree.XMLSchema:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"schema cannot be read ({exc.strerror})", where=str(path)) from None
    resolver = _LocalOnly()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    parser.resolvers.add(resolver)
    try:
        parse_xml(data, max_bytes=SCHEMA_MAX_BYTES, source=str(path))  # the hardened checks
        tree = etree.fromstring(data, parser, base_url=str(path)).getroottree()
    except XmlError as exc:
        raise ConfigError(f"schema is not acceptable XML: {exc.message}",
                          where=str(path)) from None
    except etree.XMLSyntaxError:  # pragma: no cover - parse_xml already refused it
        raise ConfigError("schema is not well-formed XML", where=str(path)) from None
    error: str | None = None
    try:
        schema = etree.XMLSchema(tree)
    except etree.XMLSchemaParseError as exc:
        error = str(exc)
    if resolver.refused:
        raise ConfigError(
            "schema imports must be local files; refused network location(s): "
            + ", ".join(sorted(set(resolver.refused))),
            where=str(path),
        )
    if resolver.failed:
        raise ConfigError(
            "schema imports/includes cannot be read or are not acceptable XML: "
            + ", ".join(sorted(set(resolver.failed))),
            where=str(path),
        )
    if error is not None:
        raise ConfigError(f"schema cannot be compiled: {error}", where=str(path))
    return schema


@dataclass(frozen=True)
class CompiledSchema:
    """An entry XSD compiled, with its Schematron rules (if any)."""

    path: Path
    xsd: etree.XMLSchema
    rules: RuleSet | None
    lock: threading.Lock

    def issues(self, tree: etree._ElementTree, *, data: bytes | None = None,
               derived: Derived | None = None) -> list[Issue]:
        """Every issue in ``tree`` (XSD first, then rules); empty when valid. ``derived``
        receives what the Python rules worked out (see :class:`Derived`)."""
        with self.lock:  # XMLSchema keeps its error log on the object
            valid = self.xsd.validate(tree)
            entries: list[Any] = [] if valid else list(
                cast("Iterable[Any]", self.xsd.error_log))
        positions = element_position(tree, data)
        out = [] if valid else lxml_issues(tree, entries, positions)
        if any(issue.code == "SchemaUnexpectedElement" for issue in out):
            # libxml2 stops checking a parent's remaining children after an unexpected
            # one; xmlschema (slow, only here) finds the value errors it skipped.
            out.extend(complete_issues(self.path, tree, out, positions))
        failures: list[RuleFailure] = []
        if self.rules is not None:
            failures.extend(self.rules.run(tree))
        qname = etree.QName(tree.getroot())
        extra = PYTHON_RULES.get((qname.namespace or "", qname.localname))
        if extra is not None:
            # an element the schema already refused is not reported again by these checks
            refused = {issue.path for issue in out}
            failures.extend(f for f in extra(tree, derived) if f.element is None
                            or readable_path(f.element) not in refused)
        for failure in failures:
            element = failure.element
            line, column = positions(element) if element is not None else (None, None)
            path = readable_path(element) if element is not None else ""
            out.append(Issue(line, column, f"Rule.{failure.rule_id}", path, failure.message))
        out.sort(key=lambda issue: (issue.line or 0, issue.column or 0))
        return out


_schemas: dict[Path, CompiledSchema] = {}
_schemas_lock = threading.Lock()


def load_schema(path: Path) -> CompiledSchema:
    """The compiled schema (XSD + rules) for the entry XSD at ``path``, cached per path."""
    key = Path(path).resolve()
    with _schemas_lock:
        compiled = _schemas.get(key)
        if compiled is None:
            if not key.is_file():
                raise ConfigError("schema file not found", where=str(path))
            compiled = CompiledSchema(key, _compile_xsd(key), load_rules(key),
                                      threading.Lock())
            _schemas[key] = compiled
            log.debug("compiled schema %s", key)
        return compiled


def load_xsd(path: Path) -> etree.XMLSchema:
    """The compiled XSD for the file at ``path`` (cached per path)."""
    return load_schema(path).xsd


class SchemaRegistry:
    """Maps ``(namespace, local name)`` of a root element to the XSD that declares it."""

    def __init__(self, roots: Iterable[Path] = (),
                 *, extra_sets: Iterable[Any] = ()) -> None:
        """``roots``: directories whose ``*.xsd`` are indexed. ``extra_sets``: operator
        schema sets, each a :class:`SchemaSet`, a ``(directory, entry)`` pair or any object
        with ``directory`` and ``entry`` attributes (``gateway.node.config.SchemaSet``)."""
        self._index: dict[tuple[str, str], Path] = {}
        self._compiled: dict[tuple[str, str], CompiledSchema] = {}
        for root in roots:
            for xsd in sorted(Path(root).rglob("*.xsd")):
                self._add(xsd, replace=False)
        for item in extra_sets:
            if isinstance(item, tuple):
                self.add_set(*item)
            else:
                self.add_set(item.directory, item.entry)

    def _add(self, xsd: Path, *, replace: bool) -> list[tuple[str, str]]:
        try:
            tree = parse_xml(xsd.read_bytes(), max_bytes=SCHEMA_MAX_BYTES, source=str(xsd))
        except OSError as exc:
            raise ConfigError(f"schema cannot be read ({exc.strerror})", where=str(xsd)) from None
        except XmlError as exc:
            raise ConfigError(f"schema is not acceptable XML: {exc.message}",
                              where=str(xsd)) from None
        top = tree.getroot()
        if top.tag != f"{{{XS}}}schema":
            return []
        namespace = top.get("targetNamespace", "")
        added = []
        for element in top.iterfind(f"{{{XS}}}element"):
            name = element.get("name")
            if name:
                key = (namespace, name)
                if replace or key not in self._index:
                    self._index[key] = xsd
                    self._compiled.pop(key, None)
                    added.append(key)
        return added

    def add_set(self, directory: Path, entry: Path | str | None = None
                ) -> list[tuple[str, str]]:
        """Register an operator schema set: ``entry`` (relative to ``directory``, or
        absolute) declares the document roots; with no entry, every ``*.xsd`` under the
        directory is indexed. Imports/includes resolve from local files, never over the
        network. Compiles the entry now, so a broken set is a configuration error at
        start-up. Returns the ``(namespace, name)`` roots it registered (they override the
        built-in ones)."""
        base = Path(directory)
        if not base.is_dir():
            raise ConfigError("schema set directory not found", where=str(directory))
        if entry is None:
            added = []
            for xsd in sorted(base.rglob("*.xsd")):
                added.extend(self._add(xsd, replace=True))
            if not added:
                raise ConfigError("schema set declares no global element", where=str(base))
            return added
        path = SchemaSet(base, Path(entry)).entry_path
        if not path.is_file():
            raise ConfigError("schema set entry XSD not found", where=str(path))
        load_schema(path)
        added = self._add(path, replace=True)
        if not added:
            raise ConfigError("schema set entry declares no global element", where=str(path))
        log.info("registered schema set %s (%d root element(s))", path, len(added))
        return added

    def roots(self) -> dict[tuple[str, str], Path]:
        """Every registered root element and the XSD validating it."""
        return dict(self._index)

    def schema_path(self, namespace: str, name: str) -> Path:
        try:
            return self._index[(namespace, name)]
        except KeyError:
            raise UnknownDocumentType(
                f"no schema is registered for {{{namespace}}}{name}" if namespace
                else f"no schema is registered for {name} (no namespace)"
            ) from None

    def schema_for(self, tree: etree._ElementTree) -> CompiledSchema:
        qname = etree.QName(tree.getroot())
        key = (qname.namespace or "", qname.localname)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = load_schema(self.schema_path(*key))
            self._compiled[key] = compiled
        return compiled

    def issues(self, tree: etree._ElementTree, *, data: bytes | None = None) -> list[Issue]:
        """Every issue (XSD, then rules) for ``tree``; raises UnknownDocumentType."""
        return self.schema_for(tree).issues(tree, data=data)

    def check(self, tree: etree._ElementTree, *, source: str | None = None,
              data: bytes | None = None) -> None:
        """Raise :class:`SchemaInvalid` (with every issue) unless ``tree`` is valid."""
        issues = self.issues(tree, data=data)
        if issues:
            raise SchemaInvalid(f"{len(issues)} validation error(s)", issues=issues,
                                where=source)


def registry_with_sets(sets: Iterable[Any]) -> SchemaRegistry:
    """The shipped schemas plus operator schema sets (e.g. ``config.schema_sets``)."""
    return SchemaRegistry([xsd_root()], extra_sets=sets)


@cache
def default_registry() -> SchemaRegistry:
    """The registry of the schemas shipped in ``xsd/``."""
    return SchemaRegistry([xsd_root()])

