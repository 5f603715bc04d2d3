"""The message state machine (pure): which state changes are allowed, and the audit event
code each one writes. The spool refuses any transition not listed here.

Four kinds of message share one table, each with its own machine:

- ``out``: a business document dropped in an outbox, sealed and sent by this node;
  ``delivered`` only once a valid ``Delivered`` receipt for it is stored.
- ``in``: an envelope addressed to this node: opened, verified, validated, delivered into
  the inbox (or rejected), answered with a signed receipt. Delivery is two-phase
  (``delivering`` records the fsynced temporary file before it is renamed into the inbox)
  so a crash can never make the inbox receive the same document twice.
- ``relay``: an envelope addressed to another party that routes through this node:
  forwarded unchanged, never opened.
- ``receipt``: a receipt this node sends back asynchronously (to a message that arrived by
  SFTP or through a folder; over HTTPS the receipt is the response itself).

The diagram and the table are in ``docs/state-machine.md``; a test checks they agree.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.errors import IllegalTransition

__all__ = [
    "PENDING",
    "TERMINAL",
    "TRANSITIONS",
    "Direction",
    "IllegalTransition",
    "State",
    "audit_code",
    "is_pending",
]


class State(StrEnum):
    RECEIVED = "received"
    DELIVERING = "delivering"
    REJECTED = "rejected"
    SEALED = "sealed"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    RELAYED = "relayed"
    CANCELLED = "cancelled"


class Direction(StrEnum):
    OUT = "out"
    IN = "in"
    RELAY = "relay"
    RECEIPT = "receipt"


S = State
# direction -> from-state (None = creation) -> to-state -> audit event code
TRANSITIONS: dict[Direction, dict[State | None, dict[State, str]]] = {
    Direction.OUT: {
        None: {S.RECEIVED: "intake"},
        S.RECEIVED: {S.SEALED: "sealed", S.REJECTED: "rejected"},
        S.SEALED: {S.SENDING: "sending", S.CANCELLED: "cancelled_by_operator"},
        S.SENDING: {
            S.SENT: "sent",
            S.DELIVERED: "delivered",
            S.RETRYING: "retry_scheduled",
            S.FAILED: "failed",
        },
        S.SENT: {
            S.DELIVERED: "delivered",
            S.FAILED: "failed",
            S.RETRYING: "retry_scheduled",
            S.CANCELLED: "cancelled_by_operator",
        },
        S.RETRYING: {
            S.SENDING: "sending",
            S.DELIVERED: "delivered",
            S.FAILED: "failed",
            S.CANCELLED: "cancelled_by_operator",
        },
        S.FAILED: {S.SEALED: "resent_by_operator"},
        S.CANCELLED: {S.SEALED: "resent_by_operator"},
    },
    Direction.IN: {
        None: {S.RECEIVED: "received"},
        S.RECEIVED: {S.DELIVERING: "validated", S.REJECTED: "rejected"},
        S.DELIVERING: {S.DELIVERED: "delivered"},
    },
    Direction.RELAY: {
        None: {S.RECEIVED: "received"},
        S.RECEIVED: {S.SENDING: "sending", S.CANCELLED: "cancelled_by_operator",
                     S.FAILED: "failed"},
        S.SENDING: {S.RELAYED: "relayed", S.RETRYING: "retry_scheduled", S.FAILED: "failed"},
        S.RETRYING: {S.SENDING: "sending", S.FAILED: "failed",
                     S.CANCELLED: "cancelled_by_operator"},
        S.FAILED: {S.RECEIVED: "resent_by_operator"},
        S.CANCELLED: {S.RECEIVED: "resent_by_operator"},
    },
    Direction.RECEIPT: {
        None: {S.SEALED: "sealed"},
        S.SEALED: {S.SENDING: "sending", S.CANCELLED: "cancelled_by_operator",
                   S.FAILED: "failed"},
        S.SENDING: {S.SENT: "receipt_sent", S.RETRYING: "retry_scheduled", S.FAILED: "failed"},
        S.RETRYING: {S.SENDING: "sending", S.FAILED: "failed",
                     S.CANCELLED: "cancelled_by_operator"},
        S.FAILED: {S.SEALED: "resent_by_operator"},
        S.CANCELLED: {S.SEALED: "resent_by_operator"},
    },
}

#: States with no way forward except an operator's resend.
TERMINAL: dict[Direction, frozenset[State]] = {
    Direction.OUT: frozenset({S.DELIVERED, S.REJECTED, S.FAILED, S.CANCELLED}),
    Direction.IN: frozenset({S.DELIVERED, S.REJECTED}),
    Direction.RELAY: frozenset({S.RELAYED, S.FAILED, S.CANCELLED}),
    Direction.RECEIPT: frozenset({S.SENT, S.FAILED, S.CANCELLED}),
}
#: States in which some message is still being worked on (status and recovery).
PENDING: frozenset[State] = frozenset({S.RECEIVED, S.DELIVERING, S.SEALED, S.SENDING, S.SENT,
                                       S.RETRYING})


def is_pending(direction: Direction, state: State) -> bool:
    return state not in TERMINAL[direction]


def audit_code(direction: Direction, current: State | None, target: State) -> str:
    """The audit code for ``current -> target``; :class:`IllegalTransition` if not allowed."""
    allowed = TRANSITIONS[direction].get(current, {})
    code = allowed.get(target)
    if code is None:
        raise IllegalTransition(
            f"{direction} message cannot go from {current or 'nothing'} to {target}",
            details={"direction": str(direction), "from": str(current), "to": str(target)},
        )
    return code
