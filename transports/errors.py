"""Errors raised by every transport.

Each class has a stable ``code`` and a ``retryable`` flag, so the caller (the gateway's
spool) never has to guess whether trying again later can help. Messages name the endpoint
(``host:port``, a path) and what went wrong; they never contain the bytes being moved.
Third-party exceptions (paramiko, ssl, socket, OSError) are translated into these in the
module that calls the library and chained as ``__cause__``.

::

    TransportError              code              retryable
    ├── ConnectFailed           ConnectFailed     yes  (refused, unreachable, DNS)
    ├── Timeout                 Timeout           yes  (connect, banner, read, response)
    ├── ConnectionLost          ConnectionLost    yes  (reset / closed mid-operation)
    ├── RemoteFull              RemoteFull        yes  (no space left on the far side)
    ├── RemoteFailed            RemoteFailed      yes  (other failure reported by the far side)
    ├── HttpStatus              HttpStatus        5xx, 408, 429: yes; other statuses: no
    ├── HostKeyRejected         HostKeyRejected   no   (unknown or changed SSH host key)
    ├── AuthRejected            AuthRejected      no   (SSH authentication refused)
    ├── Incompatible            Incompatible      no   (no common SSH algorithm with the peer)
    ├── TlsRejected             TlsRejected       no   (certificate untrusted/expired/missing)
    ├── PermissionDenied        PermissionDenied  no
    ├── AlreadyExists           AlreadyExists     no   (a different blob has that name)
    ├── NotFound                NotFound          no
    ├── TooLarge                TooLarge          no   (body/blob over a size limit)
    │   └── HttpTooLarge        TooLarge          no   (HTTP 413; also an HttpStatus)
    ├── InvalidName             InvalidName       no
    ├── EndpointInvalid         EndpointInvalid   no   (bad URL or options)
    ├── NotSupported            NotSupported      no   (e.g. ``list`` on a push-only HTTPS)
    └── TransportClosed         TransportClosed   no   (used after ``close()``)
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "AuthRejected",
    "ConnectFailed",
    "ConnectionLost",
    "EndpointInvalid",
    "HostKeyRejected",
    "HttpStatus",
    "HttpTooLarge",
    "Incompatible",
    "InvalidName",
    "NotFound",
    "NotSupported",
    "PermissionDenied",
    "RemoteFailed",
    "RemoteFull",
    "Timeout",
    "TlsRejected",
    "TooLarge",
    "TransportClosed",
    "TransportError",
    "connect_error",
    "http_error",
]


class TransportError(Exception):
    """Base of every transport error: a message, a stable ``code``, ``retryable``.

    ``endpoint`` names where (``sftp://user@host:port/path`` without secrets, a folder).
    ``code`` and ``retryable`` default to the class's values and may be overridden per
    instance (``TransportError("...", code="X", retryable=True)``).
    """

    code: str = "TransportError"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else type(self).code
        self.retryable = retryable if retryable is not None else type(self).retryable
        self.endpoint = endpoint

    def __str__(self) -> str:
        if self.endpoint:
            return f"{self.endpoint}: {self.message}"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, "
            f"retryable={self.retryable!r}, endpoint={self.endpoint!r})"
        )


# --- retryable --------------------------------------------------------------------------


class ConnectFailed(TransportError):
    code = "ConnectFailed"
    retryable = True


class Timeout(TransportError):
    code = "Timeout"
    retryable = True


class ConnectionLost(TransportError):
    code = "ConnectionLost"
    retryable = True


class RemoteFull(TransportError):
    code = "RemoteFull"
    retryable = True


class RemoteFailed(TransportError):
    code = "RemoteFailed"
    retryable = True


class HttpStatus(TransportError):
    """The HTTP server answered with a non-2xx status; ``.body`` is what it sent (for a
    4xx from a gateway: the Rejected receipt). 5xx, 408 and 429 are retryable."""

    code = "HttpStatus"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: bytes = b"",
        code: str | None = None,
        retryable: bool | None = None,
        endpoint: str | None = None,
    ) -> None:
        if retryable is None:
            retryable = status >= 500 or status in (408, 429)
        super().__init__(message, code=code, retryable=retryable, endpoint=endpoint)
        self.status = status
        self.body = body


# --- permanent --------------------------------------------------------------------------


class HostKeyRejected(TransportError):
    code = "HostKeyRejected"


class AuthRejected(TransportError):
    code = "AuthRejected"


class Incompatible(TransportError):
    code = "Incompatible"


class TlsRejected(TransportError):
    code = "TlsRejected"


class PermissionDenied(TransportError):
    code = "PermissionDenied"


class AlreadyExists(TransportError):
    code = "AlreadyExists"


class NotFound(TransportError):
    code = "NotFound"


class TooLarge(TransportError):
    code = "TooLarge"


class InvalidName(TransportError):
    code = "InvalidName"


class EndpointInvalid(TransportError):
    code = "EndpointInvalid"


class NotSupported(TransportError):
    code = "NotSupported"


class TransportClosed(TransportError):
    code = "TransportClosed"


class HttpTooLarge(HttpStatus, TooLarge):
    """HTTP 413: both an ``HttpStatus`` (``.status``, ``.body``) and a ``TooLarge``."""

    code = "TooLarge"


def http_error(status: int, body: bytes, *, endpoint: str | None = None) -> HttpStatus:
    """The error for a non-2xx HTTP answer: 413 is ``HttpTooLarge`` (code ``TooLarge``,
    permanent), everything else ``HttpStatus`` (retryable for 5xx, 408 and 429).
    The body is kept on the error, never put in its message."""
    if status == 413:
        return HttpTooLarge(
            "the server refused the body as too large (HTTP 413)",
            status=status,
            body=body,
            endpoint=endpoint,
        )
    return HttpStatus(
        f"the server answered HTTP {status} ({len(body)} bytes)",
        status=status,
        body=body,
        endpoint=endpoint,
    )


def connect_error(exc: OSError, where: str, *, endpoint: str | None = None) -> TransportError:
    """The error for a TCP connection to ``where`` (host:port) that could not be made: a
    timeout is ``Timeout``, anything else ``ConnectFailed`` (both retryable)."""
    if isinstance(exc, TimeoutError):
        return Timeout(f"connecting to {where} timed out", endpoint=endpoint)
    return ConnectFailed(f"cannot connect to {where}: {exc.strerror or type(exc).__name__}",
                         endpoint=endpoint)
