"""Moves opaque bytes between machines (SFTP, HTTPS, a local folder, memory).

Knows nothing of envelopes, cases or the ``gateway`` package, and imports nothing from it.

``open_transport(url, **options)`` opens the transport an endpoint URL names:

- ``sftp://user@host:port/path``  (options: ``key_file``, ``known_hosts``, ...; see sftp.py)
- ``https://host:port/v1/messages``  (options: ``cert``, ``key``, ``ca``, ...; see
  https_client.py); also a ``BatchSender`` (``send_batch``: several blobs per request)
- ``file:///path``  (options: ``move_to_done``, ``create``)
- ``memory://name``  (options: ``network``, ``move_to_done``)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from transports.base import BatchSender, PeerInfo, Transport, check_name
from transports.errors import EndpointInvalid, TransportError
from transports.local import LocalFolderTransport
from transports.memory import DEFAULT_NETWORK, MemoryTransport

__all__ = ["BatchSender", "PeerInfo", "Transport", "TransportError", "check_name",
           "open_transport"]


def open_transport(url: str, **options: Any) -> Transport:
    """Open the transport for ``url``; raise ``EndpointInvalid`` for a bad URL or option.

    Opening does not connect: network transports connect on first use (and reconnect
    after a failure), so a partner that is down shows up as a retryable error from
    ``send``/``list``, not from here.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointInvalid(f"not a valid endpoint URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "memory":
        name = parts.netloc + parts.path
        if not name:
            raise EndpointInvalid("memory:// URL needs a mailbox name")
        network = options.pop("network", DEFAULT_NETWORK)
        return _build(MemoryTransport, scheme, network, name, **options)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise EndpointInvalid("file URL must look like file:///absolute/path")
        return _build(LocalFolderTransport, scheme, unquote(parts.path), **options)
    if scheme == "sftp":
        # paramiko and ssl load only when an endpoint needs them.
        from transports.sftp import SftpTransport  # noqa: PLC0415

        if not parts.hostname or not parts.username or not parts.path:
            raise EndpointInvalid("SFTP URL must look like sftp://user@host:port/path")
        if parts.password:
            raise EndpointInvalid("SFTP URL must not carry a password (keys only)")
        return _build(
            SftpTransport,
            scheme,
            parts.hostname,
            port or 22,
            unquote(parts.username),
            unquote(parts.path),
            **options,
        )
    if scheme == "https":
        from transports.https_client import HttpsTransport  # noqa: PLC0415

        return _build(HttpsTransport, scheme, url, **options)
    raise EndpointInvalid(
        f"unsupported endpoint scheme {scheme!r}: use sftp, https, file or memory"
    )


def _build(cls: Callable[..., Transport], scheme: str, *args: Any, **options: Any) -> Transport:
    """``cls(*args, **options)``, refusing unknown or missing options up front (so a
    TypeError raised inside a constructor is never mistaken for a bad option)."""
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as exc:
        raise EndpointInvalid(f"bad options for a {scheme} endpoint: {exc}") from None
    return cls(*args, **options)
