"""Ping a partner: can we reach it, and does it answer as the partner we registered?
(``gateway partner ping``, the console's partners page; the answering side is
:func:`answer_ping`, called by :class:`gateway.node.inbound.Inbound`, and for AS4 test
messages :class:`gateway.node.as4_node.As4Inbound`.)

What is checked depends on the transport, and no business document is ever sent:

- **HTTPS to a CSE gateway**: a ``ping`` envelope (``Service`` ping, ``Action`` Ping, an
  empty ``Ping`` element as the document), signed with our key and encrypted to the
  partner's registered certificate, is POSTed over mutual TLS; the partner opens and
  verifies it like any message but neither stores nor delivers it, and answers with a
  signed receipt, which we verify. A ``Delivered`` receipt proves the whole path: TLS both
  ways, the partner holds the key of the certificate we encrypt to, it has our signing
  certificate registered, and its receipt is signed by the key we have registered for it.
  A ``Rejected`` one names what the partner refused (e.g. ``SignerNotRegistered``).
- **HTTPS to an AS4 access point** (a partner with ``protocol = "as4"``: Domibus,
  phase4, Holodeck B2B, or our own AS4 endpoint): an ebMS test message, the UserMessage
  that ebMS 3.0 Core (section 5.2.2) reserves for this (``eb:Service``
  ``http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/service``, ``eb:Action``
  ``.../200704/test``; the receiving MSH answers it as its PMode says but never delivers
  it to its consumer: Domibus's connection monitoring sends the same). It carries
  :data:`PING_DOCUMENT` as its one payload (Domibus's carries ``<hello>world</hello>``),
  is built, compressed, signed and encrypted from the partner's PMode by
  :func:`gateway.node.as4_node.prepare` exactly like a real message, POSTed like one, and
  the answer goes through the receipt check real sends use
  (:func:`gateway.node.as4_node.check_answer`): a signed eb:Receipt answering its
  MessageId whose NonRepudiationInformation equals what we signed passes (check
  ``message``); an ebMS Error fails with its code (e.g. ``EBMS:0101`` when the access
  point does not have our signing certificate); anything else fails with the reason.
  Nothing is stored in the spool: the only record is the ``partner_pinged`` audit event
  (:func:`gateway.service.partners.ping_partner`), and ``ping_answered`` at the partner
  when it is a gateway (:class:`gateway.node.as4_node.As4Inbound`).
- **HTTPS between a relay (a federal hub) and its partners**, which register no
  encryption certificates for each other as the relay never opens messages: a ``GET``
  of its URL over mutual TLS (our client certificate, its CA pinned); any HTTP answer
  counts, and the result (check ``tls``) says why no message was sent.
- **SFTP, a local folder**: connect (host key pinned, key authentication) and list the
  remote folder; the number of files waiting there is reported, never their names.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import GatewayError, InputError
from gateway.node import as4_node
from gateway.node.config import As4PMode, PartnerConfig, TransportConfig
from gateway.node.nodekeys import NodeKeys
from gateway.protocol.envelope import Header, ParsedEnvelope
from gateway.protocol.party import Party
from gateway.protocol.receipts import verify_receipt
from gateway.protocol.seal import OpenPolicy, open_parsed, seal
from gateway.store.spool import Spool
from transports import Transport, TransportError, open_transport
from transports.errors import HttpStatus
from transports.https_client import probe

__all__ = ["PING_ACTION", "PING_DOCUMENT", "PingResult", "answer_ping", "ping_transport"]

log = logging.getLogger("gateway.node.ping")

PING_ACTION = "Ping"
PING_DOCUMENT = b'<Ping xmlns="urn:cse-gateway:ping:1"/>\n'
#: A ping waits at most this long for each transport (less when the transport says so).
PING_TIMEOUT = 10.0
# what of a partner's ebMS Error a ping result repeats: the standard code and short name
_EBMS_CODE = re.compile(r"EBMS:\d{4}")
_EBMS_SHORT = re.compile(r"[A-Za-z]{1,40}")


@dataclass(frozen=True)
class PingResult:
    """One transport's answer. ``check``: ``message`` (signed ping or AS4 test message,
    verified receipt), ``tls`` (handshake only), ``session`` (SFTP or folder listed)."""

    partner: str
    url: str
    check: str
    ok: bool
    latency_ms: int
    code: str | None = None  # the error code when not ok
    reason: str = ""  # what was proved, or what failed (no personal data: there is none)


def ping_transport(keys: NodeKeys, partner: PartnerConfig, tc: TransportConfig, *,
                   now: datetime,
                   opener: Callable[..., Transport] = open_transport,
                   extra: dict[str, Any] | None = None) -> PingResult:
    """Ping ``partner`` over one of its transports (see the module's docstring)."""
    options = {**tc.options(), **(extra or {})}
    if "timeout" in options:
        options["timeout"] = min(float(options["timeout"]), PING_TIMEOUT)
    if tc.scheme == "https" and partner.as4 is not None:
        return _as4(keys, partner, partner.as4, tc, options, now=now, opener=opener)
    if tc.scheme == "https" and partner.protocol == "as4":
        return _tls(partner, tc, options, note="an AS4 partner without a PMode")
    if tc.scheme == "https":
        return _message(keys, partner, tc, options, now=now, opener=opener)
    return _session(partner, tc, options, opener)


def _result(partner: PartnerConfig, tc: TransportConfig, check: str, started: float, *,
            code: str | None = None, reason: str = "") -> PingResult:
    took = max(0, round((time.monotonic() - started) * 1000))
    return PingResult(partner.party, tc.url, check, code is None, took, code, reason)


def _post(tc: TransportConfig, options: dict[str, Any], opener: Callable[..., Transport],
          send: Callable[[Transport], bytes | None]) -> tuple[bytes | None, HttpStatus | None]:
    """Open ``tc``'s transport, ``send`` on it and close it: (the answer, None), or (its
    body, the status) when the partner answered an HTTP error with a body (which may be a
    signed refusal). Any other failure raises :class:`TransportError`."""
    transport: Transport | None = None
    try:
        transport = opener(tc.url, **options)
        return send(transport), None
    except HttpStatus as exc:
        if not exc.body:
            raise
        return exc.body, exc
    finally:
        if transport is not None:
            transport.close()


def _message(keys: NodeKeys, partner: PartnerConfig, tc: TransportConfig,
             options: dict[str, Any], *, now: datetime,
             opener: Callable[..., Transport]) -> PingResult:
    started = time.monotonic()
    try:
        to = Party.parse(partner.party)
        if not keys.encryption.get(to):
            # a relay (a federal hub) never opens messages, so its partners register no
            # encryption certificate for it, nor it for them: nothing to seal a ping to
            return _tls(partner, tc, options, note="no encryption certificate of "
                        f"{partner.party} is registered here, so no signed ping")
        header = Header(str(uuid.uuid4()), keys.identity.party, to, "ping", PING_ACTION, now)
        envelope = seal(PING_DOCUMENT, header, sender=keys.identity,
                        recipient_cert=keys.recipient_cert(to, now))
    except GatewayError as exc:
        return _result(partner, tc, "message", started, code=exc.code,
                       reason=f"cannot build the ping: {exc.message}")
    digest = hashlib.sha256(envelope).hexdigest()
    started = time.monotonic()
    try:
        answer, status = _post(tc, options, opener, lambda transport: transport.send(
            f"ping-{header.message_id}.xml", envelope))
    except TransportError as exc:
        return _result(partner, tc, "message", started, code=exc.code, reason=str(exc))
    if status is not None and status.retryable:  # a 4xx answer carries a Rejected receipt
        return _result(partner, tc, "message", started, code=status.code, reason=str(status))
    if not answer:
        return _result(partner, tc, "message", started, code="NoReceipt",
                       reason="the partner accepted the ping but sent no receipt (a relay, "
                       "or not a CSE gateway)")
    try:
        verified = verify_receipt(answer, expected_signer=to, sent_envelope_digest=digest,
                                  trust=keys.trust, directory=keys.directory, now=now,
                                  max_bytes=keys.max_bytes)
    except GatewayError as exc:
        cause = str(exc.details.get("cause", exc.code))
        return _result(partner, tc, "message", started, code=cause,
                       reason=f"the partner's receipt does not verify: {exc.message}")
    if verified.status != "Delivered":
        codes = [code for code, _ in verified.errors] or ["Rejected"]
        return _result(partner, tc, "message", started, code=codes[0],
                       reason="the partner refused the ping: " + ", ".join(codes))
    return _result(partner, tc, "message", started,
                   reason=f"signed ping opened by {partner.party}; its signed receipt "
                   "verified")


def _as4(keys: NodeKeys, partner: PartnerConfig, pmode: As4PMode, tc: TransportConfig,
         options: dict[str, Any], *, now: datetime,
         opener: Callable[..., Transport]) -> PingResult:
    """An ebMS test message (test service and action, :data:`PING_DOCUMENT` as its one
    payload), built, signed and encrypted by :func:`as4_node.prepare` from the partner's
    PMode like a real message, POSTed like one, and its answer checked by the receipt
    check real sends use (:func:`as4_node.check_answer`)."""
    started = time.monotonic()
    try:
        message_id, blob = as4_node.prepare(pmode, keys, PING_DOCUMENT,
                                            document_type=PING_ACTION,
                                            to_party=Party.parse(partner.party), now=now,
                                            test=True)
    except GatewayError as exc:
        return _result(partner, tc, "message", started, code=exc.code,
                       reason=f"cannot build the AS4 test message: {exc.message}")
    started = time.monotonic()
    try:  # an HTTP error's body may be an ebMS Error: 4xx (ours) or 5xx (some MSHs)
        answer, status = _post(tc, options, opener,
                               lambda transport: as4_node.post(transport, blob))
    except TransportError as exc:
        return _result(partner, tc, "message", started, code=exc.code, reason=str(exc))
    if not answer:
        return _result(partner, tc, "message", started, code="NoReceipt",
                       reason="the access point took the AS4 test message but answered no "
                       "receipt (its PMode may send receipts asynchronously)")
    try:
        outcome = as4_node.check_answer(pmode, answer, blob, message_id=message_id, now=now)
    except GatewayError as exc:
        if status is not None:  # an HTTP error whose body is no AS4 signal
            return _result(partner, tc, "message", started, code=status.code,
                           reason=str(status))
        cause = str(exc.details.get("cause", exc.code))
        return _result(partner, tc, "message", started, code=cause,
                       reason=f"the access point's answer does not verify: {exc.message}")
    if not outcome.delivered:
        codes = [c for c, _ in outcome.errors if _EBMS_CODE.fullmatch(c)] or ["EbmsError"]
        shorts = [s for _, s in outcome.errors if _EBMS_SHORT.fullmatch(s)]
        named = ", ".join(codes) + (f" ({', '.join(shorts)})" if shorts else "")
        return _result(partner, tc, "message", started, code=codes[0],
                       reason=f"the access point refused the AS4 test message: ebMS Error "
                       f"{named}")
    return _result(partner, tc, "message", started,
                   reason=f"signed, encrypted AS4 test message (ebMS test service) opened by "
                   f"{partner.party}'s access point; its signed receipt verified and its "
                   "NonRepudiationInformation matches what we signed")


def _tls(partner: PartnerConfig, tc: TransportConfig, options: dict[str, Any], *,
         note: str = "an AS4 access point") -> PingResult:
    started = time.monotonic()
    try:
        status = probe(tc.url, cert=options["cert"], key=options["key"], ca=options["ca"],
                       timeout=float(options.get("timeout", PING_TIMEOUT)))
    except TransportError as exc:
        return _result(partner, tc, "tls", started, code=exc.code, reason=f"{exc} ({note})")
    return _result(partner, tc, "tls", started,
                   reason=f"mutual TLS established; the endpoint answered HTTP {status} to a "
                   f"GET ({note}: no message sent)")


def _session(partner: PartnerConfig, tc: TransportConfig, options: dict[str, Any],
             opener: Callable[..., Transport]) -> PingResult:
    started = time.monotonic()
    transport: Transport | None = None
    try:
        transport = opener(tc.url, **options)
        waiting = len(transport.list())
    except TransportError as exc:
        return _result(partner, tc, "session", started, code=exc.code, reason=str(exc))
    finally:
        if transport is not None:
            transport.close()
    return _result(partner, tc, "session", started,
                   reason=f"connected and listed the folder ({waiting} file(s) waiting)")


# --- the answering side ---------------------------------------------------------------

ReceiptFor = Callable[[Header, str, "GatewayError | None", datetime], bytes]


def answer_ping(parsed: ParsedEnvelope, *, keys: NodeKeys, spool: Spool, now: datetime,
                policy: OpenPolicy, channel: str, receipt_for: ReceiptFor) -> tuple[int, bytes]:
    """A partner's ping addressed to this node: opened and verified like a message (so
    the answer says whether its keys work with ours), never stored or delivered; answered
    with a signed receipt (200 Delivered, 400 Rejected with the error code) and recorded
    as a ``ping_answered`` event. A ping that came as a file (SFTP, folders) is recorded
    and dropped: there is no one to answer synchronously."""
    header = parsed.header
    error: GatewayError | None = None
    try:
        opened = open_parsed(parsed, node=keys.identity, trust=keys.trust,
                             directory=keys.directory, now=now, policy=policy)
        if opened.header.action != PING_ACTION:
            error = InputError(f"a ping's Action is {PING_ACTION}")
    except GatewayError as exc:
        error = exc
    receipt = receipt_for(header, parsed.digest, error, now)
    with spool.transaction(now) as txn:
        txn.audit("ping_answered", message_id=header.message_id,
                  from_party=str(header.from_party), to_party=str(header.to_party),
                  partner=str(header.from_party), digest=parsed.digest,
                  error_code=error.code if error else None, detail={"channel": channel})
    if error is not None:
        log.warning("refused a ping from %s: %s", header.from_party, error.code)
    return (200 if error is None else 400), receipt
