"""Audit events prepared ahead of their place in the chain: a spool transaction records
its events as it goes and appends them together when it commits
(:meth:`gateway.store.audit.AuditLog.append_run`).

An event's stored columns and almost all of the record its hash covers do not depend on
where it lands in the chain, only ``seq`` and ``prev_hash`` do. :func:`prepare_event`
therefore checks an event (:func:`gateway.store.audit_events.check_event`'s rules, same
errors), computes its columns and writes the canonical JSON of its record
(:func:`gateway.store.audit_chain.event_record`) in two pieces, the keys before
``prev_hash`` and those after ``seq``; :func:`chain_hash` puts a position in between and
hashes. The bytes hashed and the columns stored are exactly those of
:meth:`~gateway.store.audit.AuditLog.append` (tests compare every column of both).

Most values recur from event to event (parties, a message's ID and digest, the codes),
so a value that passed its check before is looked up with its JSON text
(``audit_events``' caches) instead of checked and encoded again; a value not seen yet (a
message's first events: its ID, case ID, digests) is checked on its own with the same
rules and remembered. Anything unusual (a value of another type, one that fails its
check, an unknown field) goes the general way: the
:class:`~gateway.store.audit_events.AuditEvent` is built and checked as before, which
raises the same error for a bad value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from gateway.errors import AuditError
from gateway.store.audit_chain import FIELDS, format_time
from gateway.store.audit_events import (
    _CODE,
    _CODES_SEEN,
    _DETAIL_KEY,
    _DETAIL_KEYS_SEEN,
    _DETAIL_VALUE,
    _DETAIL_VALUES_SEEN,
    _DIGESTS_SEEN,
    _HEX64,
    _MAX_DETAIL,
    _TOKEN,
    _TOKENS_SEEN,
    AuditEvent,
    _passed_text,
    check_event,
)

__all__ = ["Prepared", "chain_hash", "prepare_event", "prepare_receipt"]

#: An event ready to append: (its stored columns in ``FIELDS`` order, the record's JSON
#: up to ``"prev_hash":``, the record's JSON from ``,"to_party"`` on), and for a receipt
#: a fourth item: the ``audit_receipts`` row without its ``event_seq``.
Prepared = tuple[Any, ...]

#: the keyword arguments of :class:`AuditEvent` besides ``code`` and ``at``
_KWARGS = frozenset(FIELDS) - {"code", "at"}

_quote = encode_basestring_ascii

#: The record's keys but detail, prev_hash and seq in canonical (sorted) order: the order
#: :func:`_pieces` writes them in
_ORDER = ("actor", "at", "case_id", "code", "digest", "error_code", "from_party",
          "message_id", "partner", "to_party", "transport")
if tuple(sorted(("seq", "prev_hash", "detail", *_ORDER))) != tuple(sorted(
        ("seq", "prev_hash", *FIELDS))):  # pragma: no cover - the fields changed
    raise ImportError("audit_rows: the record's keys are not the stored fields")


def chain_hash(prepared: Prepared, seq: int, prev_json: str) -> str:
    """The hash of a prepared event at ``seq`` after the event whose hash, as JSON text
    (quoted), is ``prev_json``: :func:`gateway.store.audit_chain.stored_event_hash`."""
    text = f'{prepared[1]}{prev_json},"seq":{seq}{prepared[2]}'
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def prepare_event(code: str, at: datetime, values: dict[str, Any]) -> Prepared:
    """Check the event ``AuditEvent(code, at, **values)`` and prepare it; raises what
    building and checking that event raises (``TypeError`` for an unknown field,
    :class:`AuditError` naming a bad value)."""
    if values.keys() <= _KWARGS:
        prepared = _prepare_seen(code, at, values)
        if prepared is not None:
            return prepared
    event = AuditEvent(code=code, at=at, **values)
    check_event(event)
    return prepare_checked(event)


def prepare_receipt(message_id: str, direction: str, data: bytes, at: datetime, *,
                    actor: str = "daemon") -> Prepared:
    """A receipt's exact bytes and the ``receipt_stored`` event that anchors them
    (:meth:`gateway.store.audit.AuditLog.store_receipt`, same checks and errors)."""
    if direction not in ("sent", "received"):
        raise AuditError("receipt direction must be 'sent' or 'received'",
                         where="direction")
    digest = hashlib.sha256(data).hexdigest()
    event = prepare_event("receipt_stored", at, {
        "message_id": message_id, "digest": digest, "actor": actor,
        "detail": {"direction": direction, "bytes": len(data)}})
    return (*event, (message_id, direction, event[0][0], digest, data))


def prepare_checked(event: AuditEvent) -> Prepared:
    """Prepare an event that passed :func:`check_event` (the general way)."""
    columns = event.columns()
    values = tuple(columns[name] for name in FIELDS)
    q = {name: "null" if value is None else _quote(value)
         for name, value in columns.items() if name != "detail"}
    return values, *_pieces([q[name] for name in _ORDER], columns["detail"])


def _pieces(q: Sequence[str], detail: str) -> tuple[str, str]:
    """The record's JSON around ``prev_hash`` and ``seq``, from the JSON texts ``q`` of
    its other values in :data:`_ORDER` and its detail's canonical JSON."""
    actor, at, case_id, code, digest, error_code, from_party, message_id, partner, \
        to_party, transport = q
    return (f'{{"actor":{actor},"at":{at},"case_id":{case_id},"code":{code},'
            f'"detail":{detail},"digest":{digest},"error_code":{error_code},'
            f'"from_party":{from_party},"message_id":{message_id},"partner":{partner},'
            '"prev_hash":',
            f',"to_party":{to_party},"transport":{transport}}}')


