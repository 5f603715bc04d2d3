"""Alerts: rules evaluated against the store, delivered by e-mail and/or an HTTPS webhook,
rate-limited per rule with a digest of what was held back (``[alerts]`` in the
configuration; on when a channel is configured).

Rules (thresholds in :class:`~gateway.node.monitor_config.AlertRules`):

- ``message_failed``: a message failed for good (a ``failed`` audit event);
- ``breaker_open``: a partner's circuit breaker has been open longer than N (the
  ``breaker_opened`` / ``breaker_closed`` events the sender writes);
- ``oldest_pending``: the oldest message still being worked on is older than N;
- ``certificate_expiry``: a certificate (own or a partner's) expires within 30 days, and
  again at 7 and at 1 (each threshold once per certificate);
- ``audit_verify``: the periodic verification of the audit chain found a problem;
- ``login_failures``: at least N failed console logins (audit codes ``login_codes``)
  within ``login_window``;
- ``clock_due_within``: an open deadline clock is due within N working days (of whoever
  owes it), once per clock; ``clock_overdue``: an open clock is past its due date, once
  per clock (clocks that became overdue within the last 7 days: a node that starts
  watching does not send the history). ``clock_owed_by`` limits both to the answers we
  owe or partners owe. Read from the clock events (:class:`~gateway.node.clocks.ClockWatch`).

Each alert fires once for what raised it (its ``key``): a ``alert_raised`` audit event
records it, so a restarted daemon does not raise it again. Delivery is per rule: the first
alert goes out at once; the next ones within ``rate_limit`` are held and sent together as
one digest when the period ends. Every delivery is an ``alert_sent`` audit event. Alerts
hold codes, ids, parties, counts and certificate fingerprints: never a document's content.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from gateway.errors import GatewayError
from gateway.node.alert_channels import Alert, Channel, Delivery, channels_for
from gateway.node.clocks import ClockWatch
from gateway.node.metrics import AuditTally, CertInfo
from gateway.node.monitor_config import AlertsConfig
from gateway.store.audit import StoredEvent
from gateway.store.spool import Spool
from gateway.store.states import PENDING

__all__ = ["Alert", "AlertEngine", "Delivery", "VerifyResult"]

log = logging.getLogger("gateway.node.alerts")

_LOOKBACK = timedelta(days=7)  # alert_raised events read back at start (fire-once keys)
_FAILED_LOOKBACK = 86400.0  # failures this recent, not yet alerted, are alerted at start
_CLOCK_RULES = ("clock_due_within", "clock_overdue")  # their keys are kept however old


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_seq: int | None = None
    kind: str = ""


class _Clock(Protocol):
    def __call__(self) -> datetime: ...


class AlertEngine:
    """Evaluates the rules and delivers; :meth:`run_once` is the scheduled job.
    Thread-safe (one evaluation at a time)."""

    def __init__(self, config: AlertsConfig, spool: Spool, *, node: str, clock: _Clock,
                 certificates: Callable[[], Iterable[CertInfo]] = list,
                 verify: Callable[[], VerifyResult] | None = None,
                 channels: Sequence[Channel] | None = None,
                 clocks: ClockWatch | None = None) -> None:
        self.config = config
        self.rules = config.rules
        self.spool = spool
        self.node = node
        self.clock = clock
        self.certificates = certificates
        self.verify = verify
        self.clocks = clocks
        self.channels = list(channels) if channels is not None else channels_for(config)
        self.tally = AuditTally()
        self._lock = threading.Lock()
        self._fired: set[tuple[str, str]] = set()
        self._held: dict[str, list[Alert]] = {}
        self._held_since: dict[str, datetime] = {}
        self._last_sent: dict[str, datetime] = {}
        self._failed_seq = 0
        self._login_seq = 0
        self._logins: list[tuple[int, float]] = []
        self._active: set[str] = set()  # condition rules currently true
        self._last_verify: datetime | None = None
        self._started = False

    # --- the job ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Evaluate every rule, then deliver what the rate limit allows; returns the
        number of deliveries made."""
        with self._lock:
            now = self.clock()
            if not self._started:
                self._load(now)
            raised = self.evaluate(now)
            self._record(raised, now)
            for alert in raised:
                self._held.setdefault(alert.rule, []).append(alert)
                self._held_since.setdefault(alert.rule, now)
            return self._deliver_due(now)

    def _load(self, now: datetime) -> None:
        """Read back what earlier runs raised and sent (fire once, rate limit)."""
        since = now - _LOOKBACK
        for stored in _all_after(self.spool, 0, ("alert_raised", "alert_sent")):
            e = stored.event
            rule, key = e.detail.get("rule"), e.detail.get("key")
            if not isinstance(rule, str) or (e.at < since and rule not in _CLOCK_RULES):
                continue
            if e.code == "alert_raised" and isinstance(key, str):
                self._fired.add((rule, key))
            elif e.code == "alert_sent":
                self._last_sent[rule] = e.at
        self._started = True

    def evaluate(self, now: datetime) -> list[Alert]:
        """The alerts whose condition holds now and that have not fired before."""
        found: list[Alert] = []
        if self.rules.message_failed:
            found += self._failed(now)
        self.tally.update(self.spool)
        if self.rules.breaker_open is not None:
            found += self._breakers(now, self.rules.breaker_open)
        if self.rules.oldest_pending is not None:
            found += self._pending(now, self.rules.oldest_pending)
        if self.rules.certificate_expiry:
            found += self._certificates(now)
        if self.rules.audit_verify is not None and self.verify is not None:
            found += self._audit(now, self.rules.audit_verify)
        if self.rules.login_failures is not None:
            found += self._logins_failed(now, self.rules.login_failures)
        if self.clocks is not None and (self.rules.clock_overdue
                                        or self.rules.clock_due_within is not None):
            found += self._clocks(now, self.clocks)
        fresh = [a for a in found if (a.rule, a.key) not in self._fired]
        self._fired |= {(a.rule, a.key) for a in fresh}
        return fresh

    # --- rules ------------------------------------------------------------------------

    def _failed(self, now: datetime) -> list[Alert]:
        found = []
        cutoff = now.timestamp() - _FAILED_LOOKBACK
        for stored in _all_after(self.spool, self._failed_seq, ("failed",)):
            self._failed_seq = stored.seq
            e = stored.event
            if e.at.timestamp() < cutoff:
                continue
            facts: dict[str, str | int] = {"message_id": e.message_id or "-",
                                           "partner": e.partner or "-",
                                           "error_code": e.error_code or "-"}
            found.append(Alert("message_failed", e.message_id or f"seq-{stored.seq}",
                               f"message {e.message_id or '-'} to {e.partner or '-'} failed "
                               f"for good: {e.error_code or '-'}", facts))
        return found

    def _breakers(self, now: datetime, after: float) -> list[Alert]:
        found = []
        with self.tally.lock:
            breakers = dict(self.tally.breakers)
        for partner, (is_open, at) in sorted(breakers.items()):
            minutes = (now.timestamp() - at) / 60
            if is_open and now.timestamp() - at >= after:
                found.append(Alert("breaker_open", f"{partner}:{int(at)}",
                                   f"circuit breaker for {partner} open for "
                                   f"{minutes:.0f} minutes",
                                   {"partner": partner, "open_minutes": int(minutes)}))
        return found

    def _pending(self, now: datetime, after: float) -> list[Alert]:
        oldest = self.spool.oldest(sorted(PENDING))
        age = None if oldest is None else now.timestamp() - oldest
        if age is None or age < after:
            self._active.discard("oldest_pending")
            return []
        if "oldest_pending" in self._active:
            return []
        self._active.add("oldest_pending")
        assert oldest is not None  # noqa: S101 - age is set
        partners = [p or "-" for p, created in self.spool.oldest_by_partner(sorted(PENDING))
                    if now.timestamp() - created >= after]
        return [Alert("oldest_pending", str(int(oldest)),
                      f"oldest pending message is {age / 60:.0f} minutes old",
                      {"age_seconds": int(age), "partners": ",".join(partners)[:128]})]

    def _certificates(self, now: datetime) -> list[Alert]:
        found = []
        for cert in self.certificates():
            days = (cert.not_after - now.timestamp()) / 86400
            crossed = [d for d in self.rules.certificate_expiry if days <= d]
            if not crossed:
                continue
            threshold = min(crossed)
            found.append(Alert(
                "certificate_expiry", f"{cert.role}:{cert.party}:{cert.fingerprint}:{threshold}",
                f"{cert.role} certificate of {cert.party} "
                + (f"expires in {days:.1f} days" if days >= 0 else "has expired"),
                {"role": cert.role, "party": cert.party, "fingerprint": cert.fingerprint,
                 "days_left": int(days), "threshold_days": threshold}))
        return found

    def _audit(self, now: datetime, every: float) -> list[Alert]:
        assert self.verify is not None  # noqa: S101 - checked by the caller
        if self._last_verify is not None and (now - self._last_verify).total_seconds() < every:
            return []
        self._last_verify = now
        try:
            result = self.verify()
        except GatewayError as exc:
            result = VerifyResult(False, None, exc.code)
        if result.ok:
            self._active.discard("audit_verify")
            return []
        return [Alert("audit_verify", f"{result.kind}:{result.first_seq}",
                      f"audit chain verification failed: {result.kind or 'error'} at event "
                      f"{result.first_seq if result.first_seq is not None else '-'}",
                      {"problem": result.kind or "-", "seq": result.first_seq or 0})]

    def _logins_failed(self, now: datetime, threshold: int) -> list[Alert]:
        for stored in _all_after(self.spool, self._login_seq, self.rules.login_codes):
            self._login_seq = stored.seq
            self._logins.append((stored.seq, stored.event.at.timestamp()))
        start = now.timestamp() - self.rules.login_window
        self._logins = [(s, at) for s, at in self._logins if at >= start]
        if len(self._logins) < threshold:
            self._active.discard("login_failures")
            return []
        if "login_failures" in self._active:
            return []
        self._active.add("login_failures")
        return [Alert("login_failures", f"seq-{self._logins[0][0]}",
                      f"{len(self._logins)} failed console logins in "
                      f"{self.rules.login_window / 60:.0f} minutes",
                      {"count": len(self._logins)})]

    def _clocks(self, now: datetime, watch: ClockWatch) -> list[Alert]:
        found = []
        owed_by, within = self.rules.clock_owed_by, self.rules.clock_due_within
        today = now.astimezone(watch.keeper.tz).date()
        for clock in watch.clocks(self.spool, now).open():
            side = "us" if clock.owed_by_us else "partner"
            if owed_by not in ("any", side):
                continue
            start = clock.start
            key = f"{clock.rule.name}:{start.message_id or start.at.isoformat()}"
            facts: dict[str, str | int] = {
                "clock_rule": clock.rule.name, "partner": clock.partner, "owed_by": side,
                "due": clock.due.isoformat(), "message_id": start.message_id or "-",
                "case": start.our_case or "-"}
            who = "we owe" if clock.owed_by_us else f"{clock.partner} owes"
            if clock.overdue(now):
                if self.rules.clock_overdue and now - clock.overdue_at < _LOOKBACK:
                    found.append(Alert("clock_overdue", key, f"{clock.rule.name}: the answer "
                                       f"{who} in case {start.our_case or '-'} was due "
                                       f"{clock.due.isoformat()}", facts))
                continue
            left = clock.working_days_left(today)
            if within is not None and left <= within:
                found.append(Alert("clock_due_within", key, f"{clock.rule.name}: the answer "
                                   f"{who} in case {start.our_case or '-'} is due "
                                   f"{clock.due.isoformat()} ({left} working days left)",
                                   {**facts, "working_days_left": left}))
        return found

    # --- delivery ---------------------------------------------------------------------

    def _record(self, raised: Sequence[Alert], now: datetime) -> None:
        if not raised:
            return
        with self.spool.transaction(now) as txn:
            for alert in raised:
                txn.audit("alert_raised", None, detail={"rule": alert.rule,
                                                        "key": alert.key[:128]})
        for alert in raised:
            log.warning("alert %s: %s", alert.rule, alert.summary,
                        extra={"event": "alert_raised"})

    def _deliver_due(self, now: datetime) -> int:
        sent = 0
        for rule in sorted(self._held):
            alerts = self._held[rule]
            if not alerts:
                continue
            last = self._last_sent.get(rule)
            if last is not None and (now - last).total_seconds() < self.config.rate_limit:
                continue
            delivery = Delivery(self.node, rule, tuple(alerts),
                                self._held_since.get(rule) if len(alerts) > 1 else None)
            if self.deliver(delivery, now):
                self._held[rule] = []
                self._held_since.pop(rule, None)
                self._last_sent[rule] = now
                sent += 1
        return sent

    def deliver(self, delivery: Delivery, now: datetime) -> bool:
        """Send ``delivery`` on every channel; True (and an ``alert_sent`` audit event)
        when at least one took it."""
        done: list[str] = []
        for channel in self.channels:
            try:
                channel.send(delivery)
                done.append(channel.name)
            except GatewayError as exc:
                log.error("alert %s not delivered by %s: %s: %s", delivery.rule, channel.name,
                          exc.code, exc, extra={"event": "alert_delivery_failed"})
        if not done:
            return False
        with self.spool.transaction(now) as txn:
            txn.audit("alert_sent", None, detail={"rule": delivery.rule,
                                                  "alerts": len(delivery.alerts),
                                                  "channels": ",".join(done)})
        log.info("alert %s sent (%d alerts) by %s", delivery.rule, len(delivery.alerts),
                 ",".join(done), extra={"event": "alert_sent"})
        return True


def _all_after(spool: Spool, seq: int, codes: Sequence[str]) -> Iterator[StoredEvent]:
    while True:
        page = spool.audit_after(seq, codes, 5000)
        yield from page
        if len(page) < 5000:
            return
        seq = page[-1].seq
