"""Every error the gateway raises, in one hierarchy.

Each class carries a stable ``code`` (it becomes the receipt error code, the audit event's
error code and the ``CODE`` in CLI output), an ``exit_code`` for the CLI and a
``retryable`` flag, so the spool never has to guess whether trying again can help.
Messages never contain case data (names, SSNs, addresses, narrative): they say what was
wrong and where (file, line, element path, header field), never the offending value.

Third-party exceptions (lxml, xmlschema, cryptography, asn1crypto, paramiko, ssl) are
translated into these at the module that calls the library; they never leak upward.

::

    GatewayError                      code            exit  retryable
    ├── UsageError                    UsageError        2
    ├── ConfigError                   ConfigInvalid     2
    ├── InputError                                      1
    │   ├── XmlError                  XmlMalformed
    │   │   ├── XmlEmpty              XmlEmpty
    │   │   ├── XmlEncodingError      XmlEncoding
    │   │   ├── XmlForbidden          XmlForbidden      (DOCTYPE, entities)
    │   │   └── TooLarge              TooLarge
    │   ├── SchemaInvalid             SchemaInvalid     (carries every issue found)
    │   ├── UnknownDocumentType       UnknownDocumentType
    │   ├── EnvelopeInvalid           EnvelopeInvalid
    │   ├── PartyInvalid              PartyInvalid      (text that is not scheme:value)
    │   ├── SenderMismatch            SenderMismatch    (document's sender is not this node)
    │   └── FileUnreadable            FileUnreadable
    ├── SecurityError                                   1
    │   ├── DecryptionFailed          DecryptionFailed
    │   ├── SignatureInvalid          SignatureInvalid
    │   ├── AlgorithmNotAllowed       AlgorithmNotAllowed
    │   ├── CertificateUntrusted      CertificateUntrusted
    │   ├── CertificateExpired        CertificateExpired
    │   ├── CertificateUsageInvalid   CertificateUsageInvalid
    │   ├── SignerNotRegistered       SignerNotRegistered
    │   ├── HeaderMismatch            HeaderMismatch
    │   ├── UnknownRecipient          UnknownRecipient
    │   ├── ReplayWindow              ReplayWindow      (Created outside the window)
    │   └── ReceiptInvalid            ReceiptInvalid
    ├── KeyMaterialError              KeyMaterialError  1   (unreadable / wrong passphrase)
    │   └── KeyFileInsecure           KeyFileInsecure   (readable by others)
    ├── Duplicate                     Duplicate         1
    ├── RoutingError                  NoRoute           1
    ├── MessageNotFound               MessageNotFound   1
    ├── SpoolError                    SpoolError        1
    │   └── IllegalTransition         IllegalTransition (a bug, or a lost race)
    ├── TransportFailed               TransportFailed   1   yes (retryable transport error)
    │   └── TransportRefused          TransportRefused  1   no  (permanent transport error)
    ├── AuditError                    AuditError        1
    │   └── AuditTampered             AuditTampered     1
    ├── DemoFailed                    DemoFailed        1   (gateway demo: a node or sshd)
    ├── LoginRefused                  LoginRefused      1   (console: wrong password, code, locked)
    └── InternalError                 InternalError    70
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AlgorithmNotAllowed",
    "AuditError",
    "AuditTampered",
    "CertificateExpired",
    "CertificateUntrusted",
    "CertificateUsageInvalid",
    "ConfigError",
    "DecryptionFailed",
    "DemoFailed",
    "Duplicate",
    "EnvelopeInvalid",
    "FileUnreadable",
    "GatewayError",
    "HeaderMismatch",
    "IllegalTransition",
    "InputError",
    "InternalError",
    "KeyFileInsecure",
    "KeyMaterialError",
    "LoginRefused",
    "MessageNotFound",
    "PartyInvalid",
    "ReceiptInvalid",
    "ReplayWindow",
    "RoutingError",
    "SchemaInvalid",
    "SecurityError",
    "SenderMismatch",
    "SignatureInvalid",
    "SignerNotRegistered",
    "SpoolError",
    "TooLarge",
    "TransportFailed",
    "TransportRefused",
    "UnknownDocumentType",
    "UnknownRecipient",
    "UsageError",
    "XmlEmpty",
    "XmlEncodingError",
    "XmlError",
    "XmlForbidden",
    "all_codes",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    ``where`` names the place (a file, ``file:line:col``, a header field, a config key) and
    ``details`` holds structured, non-personal facts for JSON output and audit events.
    """

    code: ClassVar[str] = "GatewayError"
    exit_code: ClassVar[int] = 1
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        if self.where:
            return f"{self.where}: {self.message}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: code, message, where and details."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.where:
            out["where"] = self.where
        if self.details:
            out["details"] = self.details
        return out


