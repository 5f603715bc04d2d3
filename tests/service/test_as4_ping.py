"""``gateway partner ping`` to an AS4 access point, and our AS4 endpoint answering one,
on loopback over real mutual TLS: node A pings node B's ``/as4`` endpoint (B runs its
HTTPS listener in process) with a signed, encrypted ebMS test message (ebMS 3.0 Core
5.2.2: the reserved test service and action); B verifies it like any message, answers
with a signed receipt and stores and delivers nothing. A sender whose signing certificate
B has not registered, or whose PartyId B does not know, gets an ebMS Error named in the
result; a test message with a broken signature is refused; a test message carrying a
valid business document is still not delivered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from gateway.cli import main
from gateway.demo.samples import maintenance_application
from gateway.errors import ReceiptInvalid
from gateway.node import as4_node
from gateway.node.config import As4PMode, load_config
from gateway.node.daemon import Gateway
from gateway.node.nodekeys import load_node_keys
from gateway.node.ping import PING_DOCUMENT
from gateway.protocol.as4 import ebms
from gateway.protocol.party import Party
from gateway.service.context import NodeContext
from gateway.service.partners import ping_partner
from gateway.store.states import Direction
from tests.support.as4partners import as4_partner
from tests.support.gwnodes import NodeSpec, free_port, https_node, https_to, write_config
from tests.support.pki import TestPki
from transports.errors import HttpStatus
from transports.https_client import HttpsTransport

pytestmark = [pytest.mark.integration]

CA, NL, WA, TX = "fips:0600000", "iso3166:NL", "fips:5300000", "fips:4800000"
#: audit codes of a message's life: none may appear on B for a ping
MESSAGE_CODES = {"received", "opened", "delivering", "delivered", "rejected", "duplicate",
                 "receipt_sent"}


@dataclass
class Net:
    a: NodeSpec  # B's AS4 partner, certificates registered both ways
    x: NodeSpec  # in B's PMode, but with A's signing certificate named for it
    u: NodeSpec  # a PartyId B has no PMode for
    w: NodeSpec  # A's identity, but its PMode names the wrong certificate for B's receipts
    b: NodeSpec
    gateway_b: Gateway
    url: str  # B's AS4 endpoint
    options: dict[str, str]  # A's client TLS options for it


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("as4ping")
    cache = root / "keys-cache"
    cache.mkdir()
    pki = TestPki(root / "pki")
    b_port = free_port()
    b = https_node("b", NL, root, pki, b_port)
    a, x, u, w = (NodeSpec("a", CA, root / "a"), NodeSpec("x", WA, root / "x"),
                  NodeSpec("u", TX, root / "u"), NodeSpec("w", CA, root / "w"))
    url = f"https://127.0.0.1:{b_port}/as4"
    options: dict[str, str] = {}
    for spec, our_id in ((a, "US-CA"), (x, "US-WA"), (u, "US-TX"), (w, "US-CA")):
        _, opts = https_to(pki, spec.name, b_port)
        options = opts if spec is a else options
        spec.extra = as4_partner(NL, url, opts, their_id="NL-CA", our_id=our_id,
                                 their_keys=b.keys,
                                 signing_keys=a.keys if spec is w else None)
    _, b_opts = https_to(pki, "b", free_port())  # B never sends here
    b.extra = (as4_partner(CA, "https://127.0.0.1:9/as4", b_opts, their_id="US-CA",
                           our_id="NL-CA", their_keys=a.keys)
               + as4_partner(WA, "https://127.0.0.1:9/as4", b_opts, their_id="US-WA",
                             our_id="NL-CA", their_keys=x.keys, signing_keys=a.keys))
    for spec in (a, x, u, w, b):
        write_config(spec, cache, [spec, b] if spec is not b else [a, x, u, b])
    gateway_b = Gateway(load_config(b.config_path)).start(schedule=False)
    try:
        yield Net(a, x, u, w, b, gateway_b, url, options)
    finally:
        gateway_b.stop()


def events(spec: NodeSpec, code: str | None = None) -> list[dict[str, object]]:
    with NodeContext.open(spec.config_path) as ctx, ctx.audit() as log:
        return [e.to_dict() for e in log.query(code=code)]


def assert_nothing_kept(b: NodeSpec) -> None:
    """B neither stored a message (any direction) nor delivered a file, nor recorded one."""
    with NodeContext.open(b.config_path) as ctx:
        assert all(ctx.spool.select(direction=d) == [] for d in Direction)
    assert not b.inbox.exists() or list(b.inbox.iterdir()) == []
    assert MESSAGE_CODES.isdisjoint(str(e["code"]) for e in events(b))


def test_ping_sends_a_test_message_and_verifies_the_signed_receipt(
        net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    with NodeContext.open(net.a.config_path) as ctx:
        (result,) = ping_partner(ctx, NL, operator="olga", now=datetime.now(UTC))
    assert (result.ok, result.check, result.code) == (True, "message", None), result
    assert "AS4 test message" in result.reason
    assert "signed receipt verified" in result.reason
    assert "NonRepudiationInformation matches" in result.reason
    (pinged,) = events(net.a, "partner_pinged")
    assert (pinged["actor"], pinged["partner"], pinged["error_code"]) == ("olga", NL, None)
    assert pinged["detail"]["check"] == "message"  # type: ignore[index]
    # B opened and answered it, and kept nothing but the ping_answered event
    (answered,) = events(net.b, "ping_answered")
    assert (answered["from_party"], answered["to_party"], answered["error_code"]) == (CA, NL,
                                                                                     None)
    assert answered["detail"] == {"channel": "as4"}
    assert_nothing_kept(net.b)
    # the CLI says the same
    assert main(["--config", str(net.a.config_path), "partner", "ping", NL,
                 "--format", "json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert (shown["ok"], shown["check"], shown["url"]) == (True, "message", net.url)


def test_a_signing_certificate_b_has_not_registered_is_named(net: Net) -> None:
    with NodeContext.open(net.x.config_path) as ctx:
        (result,) = ping_partner(ctx, NL, operator="olga", now=datetime.now(UTC))
    assert (result.ok, result.check) == (False, "message"), result
    assert result.code == "EBMS:0101", result
    assert "refused the AS4 test message: ebMS Error EBMS:0101 (FailedAuthentication)" \
        in result.reason
    (answered,) = events(net.b, "ping_answered")
    assert (answered["from_party"], answered["error_code"]) == (WA, "As4FailedAuthentication")
    assert answered["detail"] == {"channel": "as4", "ebms": "EBMS:0101"}
    assert_nothing_kept(net.b)


def test_an_unknown_party_id_gets_the_ebms_error(net: Net) -> None:
    with NodeContext.open(net.u.config_path) as ctx:
        (result,) = ping_partner(ctx, NL, operator="olga", now=datetime.now(UTC))
    assert (result.ok, result.check, result.code) == (False, "message", "EBMS:0010"), result
    assert "ProcessingModeMismatch" in result.reason
    assert events(net.b, "ping_answered") == []  # no partner to record it against
    assert_nothing_kept(net.b)


def test_a_receipt_not_signed_by_the_registered_key_fails(net: Net) -> None:
    with NodeContext.open(net.w.config_path) as ctx:
        (result,) = ping_partner(ctx, NL, operator="olga", now=datetime.now(UTC))
    assert (result.ok, result.check, result.code) == (False, "message",
                                                      "As4InvalidReceipt"), result
    assert "the access point's answer does not verify" in result.reason
    # B did answer it (with a receipt signed by its own key), and kept nothing
    assert [e["error_code"] for e in events(net.b, "ping_answered")] == [None]
    assert_nothing_kept(net.b)


def test_an_answer_that_is_no_ebms_signal_is_refused(net: Net) -> None:
    pmode, message_id, blob = _test_message(net, PING_DOCUMENT)
    for junk in (b"<html>hello</html>", b"not xml"):
        with pytest.raises(ReceiptInvalid) as refused:
            as4_node.check_answer(pmode, junk, blob, message_id=message_id,
                                  now=datetime.now(UTC))
        assert refused.value.details["cause"].startswith("As4"), refused.value


def test_a_partner_that_is_down_fails_clearly(net: Net) -> None:
    net.gateway_b.stop()
    with NodeContext.open(net.a.config_path) as ctx:
        (result,) = ping_partner(ctx, NL, operator="olga", now=datetime.now(UTC))
    assert (result.ok, result.check, result.code) == (False, "message", "ConnectFailed")
    assert "cannot connect to 127.0.0.1:" in result.reason


def _test_message(net: Net, document: bytes) -> tuple[As4PMode, str, bytes]:
    config = load_config(net.a.config_path)
    partner = config.find_partner(NL)
    assert partner is not None
    assert partner.as4 is not None
    message_id, blob = as4_node.prepare(partner.as4, load_node_keys(config), document,
                                        document_type="MaintenanceApplication",
                                        to_party=Party.parse(NL), now=datetime.now(UTC),
                                        test=True)
    return partner.as4, message_id, blob


def _client(net: Net) -> HttpsTransport:
    return HttpsTransport(net.url, cert=net.options["client_cert"],
                          key=net.options["client_key"], ca=net.options["ca_file"])


def test_a_test_message_is_never_delivered_even_with_a_valid_document(net: Net) -> None:
    # what the ping sends, but carrying a valid Hague application: answered, not delivered;
    # posted twice (a repeated MessageId): answered again, still nothing kept
    pmode, message_id, blob = _test_message(net, maintenance_application("NL", "0600000"))
    content_type, body = as4_node.from_blob(blob)
    assert f"<eb:Service>{ebms.TEST_SERVICE}</eb:Service>".encode() in body
    assert f"<eb:Action>{ebms.TEST_ACTION}</eb:Action>".encode() in body
    client = _client(net)
    try:
        answers = [client.send("test", body, content_type=content_type) for _ in range(2)]
    finally:
        client.close()
    for answer in answers:
        assert answer is not None
        outcome = as4_node.check_answer(pmode, answer, blob, message_id=message_id,
                                        now=datetime.now(UTC))
        assert (outcome.delivered, outcome.ref_to_message_id) == (True, message_id)
    assert_nothing_kept(net.b)
    assert [e["error_code"] for e in events(net.b, "ping_answered")] == [None, None]


def test_a_test_message_with_a_broken_signature_is_refused(net: Net) -> None:
    _, _, blob = _test_message(net, PING_DOCUMENT)
    content_type, body = as4_node.from_blob(blob)
    start = body.index(b"<eb:ConversationId>") + len(b"<eb:ConversationId>")
    tampered = bytearray(body)
    tampered[start] = ord("a") if tampered[start] != ord("a") else ord("b")  # signed text
    client = _client(net)
    try:
        with pytest.raises(HttpStatus) as refused:
            client.send("tampered", bytes(tampered), content_type=content_type)
    finally:
        client.close()
    assert refused.value.status == 400
    assert b'errorCode="EBMS:0101"' in refused.value.body
    assert_nothing_kept(net.b)
    (answered,) = events(net.b, "ping_answered")
    assert answered["error_code"] == "As4FailedAuthentication"
