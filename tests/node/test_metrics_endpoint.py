"""The /metrics endpoint of a real `gateway run`, scraped over HTTP while messages flow:
the exposition parses with prometheus_client's OpenMetrics parser, the numbers match
`gateway status`, a second reader of the same store reports the same numbers, and neither
the metrics nor the JSON log carry a personal value."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from gateway.demo.samples import interstate_transaction
from gateway.node.config import load_config
from gateway.node.metrics import StoreCollector
from gateway.store.sqlite import SqliteSpool
from gateway.store.states import Direction, State
from tests.support.gwnodes import (
    Daemon,
    NodeSpec,
    PartnerSpec,
    drop,
    free_port,
    https_node,
    https_to,
    wait_until,
    write_config,
)
from tests.support.pki import TestPki
from tests.support.privacy import leaks, personal_values

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = "fips:0600000", "fips:4800000"
FAST = """
[retry]
base = "300ms"
factor = 2
max_delay = "1s"
jitter = 0.1
expiry = "5m"
[breaker]
failure_threshold = 3
reset_after = "1s"
[schedule]
outbox_scan = "200ms"
retry_scan = "200ms"
"""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        return str(response.read().decode())


def samples(text: str, skip: Iterable[str] = ()) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        if family.name in skip:
            continue
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def status(spec: NodeSpec) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "gateway", "--config", str(spec.config_path),
                           "status", "--format", "json"], capture_output=True, check=True,
                          timeout=60)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def post_garbage(pki: TestPki, port: int) -> None:
    client = pki.client("poster")
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("POST", "/v1/messages", body=b"not an envelope")
        assert conn.getresponse().status == 400
    finally:
        conn.close()


def delivered(spec: NodeSpec) -> int:
    spool = SqliteSpool(load_config(spec.config_path).spool.database)
    try:
        return len(spool.select(states=[State.DELIVERED], direction=Direction.OUT, limit=1000))
    finally:
        spool.close()


def test_metrics_from_a_running_gateway_match_status(tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    a_port, b_port, m_port = free_port(), free_port(), free_port()
    extra = FAST + f"""
