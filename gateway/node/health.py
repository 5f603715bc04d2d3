"""Is this node's HTTPS listener up and answering? (``gateway health``)

The health endpoint (``GET /healthz``) sits behind the same mutual TLS as the message
endpoint, so the check presents a client certificate the listener accepts (by default the
one ``gateway init`` made, ``tls/client.crt``, whose CA is in ``tls/client-ca.pem``, or
the first HTTPS partner transport's) and accepts exactly the listener's configured server
certificate. Used by the container's HEALTHCHECK and by monitoring.
"""

from __future__ import annotations

from pathlib import Path

from gateway.errors import ConfigError, TransportFailed, TransportRefused, UsageError
from gateway.node.config import Config
from transports.errors import TransportError
from transports.https_client import check_health

__all__ = ["check_listener", "health_client_pair"]


def health_client_pair(config: Config) -> tuple[Path, Path]:
    """The client certificate and key the check presents by default."""
    tls = config.path.parent / "tls"
    if (tls / "client.crt").is_file() and (tls / "client.key").is_file():
        return tls / "client.crt", tls / "client.key"
    for partner in config.partners:
        for t in partner.transports:
            if t.scheme == "https" and t.client_cert and t.client_key:
                return t.client_cert, t.client_key
    raise UsageError("no client certificate to present: give --client-cert and --client-key",
                     where=str(config.path))


def check_listener(config: Config, *, client_cert: Path | None = None,
                   client_key: Path | None = None, timeout: float = 5.0) -> str:
    """``GET /healthz`` on the configured listener; returns the URL checked. Raises
    :class:`TransportFailed` (or ``TransportRefused`` for a TLS refusal) when it does not
    answer 200."""
    if config.https is None:
        raise ConfigError("no [listeners.https] to check", where=str(config.path))
    if (client_cert is None) != (client_key is None):
        raise UsageError("give both --client-cert and --client-key, or neither")
    if client_cert is None or client_key is None:
        client_cert, client_key = health_client_pair(config)
    h = config.https
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(h.host, h.host)  # noqa: S104
    url = f"https://{host}:{h.port}/healthz"
    try:
        check_health(host, h.port, cert=client_cert, key=client_key, server_cert=h.cert,
                      timeout=timeout)
    except TransportError as exc:
        error = TransportFailed if exc.retryable else TransportRefused
        raise error(f"{exc.code}: {exc}", where=url) from None
    return url
