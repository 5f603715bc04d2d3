"""AS4 partners in the node: the outbound build, the POST, the receipt check and the
inbound endpoint (its own path on the HTTPS listener).

- Sending: a document routed to a partner with ``protocol = "as4"`` becomes a signed,
  encrypted, compressed eb:UserMessage built from the partner's PMode (``[partners.as4]``);
  it is stored as the spool's envelope payload in the form ``Content-Type: ...`` CRLF CRLF
  body (what ``gateway as4 inspect`` reads), and goes through the same retry and breaker
  machinery as every other message. The synchronous answer is checked here: a signed
  eb:Receipt whose NonRepudiationInformation equals what we signed delivers the message
  (the receipt is stored as evidence in the audit trail); an ebMS Error fails it.
- Receiving: the partner is found by its PartyId, the message opened with its signing
  certificate and our encryption key (profile checks, signature, decryption,
  decompression), the document validated and delivered through the inbox like any other,
  and a signed eb:Receipt answered. A MessageId seen before gets the same receipt back
  (after it verified) and is not delivered again. A refusal is answered with an ebMS Error signal.
- Test messages (ebMS 3.0 Core 5.2.2: the reserved test service and action, what
  ``gateway partner ping`` and Domibus's connection monitoring send): opened and verified
  the same way, answered with a signed receipt or an ebMS Error, recorded as a
  ``ping_answered`` audit event, never stored in the spool nor delivered.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.documents.describe import describe
from gateway.documents.schemas import SchemaRegistry
from gateway.documents.validate import validate_parsed
from gateway.errors import (
    As4DeliveryFailure,
    As4Error,
    As4PModeMismatch,
    Duplicate,
    GatewayError,
    KeyMaterialError,
    ReceiptInvalid,
)
from gateway.node.clocks import ClockKeeper, clock_events
from gateway.node.config import As4PMode, Config, PartnerConfig
from gateway.node.nodekeys import NodeKeys, ReceiptCheck, ReceiptOutcome
from gateway.protocol import certs
from gateway.protocol.as4 import dsig, ebms, mime, ns, receipt, soap
from gateway.protocol.as4.message import (
    OpenedMessage,
    build_user_message,
    new_message_id,
    open_parsed,
    timestamp,
)
from gateway.protocol.envelope import ParsedEnvelope
from gateway.protocol.party import Party
from gateway.store.fsutil import commit_temp, write_temp
from gateway.store.spool import Message, NewMessage, Spool
from gateway.store.states import Direction, IllegalTransition, State
from transports import Transport
from transports.base import PeerInfo
from transports.https_client import HttpsTransport

__all__ = ["RESPONSE_TYPE", "As4Inbound", "As4ReceiptCheck", "check_answer", "from_blob", "post",
           "prepare", "to_blob"]

log = logging.getLogger("gateway.node.as4")

RESPONSE_TYPE = "application/soap+xml; charset=UTF-8"
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_AUDITABLE = re.compile(r"[!-~]{1,200}")  # what the audit trail takes as an identifier


def to_blob(content_type: str, body: bytes) -> bytes:
    return b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body


def from_blob(blob: bytes) -> tuple[str, bytes]:
    head, sep, body = blob.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"Content-Type: "):
        raise KeyMaterialError("a stored AS4 message is damaged", where="spool")
    return head[len(b"Content-Type: "):].decode("latin-1"), body


def _cert(path: Path) -> x509.Certificate:
    return certs.load_certificates_file(path)[0]


def _rsa(key: object, what: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyMaterialError(f"AS4 needs an RSA {what} key (eDelivery 1.x)", where="keys")
    return key


def _policy(pmode: As4PMode) -> ns.AlgorithmPolicy:
    return ns.AlgorithmPolicy(allow_sha1=pmode.allow_sha1, allow_cbc=pmode.allow_cbc)


def prepare(pmode: As4PMode, keys: NodeKeys, document: bytes, *, document_type: str,
            to_party: Party, now: datetime, test: bool = False) -> tuple[str, bytes]:
    """The eb:MessageId and the stored form of the AS4 message carrying ``document``.
    ``test``: the ebMS test service and action instead of the PMode's (a ping: the
    receiving MSH answers it but never delivers it), built and protected the same way."""
    identity = keys.identity
    service, service_type = ((ebms.TEST_SERVICE, None) if test
                             else (pmode.service, pmode.service_type))
    header = ebms.UserMessage(
        message_id=new_message_id(), timestamp=timestamp(now),
        sender=ebms.Party(pmode.our_party_id, pmode.our_party_type, pmode.our_role),
        receiver=ebms.Party(pmode.party_id, pmode.party_type, pmode.role),
        service=service, service_type=service_type,
        action=ebms.TEST_ACTION if test else pmode.action(document_type),
        conversation_id=str(uuid.uuid4()), agreement=pmode.agreement,
        properties=(("originalSender", str(identity.party)), ("finalRecipient", str(to_party))),
    )
    out = build_user_message(
        header, [(document, "application/xml")],
        sign_key=_rsa(identity.signing_key, "signing"), sign_cert=identity.signing_cert,
        recipient_cert=_cert(pmode.encryption_cert), compress_payloads=pmode.compress,
    )
    return out.message_id, to_blob(out.content_type, out.body)


def post(transport: Transport, blob: bytes) -> bytes | None:
    """POST a stored AS4 message with its own Content-Type (multipart boundary)."""
    content_type, body = from_blob(blob)
    if isinstance(transport, HttpsTransport):
        return transport.send("as4-message", body, content_type=content_type)
    return transport.send("as4-message", body)  # in-memory test transports


def _signed_references(blob: bytes) -> tuple[dsig.Reference, ...]:
    content_type, body = from_blob(blob)
    envelope = soap.parse_envelope(mime.parse_message(body, content_type).soap)
    signature = (envelope.security.find(f"{{{ns.DS}}}Signature")
                 if envelope.security is not None else None)
    if signature is None:
        raise ReceiptInvalid("our stored AS4 message has no signature", where="spool")
    return dsig.signed_references(signature)


class As4ReceiptCheck:
    """The sender's receipt check: AS4 partners here, everything else to ``fallback``."""

    def __init__(self, config: Config, spool: Spool, fallback: Callable[[], ReceiptCheck]):
        self.config = config
        self.spool = spool
        self.fallback = fallback

    def __call__(self, data: bytes, *, message: Message, now: datetime,
                 parsed: ParsedEnvelope | None = None) -> ReceiptOutcome:
        partner = self.config.find_partner(message.partner)
        if partner is None or partner.as4 is None:
            return self.fallback()(data, message=message, now=now, parsed=parsed)
        blob = self.spool.payload(message.id, "envelope") or b""
        return check_answer(partner.as4, data, blob, message_id=message.message_id or "",
                            now=now)


