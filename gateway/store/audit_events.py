"""Audit events as values: the stable codes, the checks every event passes (no personal
data), and the small records read back from a store. Shared by every audit store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii
from types import MappingProxyType
from typing import Any

from gateway.errors import AuditError
from gateway.store.audit_chain import (
    FIELDS,
    canonical_json,
    format_time,
)

__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_KEEP",
    "EVENT_CODES",
    "AuditEvent",
    "StoredEvent",
    "StoredReceipt",
    "check_event",
    "checkpoint_due",
    "retention_cutoff",
]

DEFAULT_KEEP = timedelta(days=7 * 365 + 2)  # seven years, leap days included
DEFAULT_CHECKPOINT_INTERVAL = timedelta(hours=1)

#: The stable event codes and what they mean (docs/audit.md has the table). Codes outside
#: this set are accepted when well formed, so a new step does not need an audit release.
EVENT_CODES: Mapping[str, str] = MappingProxyType({
    "intake": "a document was picked up from an outbox folder",
    "validated": "the document passed schema validation",
    "rejected": "the document or envelope was refused (error_code says why)",
    "sealed": "the document was signed and encrypted into an envelope (digest)",
    "routed": "a destination partner and transport were chosen",
    "sending": "a send attempt started",
    "sent": "the envelope was handed to the partner's transport",
    "send_failed": "a send attempt failed (error_code)",
    "retry_scheduled": "another attempt was scheduled",
    "receipt_received": "a receipt for a sent message arrived",
    "receipt_sent": "a receipt was sent for a received message",
    "receipt_stored": "the exact bytes of a receipt were stored (digest = their SHA-256)",
    "received": "an envelope arrived from a partner",
    "opened": "an envelope was decrypted and its signature verified",
    "delivered": "the document was delivered to the inbox folder",
    "duplicate": "a message ID seen before arrived again",
    "relayed": "an envelope for another node was forwarded",
    "relay_requeued": "a relay that had failed was queued again when its sender repeated it",
    "failed": "the message reached a permanent failure",
    "failure_reported": "a failed message's document and error report were put in rejected/",
    "resent_by_operator": "an operator asked for a message to be sent again",
    "cancelled_by_operator": "an operator cancelled a message",
    "key_expiring": "a key or certificate nears its expiry",
    "config_loaded": "the daemon loaded its configuration",
    "keys_reloaded": "the daemon read its key directory again (SIGHUP)",
    "checkpoint": "a signed checkpoint of the chain (digest = signer fingerprint)",
    "audit_pruned": "events up to a sequence number were removed by retention",
    "console_login": "an operator logged in to the console (detail: role, factor, client)",
    "console_login_failed": "a console login was refused (detail: reason, client)",
    "console_lockout": "an operator account was locked after failed logins",
    "console_logout": "an operator logged out of the console",
    "console_refused": "the console refused a request (detail: reason csrf or role)",
    "audit_verified": "the audit trail was verified (detail: ok, events, problems, via "
                      "console, cli or daemon; first_bad_seq)",
    "partner_pinged": "an operator pinged a partner over one transport (detail: ok, check, "
                      "latency_ms, endpoint)",
    "ping_answered": "a partner's ping was answered; nothing stored or delivered",
    "audit_exported": "an operator exported an evidence bundle from the console",
    "operator_added": "a console operator account was created (detail: operator, role)",
    "operator_disabled": "a console operator account was disabled",
    "operator_reset": "a console operator's password and TOTP secret were replaced",
    "operator_unlocked": "a console operator account's lockout and failed logins were cleared",
    "breaker_opened": "a partner's circuit breaker opened (sends to it pause)",
    "breaker_closed": "a partner's circuit breaker closed again",
    "alert_raised": "an alert rule fired (detail.rule, detail.key)",
    "alert_sent": "an alert or a digest was delivered (detail.rule, alerts, channels)",
    "payloads_purged": "payloads of finished messages were removed by retention (counts)",
    "store_copied": "the store was copied here from a SQLite store (counts)",
    "temp_removed": "temporary files left by a stopped process were removed at start-up",
    "clock_started": "the document starts a deadline clock (detail: rule, owes, keys)",
    "clock_answer": "the document answers deadline clocks of a rule (detail: rule, keys)",
    "reminder_drafted": "a CSENet M reminder for an overdue clock was put in the drafts folder",
    "reminder_refused": "no reminder was drafted for an overdue clock: the draft broke edits",
})

_STR_FIELDS = ("message_id", "case_id", "from_party", "to_party", "partner", "transport",
               "error_code", "actor")

_CODE = re.compile(r"[a-z][a-z0-9_]{1,39}")
_TOKEN = re.compile(r"[\x21-\x7e]{1,200}")
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_DETAIL_VALUE = re.compile(r"[\x21-\x7e]{0,128}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A standalone run of 9 digits, or NNN-NN-NNNN: the shapes of a US SSN.
_SSN = re.compile(r"(?<![0-9A-Za-z])(?:[0-9]{9}|[0-9]{3}-[0-9]{2}-[0-9]{4})(?![0-9A-Za-z])")
_MAX_DETAIL = 16
#: Values that passed a check which depends on their text alone, each mapped to its JSON
#: text (what the record hashed holds): field values that passed the token and SSN
#: checks (parties, transports, message IDs recur in every event of a message), codes,
#: digests, detail keys and detail text values. Each is emptied when it reaches
#: ``_SEEN_KEPT`` entries. :mod:`gateway.store.audit_rows` reads them to skip checks that
#: a value passed before.
_TOKENS_SEEN: dict[str, str] = {}
_CODES_SEEN: dict[str, str] = {}
_DIGESTS_SEEN: dict[str, str] = {}
_DETAIL_KEYS_SEEN: dict[str, str] = {}
_DETAIL_VALUES_SEEN: dict[str, str] = {}
_SEEN_KEPT = 4096


def _seen(cache: dict[str, str], value: str) -> str:
    """Remember that ``value`` passed its check (and its JSON text, returned)."""
    if len(cache) >= _SEEN_KEPT:
        cache.clear()
    text = cache[value] = encode_basestring_ascii(value)
    return text


# The checks of :func:`check_event` one value at a time, for :mod:`gateway.store.audit_rows`
# (a message's first events carry values not seen yet: its ID, digests, case ID). It
# takes a plain ``str`` (the caller checks the type) and returns the value's JSON text
# when it passes (remembering it), None when it does not: the caller then builds the
# event and :func:`check_event` raises the error, so nothing but the checks is repeated.


def _passed_text(cache: dict[str, str], pattern: re.Pattern[str], value: str, *,
                 ssn_free: bool = False) -> str | None:
    """``value``'s JSON text when it matches ``pattern`` (and, with ``ssn_free``, holds
    nothing shaped like an SSN), remembered in ``cache``; None when it does not. Callers
    look ``value`` up in ``cache`` first. The pairs :func:`check_event` uses: field values
    (``_TOKENS_SEEN``, ``_TOKEN``, ssn_free), codes (``_CODES_SEEN``, ``_CODE``), digests
    (``_DIGESTS_SEEN``, ``_HEX64``), detail keys (``_DETAIL_KEYS_SEEN``, ``_DETAIL_KEY``)
    and detail text values (``_DETAIL_VALUES_SEEN``, ``_DETAIL_VALUE``, ssn_free)."""
    if pattern.fullmatch(value) and not (ssn_free and _SSN.search(value)):
        return _seen(cache, value)
    return None


@dataclass(frozen=True)
class AuditEvent:
    """One fact for the trail. ``detail`` holds a few extra short facts (str or int)."""

    code: str
    at: datetime
    message_id: str | None = None
    case_id: str | None = None
    from_party: str | None = None
    to_party: str | None = None
    partner: str | None = None
    transport: str | None = None
    digest: str | None = None
    error_code: str | None = None
    actor: str = "daemon"
    detail: Mapping[str, str | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    def columns(self) -> dict[str, Any]:
        """The stored column values (``detail`` as canonical JSON text)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in FIELDS}
        out["at"] = format_time(self.at)
        out["detail"] = canonical_json(dict(self.detail))
        return out


