"""The ``[console]`` section: where the operator console listens and how it guards access
(``gateway console``, and ``gateway run`` when the section is present). Read by
:func:`gateway.node.config.load_config` like every other section; kept here so that
config.py stays small. Every key is documented in docs/configuration.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["LOOPBACK", "ConsoleConfig", "read_console"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_KEYS = {"host", "port", "accounts", "cert", "key", "client_ca", "idle_timeout",
         "absolute_timeout", "max_failures", "lockout", "login_rate"}


@dataclass(frozen=True)
class ConsoleConfig:
    host: str = "127.0.0.1"
    port: int = 8600
    accounts: Path = Path("console/accounts.db")
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    idle_timeout: float = 900.0
    absolute_timeout: float = 8 * 3600.0
    max_failures: int = 5
    lockout: float = 900.0
    login_rate: int = 10  # login attempts per minute per client address

    @property
    def tls(self) -> bool:
        return self.cert is not None


class _Reader(Protocol):  # the part of config._Reader used here
    base: Path

    def problem(self, key: str, text: str) -> None: ...
    def table(self, parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]: ...
    def known(self, table: Mapping[str, Any], where: str, keys: set[str]) -> None: ...
    def string(self, table: Mapping[str, Any], key: str, where: str,
               default: str | None = None, *, required: bool = False) -> str | None: ...
    def path(self, table: Mapping[str, Any], key: str, where: str,
             default: str | None = None, *, required: bool = False) -> Path | None: ...
    def number(self, table: Mapping[str, Any], key: str, where: str, default: float,
               *, minimum: float = 0.0, integer: bool = False) -> float: ...
    def duration(self, table: Mapping[str, Any], key: str, where: str, default: float,
                 *, positive: bool = False) -> float: ...


def read_console(r: _Reader, doc: Mapping[str, Any]) -> ConsoleConfig | None:
    if "console" not in doc:
        return None
    t = r.table(doc, "console", "console")
    r.known(t, "console", _KEYS)
    d = ConsoleConfig()
    port = int(r.number(t, "port", "console.port", d.port, integer=True))
    if port > 65535:
        r.problem("console.port", "must be at most 65535")
    host = r.string(t, "host", "console.host", d.host) or d.host
    cert = r.path(t, "cert", "console.cert")
    key = r.path(t, "key", "console.key")
    if (cert is None) != (key is None):
        r.problem("console.cert" if cert is None else "console.key",
                  "cert and key go together")
    if host not in LOOPBACK and cert is None:
        r.problem("console.host", "the console listens on another address than 127.0.0.1 "
                  "only with TLS: set console.cert and console.key")
    client_ca = r.path(t, "client_ca", "console.client_ca")
    if client_ca is not None and cert is None:
        r.problem("console.client_ca", "client certificates need TLS (console.cert, "
                  "console.key)")
    return ConsoleConfig(
        host=host, port=port,
        accounts=r.path(t, "accounts", "console.accounts", str(d.accounts))
        or r.base / d.accounts,
        cert=cert, key=key, client_ca=client_ca,
        idle_timeout=r.duration(t, "idle_timeout", "console.idle_timeout", d.idle_timeout,
                                positive=True),
        absolute_timeout=r.duration(t, "absolute_timeout", "console.absolute_timeout",
                                    d.absolute_timeout, positive=True),
        max_failures=int(r.number(t, "max_failures", "console.max_failures", d.max_failures,
                                  minimum=1, integer=True)),
        lockout=r.duration(t, "lockout", "console.lockout", d.lockout, positive=True),
        login_rate=int(r.number(t, "login_rate", "console.login_rate", d.login_rate,
                                minimum=1, integer=True)),
    )
