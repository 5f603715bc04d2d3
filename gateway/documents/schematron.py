"""ISO Schematron rules run after the XSD, compiled once to XSLT (libxslt, via lxml).

A rule file lives next to its entry schema (``foo.xsd`` -> ``foo.sch``). Each ``sch:assert``
or ``sch:report`` carries an ``id``: the issue code is ``Rule.<id>``. Messages are the
assertion text, written so that they never contain personal values.

Code tables are baked in at load time, so the compiled rules never call ``document()`` and
never touch the disk or the network while validating: a ``sch:let`` carrying
``gw:table="codes.xml"`` and ``gw:fields="function action reason"`` (namespace
``urn:cse-gateway:schematron:1``) gets the value ``'|F A R|F A R|...|'``, one entry per
element of the table file (attribute values in the order given, separated by one space).
Rules test membership with ``contains($name, concat('|', ..., '|'))``.

Some checks cannot be written in XPath 1.0 (the SHA-256 of an attached PDF); they are
Python functions registered in :data:`PYTHON_RULES` by root element and reported the same
way (``Rule.<id>``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import logging
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from lxml import etree

from gateway.documents.csenet import edits, xmlform
from gateway.documents.csenet.layout import field_key
from gateway.documents.csenet.records import Transaction
from gateway.documents.quiet_rules import QUIET_CHECKS, QuietCheck
from gateway.documents.xmlsafe import parse_xml
from gateway.errors import ConfigError, XmlError

__all__ = ["GW_NS", "PYTHON_RULES", "Derived", "PythonRule", "RuleFailure", "RuleSet",
           "load_rules"]

log = logging.getLogger("gateway.documents.schemas")

# lxml ships ISO Schematron (the skeleton XSLTs) but lxml-stubs does not describe it.
isoschematron: Any = importlib.import_module("lxml.isoschematron")

SCH_NS = "http://purl.oclc.org/dsdl/schematron"
SVRL_NS = "http://purl.oclc.org/dsdl/svrl"
GW_NS = "urn:cse-gateway:schematron:1"
INTERSTATE_NS = "urn:cse-gateway:interstate:2"


@dataclass
class Derived:
    """What the Python rules worked out on the way, for the stages after validation to
    use instead of reading the tree again: ``csenet`` is the CSENet transaction an
    ``InterstateTransaction`` renders, set when every field mapped onto the layout. Read
    it only when the document's report is valid."""

    csenet: Transaction | None = None


class PythonRule(Protocol):
    """A check XPath 1.0 cannot express: the failures for ``tree``, and what it worked out
    on the way in ``derived`` when one is given."""

    def __call__(self, tree: etree._ElementTree, derived: Derived | None = None, /
                 ) -> list[RuleFailure]: ...


@dataclass(frozen=True)
class RuleFailure:
    """One failed rule: the element it is about (if found), the rule id and the message."""

    element: etree._Element | None
    rule_id: str
    message: str


def _bake_tables(sch: etree._ElementTree, base: Path) -> dict[str, str]:
    """Bake each ``gw:table`` variable's value in; returns the values (as XPath reads
    them) by variable name."""
    baked: dict[str, str] = {}
    for let in sch.getroot().iter(f"{{{SCH_NS}}}let"):
        table = let.get(f"{{{GW_NS}}}table")
        if not table:
            continue
        fields = (let.get(f"{{{GW_NS}}}fields") or "").split()
        if not fields:
            raise ConfigError("gw:table needs gw:fields (attribute names)", where=str(base))
        path = (base.parent / table).resolve()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"code table cannot be read ({exc.strerror})",
                              where=str(path)) from None
        try:
            rows = parse_xml(data, source=str(path)).getroot()
        except XmlError as exc:
            raise ConfigError(f"code table is not valid XML: {exc}", where=str(path)) from None
        entries = [" ".join((row.get(f) or "") for f in fields)
                   for row in rows if isinstance(row.tag, str)]
        if any("'" in e or "|" in e for e in entries):
            raise ConfigError("code table values may not contain ' or |", where=str(path))
        value = "|" + "|".join(entries) + "|"
        let.set("value", f"'{value}'")
        baked[let.get("name") or ""] = value
        log.debug("baked %d entries of %s into %s", len(entries), path.name, base.name)
    return baked


