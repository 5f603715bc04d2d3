"""The outbox preparer: a business document in, a sealed envelope and its spool record out.

:func:`make_preparer` validates the document, describes it (the destination comes from the
document, never the file name), checks the sender is this node (:func:`check_sender`),
routes it and seals it to the destination's encryption certificate (or builds an AS4
UserMessage for an access point). The daemon's intake runs it in its worker processes
(:mod:`gateway.node.intake_pool`); :class:`gateway.node.outbound.Sender` sends the result.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import datetime

from gateway.documents.describe import describe, describe_csenet
from gateway.documents.schemas import SchemaRegistry
from gateway.documents.validate import Derived, validate_parsed
from gateway.errors import (
    InputError,
    KeyMaterialError,
    RoutingError,
    SecurityError,
    SenderMismatch,
)
from gateway.node import as4_node
from gateway.node.clocks import ClockKeeper, clock_events
from gateway.node.config import Config
from gateway.node.intake import Prepared, Preparer, Refused
from gateway.node.nodekeys import NodeKeys
from gateway.node.routing import decide
from gateway.protocol.envelope import Header
from gateway.protocol.party import Party
from gateway.protocol.seal import seal
from gateway.store.spool import NewMessage
from gateway.store.states import Direction

__all__ = ["check_sender", "make_preparer", "safe_token"]

_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_NINE_DIGITS = re.compile(r"[0-9]{9}")


def safe_token(value: str | None) -> str | None:
    """``value`` when it is a short identifier fit for the spool and the audit trail (case
    IDs, references), else None: free text never reaches the audit trail."""
    if value is None or not _TOKEN.fullmatch(value) or _NINE_DIGITS.fullmatch(value):
        return None
    return value


def check_sender(node: Party, sender: str | None) -> None:
    """A node sends only documents it speaks for: the document's sender party (LocalFIPS,
    or the Central Authority that writes it) must be the node's own party, or, for a
    state-level node ``fips:SS00000``, any FIPS code of the same state (its counties and
    local offices send through the state's gateway). Raises :class:`SenderMismatch`."""
    if sender is None:
        raise SenderMismatch("the document names no sender party")
    try:
        party = Party.parse(sender)
    except InputError:
        raise SenderMismatch("the document's sender is not a valid party") from None
    if party == node:
        return
    if (node.is_fips and party.is_fips and node.value.endswith("00000")
            and party.state == node.state):
        return
    raise SenderMismatch(f"the document is from {party}, which this node ({node}) does "
                         "not speak for")


def make_preparer(config: Config, keys: NodeKeys, *, registry: SchemaRegistry | None = None,
                  new_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> Preparer:
    """The outbox preparer: validate, describe (destination from the document, never the
    file name), check the sender is this node (:func:`check_sender`), route, build the
    header, seal to the destination's encryption certificate.
    Returns :class:`Prepared` or :class:`Refused` (never raises for a bad document).
    ``message_id`` fixes the envelope's MessageId (a CSENet transaction's is derived from
    its business key, so the spool's unique message IDs stop a second send); an AS4
    partner's messages get AS4 message IDs."""
    max_bytes = config.limits.max_message_bytes
    clocks = ClockKeeper(config.clocks) if config.clocks.enabled else None

    def prepare(data: bytes, *, source: str, service: str | None, now: datetime,
                message_id: str | None = None) -> Prepared | Refused:
        derived = Derived()
        report, tree = validate_parsed(data, source=source, registry=registry,
                                       max_bytes=max_bytes, derived=derived)
        if not report.valid or tree is None:
            issues = tuple(i.to_dict() for i in report.issues)
            code = report.issues[0].code if report.issues else "SchemaInvalid"
            return Refused(code, f"{len(issues)} validation error(s)", issues)
        # what validation parsed and mapped: each document parsed and mapped once
        txn = derived.csenet
        try:
            info = describe(tree) if txn is None else describe_csenet(txn)
        except InputError as exc:
            return Refused(exc.code, exc.message)
        clock = clock_events(clocks, tree, outbound=True, transaction=txn)
        del tree, txn, derived
        case_id = safe_token(info.case_id)
        if info.destination is None:
            return Refused("NoDestination", "the document names no destination party",
                           case_id=case_id)
        try:
            check_sender(keys.identity.party, info.sender)
            decision = decide(config.routing, info.destination)
            if decision.local:
                raise RoutingError("the destination is this node itself")
            to_party = Party.parse(info.destination)
            partner = config.find_partner(decision.partner)
            pmode = partner.as4 if partner is not None else None  # None: our own protocol
            if pmode is not None:  # an AS4 access point: an eb:UserMessage, not CMS
                message_id, envelope = as4_node.prepare(pmode, keys, data,
                                                        document_type=info.name,
                                                        to_party=to_party, now=now)
            else:
                header = Header(message_id or new_id(), keys.identity.party, to_party,
                                info.service, info.name, now)
                message_id = header.message_id
                cert = keys.recipient_cert(to_party, now)
                envelope = seal(data, header, sender=keys.identity, recipient_cert=cert)
        except (RoutingError, KeyMaterialError, InputError, SecurityError) as exc:
            return Refused(exc.code, exc.message, case_id=case_id)
        assert decision.rule is not None  # noqa: S101 - not local
        new = NewMessage(
            Direction.OUT, message_id=message_id, partner=decision.partner,
            from_party=str(keys.identity.party), to_party=str(to_party), service=info.service,
            action=info.name, case_id=case_id,
            envelope_digest=hashlib.sha256(envelope).hexdigest(),
            expires_at=now.timestamp() + config.retry.expiry)
        events = (("validated", {"root": info.name}),
                  ("routed", {"rule": decision.rule.pattern.kind.name.lower(),
                              "partner": str(decision.partner)}), *clock)
        return Prepared(new, data, envelope, events)

    return prepare
