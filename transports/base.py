"""The one transport interface, and the blob-name rules every transport shares."""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from transports.errors import InvalidName

__all__ = ["MAX_NAME_LENGTH", "BatchSender", "PeerInfo", "Transport", "check_name",
           "is_visible_name", "visible_names"]

MAX_NAME_LENGTH = 200
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+=-]*")


@runtime_checkable
class Transport(Protocol):
    """Moves opaque named blobs to and from one partner endpoint.

    - ``send(name, data)`` hands ``data`` over under ``name`` atomically: the receiver
      sees the whole blob or nothing. It returns the partner's answer where the transport
      has one (HTTPS: the response body, i.e. the receipt), else ``None``. Sending the
      same name again with identical bytes succeeds (a retry after a lost answer); with
      different bytes it raises ``AlreadyExists``: nothing is overwritten.
    - ``list()`` names the complete blobs waiting on the far side (pull transports),
      oldest first; temporary and hidden files are never listed.
    - ``fetch(name)`` returns one blob's bytes; it stays on the far side.
    - ``acknowledge(name)`` removes it (or moves it to a ``done/`` folder) on the far
      side; call it only after storing the blob durably. Acknowledging a name that is
      already gone is not an error (a retried acknowledgement).
    - ``close()`` releases connections; calling it twice is fine.

    Every failure is a ``transports.errors.TransportError`` with ``code`` and
    ``retryable`` set. Push-only transports raise ``NotSupported`` from the pull methods.
    """

    endpoint: str

    def send(self, name: str, data: bytes) -> bytes | None: ...

    def list(self) -> builtins.list[str]: ...

    def fetch(self, name: str) -> bytes: ...

    def acknowledge(self, name: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchSender(Protocol):
    """A transport that can hand several blobs over in one exchange (HTTPS:
    ``POST <path>/batch``, docs/transports.md).

    ``send_batch([(name, data), ...])`` returns one ``(status, answer)`` per blob, in
    order: the HTTP status and body the partner gave that blob. It raises
    ``NotSupported`` when the partner has no batch endpoint (send one by one instead) and
    a ``TransportError`` when the exchange as a whole failed (no blob's answer known).
    """

    endpoint: str

    def send_batch(self, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, bytes]]: ...


def check_name(name: str, *, endpoint: str | None = None) -> str:
    """Return ``name`` if it is a safe blob name, else raise ``InvalidName``.

    A name is one path component of letters, digits and ``_ . @ + = -``, not starting
    with a dot (dot-names are reserved for temporary files), at most 200 characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("a blob name must be a non-empty string", endpoint=endpoint)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"blob name is {len(name)} characters long; at most {MAX_NAME_LENGTH} allowed",
            endpoint=endpoint,
        )
    if not _NAME.fullmatch(name):
        raise InvalidName(
            "blob name must be one path component of letters, digits and _ . @ + = - "
            "not starting with a dot",
            endpoint=endpoint,
        )
    return name


def is_visible_name(name: str) -> bool:
    """True for names a receiver may see: complete blobs, not temporary or hidden files."""
    return bool(_NAME.fullmatch(name)) and len(name) <= MAX_NAME_LENGTH


def visible_names(names: Iterable[str], *, endpoint: str, log: logging.Logger) -> set[str]:
    """The visible names among ``names``; logs (once per call) the files it skips that
    are not dot-files, so a partner's badly named file does not wait unseen forever."""
    names = list(names)
    shown = {n for n in names if is_visible_name(n)}
    odd = [n for n in names if n not in shown and not n.startswith(".")]
    if odd:
        log.warning("%s: ignoring %d file(s) whose names are not valid blob names",
                    endpoint, len(odd))
    return shown


@dataclass(frozen=True)
class PeerInfo:
    """Who is on the other end of an inbound connection, for logging and policy.

    ``subject`` is the client certificate's subject (RFC 4514) and ``fingerprint`` the
    SHA-256 of its DER, lower-case hex; both empty when there is no certificate (the
    in-memory transport). The message signature, not this, proves who sent a message.
    """

    address: str
    subject: str = ""
    fingerprint: str = ""
    content_type: str = ""  # the request's Content-Type header (HTTPS), for MIME bodies
