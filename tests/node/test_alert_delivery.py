"""Alerts delivered for real: to a local SMTP server (aiosmtpd) that requires STARTTLS, and
to a local HTTPS webhook; `gateway alerts test`; a message that fails for good in a real
gateway is alerted on both, with no personal value in either, and audited."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import NodeSpec, PartnerSpec, free_port, write_config
from tests.support.pki import TestPki
from tests.support.privacy import leaks, personal_values
from transports.errors import HttpStatus
from transports.memory import MemoryNetwork

pytestmark = [pytest.mark.integration]

A, B = "fips:0600000", "fips:4800000"


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.tls.append(session.ssl is not None)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


@pytest.fixture
def smtp(pki: TestPki) -> Iterator[tuple[int, Mailbox]]:
    files = pki.server("smtp")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files.cert), str(files.key))
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True)
    controller.start()
    yield port, box
    controller.stop()


@pytest.fixture
def webhook(pki: TestPki) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    files = pki.server("webhook")
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            got.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files.cert), str(files.key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], got
    server.shutdown()
    server.server_close()


def alerts_section(pki: TestPki, smtp_port: int, hook_port: int, extra: str = "") -> str:
    return f"""
[alerts]
interval = "1s"
rate_limit = "10m"
[alerts.email]
host = "127.0.0.1"
port = {smtp_port}
from = "gateway@a.example"
to = ["oncall@a.example"]
ca_file = "{pki.ca.cert}"
timeout = "5s"
[alerts.webhook]
url = "https://127.0.0.1:{hook_port}/hook"
ca_file = "{pki.ca.cert}"
timeout = "5s"
{extra}"""


def alerts_test(config: Path) -> subprocess.CompletedProcess[str]:
    """``gateway --config CONFIG alerts test`` in a child process."""
    return subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), "alerts",
                           "test"], check=False, capture_output=True, text=True, timeout=60)


def test_gateway_alerts_test_sends_on_both_channels(
        tmp_path: Path, pki: TestPki, smtp: tuple[int, Mailbox],
        webhook: tuple[int, list[dict[str, Any]]]) -> None:
    spec = NodeSpec("a", A, tmp_path / "a", extra=alerts_section(pki, smtp[0], webhook[0]))
    config = write_config(spec, tmp_path / "keys", [spec])
    done = alerts_test(config)
    assert done.returncode == 0, done.stderr
    assert "test alert sent (email, webhook)" in done.stdout
    box = smtp[1]
    assert len(box.messages) == 1
    assert box.tls == [True]
    sender, to, body = box.messages[0]
    assert (sender, to) == ("gateway@a.example", ["oncall@a.example"])
    assert b"Subject: [cse-gateway fips:0600000] test: test alert" in body
    assert [d["rule"] for d in webhook[1]] == ["test"]
    spool = SqliteSpool(load_config(config).spool.database)
    try:
        events = spool.audit_after(0, ["alert_sent"])
    finally:
        spool.close()
    assert [dict(e.event.detail) for e in events] == [
        {"rule": "test", "alerts": 1, "channels": "email,webhook"}]


def test_an_unreachable_channel_is_an_error_naming_it(tmp_path: Path, pki: TestPki) -> None:
    dead = free_port()
    spec = NodeSpec("a", A, tmp_path / "a", extra=alerts_section(pki, dead, dead))
    config = write_config(spec, tmp_path / "keys", [spec])
    done = alerts_test(config)
    assert done.returncode == 1
    assert f"alerts.email 127.0.0.1:{dead}" in done.stderr
    assert f"alerts.webhook 127.0.0.1:{dead}" in done.stderr


def test_a_mail_server_without_starttls_is_refused(tmp_path: Path, pki: TestPki) -> None:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)  # no TLS offered
    controller.start()
    try:
        spec = NodeSpec("a", A, tmp_path / "a", extra=alerts_section(pki, port, free_port()))
        config = write_config(spec, tmp_path / "keys", [spec])
        done = alerts_test(config)
    finally:
        controller.stop()
    assert done.returncode == 1
    assert box.messages == []  # never sent in clear


def test_a_failed_message_is_alerted_without_personal_values(
        tmp_path: Path, pki: TestPki, smtp: tuple[int, Mailbox],
        webhook: tuple[int, list[dict[str, Any]]]) -> None:
    spec = NodeSpec("a", A, tmp_path / "a",
                    extra=alerts_section(pki, smtp[0], webhook[0],
                                         "[alerts.rules]\ncertificate_expiry = false\n"))
    spec.partners = [PartnerSpec(B, [("memory://b", {})])]
    other = NodeSpec("b", B, tmp_path / "b")
    network = MemoryNetwork()

    def refuse(name: str, data: bytes) -> bytes:
        raise HttpStatus("forbidden", status=403)  # permanent: the message fails for good

    network.serve("b", refuse)
    gw = Gateway(load_config(write_config(spec, tmp_path / "keys", [spec, other])),
                 transport_options={"memory": {"network": network}})
    docs = [interstate_transaction("0600000", "4800000", seed=i) for i in range(3)]
    try:
        spec.outbox.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(docs):
            (spec.outbox / f"d{i}.xml").write_bytes(data)
            (spec.outbox / f"d{i}.xml.ready").write_bytes(b"")
        gw.scan()
        gw.send_all(timeout=30)
        failed = gw.spool.select(states=[State.FAILED], direction=Direction.OUT)
        assert len(failed) == 3
        assert gw.check_alerts() == 1  # the first at once, two held back by the rate limit
    finally:
        gw.stop()
    box, hooks = smtp[1], webhook[1]
    assert len(box.messages) == 1
    assert len(hooks) == 1
    first = hooks[0]["alerts"][0]
    assert first["rule"] == "message_failed"
    assert first["facts"]["message_id"] in {m.message_id for m in failed}
    assert first["facts"]["error_code"] == "HttpStatus"
    personal = personal_values(docs)
    assert personal
    text = box.messages[0][2].decode() + json.dumps(hooks)
    assert leaks(text, personal) == []
    spool = SqliteSpool(load_config(spec.config_path).spool.database)
    try:
        raised = spool.audit_after(0, ["alert_raised"])
    finally:
        spool.close()
    assert len(raised) == 3