def _prepare_seen(code: str, at: datetime, values: dict[str, Any]) -> Prepared | None:
    """The event prepared from values each of the plain type expected: each value seen
    before is looked up with its JSON text, one not seen yet is checked here (the checks
    of :func:`check_event`, one value at a time, ``audit_events._passed_text``). None when a
    value is not of the plain type or fails its check: then the general way decides (and
    raises the error :func:`check_event` gives)."""
    code_q = (_CODES_SEEN.get(code) or _passed_text(_CODES_SEEN, _CODE, code)
              ) if type(code) is str else None
    if code_q is None or type(at) is not datetime or at.utcoffset() is None:
        return None
    get = values.get
    seen = _TOKENS_SEEN
    texts = []
    for name in _TOKEN_FIELDS:
        value = get(name)
        if value is None:
            texts.append("null")
            continue
        if type(value) is not str:
            return None
        text = seen.get(value) or _passed_text(seen, _TOKEN, value, ssn_free=True)
        if text is None:
            return None
        texts.append(text)
    actor = get("actor", "daemon")
    if type(actor) is not str:
        return None
    actor_q = seen.get(actor) or _passed_text(seen, _TOKEN, actor, ssn_free=True)
    digest = get("digest")
    if digest is None:
        digest_q: str | None = "null"
    elif type(digest) is str:
        digest_q = _DIGESTS_SEEN.get(digest) or _passed_text(_DIGESTS_SEEN, _HEX64, digest)
    else:
        return None
    if actor_q is None or digest_q is None:
        return None
    detail_json = _detail_json(get("detail", _EMPTY))
    if detail_json is None:
        return None
    at_text = format_time(at)
    mid, case, frm, to, partner, transport, err = texts
    return ((at_text, code, get("message_id"), get("case_id"), get("from_party"),
             get("to_party"), get("partner"), get("transport"), digest,
             get("error_code"), actor, detail_json),
            *_pieces((actor_q, f'"{at_text}"', case, code_q, digest_q, err, frm, mid, partner,
                      to, transport), detail_json))


#: the text fields :func:`_prepare_seen` reads in this order (``actor`` apart: it has a
#: default)
_TOKEN_FIELDS = ("message_id", "case_id", "from_party", "to_party", "partner", "transport",
                 "error_code")


_EMPTY: dict[str, Any] = {}


def _detail_json(detail: Any) -> str | None:
    """The canonical JSON of a detail whose keys and values pass their checks (sorted
    keys; text looked up or checked as in :func:`_prepare_seen`, integers checked here),
    else None."""
    if type(detail) is not dict:
        return None
    if not detail:
        return "{}"
    if len(detail) > _MAX_DETAIL:
        return None
    pieces: dict[str, str] = {}
    for key, value in detail.items():
        if type(key) is not str:
            return None
        key_q = _DETAIL_KEYS_SEEN.get(key) or _passed_text(_DETAIL_KEYS_SEEN, _DETAIL_KEY, key)
        if key_q is None:
            return None
        if type(value) is int:
            if not -100_000_000 < value < 100_000_000 and (
                    not -(2**63) <= value < 2**63 or (
                        abs(value) <= 999_999_999 and not key.endswith(("bytes", "_ms")))):
                return None
            pieces[key] = f"{key_q}:{value!r}"
        else:
            if type(value) is not str:
                return None
            text = _DETAIL_VALUES_SEEN.get(value) or _passed_text(
                _DETAIL_VALUES_SEEN, _DETAIL_VALUE, value, ssn_free=True)
            if text is None:
                return None
            pieces[key] = f"{key_q}:{text}"
    if len(pieces) == 1:
        return f"{{{pieces[key]}}}"
    return "{" + ",".join([pieces[key] for key in sorted(pieces)]) + "}"
