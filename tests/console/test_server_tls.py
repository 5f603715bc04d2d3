"""The console's server on real sockets: HTTPS with an operator's client certificate
standing in for the one-time code, a certificate from another CA not doing so, and the
refusal to listen beyond loopback without TLS (in the configuration and at start)."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

import pytest

from gateway.console.server import start_console
from gateway.errors import ConfigError
from gateway.node.config import load_config
from tests.console.conftest import Setup
from tests.support.pki import TestPki

pytestmark = [pytest.mark.integration]


def _login(port: int, pki: TestPki, cert: tuple[Path, Path] | None, form: dict[str, str],
           ) -> tuple[int, dict[str, str]]:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if cert is not None:
        context.load_cert_chain(*cert)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=20)
    try:
        body = urlencode(form)
        conn.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"https://127.0.0.1:{port}", "Host": f"127.0.0.1:{port}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_client_certificate_replaces_the_code_over_tls(setup: Setup, tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    server = pki.server("console")
    olga = pki.client("olga")
    rogue = pki.other_ca().issue("olga", server=False, file_stem="rogue-olga")
    config = replace(setup.config, cert=server.cert, key=server.key, client_ca=pki.ca.cert)
    running = start_console(setup.ctx, config, accounts=setup.accounts, clock=setup.clock)
    try:
        assert running.url.startswith("https://127.0.0.1:")
        port = running.server.server_address[1]
        password = setup.secrets["olga"][0]
        status, headers = _login(port, pki, (olga.cert, olga.key),
                                 {"name": "olga", "password": password, "code": ""})
        assert status == 303
        assert headers["set-cookie"].startswith("__Host-gwconsole=")
        assert "max-age=31536000" in headers["strict-transport-security"]
        # no certificate, or a certificate that is not this account's: a code is needed
        for cert in (None, (pki.client("vic").cert, pki.client("vic").key)):
            status, _ = _login(port, pki, cert, {"name": "olga", "password": password,
                                                 "code": ""})
            assert status == 401
        # a certificate from another CA does not even complete the handshake
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            _login(port, pki, (rogue.cert, rogue.key),
                   {"name": "olga", "password": password, "code": ""})
    finally:
        running.server.shutdown()
        running.server.server_close()
    with setup.ctx.audit() as log:
        factors = [dict(e.event.detail)["factor"] for e in log.query(code="console_login")]
    assert factors == ["certificate"]


def test_no_other_address_without_tls(setup: Setup, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only with TLS"):
        start_console(setup.ctx, replace(setup.config, host="0.0.0.0"),
                      accounts=setup.accounts)
    config_file = setup.ctx.config.path
    text = config_file.read_text()
    config_file.write_text(text + '\n[console]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config_file)
    problems = {p["key"] for p in caught.value.details["problems"]}
    assert problems == {"console.host"}
    config_file.write_text(text + '\n[console]\nport = 8700\n')
    loaded = load_config(config_file).console
    assert loaded is not None
    assert (loaded.host, loaded.port) == ("127.0.0.1", 8700)
    assert loaded.accounts == config_file.parent / "console" / "accounts.db"
