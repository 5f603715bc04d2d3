"""ebMS 3.0 headers: the eb:Messaging of a UserMessage or a SignalMessage (Receipt,
Error), built and parsed, with the eDelivery AS4 profile's checks. Each refusal raises the
As4 error whose ``ebms_code`` is the one to answer with."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from gateway.errors import (
    As4DecompressionFailure,
    As4InvalidHeader,
    As4ValueInconsistent,
)

from . import ns

__all__ = [
    "TEST_ACTION",
    "TEST_SERVICE",
    "PartInfo",
    "Party",
    "SignalMessage",
    "UserMessage",
    "build_messaging",
    "is_test",
    "parse_signal",
    "parse_user_message",
]

ROLE_SENDER = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator"
ROLE_RECEIVER = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder"
MAX_TEXT = 4096
#: ebMS 3.0 Core (OASIS Standard, 2007), 5.2.2 (eb:Service, eb:Action): the test service.
#: A UserMessage for the test service is processed like any other (security, receipt as
#: the PMode says) but never delivered to the consumer; the test action goes only with
#: the test service. Domibus's connection monitoring sends both.
TEST_SERVICE = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/service"
TEST_ACTION = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/test"


def _q(local: str) -> str:
    return f"{{{ns.EB}}}{local}"


@dataclass(frozen=True)
class Party:
    party_id: str
    party_type: str | None
    role: str


@dataclass(frozen=True)
class PartInfo:
    """One payload: ``href`` (``cid:...``, or None for the SOAP Body) and its
    PartProperties (MimeType, CompressionType, CharacterSet, ...)."""

    href: str | None
    properties: tuple[tuple[str, str], ...] = ()

    def prop(self, name: str) -> str | None:
        for key, value in self.properties:
            if key == name:
                return value
        return None

    @property
    def cid(self) -> str | None:
        return self.href[4:] if self.href and self.href.startswith("cid:") else None


@dataclass(frozen=True)
class UserMessage:
    message_id: str
    timestamp: str
    sender: Party
    receiver: Party
    service: str
    service_type: str | None
    action: str
    conversation_id: str
    agreement: str | None = None
    agreement_type: str | None = None
    pmode: str | None = None
    ref_to_message_id: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    parts: tuple[PartInfo, ...] = ()

    def prop(self, name: str) -> str | None:
        for key, value in self.properties:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class ErrorDetail:
    code: str
    severity: str
    short: str | None
    description: str | None
    ref_to_message_id: str | None


@dataclass(frozen=True)
class SignalMessage:
    message_id: str
    timestamp: str
    ref_to_message_id: str | None
    is_receipt: bool
    errors: tuple[ErrorDetail, ...] = field(default_factory=tuple)


def is_test(message: UserMessage) -> bool:
    """Whether ``message`` is for the ebMS test service (whatever its action, normally the
    test action): to be answered, never delivered. Only meaningful once its signature
    (which covers eb:Messaging) has verified."""
    return message.service == TEST_SERVICE


def _text(parent: etree._Element, local: str, where: str, *, required: bool = True) -> str:
    found = parent.findall(_q(local))
    if len(found) > 1:
        raise As4InvalidHeader(f"more than one eb:{local}", where=where)
    value = (found[0].text or "").strip() if found else ""
    if required and not value:
        raise As4InvalidHeader(f"eb:{local} is missing or empty", where=where)
    if len(value) > MAX_TEXT:
        raise As4InvalidHeader(f"eb:{local} is too long", where=where)
    return value


def _one(parent: etree._Element, local: str, where: str) -> etree._Element:
    found = parent.findall(_q(local))
    if len(found) != 1:
        raise As4InvalidHeader(f"expected exactly one eb:{local}", where=where,
                               details={"count": len(found)})
    return found[0]


def _party(info: etree._Element, local: str) -> Party:
    where = f"PartyInfo/{local}"
    element = _one(info, local, "PartyInfo")
    ids = element.findall(_q("PartyId"))
    if len(ids) != 1 or not (ids[0].text or "").strip():
        raise As4InvalidHeader("exactly one non-empty eb:PartyId is required", where=where,
                               details={"count": len(ids)})
    return Party(
        party_id=(ids[0].text or "").strip(),
        party_type=ids[0].get("type"),
        role=_text(element, "Role", where),
    )


def _properties(parent: etree._Element | None) -> tuple[tuple[str, str], ...]:
    if parent is None:
        return ()
    out = []
    for prop in parent.findall(_q("Property")):
        name = prop.get("name")
        if not name:
            raise As4InvalidHeader("an eb:Property has no name", where="Properties")
        out.append((name, (prop.text or "").strip()))
    return tuple(out)


def parse_user_message(messaging: etree._Element, *, check: bool = True) -> UserMessage:
    """The one UserMessage of an eb:Messaging, checked against the eDelivery profile
    (``check=False`` skips the PartInfo rules, to describe a message we would refuse)."""
    users = messaging.findall(_q("UserMessage"))
    if len(users) != 1:
        raise As4ValueInconsistent(
            "an AS4 message must carry exactly one eb:UserMessage", where="eb:Messaging",
            details={"count": len(users)},
        )
    if messaging.findall(_q("SignalMessage")):
        raise As4ValueInconsistent("a UserMessage bundled with a SignalMessage",
                                   where="eb:Messaging")
    user = users[0]
    info = _one(user, "MessageInfo", "UserMessage")
    party_info = _one(user, "PartyInfo", "UserMessage")
    collab = _one(user, "CollaborationInfo", "UserMessage")
    service_el = _one(collab, "Service", "CollaborationInfo")
    agreement = collab.find(_q("AgreementRef"))
    parts: list[PartInfo] = []
    payload_info = user.find(_q("PayloadInfo"))
    if payload_info is not None:
        for part in payload_info.findall(_q("PartInfo")):
            props = _properties(part.find(_q("PartProperties")))
            parts.append(PartInfo(part.get("href"), props))
    message = UserMessage(
        message_id=_text(info, "MessageId", "MessageInfo"),
        timestamp=_text(info, "Timestamp", "MessageInfo"),
        ref_to_message_id=_text(info, "RefToMessageId", "MessageInfo", required=False) or None,
        sender=_party(party_info, "From"),
        receiver=_party(party_info, "To"),
        service=(service_el.text or "").strip(),
        service_type=service_el.get("type"),
        action=_text(collab, "Action", "CollaborationInfo"),
        conversation_id=_text(collab, "ConversationId", "CollaborationInfo"),
        agreement=(agreement.text or "").strip() if agreement is not None else None,
        agreement_type=agreement.get("type") if agreement is not None else None,
        pmode=agreement.get("pmode") if agreement is not None else None,
        properties=_properties(user.find(_q("MessageProperties"))),
        parts=tuple(parts),
    )
    if not message.service:
        raise As4InvalidHeader("eb:Service is empty", where="CollaborationInfo")
    if message.action == TEST_ACTION and message.service != TEST_SERVICE:
        raise As4ValueInconsistent("the ebMS test action is only used with the test service",
                                   where="CollaborationInfo")
    if check:
        check_parts(message)
    return message


def check_parts(message: UserMessage) -> None:
    """PartInfo rules: unique hrefs, gzip the only compression, a MimeType with it."""
    seen: set[str | None] = set()
    for index, part in enumerate(message.parts):
        where = f"PartInfo {index + 1}"
        if part.href in seen:
            raise As4ValueInconsistent("two PartInfo share an href", where=where)
        seen.add(part.href)
        if part.href is not None and not part.href.startswith("cid:"):
            raise As4ValueInconsistent("only cid: payload references are supported",
                                       where=where)
        compression = part.prop("CompressionType")
        if compression is not None:
            if compression != ns.GZIP:
                raise As4DecompressionFailure(
                    "CompressionType must be application/gzip", where=where,
                    details={"compression": compression[:100]},
                )
            if not part.prop("MimeType"):
                raise As4DecompressionFailure("a compressed part needs a MimeType property",
                                              where=where)


def parse_signal(messaging: etree._Element) -> SignalMessage:
    """The one SignalMessage (a Receipt or Errors) of an eb:Messaging."""
    signals = messaging.findall(_q("SignalMessage"))
    if len(signals) != 1 or messaging.findall(_q("UserMessage")):
        raise As4ValueInconsistent("expected exactly one eb:SignalMessage",
                                   where="eb:Messaging", details={"count": len(signals)})
    signal = signals[0]
    info = _one(signal, "MessageInfo", "SignalMessage")
    errors = []
    for error in signal.findall(_q("Error")):
        errors.append(ErrorDetail(
            code=error.get("errorCode") or "",
            severity=error.get("severity") or "",
            short=error.get("shortDescription"),
            description=(error.findtext(_q("Description")) or "").strip()[:500] or None,
            ref_to_message_id=error.get("refToMessageInError"),
        ))
    return SignalMessage(
        message_id=_text(info, "MessageId", "MessageInfo"),
        timestamp=_text(info, "Timestamp", "MessageInfo"),
        ref_to_message_id=_text(info, "RefToMessageId", "MessageInfo", required=False) or None,
        is_receipt=signal.find(_q("Receipt")) is not None,
        errors=tuple(errors),
    )


# --- building ---------------------------------------------------------------------------


def _sub(parent: etree._Element, local: str, text: str | None = None,
         **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, _q(local), {k: v for k, v in attrs.items() if v})
    if text is not None:
        element.text = text
    return element


def build_messaging(soap_ns: str, messaging_id: str) -> etree._Element:
    return etree.Element(
        _q("Messaging"),
        {f"{{{soap_ns}}}mustUnderstand": "true", ns.WSU_ID: messaging_id},
        nsmap={"eb": ns.EB, "wsu": ns.WSU},
    )


def build_user_message(messaging: etree._Element, message: UserMessage) -> None:
    user = _sub(messaging, "UserMessage")
    info = _sub(user, "MessageInfo")
    _sub(info, "Timestamp", message.timestamp)
    _sub(info, "MessageId", message.message_id)
    if message.ref_to_message_id:
        _sub(info, "RefToMessageId", message.ref_to_message_id)
    party_info = _sub(user, "PartyInfo")
    for local, party in (("From", message.sender), ("To", message.receiver)):
        element = _sub(party_info, local)
        _sub(element, "PartyId", party.party_id, type=party.party_type or "")
        _sub(element, "Role", party.role)
    collab = _sub(user, "CollaborationInfo")
    if message.agreement:
        _sub(collab, "AgreementRef", message.agreement, type=message.agreement_type or "",
             pmode=message.pmode or "")
    _sub(collab, "Service", message.service, type=message.service_type or "")
    _sub(collab, "Action", message.action)
    _sub(collab, "ConversationId", message.conversation_id)
    if message.properties:
        props = _sub(user, "MessageProperties")
        for name, value in message.properties:
            _sub(props, "Property", value, name=name)
    if message.parts:
        payload_info = _sub(user, "PayloadInfo")
        for part in message.parts:
            part_info = _sub(payload_info, "PartInfo", href=part.href or "")
            if part.properties:
                pp = _sub(part_info, "PartProperties")
                for name, value in part.properties:
                    _sub(pp, "Property", value, name=name)


def build_signal(messaging: etree._Element, *, message_id: str, timestamp: str,
                 ref_to_message_id: str | None) -> etree._Element:
    signal = _sub(messaging, "SignalMessage")
    info = _sub(signal, "MessageInfo")
    _sub(info, "Timestamp", timestamp)
    _sub(info, "MessageId", message_id)
    if ref_to_message_id:
        _sub(info, "RefToMessageId", ref_to_message_id)
    return signal


def build_error(signal: etree._Element, *, code: str, short: str, description: str,
                ref_to_message_id: str | None) -> None:
    error = _sub(signal, "Error", category="Processing", errorCode=code, origin="ebMS",
                 severity="failure", shortDescription=short,
                 refToMessageInError=ref_to_message_id or "")
    description_el = _sub(error, "Description", description)
    description_el.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