def check_answer(pmode: As4PMode, data: bytes, blob: bytes, *, message_id: str,
                 now: datetime) -> ReceiptOutcome:
    """The partner's synchronous answer to the AS4 message ``blob`` (its stored form) with
    eb:MessageId ``message_id``: an ebMS Error signal is a not-delivered outcome naming its
    codes; a receipt must be signed by the PMode's signing certificate, answer this
    message and echo in its NonRepudiationInformation exactly the references we signed.
    Anything else raises :class:`ReceiptInvalid` (``details["cause"]``: the AS4 code)."""
    try:
        signal_env = soap.parse_envelope(mime.parse_message(data).soap, source="answer")
        signal = ebms.parse_signal(signal_env.messaging)
    except As4Error as exc:
        raise ReceiptInvalid(f"the answer is not an AS4 signal ({exc.code})",
                             where="receipt", details={"cause": exc.code}) from None
    if signal.errors:
        return ReceiptOutcome(False, signal.message_id, signal.ref_to_message_id or "",
                              tuple((e.code[:60], (e.short or "")[:200])
                                    for e in signal.errors))
    try:
        verified = receipt.verify_receipt(
            data, trusted=[_cert(pmode.signing_cert)], now=now,
            signed_references=_signed_references(blob),
            ref_to_message_id=message_id, policy=_policy(pmode))
    except As4Error as exc:
        raise ReceiptInvalid(f"the AS4 receipt does not verify ({exc.code})",
                             where=exc.where or "receipt",
                             details={"cause": exc.code}) from None
    return ReceiptOutcome(True, verified.message_id, verified.ref_to_message_id or "")


def _inbox_name(message_id: str) -> str:
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", message_id)[:80].strip("_") or "as4"
    return f"{stem}-{digest}.xml"