class UsageError(GatewayError):
    code = "UsageError"
    exit_code = 2


class ConfigError(GatewayError):
    code = "ConfigInvalid"
    exit_code = 2


# --- bad input: files from state systems, envelopes from partners -----------------------


class InputError(GatewayError):
    code = "InputInvalid"


class XmlError(InputError):
    """Bytes that are not acceptable XML. ``line``/``column`` are 1-based when known."""

    code = "XmlMalformed"

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        line: int | None = None,
        column: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, where=where, details=details)
        self.line = line
        self.column = column


class XmlEmpty(XmlError):
    code = "XmlEmpty"


class XmlEncodingError(XmlError):
    code = "XmlEncoding"


class XmlForbidden(XmlError):
    """DOCTYPE, entity declarations and other constructs we refuse outright."""

    code = "XmlForbidden"


class TooLarge(XmlError):
    code = "TooLarge"


class SchemaInvalid(InputError):
    """The document does not satisfy its schema or rules; ``issues`` lists every error."""

    code = "SchemaInvalid"

    def __init__(
        self,
        message: str,
        *,
        issues: list[Any] | None = None,
        where: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, where=where, details=details)
        self.issues: list[Any] = list(issues or [])


class UnknownDocumentType(InputError):
    code = "UnknownDocumentType"


class EnvelopeInvalid(InputError):
    code = "EnvelopeInvalid"


class PartyInvalid(InputError):
    """Text that is not a party (``fips:SSCCCLL`` or ``iso3166:CC[-ID]``)."""

    code = "PartyInvalid"


class SenderMismatch(InputError):
    """An outbox document whose sender party is not one this node speaks for."""

    code = "SenderMismatch"


class FileUnreadable(InputError):
    code = "FileUnreadable"


# --- security: a message we refuse to trust ---------------------------------------------


class SecurityError(GatewayError):
    code = "SecurityError"


class DecryptionFailed(SecurityError):
    code = "DecryptionFailed"


class SignatureInvalid(SecurityError):
    code = "SignatureInvalid"


class AlgorithmNotAllowed(SecurityError):
    code = "AlgorithmNotAllowed"


class CertificateUntrusted(SecurityError):
    code = "CertificateUntrusted"


class CertificateExpired(SecurityError):
    code = "CertificateExpired"


class CertificateUsageInvalid(SecurityError):
    code = "CertificateUsageInvalid"


class SignerNotRegistered(SecurityError):
    code = "SignerNotRegistered"


class HeaderMismatch(SecurityError):
    code = "HeaderMismatch"


class UnknownRecipient(SecurityError):
    code = "UnknownRecipient"


class ReplayWindow(SecurityError):
    code = "ReplayWindow"


class ReceiptInvalid(SecurityError):
    code = "ReceiptInvalid"


# --- keys -------------------------------------------------------------------------------


class KeyMaterialError(GatewayError):
    code = "KeyMaterialError"


class KeyFileInsecure(KeyMaterialError):
    code = "KeyFileInsecure"


# --- message handling -------------------------------------------------------------------


class Duplicate(GatewayError):
    code = "Duplicate"


class RoutingError(GatewayError):
    code = "NoRoute"


class MessageNotFound(GatewayError):
    code = "MessageNotFound"


class SpoolError(GatewayError):
    code = "SpoolError"


class IllegalTransition(SpoolError):
    """A state change the message state machine does not allow (a bug, or a lost race)."""

    code = "IllegalTransition"


class TransportFailed(GatewayError):
    """A send or fetch failed in a way that trying again later can fix."""

    code = "TransportFailed"
    retryable = True


class TransportRefused(TransportFailed):
    """A send or fetch failed permanently (authentication, host key, 4xx)."""

    code = "TransportRefused"
    retryable = False


# --- audit ------------------------------------------------------------------------------


class AuditError(GatewayError):
    code = "AuditError"


class AuditTampered(AuditError):
    code = "AuditTampered"


class DemoFailed(GatewayError):
    """``gateway demo`` could not build or run its network (a node or sshd did not start)."""

    code = "DemoFailed"


class LoginRefused(GatewayError):
    """The console refused a login; ``details["reason"]`` says why for the audit event
    (unknown, password, code, locked, disabled, certificate), never shown to the user."""

    code = "LoginRefused"


class InternalError(GatewayError):
    code = "InternalError"
    exit_code = 70


def all_codes() -> dict[str, type[GatewayError]]:
    """Every stable code mapped to its class (codes are unique across the tree)."""
    out: dict[str, type[GatewayError]] = {}
    stack: list[type[GatewayError]] = [GatewayError]
    while stack:
        cls = stack.pop()
        out.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return out
