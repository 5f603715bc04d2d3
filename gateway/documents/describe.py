"""What a business document is and who it is between: the daemon routes on this.

:func:`describe` reads only header fields (FIPS codes, countries, case references) from a
tree that has already passed validation; it never reads personal data.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.documents.csenet.records import Header, Transaction
from gateway.errors import UnknownDocumentType

__all__ = ["INTERNATIONAL_NS", "INTERSTATE_NS", "DocumentInfo", "describe", "describe_csenet",
           "document_types"]

INTERSTATE_NS = "urn:cse-gateway:interstate:2"
INTERNATIONAL_NS = "urn:cse-gateway:international:1"

_INTERSTATE = ("InterstateTransaction", "TransactionError", "InterstateAcknowledgment",
               "DocumentExchange")
# Hague documents sent by the requesting authority, and those sent back by the requested one.
_FROM_REQUESTING = ("TransmittalForm", "MaintenanceApplication")
_FROM_REQUESTED = ("AcknowledgementForm", "StatusOfApplicationReport")


@dataclass(frozen=True)
class DocumentInfo:
    """Routing facts of one document. ``name`` is the root's local name (the envelope
    ``Action``); parties are protocol party strings (``fips:0600000``, ``iso3166:NL``)."""

    namespace: str
    name: str
    service: str
    sender: str | None
    destination: str | None
    case_id: str | None


def document_types() -> dict[tuple[str, str], str]:
    """Every business document root ``(namespace, name)`` and its service."""
    out = {(INTERSTATE_NS, n): "interstate" for n in _INTERSTATE}
    out.update({(INTERNATIONAL_NS, n): "international"
                for n in _FROM_REQUESTING + _FROM_REQUESTED})
    return out


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    value = element.text.strip()
    return value or None


def _authority_party(root: etree._Element, which: str) -> str | None:
    ns = f"{{{INTERNATIONAL_NS}}}"
    authority = root.find(f"{ns}{which}")
    if authority is None:
        return None
    fips = _text(authority.find(f"{ns}FIPS"))
    if fips:
        return f"fips:{fips}"
    country = _text(authority.find(f"{ns}Country"))
    return f"iso3166:{country}" if country else None


def first_children(element: etree._Element, tags: frozenset[str]
                   ) -> dict[str, etree._Element]:
    """The first child of ``element`` with each of ``tags`` (what ``element.find(tag)``
    gives for each), found in one pass over the children instead of one per tag."""
    found: dict[str, etree._Element] = {}
    for child in element:
        tag = child.tag
        if tag in tags and tag not in found:
            found[tag] = child
    return found


_I = f"{{{INTERSTATE_NS}}}"
_HEADER_READ = frozenset(f"{_I}{prefix}{part}" for prefix in ("Local", "Other")
                         for part in ("FIPSState", "FIPSCounty", "FIPSSub")) | {f"{_I}CaseID"}


def _fips(fields: dict[str, etree._Element], prefix: str) -> str | None:
    """``fips:SSCCCLL`` from a CSENet header's three FIPS elements (a sub-code that is not
    two digits counts as ``00``), or None without the state."""
    state = _text(fields.get(f"{_I}{prefix}FIPSState"))
    if not state:
        return None
    county = _text(fields.get(f"{_I}{prefix}FIPSCounty")) or "000"
    sub = _text(fields.get(f"{_I}{prefix}FIPSSub")) or "00"
    return f"fips:{state}{county}{sub if sub.isdigit() and len(sub) == 2 else '00'}"


def _csenet_transaction(root: etree._Element, namespace: str, name: str,
                        service: str) -> DocumentInfo:
    header = root.find(f"{_I}Header")
    fields = first_children(root if header is None else header, _HEADER_READ)
    return DocumentInfo(namespace, name, service, sender=_fips(fields, "Local"),
                        destination=_fips(fields, "Other"),
                        case_id=_text(fields.get(f"{_I}CaseID")))


def describe(tree: etree._ElementTree | etree._Element) -> DocumentInfo:
    """The :class:`DocumentInfo` of a business document; raises UnknownDocumentType for any
    other root (envelopes, receipts, foreign documents).

    InterstateTransaction (a CSENet transaction) goes from Local-FIPS to Other-FIPS
    (state, county and sub-code elements of its header; case: CaseID). TransactionError,
    InterstateAcknowledgment and DocumentExchange go from LocalFIPS to OtherFIPS.
    TransmittalForm and MaintenanceApplication go from the requesting to the requested
    Central Authority (case: RequestingReference); AcknowledgementForm and
    StatusOfApplicationReport are the requested authority's answers and go the other way
    (case: RequestedReference, else RequestingReference). A US authority is
    ``fips:<FIPS>``, a foreign one ``iso3166:<Country>``.
    """
    root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
    qname = etree.QName(root)
    namespace, name = qname.namespace or "", qname.localname
    service = document_types().get((namespace, name))
    if service is None:
        raise UnknownDocumentType(
            f"{{{namespace}}}{name} is not a business document type" if namespace
            else f"{name} (no namespace) is not a business document type"
        )
    if service == "interstate" and name == "InterstateTransaction":
        return _csenet_transaction(root, namespace, name, service)
    if service == "interstate":
        ns = f"{{{INTERSTATE_NS}}}"
        local = _text(root.find(f"{ns}LocalFIPS"))
        other = _text(root.find(f"{ns}OtherFIPS"))
        return DocumentInfo(
            namespace, name, service,
            sender=f"fips:{local}" if local else None,
            destination=f"fips:{other}" if other else None,
            case_id=_text(root.find(f"{ns}CaseID")),
        )
    ns = f"{{{INTERNATIONAL_NS}}}"
    requesting = _authority_party(root, "RequestingAuthority")
    requested = _authority_party(root, "RequestedAuthority")
    if name in _FROM_REQUESTING:
        return DocumentInfo(namespace, name, service, requesting, requested,
                            _text(root.find(f"{ns}RequestingReference")))
    case = _text(root.find(f"{ns}RequestedReference")) or \
        _text(root.find(f"{ns}RequestingReference"))
    return DocumentInfo(namespace, name, service, requested, requesting, case)


def _record_fips(header: Header, prefix: str) -> str | None:
    """:func:`_fips` read from the header record (a blank field is an absent element)."""
    state = header.raw(f"{prefix}-FIPS-State").strip()
    if not state:
        return None
    county = header.raw(f"{prefix}-FIPS-County").strip() or "000"
    sub = header.raw(f"{prefix}-FIPS-Sub").strip() or "00"
    return f"fips:{state}{county}{sub if sub.isdigit() and len(sub) == 2 else '00'}"


def describe_csenet(txn: Transaction) -> DocumentInfo:
    """:func:`describe` of a valid ``InterstateTransaction`` from the transaction its
    validation mapped it onto (``validate_parsed(..., derived=...)``), without reading
    the tree again: every field's element holds the field's text (a blank field has no
    element), so the two read the same."""
    header = txn.header
    return DocumentInfo(INTERSTATE_NS, "InterstateTransaction", "interstate",
                        sender=_record_fips(header, "Local"),
                        destination=_record_fips(header, "Other"),
                        case_id=header.raw("Case-ID").strip() or None)