class As4Inbound:
    """The AS4 endpoint: ``handle_https`` is the HTTPS listener's handler for its path."""

    def __init__(self, config: Config, spool: Spool, keys: NodeKeys, *,
                 clock: Callable[[], datetime], registry: SchemaRegistry | None = None) -> None:
        self.config = config
        self.spool = spool
        self.keys = keys
        self.clock = clock
        self.registry = registry
        self.clocks = ClockKeeper(config.clocks) if config.clocks.enabled else None

    def _partner(self, sender: ebms.Party) -> PartnerConfig | None:
        for partner in self.config.partners:
            pmode = partner.as4
            if pmode is not None and pmode.party_id == sender.party_id and (
                    pmode.party_type is None or pmode.party_type == sender.party_type):
                return partner
        return None

    def _error(self, exc: As4Error, ref: str | None, now: datetime) -> tuple[int, bytes]:
        return 400, receipt.build_error_signal(exc, ref_to_message_id=ref, now=now)

    def handle_https(self, body: bytes, peer: PeerInfo) -> tuple[int, bytes]:
        now = self.clock()
        try:
            message = mime.parse_message(body, peer.content_type or None)
            envelope = soap.parse_envelope(message.soap)
            user = ebms.parse_user_message(envelope.messaging)
        except As4Error as exc:
            log.warning("refused an AS4 message from %s: %s", peer.address, exc.code)
            return self._error(exc, None, now)
        partner = self._partner(user.sender)
        if partner is None or partner.as4 is None:
            log.warning("AS4 message %s from an unknown PartyId", user.message_id)
            return self._error(As4PModeMismatch("no AS4 partner has this PartyId",
                                                where="PartyInfo/From"), user.message_id, now)
        pmode = partner.as4
        if user.receiver.party_id != pmode.our_party_id:
            return self._error(As4PModeMismatch("the message is not addressed to us",
                                                where="PartyInfo/To"), user.message_id, now)
        stored = to_blob(message.content_type, body)
        try:
            opened = open_parsed(
                message, decrypt_key=_rsa(self.keys.identity.encryption_key, "encryption"),
                trusted=[_cert(pmode.signing_cert)], now=now, policy=_policy(pmode),
                require_encryption=True)
        except As4Error as exc:
            if ebms.is_test(user):
                return self._test_answered(partner, user, stored, now, refused=exc)
            log.warning("rejected AS4 message %s from %s: %s", user.message_id, partner.party,
                        exc.code)
            return self._reject(partner, user, stored, exc, now)
        if ebms.is_test(opened.user_message):  # signed: eb:Messaging is covered
            return self._test_answered(partner, user, stored, now, opened=opened)
        try:
            if len(opened.payloads) != 1:
                raise As4DeliveryFailure("exactly one payload (the document) is expected",
                                         where="PayloadInfo")
            document = opened.payloads[0].content
            report, tree = validate_parsed(document, source=user.message_id,
                                           registry=self.registry,
                                           max_bytes=self.config.limits.max_message_bytes)
            if not report.valid or tree is None:
                code = report.issues[0].code if report.issues else "SchemaInvalid"
                raise As4DeliveryFailure(f"the document is not valid ({code})",
                                         where="payload", details={"issues": len(report.issues)})
            clock = clock_events(self.clocks, tree, outbound=False,
                                 conversation_id=user.conversation_id,
                                 ref_to=user.ref_to_message_id)
            try:
                info = describe(tree)
                case_id = info.case_id if info.case_id and _TOKEN.fullmatch(info.case_id) else None
                document_type = info.name
            except GatewayError:
                case_id, document_type = None, pmode.document_type(user.action)
            del tree
        except As4Error as exc:
            log.warning("rejected AS4 message %s from %s: %s", user.message_id, partner.party,
                        exc.code)
            return self._reject(partner, user, stored, exc, now)
        # A copy seen before gets the same receipt, once it has verified like the first
        # (a tampered copy with a known MessageId is refused, not answered as a duplicate).
        existing = self.spool.find(Direction.IN, user.message_id)
        if existing is not None and existing.state is not State.REJECTED:
            return self._duplicate(existing, now)
        signature = opened.signature
        answer = receipt.build_receipt(
            user.message_id, signature.reference_xml,
            key=_rsa(self.keys.identity.signing_key, "signing"),
            certificate=self.keys.identity.signing_cert, now=now)
        self.config.inbox.mkdir(parents=True, exist_ok=True)
        target = self.config.inbox / _inbox_name(user.message_id)
        tmp = write_temp(target, document)
        new = NewMessage(Direction.IN, message_id=user.message_id, partner=partner.party,
                         transport="as4", from_party=partner.party,
                         to_party=str(self.keys.identity.party), service="as4",
                         action=document_type, case_id=case_id,
                         envelope_digest=hashlib.sha256(stored).hexdigest(),
                         document_digest=hashlib.sha256(document).hexdigest())
        try:
            with self.spool.transaction(now) as txn:
                record = txn.insert(new, State.RECEIVED, payloads={"envelope": stored},
                                    detail={"bytes": len(body), "channel": "as4"})
                txn.audit("opened", record)
                for code, detail in clock:
                    txn.audit(code, record, detail=detail)
                record = txn.transition(record.id, State.DELIVERING, expect=State.RECEIVED,
                                        payloads={"receipt": answer},
                                        changes={"source": tmp.name})
        except Duplicate:
            tmp.unlink(missing_ok=True)
            raced = self.spool.find(Direction.IN, user.message_id)
            return self._duplicate(raced, now) if raced is not None else (503, b"")
        self._finish(record, answer)
        return 200, answer

    def recover(self) -> int:
        """Finish AS4 deliveries a crash left ``delivering`` (the document is in its
        temporary file in the inbox, or already renamed into place)."""
        count = 0
        for record in self.spool.left_by_me(State.DELIVERING, Direction.IN):
            if record.transport == "as4":
                self._finish(record, self.spool.payload(record.id, "receipt") or b"")
                count += 1
        return count

    def _finish(self, record: Message, answer: bytes) -> None:
        """Rename the recorded temporary file into the inbox (unless a crash came after
        the rename), then commit ``delivered`` with the receipt we answered."""
        target = self.config.inbox / _inbox_name(record.message_id or "")
        tmp = self.config.inbox / (record.source or "")
        if record.source and tmp.is_file():
            commit_temp(tmp, target)
        with self.spool.transaction(self.clock()) as txn:
            txn.transition(record.id, State.DELIVERED, expect=State.DELIVERING,
                           changes={"source": target.name})
            txn.store_receipt(record.message_id or "", "sent", answer)
            txn.audit("receipt_sent", record, detail={"status": "Delivered"})

    def _test_answered(self, partner: PartnerConfig, user: ebms.UserMessage, stored: bytes,
                       now: datetime, *, opened: OpenedMessage | None = None,
                       refused: As4Error | None = None) -> tuple[int, bytes]:
        """An ebMS test message (the reserved test service and action: a partner's ping),
        opened and verified like any message: answered with a signed receipt (or the
        ebMS Error for what failed), recorded as a ``ping_answered`` audit event, and
        neither stored in the spool nor delivered, whatever its payload. Nothing is
        looked up by its MessageId either, so a repeated test message is simply answered
        again (a fresh receipt, still no delivery)."""
        if opened is not None:
            status, answer = 200, receipt.build_receipt(
                user.message_id, opened.signature.reference_xml,
                key=_rsa(self.keys.identity.signing_key, "signing"),
                certificate=self.keys.identity.signing_cert, now=now)
        else:
            assert refused is not None  # noqa: S101 - one or the other
            status, answer = self._error(refused, user.message_id, now)
            log.warning("refused an AS4 test message from %s: %s", partner.party,
                        refused.code)
        with self.spool.transaction(now) as txn:
            txn.audit("ping_answered", partner=partner.party, from_party=partner.party,
                      to_party=str(self.keys.identity.party),
                      message_id=user.message_id if _AUDITABLE.fullmatch(user.message_id)
                      else None, digest=hashlib.sha256(stored).hexdigest(),
                      error_code=refused.code if refused is not None else None,
                      detail={"channel": "as4", **({"ebms": refused.ebms_code} if refused
                                                   else {})})
        return status, answer

    def _reject(self, partner: PartnerConfig, user: ebms.UserMessage, stored: bytes,
                exc: As4Error, now: datetime) -> tuple[int, bytes]:
        status, answer = self._error(exc, user.message_id, now)
        new = NewMessage(Direction.IN, message_id=user.message_id, partner=partner.party,
                         transport="as4", from_party=partner.party,
                         to_party=str(self.keys.identity.party), service="as4",
                         action=user.action[:60],
                         envelope_digest=hashlib.sha256(stored).hexdigest())
        try:
            with self.spool.transaction(now) as txn:
                record = txn.insert(new, State.RECEIVED, payloads={"envelope": stored},
                                    detail={"channel": "as4"})
                txn.transition(record.id, State.REJECTED, expect=State.RECEIVED,
                               error_code=exc.code, payloads={"receipt": answer},
                               changes={"error_text": exc.message[:500]},
                               detail={"ebms": exc.ebms_code})
        except (Duplicate, IllegalTransition):
            pass  # another copy was recorded meanwhile; the answer is the same
        return status, answer

    def _duplicate(self, existing: Message, now: datetime) -> tuple[int, bytes]:
        if existing.state in (State.RECEIVED, State.DELIVERING):
            return 503, b""
        answer = self.spool.payload(existing.id, "receipt") or b""
        with self.spool.transaction(now) as txn:
            txn.audit("duplicate", existing, detail={"state": str(existing.state)})
        return (200 if existing.state is State.DELIVERED else 400), answer
