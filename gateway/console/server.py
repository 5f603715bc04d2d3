"""The console's HTTP(S) server: the standard library's ``ThreadingHTTPServer``.

Why the standard library and not an ASGI stack (Starlette under uvicorn): the login by
TLS client certificate needs the verified peer certificate in the application, which
``ssl``'s ``getpeercert()`` gives and uvicorn and hypercorn do not pass on; and a console
for a handful of operators needs no async server. Templates are Jinja2 (autoescaping),
passwords argon2-cffi.

:func:`start_console` listens on ``[console] host:port`` (127.0.0.1 by default) and
refuses any other address without TLS; with ``client_ca`` a client certificate is asked
for (optional) and verified, and its subject common name is offered to the login.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.console.accounts import Accounts
from gateway.console.pages import Console
from gateway.console.web import Request, Response
from gateway.errors import ConfigError
from gateway.node.console_config import LOOPBACK, ConsoleConfig
from gateway.service.context import NodeContext
from gateway.store.console_lockouts import AccountLocks

__all__ = ["RunningConsole", "start_console"]

log = logging.getLogger("gateway.console")
MAX_BODY = 64 * 1024


def _peer_name(cert: Any) -> str | None:
    """The subject common name of a verified peer certificate (``getpeercert()``)."""
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _handler(app: Console, tls: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "gateway-console"
        timeout = 30  # seconds a connection may stay silent
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("console %s %s", self.client_address[0], format % args)

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(Response(413, b"request too large", "text/plain"))
                return
            body = self.rfile.read(length) if length else b""
            name = None
            if tls:
                name = _peer_name(self.connection.getpeercert())
            req = Request.parse(method, self.path, body=body,
                                cookie_header=self.headers.get("Cookie", ""),
                                client=self.client_address[0], origin=self.headers.get("Origin"),
                                host=self.headers.get("Host"), certificate_name=name, tls=tls)
            try:
                resp = app.handle(req)
            except Exception:
                log.exception("console: unexpected error on %s", req.path)
                resp = Response(500, b"internal error", "text/plain")
            self._send(resp)

        def _send(self, resp: Response) -> None:
            self.send_response(resp.status)
            for key, value in resp.all_headers():
                self.send_header(key, value)
            if tls:
                self.send_header("Strict-Transport-Security", "max-age=31536000")
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


@dataclass
class RunningConsole:
    server: ThreadingHTTPServer
    thread: threading.Thread
    app: Console
    url: str

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        self.app.accounts.close()


def tls_context(config: ConsoleConfig) -> ssl.SSLContext:
    if config.cert is None or config.key is None:
        raise ConfigError("TLS needs console.cert and console.key", where="console.cert")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.cert, config.key)
        if config.client_ca is not None:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(cafile=str(config.client_ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the console's TLS files: {exc}",
                          where="console.cert") from None
    return context


def start_console(ctx: NodeContext, config: ConsoleConfig, *,
                  accounts: Accounts | None = None,
                  live_breakers: Callable[[], dict[str, str]] | None = None,
                  clock: Callable[[], float] | None = None) -> RunningConsole:
    """Start serving in a background thread; :meth:`RunningConsole.stop` ends it."""
    if config.host not in LOOPBACK and not config.tls:
        raise ConfigError("the console listens on another address than 127.0.0.1 only "
                          "with TLS (console.cert, console.key)", where="console.host")
    accounts = accounts or Accounts(config.accounts, AccountLocks(ctx.spool),
                                    max_failures=config.max_failures, lockout=config.lockout)
    kwargs: dict[str, Any] = {"live_breakers": live_breakers}
    if clock is not None:
        kwargs["clock"] = clock
    app = Console(ctx, config, accounts, **kwargs)
    try:
        server = ThreadingHTTPServer((config.host, config.port), _handler(app, config.tls))
    except OSError as exc:
        raise ConfigError(f"the console cannot listen on {config.host}:{config.port} "
                          f"({exc.strerror})", where="console.port") from None
    server.daemon_threads = True
    if config.tls:
        # the handshake happens in the request's thread (on its first read), so a client
        # that never completes one holds up only itself, for at most the handler's timeout
        server.socket = tls_context(config).wrap_socket(server.socket, server_side=True,
                                                        do_handshake_on_connect=False)
    port = server.server_address[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"{'https' if config.tls else 'http'}://{host}:{port}/"
    thread = threading.Thread(target=server.serve_forever, name="console", daemon=True)
    thread.start()
    log.info("console listening on %s", url)
    return RunningConsole(server, thread, app, url)
