"""The SOAP envelope of an AS4 message: its parts, its IDs and the structural checks that
keep signature wrapping out (one Envelope, one Header, one Body, one eb:Messaging, one
Security header for us, every ID unique)."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.documents.xmlsafe import parse_xml
from gateway.errors import As4FailedAuthentication, As4InvalidHeader, As4ValueInconsistent, XmlError

from . import ns

__all__ = ["Envelope", "id_of", "parse_envelope"]

MAX_SOAP_BYTES = 10 * 1024 * 1024
_ID_ATTRIBUTES = (ns.WSU_ID, "Id", "ID", "id")


def id_of(element: etree._Element) -> str | None:
    for attribute in _ID_ATTRIBUTES:
        value = element.get(attribute)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class Envelope:
    """A parsed SOAP envelope and the elements an AS4 handler works on."""

    root: etree._Element
    soap_ns: str
    header: etree._Element
    body: etree._Element
    messaging: etree._Element
    security: etree._Element | None
    ids: dict[str, etree._Element]

    def by_id(self, value: str, *, what: str) -> etree._Element:
        element = self.ids.get(value)
        if element is None:
            raise As4FailedAuthentication(
                f"{what} refers to an ID that is not in the message", where=f"#{value}"
            )
        return element


def _children(parent: etree._Element, namespace: str, local: str) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str) and c.tag == f"{{{namespace}}}{local}"]


def _index_ids(root: etree._Element) -> dict[str, etree._Element]:
    """Every ID in the envelope; an ID carried twice (by one or two elements, under any of
    the ID attribute names) is refused: it is how signature wrapping hides a forged copy."""
    ids: dict[str, etree._Element] = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        values = {v for v in (element.get(a) for a in _ID_ATTRIBUTES) if v is not None}
        for value in values:
            if value in ids and ids[value] is not element:
                raise As4FailedAuthentication(
                    "two elements carry the same ID (possible signature wrapping)",
                    where=f"#{value}",
                )
            ids[value] = element
    return ids


def parse_envelope(data: bytes, *, source: str = "soap") -> Envelope:
    """Parse and check the envelope's structure; raises As4 errors (never lxml's)."""
    try:
        tree = parse_xml(data, max_bytes=MAX_SOAP_BYTES, source=source)
    except XmlError as exc:
        raise As4InvalidHeader(f"the SOAP envelope is not acceptable XML ({exc.code})",
                               where=exc.where or source) from None
    root = tree.getroot()
    soap_ns = etree.QName(root).namespace or ""
    if etree.QName(root).localname != "Envelope" or soap_ns not in ns.SOAP_NAMESPACES:
        raise As4InvalidHeader("the root element is not a SOAP Envelope", where=source)
    headers = _children(root, soap_ns, "Header")
    bodies = _children(root, soap_ns, "Body")
    if len(headers) != 1 or len(bodies) != 1:
        raise As4InvalidHeader("a SOAP envelope needs one Header and one Body", where=source)
    header = headers[0]
    messagings = _children(header, ns.EB, "Messaging")
    if len(messagings) != 1:
        raise As4InvalidHeader(
            "the SOAP Header must hold exactly one eb:Messaging",
            where="Header",
            details={"count": len(messagings)},
        )
    # (a receipt may quote the whole message it answers inside eb:Receipt)
    if root.xpath("count(//eb:Messaging[not(ancestor::eb:Receipt)])",
                  namespaces={"eb": ns.EB}) != 1:
        raise As4ValueInconsistent(
            "an eb:Messaging element outside the SOAP Header", where="Envelope"
        )
    securities = [
        s for s in _children(header, ns.WSSE, "Security")
        if s.get(f"{{{soap_ns}}}role") is None and s.get(f"{{{soap_ns}}}actor") is None
    ]
    if len(securities) > 1:
        raise As4FailedAuthentication("more than one wsse:Security header for us",
                                      where="Header")
    ids = _index_ids(root)
    return Envelope(
        root=root,
        soap_ns=soap_ns,
        header=header,
        body=bodies[0],
        messaging=messagings[0],
        security=securities[0] if securities else None,
        ids=ids,
    )