def check_event(event: AuditEvent) -> None:
    """Refuse values that do not belong in the trail; the message names the field, never
    the value."""
    code = event.code
    if not (isinstance(code, str) and code in _CODES_SEEN):
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise AuditError("audit event code must be lowercase letters, digits and _",
                             where="code")
        _seen(_CODES_SEEN, code)
    if not isinstance(event.at, datetime):
        _bad("at", "a datetime")
    if event.at.utcoffset() is None:
        raise AuditError("audit time must be timezone-aware (UTC)")
    for name in _STR_FIELDS:
        value = getattr(event, name)
        if value is None and name != "actor":
            continue
        if isinstance(value, str) and value in _TOKENS_SEEN:
            continue  # passed both checks before (they depend on the text alone)
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            _bad(name, "printable ASCII without spaces, 1-200 characters")
        _no_ssn(name, value)
        _seen(_TOKENS_SEEN, value)
    digest = event.digest
    if digest is not None and not (isinstance(digest, str) and digest in _DIGESTS_SEEN):
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            _bad("digest", "a SHA-256 digest in lowercase hex")
        _seen(_DIGESTS_SEEN, digest)
    if len(event.detail) > _MAX_DETAIL:
        raise AuditError(f"at most {_MAX_DETAIL} detail entries", where="detail")
    for key, value in event.detail.items():
        where = f"detail.{key}" if isinstance(key, str) and (
            key in _DETAIL_KEYS_SEEN or _DETAIL_KEY.fullmatch(key)) else "detail"
        if where == "detail":
            _bad(where, "keys of lowercase letters, digits and _ (at most 40)")
        if key not in _DETAIL_KEYS_SEEN:
            _seen(_DETAIL_KEYS_SEEN, key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            _bad(where, "a string or an integer")
        if isinstance(value, int):
            if not -(2**63) <= value < 2**63:
                _bad(where, "a 64-bit integer")
            if 100_000_000 <= abs(value) <= 999_999_999 and not key.endswith(("bytes", "_ms")):
                raise AuditError("value has the shape of an SSN (9 digits); the audit trail "
                                 "never stores personal data", where=where)
        elif value not in _DETAIL_VALUES_SEEN:
            if not _DETAIL_VALUE.fullmatch(value):
                _bad(where, "printable ASCII without spaces, at most 128 characters "
                     "(no free text in the audit trail)")
            _no_ssn(where, value)
            _seen(_DETAIL_VALUES_SEEN, value)


def _bad(where: str, what: str) -> None:
    raise AuditError(f"audit value must be {what}", where=where)


def _no_ssn(where: str, value: str) -> None:
    if _SSN.search(value):
        raise AuditError("value has the shape of an SSN; the audit trail never stores "
                         "personal data", where=where)


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    prev_hash: str
    hash: str
    event: AuditEvent

    def to_dict(self) -> dict[str, Any]:
        cols = self.event.columns()
        cols["detail"] = dict(self.event.detail)
        return {"seq": self.seq, **cols, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True)
class StoredReceipt:
    event_seq: int
    message_id: str
    direction: str
    at: datetime
    sha256: str
    data: bytes


def checkpoint_due(now: datetime, *, last_at: datetime | None, last_seq: int, tail_seq: int,
                   interval: timedelta = DEFAULT_CHECKPOINT_INTERVAL) -> bool:
    """True when events exist past the last checkpoint and ``interval`` has passed since it
    (or there was none). At shutdown call :meth:`AuditLog.checkpoint` whenever
    ``tail_seq > last_seq``."""
    if tail_seq <= last_seq:
        return False
    return last_at is None or now - last_at >= interval


def retention_cutoff(now: datetime, keep: timedelta = DEFAULT_KEEP) -> datetime:
    """Events older than this may be pruned (see :meth:`AuditLog.prune`)."""
    return now - keep


# --- the log ----------------------------------------------------------------------------