class RuleSet:
    """Compiled Schematron rules (an lxml XSLT object may be called from several threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = path.read_bytes()
            sch = parse_xml(data, source=str(path))
        except OSError as exc:
            raise ConfigError(f"rules cannot be read ({exc.strerror})", where=str(path)) from None
        except XmlError as exc:
            raise ConfigError(f"rules are not valid XML: {exc}", where=str(path)) from None
        self.tables = _bake_tables(sch, path)
        # a Python proof that the rules report nothing, for this exact file (quiet_rules)
        self.quiet: QuietCheck | None = QUIET_CHECKS.get(hashlib.sha256(data).hexdigest())
        try:
            expanded = isoschematron.iso_abstract_expand(isoschematron.iso_dsdl_include(sch))
            # select-contexts=key: find each rule's context nodes through an xsl:key instead
            # of walking the whole tree once per pattern (2-3x faster on a 10 KB document).
            self._xslt = etree.XSLT(isoschematron.iso_svrl_for_xslt1(
                expanded, **{"select-contexts": etree.XSLT.strparam("key")}))
        except (etree.XSLTParseError, etree.XSLTApplyError) as exc:
            raise ConfigError(f"rules cannot be compiled: {exc}", where=str(path)) from None

    def run(self, tree: etree._ElementTree) -> list[RuleFailure]:
        """Every failed assertion (and successful report) for ``tree``."""
        if self.quiet is not None and self.quiet(tree, self.tables):
            return []  # proven: the XSLT would report nothing
        try:
            report = self._xslt(tree)
        except etree.XSLTApplyError as exc:
            raise ConfigError(f"rules failed to run: {exc}", where=str(self.path)) from None
        out: list[RuleFailure] = []
        for node in report.getroot().iterchildren(
            f"{{{SVRL_NS}}}failed-assert", f"{{{SVRL_NS}}}successful-report"
        ):
            location = node.get("location") or ""
            element: etree._Element | None = None
            if location:
                try:
                    found = tree.xpath(location)
                except etree.XPathError:
                    found = []
                if isinstance(found, list) and found:
                    first: Any = found[0]
                    if isinstance(first, etree._Element):
                        element = first
                    elif hasattr(first, "getparent"):  # attribute result: its element
                        element = first.getparent()
            text = " ".join((node.findtext(f"{{{SVRL_NS}}}text") or "").split())
            out.append(RuleFailure(element, node.get("id") or "Unnamed", text))
        return out


_cache: dict[Path, RuleSet] = {}
_cache_lock = threading.Lock()


def load_rules(xsd_path: Path) -> RuleSet | None:
    """The compiled rules next to ``xsd_path`` (``foo.sch`` for ``foo.xsd``), or None."""
    sch = xsd_path.with_suffix(".sch")
    if not sch.is_file():
        return None
    key = sch.resolve()
    with _cache_lock:
        rules = _cache.get(key)
        if rules is None:
            rules = RuleSet(key)
            _cache[key] = rules
        return rules


# --- checks XPath 1.0 cannot express --------------------------------------------------


def _document_exchange(tree: etree._ElementTree, derived: Derived | None = None, /
                       ) -> list[RuleFailure]:
    root = tree.getroot()
    ns = f"{{{INTERSTATE_NS}}}"
    content = root.find(f"{ns}Content")
    if content is None:
        return []  # the XSD reports it missing
    try:
        pdf = base64.b64decode("".join((content.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        return []  # the XSD reports bad base64
    out: list[RuleFailure] = []
    if not pdf.startswith(b"%PDF-"):
        out.append(RuleFailure(content, "DocumentIsPDF",
                               "Content is not a PDF (it does not start with %PDF-)"))
    size = root.find(f"{ns}Size")
    if size is not None and (size.text or "").strip().isdigit() \
            and int((size.text or "").strip()) != len(pdf):
        out.append(RuleFailure(size, "DocumentSize",
                               f"Size does not match the decoded Content ({len(pdf)} bytes)"))
    digest = root.find(f"{ns}SHA256")
    if digest is not None and (digest.text or "").strip() != hashlib.sha256(pdf).hexdigest():
        out.append(RuleFailure(digest, "DocumentDigest",
                               "SHA256 does not match the SHA-256 of the decoded Content"))
    return out


def _interstate_transaction(tree: etree._ElementTree, derived: Derived | None = None, /
                            ) -> list[RuleFailure]:
    """The CSENet federal edits on the transaction the XML renders (``Rule.csenet.<rule>``);
    that transaction goes to ``derived`` when every field mapped.

    No clock here: the edits that compare with today (transaction date not in the future,
    dates of birth before today, the GSTAI as-of date) are left to the CSENet path and to
    callers that know the date. The table and block-count checks are the Schematron's."""
    root = tree.getroot()
    txn, found = xmlform.salvage(root, check_counts=False)
    if derived is not None and not found and txn is not None \
            and txn.header.counts() == txn.counts():
        derived.csenet = txn  # what xmlform.from_xml(tree) gives
    if txn is not None:
        found += [i for i in edits.check(txn, today=date.max) if i.rule != "header.table"]
    out = []
    ns = f"{{{INTERSTATE_NS}}}"
    for issue in found:
        name, _, number = issue.block.partition(" ")
        tag = "Header" if name == "header" else xmlform.BLOCK_ELEMENTS.get(name)
        element: etree._Element | None = root
        if tag is not None:
            blocks = root.findall(ns + tag)
            index = int(number or 1) - 1
            element = blocks[index] if index < len(blocks) else root
            if issue.field != "-":
                try:
                    child = element.find(ns + xmlform.element_name(field_key(issue.field)))
                except ValueError:
                    child = None
                element = child if child is not None else element
        message = issue.message if issue.field == "-" else f"{issue.field}: {issue.message}"
        out.append(RuleFailure(element, f"csenet.{issue.rule}", message))
    return out


PYTHON_RULES: dict[tuple[str, str], PythonRule] = {
    (INTERSTATE_NS, "DocumentExchange"): _document_exchange,
    (INTERSTATE_NS, "InterstateTransaction"): _interstate_transaction,
}
