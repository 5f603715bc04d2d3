"""The neutral business keys of one exchanged document: what the clock matcher works on.

:class:`Facts` holds codes and keys only (FIPS codes, case IDs, references, function /
action / reason, the document type), never personal data. :func:`facts_from_tree` reads
them from a validated document of any business type the gateway carries:

- ``urn:cse-gateway:interstate:1`` and ``:2`` (``InterstateTransaction``,
  ``InterstateAcknowledgment``, ``TransactionError``, ``DocumentExchange`` with its UIFSA
  ``FormType``); a version 2 transaction is the XML form of a CSENet 2000 transaction,
  its header fields named after the IGD and its FIPS codes as state + county + sub-code;
- ``urn:cse-gateway:international:1`` (Hague forms: the requesting and requested
  authorities' references play the part of the two case IDs).

``case_id`` is always the *sender's* own reference and ``other_case_id`` the receiver's,
as in a CSENet header; :meth:`Facts.normalised` turns them into "ours" and "theirs".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from gateway.documents.csenet.records import Transaction

__all__ = ["Facts", "facts_from_transaction", "facts_from_tree", "token"]

INTERSTATE_1 = "urn:cse-gateway:interstate:1"
INTERSTATE_2 = "urn:cse-gateway:interstate:2"
INTERNATIONAL_1 = "urn:cse-gateway:international:1"

_TOKEN = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
_NINE_DIGITS = re.compile(r"[0-9]{9}")


def token(value: str | None) -> str | None:
    """``value`` stripped when it is a short key fit for the audit trail (no blanks, no
    free text, not shaped like an SSN), else None."""
    if value is None:
        return None
    value = value.strip()
    if not _TOKEN.fullmatch(value) or _NINE_DIGITS.fullmatch(value):
        return None
    return value


@dataclass(frozen=True)
class Facts:
    """Keys of one document as its sender wrote them. ``doc`` is the document type
    (root name; ``DocumentExchange/<FormType>`` for an exchanged UIFSA form)."""

    doc: str
    function: str | None = None
    action: str | None = None
    reason: str | None = None
    case_id: str | None = None
    other_case_id: str | None = None
    local_fips: str | None = None
    other_fips: str | None = None
    conversation_id: str | None = None
    ref_to: str | None = None

    def normalised(self, outbound: bool) -> tuple[str | None, str | None]:
        """(our case reference, theirs) as seen by the node that sent (``outbound``) or
        received this document."""
        if outbound:
            return self.case_id, self.other_case_id
        return self.other_case_id, self.case_id


def _text(root: etree._Element, path: str) -> str | None:
    element = root.find(path)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _fips(get: Callable[[str], str | None], prefix: str) -> str | None:
    """``LocalFIPS`` (7 digits), or the CSENet header's state + county + sub-code (a
    sub-code that is not two digits counts as ``00``, as routing reads it)."""
    whole = get(f"{prefix}FIPS")
    if whole:
        return token(whole)
    state, county = get(f"{prefix}FIPSState"), get(f"{prefix}FIPSCounty")
    if not state or not county:
        return None
    sub = get(f"{prefix}FIPSSub") or "00"
    return token(f"{state}{county}{sub if sub.isdigit() and len(sub) == 2 else '00'}")


def _interstate(root: etree._Element, name: str, namespace: str) -> Facts:
    """Either interstate version: the transaction's keys are in its ``Header`` (v1 names
    ``FunctionCode`` / ``ReasonCode``, v2 the IGD's ``FunctionalTypeCode`` /
    ``ActionReason``); the other documents carry them at the top."""
    ns = f"{{{namespace}}}"
    header = root.find(f"{ns}Header") if name == "InterstateTransaction" else None
    holder = root if header is None else header
    # each field's first element, in one pass over the holder (not one find per field)
    fields: dict[str, etree._Element] = {}
    for child in holder:
        tag = child.tag
        if isinstance(tag, str) and tag not in fields:
            fields[tag] = child

    def get(field: str) -> str | None:
        element = fields.get(ns + field)
        if element is None or element.text is None:
            return None
        return element.text.strip() or None

    doc = name
    if name == "DocumentExchange":
        form = token(get("FormType"))
        doc = f"{name}/{form}" if form else name
    return Facts(doc=doc, function=token(get("FunctionCode") or get("FunctionalTypeCode")),
                 action=token(get("ActionCode")),
                 reason=token(get("ReasonCode") or get("ActionReason")),
                 case_id=token(get("CaseID")), other_case_id=token(get("OtherCaseID")),
                 local_fips=_fips(get, "Local"), other_fips=_fips(get, "Other"))


_FROM_REQUESTED = ("AcknowledgementForm", "StatusOfApplicationReport")


def _international(root: etree._Element, name: str) -> Facts:
    ns = f"{{{INTERNATIONAL_1}}}"
    requesting = token(_text(root, f"{ns}RequestingReference"))
    requested = token(_text(root, f"{ns}RequestedReference"))

    def party(which: str) -> str | None:
        fips = _text(root, f"{ns}{which}/{ns}FIPS")
        if fips:
            return token(fips)
        country = _text(root, f"{ns}{which}/{ns}Country")
        return token(country)

    if name in _FROM_REQUESTED:  # the requested authority writes these
        return Facts(doc=name, case_id=requested, other_case_id=requesting,
                     local_fips=party("RequestedAuthority"),
                     other_fips=party("RequestingAuthority"))
    return Facts(doc=name, case_id=requesting, other_case_id=requested,
                 local_fips=party("RequestingAuthority"), other_fips=party("RequestedAuthority"))


def facts_from_tree(tree: etree._ElementTree | etree._Element, *,
                    conversation_id: str | None = None,
                    ref_to: str | None = None) -> Facts | None:
    """The :class:`Facts` of a validated business document, or None for a document type
    the clocks know nothing about. ``conversation_id`` and ``ref_to`` come from the
    envelope header when there is one."""
    root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
    qname = etree.QName(root)
    namespace, name = qname.namespace or "", qname.localname
    if namespace in (INTERSTATE_1, INTERSTATE_2):
        facts = _interstate(root, name, namespace)
    elif namespace == INTERNATIONAL_1:
        facts = _international(root, name)
    else:
        return None
    if conversation_id or ref_to:
        facts = Facts(**{**facts.__dict__, "conversation_id": token(conversation_id),
                         "ref_to": token(ref_to)})
    return facts


def facts_from_transaction(txn: Transaction, *, conversation_id: str | None = None,
                           ref_to: str | None = None) -> Facts:
    """:func:`facts_from_tree` of a valid version 2 ``InterstateTransaction`` from the
    transaction its validation mapped it onto (``validate_parsed(..., derived=...)``),
    without reading the tree again: every field's element holds the field's text (a blank
    field has no element), so the two read the same."""
    header = txn.header

    def get(field: str) -> str | None:
        return header.raw(field).strip() or None

    def fips(prefix: str) -> str | None:
        state, county = get(f"{prefix}-FIPS-State"), get(f"{prefix}-FIPS-County")
        if not state or not county:
            return None
        sub = get(f"{prefix}-FIPS-Sub") or "00"
        return token(f"{state}{county}{sub if sub.isdigit() and len(sub) == 2 else '00'}")

    facts = Facts(doc="InterstateTransaction", function=token(get("Functional-Type-Code")),
                  action=token(get("Action-Code")), reason=token(get("Action-Reason")),
                  case_id=token(get("Case-ID")), other_case_id=token(get("Other-Case-ID")),
                  local_fips=fips("Local"), other_fips=fips("Other"))
    if conversation_id or ref_to:
        facts = Facts(**{**facts.__dict__, "conversation_id": token(conversation_id),
                         "ref_to": token(ref_to)})
    return facts
