"""The metrics endpoint with mutual TLS, the [metrics] checks that keep it off the
network without TLS, and the JSON log format."""

from __future__ import annotations

import io
import json
import logging
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.node.config import load_config
from gateway.node.logs import JsonFormatter
from gateway.node.metrics import MetricsServer, StoreCollector
from gateway.node.monitor_config import MetricsConfig
from gateway.store.sqlite import SqliteSpool
from tests.support.gwnodes import free_port
from tests.support.pki import TestPki


@pytest.mark.integration
def test_mutual_tls_metrics(tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    server_files, client = pki.server("metrics"), pki.client("prometheus")
    config = MetricsConfig(enabled=True, host="127.0.0.1", port=free_port(),
                           cert=server_files.cert, key=server_files.key,
                           client_ca=pki.ca.cert)
    spool = SqliteSpool(tmp_path / "gateway.db")
    server = MetricsServer(config, StoreCollector(spool, party="fips:0600000")).start()
    url = f"https://127.0.0.1:{config.port}/metrics"
    try:
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(client.cert), str(client.key))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            assert b"cse_audit_head_sequence" in response.read()
        anonymous = ssl.create_default_context(cafile=str(pki.ca.cert))
        refused = (urllib.error.URLError, ssl.SSLError, ConnectionError)
        with pytest.raises(refused), urllib.request.urlopen(url, context=anonymous,
                                                            timeout=10) as response:
            response.read()
        rogue = pki.other_ca().issue("intruder", server=False, file_stem="intruder")
        other = ssl.create_default_context(cafile=str(pki.ca.cert))
        other.load_cert_chain(str(rogue.cert), str(rogue.key))
        with pytest.raises(refused), urllib.request.urlopen(url, context=other,
                                                            timeout=10) as response:
            response.read()
    finally:
        server.stop()
        spool.close()


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[node]\nparty = "fips:0600000"\n' + text, encoding="utf-8")
    return path


def test_metrics_are_off_by_default_and_plain_only_on_loopback(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, ""))
    assert config.metrics.enabled is False
    assert config.alerts.enabled is False
    assert config.logging.format == "text"
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, '[metrics]\nenabled = true\nhost = "0.0.0.0"\n'))
    assert "metrics.host: plain HTTP only on 127.0.0.1" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, '[metrics]\ncert = "a.crt"\n'))
    assert "metrics: cert, key and client_ca go together" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, '[alerts.webhook]\nurl = "http://x.example/hook"\n'
                            '[alerts.rules]\nbreaker_open = "soon"\n[logging]\n'
                            'format = "xml"\n'))
    text = str(caught.value)
    for key in ("alerts.webhook.url", "alerts.rules.breaker_open", "logging.format"):
        assert key in text


def test_json_log_lines(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gateway.test.jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("send of %s failed: %s", "m-1", "ConnectFailed",
                       extra={"event": "send_failed", "message_id": "m-1",
                              "partner": "fips:4800000", "duration_ms": 12})
        logger.info("plain")
        try:
            raise ValueError("987-65-4321 Doe")  # an exception's text may quote data
        except ValueError:
            logger.exception("it broke")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    assert lines[0]["event"] == "send_failed"
    assert lines[0]["message"] == "send of m-1 failed: ConnectFailed"
    assert (lines[0]["message_id"], lines[0]["partner"], lines[0]["duration_ms"]) == (
        "m-1", "fips:4800000", 12)
    assert lines[1]["event"] == "gateway.test.jsonlog.info"
    assert lines[2]["exception"] == "ValueError"
    assert "987-65-4321" not in stream.getvalue()
