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
    │   ├── CsenetInvalid             CsenetInvalid     (a CSENet 2000 file or transaction)
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
    │       └── LeaseLost             LeaseLost         (another node took the work over)
    ├── TransportFailed               TransportFailed   1   yes (retryable transport error)
    │   └── TransportRefused          TransportRefused  1   no  (permanent transport error)
    ├── AuditError                    AuditError        1
    │   └── AuditTampered             AuditTampered     1
    ├── As4Error                      As4Invalid        1   (carries ebms_code, EBMS:0004)
    │   ├── As4ValueNotRecognized     As4ValueNotRecognized     EBMS:0001
    │   ├── As4FeatureNotSupported    As4FeatureNotSupported    EBMS:0002
    │   ├── As4ValueInconsistent      As4ValueInconsistent      EBMS:0003
    │   ├── As4MimeInconsistency      As4MimeInconsistency      EBMS:0007
    │   ├── As4InvalidHeader          As4InvalidHeader          EBMS:0009
    │   ├── As4PModeMismatch          As4PModeMismatch          EBMS:0010
    │   ├── As4PayloadError           As4PayloadError           EBMS:0011
    │   ├── As4FailedAuthentication   As4FailedAuthentication   EBMS:0101
    │   ├── As4FailedDecryption       As4FailedDecryption       EBMS:0102
    │   ├── As4PolicyNoncompliance    As4PolicyNoncompliance    EBMS:0103
    │   ├── As4DeliveryFailure        As4DeliveryFailure        EBMS:0202
    │   ├── As4InvalidReceipt         As4InvalidReceipt         EBMS:0302
    │   └── As4DecompressionFailure   As4DecompressionFailure   EBMS:0303
    ├── DemoFailed                    DemoFailed        1   (gateway demo: a node or sshd)
    ├── LoginRefused                  LoginRefused      1   (console: wrong password, code, locked)
    └── InternalError                 InternalError    70
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AlgorithmNotAllowed",
    "As4DecompressionFailure",
    "As4DeliveryFailure",
    "As4Error",
    "As4FailedAuthentication",
    "As4FailedDecryption",
    "As4FeatureNotSupported",
    "As4InvalidHeader",
    "As4InvalidReceipt",
    "As4MimeInconsistency",
    "As4PModeMismatch",
    "As4PayloadError",
    "As4PolicyNoncompliance",
    "As4ValueInconsistent",
    "As4ValueNotRecognized",
    "AuditError",
    "AuditTampered",
    "CertificateExpired",
    "CertificateUntrusted",
    "CertificateUsageInvalid",
    "ConfigError",
    "CsenetInvalid",
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
    "LeaseLost",
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


class CsenetInvalid(InputError):
    """A CSENet 2000 file or transaction that breaks the framing, the layout or a federal
    edit; ``issues`` lists every one found (located, without values)."""

    code = "CsenetInvalid"

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


class LeaseLost(IllegalTransition):
    """This node's lease on a message expired and another node took the work over: the
    late result is not written (its fencing counter no longer matches)."""

    code = "LeaseLost"


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


# --- AS4 (eDelivery): each carries the ebMS 3.0 error code it answers with --------------


class As4Error(GatewayError):
    """An AS4 message or receipt we refuse; ``ebms_code`` is the ebMS error to answer with."""

    code = "As4Invalid"
    ebms_code: ClassVar[str] = "EBMS:0004"
    ebms_short: ClassVar[str] = "Other"


class As4ValueNotRecognized(As4Error):
    code = "As4ValueNotRecognized"
    ebms_code = "EBMS:0001"
    ebms_short = "ValueNotRecognized"


class As4FeatureNotSupported(As4Error):
    code = "As4FeatureNotSupported"
    ebms_code = "EBMS:0002"
    ebms_short = "FeatureNotSupported"


class As4ValueInconsistent(As4Error):
    code = "As4ValueInconsistent"
    ebms_code = "EBMS:0003"
    ebms_short = "ValueInconsistent"


class As4MimeInconsistency(As4Error):
    code = "As4MimeInconsistency"
    ebms_code = "EBMS:0007"
    ebms_short = "MimeInconsistency"


class As4InvalidHeader(As4Error):
    code = "As4InvalidHeader"
    ebms_code = "EBMS:0009"
    ebms_short = "InvalidHeader"


class As4PModeMismatch(As4Error):
    code = "As4PModeMismatch"
    ebms_code = "EBMS:0010"
    ebms_short = "ProcessingModeMismatch"


class As4PayloadError(As4Error):
    code = "As4PayloadError"
    ebms_code = "EBMS:0011"
    ebms_short = "ExternalPayloadError"


class As4FailedAuthentication(As4Error):
    code = "As4FailedAuthentication"
    ebms_code = "EBMS:0101"
    ebms_short = "FailedAuthentication"


class As4FailedDecryption(As4Error):
    code = "As4FailedDecryption"
    ebms_code = "EBMS:0102"
    ebms_short = "FailedDecryption"


class As4PolicyNoncompliance(As4Error):
    code = "As4PolicyNoncompliance"
    ebms_code = "EBMS:0103"
    ebms_short = "PolicyNoncompliance"


class As4DeliveryFailure(As4Error):
    code = "As4DeliveryFailure"
    ebms_code = "EBMS:0202"
    ebms_short = "DeliveryFailure"


class As4InvalidReceipt(As4Error):
    code = "As4InvalidReceipt"
    ebms_code = "EBMS:0302"
    ebms_short = "InvalidReceipt"


class As4DecompressionFailure(As4Error):
    code = "As4DecompressionFailure"
    ebms_code = "EBMS:0303"
    ebms_short = "DecompressionFailure"


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