[metrics]
enabled = true
port = {m_port}
[logging]
format = "json"
level = "info"
"""
    a = https_node("a", A, tmp_path, pki, a_port, extra=extra)
    b = https_node("b", B, tmp_path, pki, b_port, extra=FAST)
    a.partners = [PartnerSpec(B, [https_to(pki, "a", b_port)])]
    b.partners = [PartnerSpec(A, [https_to(pki, "b", a_port)])]
    keys = tmp_path / "keys"
    for spec in (a, b):
        write_config(spec, keys, [a, b])
    docs = {f"tx{i:02}.xml": interstate_transaction("0600000", "4800000", seed=i)
            for i in range(12)}
    daemon_a, daemon_b = Daemon(a), Daemon(b)
    try:
        daemon_a.start()
        for name, data in list(docs.items())[:6]:
            drop(a, name, data)
        drop(a, "bad.xml", b"<InterstateTransaction xmlns='urn:cse-gateway:interstate:1'/>")
        # B is down: sends fail, A's breaker for B opens (3 failures)
        wait_until(lambda: samples(scrape(m_port)).get(
            ("cse_partner_breaker_open", (("partner", B),))) == 1, 40,
            "the breaker for B to show open in the metrics")
        during = samples(scrape(m_port))
        assert during[("cse_oldest_pending_age_seconds", (("partner", B),))] > 0
        failed = sum(v for (name, labels), v in during.items()
                     if name == "cse_send_attempts_total" and ("outcome", "failed") in labels)
        assert failed >= 3
        post_garbage(pki, a_port)  # an unreadable body: a bare 400, recorded and counted
        daemon_b.start()
        for name, data in list(docs.items())[6:]:
            drop(a, name, data)  # these flow while we scrape
        flowing = [scrape(m_port) for _ in range(3)]
        wait_until(lambda: delivered(a) == 12, 60, "every message to be delivered")
        wait_until(lambda: samples(scrape(m_port)).get(
            ("cse_receipts_total", (("direction", "received"), ("partner", B),
                                    ("status", "Delivered")))) == 12, 20,
            "12 Delivered receipts in the metrics")
        text = scrape(m_port)
        report = status(a)
    finally:
        codes = (daemon_a.terminate(), daemon_b.terminate())
    assert codes == (0, 0), daemon_a.tail() + daemon_b.tail()
    for page in [*flowing, text]:
        assert list(text_string_to_metric_families(page))  # parses, and ends with # EOF
    got = samples(text)
    # the numbers `gateway status` shows
    counts = {(c["direction"], c["state"], c["partner"]): c["count"]
              for c in report["counts"]}  # type: ignore[attr-defined]
    messages = {(dict(labels)["direction"], dict(labels)["state"], dict(labels)["partner"]): v
                for (name, labels), v in got.items() if name == "cse_messages"}
    assert messages == counts
    assert report["oldest_pending_seconds"] is None
    assert not [k for k in got if k[0] == "cse_oldest_pending_age_seconds"]
    # the rest, as far as this run determines them
    assert got[("cse_partner_breaker_open", (("partner", B),))] == 0  # closed again
    ok = got[("cse_send_attempts_total", (("code", ""), ("outcome", "ok"), ("partner", B),
                                          ("transport", "https")))]
    assert ok == 12
    attempts = sum(v for (name, _), v in got.items() if name == "cse_send_attempts_total")
    assert attempts >= 12 + failed
    assert got[("cse_send_duration_seconds_count", (("partner", B),
                                                    ("transport", "https")))] == attempts
    assert [v for (name, labels), v in got.items()
            if name == "cse_intake_rejections_total"] == [1]
    inbound = {(dict(labels)["channel"], dict(labels)["outcome"]): v
               for (name, labels), v in got.items() if name == "cse_inbound_requests_total"}
    assert inbound[("https", "rejected")] == 1  # the unreadable body
    assert inbound[("https", "received")] == 1  # the same one: receipts come in answers
    assert got[("cse_audit_head_sequence", ())] > 100
    roles = {dict(labels)["role"] for (name, labels), _ in got.items()
             if name == "cse_certificate_not_after_timestamp_seconds"}
    assert roles == {"sign", "encrypt", "partner_encrypt"}
    # no message or case id in any label
    spool = SqliteSpool(load_config(a.config_path).spool.database)
    try:
        ids = {m.message_id for m in spool.select(limit=1000) if m.message_id} | {
            m.case_id for m in spool.select(limit=1000) if m.case_id}
        # another reader of the same store reports the same numbers
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(spool, party=A))
        from prometheus_client.openmetrics.exposition import generate_latest
        other = samples(generate_latest(registry).decode(),
                        skip=["cse_certificate_not_after_timestamp_seconds"])
    finally:
        spool.close()
    mine = samples(text, skip=["cse_certificate_not_after_timestamp_seconds"])
    changed = {k for k in mine.keys() | other.keys() if mine.get(k) != other.get(k)}
    # only the chain's head moves (the daemon's shutdown checkpoint came after the scrape)
    assert changed <= {("cse_audit_head_sequence", ()),
                       ("cse_audit_last_checkpoint_timestamp_seconds", ())}
    assert not [i for i in ids if i in text]
    # privacy: neither the metrics nor the JSON log hold a personal value
    personal = personal_values(list(docs.values()))
    assert personal
    log = a.root.joinpath("daemon.log").read_text()
    assert leaks(text + log, personal) == []
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert len(lines) >= 5
    assert {"gateway_started", "send_failed", "breaker_opened", "breaker_closed"} <= {
        line["event"] for line in lines}
    assert all({"time", "level", "logger", "event", "message"} <= set(line) for line in lines)
