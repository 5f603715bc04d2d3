"""Two real gateways (``gateway run`` processes, mutual TLS on 127.0.0.1) exchanging over
AS4: signed receipts with NonRepudiationInformation, a duplicate answered with the same
receipt, the partner down then back, and a tampered message refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.demo.samples import maintenance_application
from gateway.node.config import load_config
from gateway.node.nodekeys import load_node_keys
from gateway.node.storeopen import sealer_for
from gateway.protocol.as4 import mime, receipt
from gateway.protocol.certs import load_certificates_file
from gateway.store.audit import AuditLog
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.as4partners import as4_partner
from tests.support.gwnodes import (
    Daemon,
    NodeSpec,
    drop,
    free_port,
    https_node,
    https_to,
    inbox,
    wait_until,
    write_config,
)
from tests.support.pki import TestPki
from transports.errors import TransportError
from transports.https_client import HttpsTransport

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CA, NL = "fips:0600000", "iso3166:NL"
FAST = """
[retry]
base = "300ms"
factor = 2
max_delay = "2s"
jitter = 0.1
expiry = "5m"
[breaker]
failure_threshold = 3
reset_after = "1s"
[schedule]
outbox_scan = "200ms"
retry_scan = "200ms"
"""


Row = tuple[State, bytes | None, bytes | None]


def messages(spec: NodeSpec, direction: Direction) -> list[Row]:
    config = load_config(spec.config_path)
    spool = SqliteSpool(config.spool.database)
    spool.use_sealer(sealer_for(load_node_keys(config)))  # payloads rest sealed
    try:
        return [(m.state, spool.payload(m.id, "envelope"), spool.payload(m.id, "receipt"))
                for m in spool.select(direction=direction, limit=1000)]
    finally:
        spool.close()



def test_two_gateways_over_as4(tmp_path: Path, key_cache: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    pki = TestPki(tmp_path / "pki")
    a_port, b_port = free_port(), free_port()
    a = https_node("a", CA, tmp_path, pki, a_port)
    b = https_node("b", NL, tmp_path, pki, b_port)
    url_b, options_b = https_to(pki, "a", b_port)
    url_a, options_a = https_to(pki, "b", a_port)
    a.routes = [(NL, NL)]
    b.routes = [(CA, CA)]
    # each side's PMode names the other's certificates (from its key directory)
    a.extra = FAST + as4_partner(NL, url_b.replace("/v1/messages", "/as4"), options_b,
                                 their_id="NL-CA", our_id="US-CA", their_keys=b.keys)
    b.extra = FAST + as4_partner(CA, url_a.replace("/v1/messages", "/as4"), options_a,
                                 their_id="US-CA", our_id="NL-CA", their_keys=a.keys)
    for spec in (a, b):
        write_config(spec, key_cache, [a, b])
    daemon_a, daemon_b = Daemon(a), Daemon(b)
    first = maintenance_application("NL", "0600000", seed=1)
    second = maintenance_application("NL", "0600000", seed=2)
    try:
        daemon_a.start()
        daemon_b.start()
        drop(a, "first.xml", first)
        wait_until(lambda: [m[0] for m in messages(a, Direction.OUT)] == [State.DELIVERED],
                   30, "the first message to be delivered with a receipt")
        assert inbox(b) == [first]  # the exact bytes
        # the Hague acknowledgement clock opens at both ends (docs/clocks.md)
        for spec, owes in ((a, "partner"), (b, "us")):
            conn = sqlite3.connect(spec.root / "spool/gateway.db")
            try:
                started = [e.event.detail for e in
                           AuditLog(conn, create=False).query(code="clock_started")]
            finally:
                conn.close()
            assert [(d["rule"], d["owes"]) for d in started] == [
                ("hague-12.3-acknowledge", owes)]
        _, stored, answer = messages(a, Direction.OUT)[0]
        assert stored is not None
        assert answer is not None
        # the receipt A kept verifies against B's signing certificate, with its NRI
        b_sign = load_certificates_file(b.keys / "sign.crt")
        content_type, body = stored.split(b"\r\n\r\n", 1)
        verified = receipt.verify_receipt(answer, trusted=b_sign, now=None)
        assert verified.nri
        assert mime.parse_message(body, content_type.decode()[len("Content-Type: "):])
        assert b">SubmitApplication</eb:Action>" in body  # the PMode's action mapping
        # the receipt is non-repudiation evidence in A's audit trail, byte for byte
        conn = sqlite3.connect(a.root / "spool/gateway.db")
        try:
            kept = AuditLog(conn, create=False).receipts()
        finally:
            conn.close()
        assert [(r.direction, r.data) for r in kept] == [("received", answer)]
        # ... and `gateway audit show` verifies it there, on both sides
        for spec, direction in ((a, "received"), (b, "sent")):
            assert main(["--config", str(spec.config_path), "audit", "show",
                         kept[0].message_id]) == 0
            shown = capsys.readouterr().out
            assert f"receipt {direction}" in shown
            assert "signature: verified: AS4 receipt" in shown, shown
        assert b"MaintenanceApplication" not in body  # the document is encrypted

        # a duplicate (the same message posted again) gets the same receipt, no delivery
        client = HttpsTransport(url_b.replace("/v1/messages", "/as4"),
                                cert=options_b["client_cert"], key=options_b["client_key"],
                                ca=options_b["ca_file"])
        try:
            again = client.send("again", body, content_type=content_type.decode()[14:])
            assert again == messages(b, Direction.IN)[0][2]
            assert inbox(b) == [first]
            # a tampered copy (one byte of the encrypted payload) is refused
            tampered = bytearray(body)
            tampered[body.rindex(b"\r\n--MIMEBoundary") - 10] ^= 0x01
            with pytest.raises(TransportError) as refused:
                client.send("tampered", bytes(tampered), content_type=content_type.decode()[14:])
            assert b'errorCode="EBMS:0102"' in getattr(refused.value, "body", b"")
        finally:
            client.close()
        assert inbox(b) == [first]

        # the partner goes down: A retries; it comes back: the message flows
        assert daemon_b.terminate() == 0
        drop(a, "second.xml", second)
        wait_until(lambda: State.RETRYING in [m[0] for m in messages(a, Direction.OUT)],
                   30, "A to retry while B is down")
        daemon_b.start()
        wait_until(lambda: [m[0] for m in messages(a, Direction.OUT)]
                   == [State.DELIVERED, State.DELIVERED], 60,
                   "the second message to be delivered after B came back")
        assert inbox(b) == sorted([first, second])
    finally:
        codes = (daemon_a.terminate(), daemon_b.terminate())
    assert codes == (0, 0), daemon_a.tail() + daemon_b.tail()
