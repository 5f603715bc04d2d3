"""The OpenMetrics ``/metrics`` endpoint (``[metrics]`` in the configuration; off by default).

Every value is read from the store when Prometheus scrapes, by one custom collector
(:class:`StoreCollector`), so several gateway processes on one store report the same
numbers, and a restarted process carries on where the store is:

- gauges from the spool's messages table: messages by direction, state and partner (the
  same query as ``gateway status``), the oldest pending message's age per partner, the
  rejected intake files by error code;
- counters and the send-duration histogram from the audit trail, read incrementally
  (:class:`AuditTally` keeps the last sequence number it has read and adds only newer
  events): send attempts by outcome, receipts by status, inbound envelopes by outcome,
  breaker changes (the sender writes ``breaker_opened`` / ``breaker_closed`` events),
  alerts sent. The first scrape of a process reads the whole trail once;
- the audit chain's head and its last signed checkpoint;
- open and overdue deadline clocks per rule, partner and owing side, from the clock
  events (:class:`~gateway.node.clocks.ClockWatch`: read incrementally too, the pairing
  computed again at most once a minute while new events come in);
- the certificates' not-after times (from the key directory the daemon loaded).

Names carry the ``cse_`` prefix and base units (seconds, timestamps in epoch seconds);
labels are partners, directions, states, transports, error codes, rules and certificate
roles, never a message or case id. Plain HTTP is served on a loopback address only;
anywhere else mutual TLS is required (``cert``, ``key``, ``client_ca``).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from gateway.errors import ConfigError
from gateway.node.clocks import ClockWatch
from gateway.node.monitor_config import MetricsConfig
from gateway.store.audit import StoredEvent
from gateway.store.spool import Spool
from gateway.store.states import PENDING, Direction, State

__all__ = [
    "BUCKETS",
    "AuditTally",
    "CertInfo",
    "MetricsServer",
    "StoreCollector",
    "transport_label",
]

log = logging.getLogger("gateway.node.metrics")

#: Send-duration histogram buckets (seconds).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_SUCCESS = ("sent", "relayed", "receipt_sent")
TALLY_CODES = (*_SUCCESS, "send_failed", "receipt_received", "received", "duplicate",
               "rejected", "breaker_opened", "breaker_closed", "alert_sent",
               "console_login_failed")


def transport_label(value: str | None) -> str:
    """The transport of an event as a label: a URL's scheme (``https``, ``sftp``), or the
    inbound channel's name; never the URL (it may hold a user name or a path)."""
    if not value:
        return ""
    return value.split("://", 1)[0] if "://" in value else value[:20]


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.count += 1
        self.total += seconds


@dataclass(frozen=True)
class CertInfo:
    role: str  # sign, encrypt, decrypt, partner_encrypt
    party: str
    fingerprint: str  # 16 hex digits, as `gateway keys list` shows it
    not_after: float  # epoch seconds


class AuditTally:
    """Counts kept from the audit trail, read on from the last sequence number seen.
    Thread-safe; :meth:`update` reads what is new."""

    PAGE = 20_000

    def __init__(self) -> None:
        self.seq = 0
        self.lock = threading.Lock()
        self.attempts: Counter[tuple[str, str, str, str]] = Counter()
        self.durations: dict[tuple[str, str], _Histogram] = {}
        self.receipts: Counter[tuple[str, str, str]] = Counter()
        self.inbound: Counter[tuple[str, str, str]] = Counter()
        self.breakers: dict[str, tuple[bool, float]] = {}
        self.alerts: Counter[str] = Counter()
        self.login_failures = 0

    def update(self, spool: Spool) -> None:
        with self.lock:
            while True:
                events = spool.audit_after(self.seq, TALLY_CODES, self.PAGE)
                for stored in events:
                    self._add(stored)
                    self.seq = stored.seq
                if len(events) < self.PAGE:
                    return

    def _add(self, stored: StoredEvent) -> None:
        e = stored.event
        code = e.code
        partner = e.partner or ""
        transport = transport_label(e.transport)
        millis = e.detail.get("duration_ms")
        # each attempt's event carries its duration (written by the sender)
        if (code in _SUCCESS or code == "send_failed") and isinstance(millis, int):
            ok = code != "send_failed"
            self.attempts[(partner, transport, "ok" if ok else "failed",
                           "" if ok else (e.error_code or ""))] += 1
            self.durations.setdefault((partner, transport), _Histogram()).observe(
                millis / 1000.0)
        status = e.detail.get("status")
        if code in ("receipt_received", "receipt_sent") and isinstance(status, str):
            way = "received" if code == "receipt_received" else "sent"
            self.receipts[(way, status, partner or e.from_party or "")] += 1
        if code in ("received", "duplicate"):
            self.inbound[(transport, code, "")] += 1
        elif code == "rejected" and e.transport:  # inbound (an intake rejection has none)
            self.inbound[(transport, "rejected", e.error_code or "")] += 1
        elif code in ("breaker_opened", "breaker_closed"):
            self.breakers[partner] = (code == "breaker_opened", e.at.timestamp())
        elif code == "console_login_failed":
            self.login_failures += 1
        elif code == "alert_sent":
            rule = e.detail.get("rule")
            if isinstance(rule, str):
                self.alerts[rule] += 1


class StoreCollector(Collector):
    """The custom collector: every metric read from the store at scrape time."""

    def __init__(self, spool: Spool, *, party: str,
                 certificates: Callable[[], Iterable[CertInfo]] = list,
                 clock: Callable[[], float] = time.time,
                 clocks: ClockWatch | None = None) -> None:
        self.spool = spool
        self.party = party
        self.certificates = certificates
        self.clock = clock
        self.clocks = clocks
        self.tally = AuditTally()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # checked at scrape time, not at registration

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield from self._messages(now)
        self.tally.update(self.spool)
        with self.tally.lock:
            yield from self._from_audit()
        seq, checkpoint = self.spool.audit_head()
        g = GaugeMetricFamily("cse_audit_head_sequence",
                              "Sequence number of the last audit event")
        g.add_metric([], seq)
        yield g
        g = GaugeMetricFamily("cse_audit_last_checkpoint_timestamp_seconds",
                              "When the last signed audit checkpoint was written "
                              "(absent before the first)")
        if checkpoint is not None:
            g.add_metric([], checkpoint)
        yield g
        g = GaugeMetricFamily("cse_certificate_not_after_timestamp_seconds",
                              "Expiry of each certificate in use: own (sign, encrypt, "
                              "decrypt) and partners' (partner_encrypt)",
                              labels=["role", "partner", "fingerprint"])
        for cert in self.certificates():
            g.add_metric([cert.role, cert.party, cert.fingerprint], cert.not_after)
        yield g
        yield from self._clocks(now)

    def _clocks(self, now: float) -> Iterator[Metric]:
        labels = ["rule", "partner", "owed_by"]
        opened = GaugeMetricFamily("cse_clocks_open", "Open deadline clocks (overdue ones "
                                   "included) by rule, partner and who owes the answer",
                                   labels=labels)
        late = GaugeMetricFamily("cse_clocks_overdue", "Overdue deadline clocks by rule, "
                                 "partner and who owes the answer", labels=labels)
        if self.clocks is not None:
            moment = datetime.fromtimestamp(now, UTC)
            counts: Counter[tuple[str, str, str]] = Counter()
            overdue: Counter[tuple[str, str, str]] = Counter()
            for clock in self.clocks.clocks(self.spool, moment).open():
                key = (clock.rule.name, clock.partner, "us" if clock.owed_by_us else "partner")
                counts[key] += 1
                overdue[key] += clock.overdue(moment)
            for key, n in sorted(counts.items()):
                opened.add_metric(list(key), n)
                late.add_metric(list(key), overdue[key])
        yield opened
        yield late

    def _messages(self, now: float) -> Iterator[Metric]:
        g = GaugeMetricFamily("cse_messages", "Messages in the spool by direction, state "
                              "and partner", labels=["direction", "state", "partner"])
        for direction, state, partner, count in self.spool.counts():
            g.add_metric([direction, state, partner], count)
        yield g
        g = GaugeMetricFamily("cse_oldest_pending_age_seconds", "Age of the oldest message "
                              "still being worked on, per partner", labels=["partner"])
        for partner, created in self.spool.oldest_by_partner(sorted(PENDING)):
            g.add_metric([partner], max(0.0, now - created))
        yield g
        c = CounterMetricFamily("cse_intake_rejections", "Documents refused at intake, by "
                                "error code", labels=["code"])
        for code, count in self.spool.error_counts(Direction.OUT, State.REJECTED):
            c.add_metric([code], count)
        yield c

    def _from_audit(self) -> Iterator[Metric]:
        t = self.tally
        yield _counter("cse_send_attempts", "Send attempts by partner, transport, outcome "
                       "(ok, failed) and error code", ["partner", "transport", "outcome", "code"],
                       t.attempts.items())
        h = HistogramMetricFamily("cse_send_duration_seconds", "Duration of send attempts "
                                  "by partner and transport", labels=["partner", "transport"])
        for (partner, transport), hist in sorted(t.durations.items()):
            buckets = [(repr(b), n) for b, n in zip(BUCKETS, hist.buckets, strict=True)]
            buckets.append(("+Inf", hist.count))
            h.add_metric([partner, transport], buckets, hist.total)
        yield h
        yield _counter("cse_receipts", "Receipts received (for our messages) and sent (for "
                       "partners' messages), by status", ["direction", "status", "partner"],
                       t.receipts.items())
        yield _counter("cse_inbound_requests", "Envelopes arriving, by channel and outcome "
                       "(received, duplicate, rejected with its code)",
                       ["channel", "outcome", "code"], t.inbound.items())
        g = GaugeMetricFamily("cse_partner_breaker_open", "1 while the partner's circuit "
                              "breaker is open", labels=["partner"])
        g2 = GaugeMetricFamily("cse_partner_breaker_changed_timestamp_seconds",
                               "When the partner's breaker last opened or closed",
                               labels=["partner"])
        for partner, (is_open, at) in sorted(t.breakers.items()):
            g.add_metric([partner], 1 if is_open else 0)
            g2.add_metric([partner], at)
        yield g
        yield g2
        c = CounterMetricFamily("cse_console_login_failures", "Failed console logins")
        c.add_metric([], t.login_failures)
        yield c
        yield _counter("cse_alerts_sent", "Alerts delivered, by rule", ["rule"],
                       [((rule,), n) for rule, n in t.alerts.items()])


def _counter(name: str, documentation: str, labels: list[str],
             counts: Iterable[tuple[tuple[str, ...], int]]) -> CounterMetricFamily:
    """A labelled counter family with one sample per (label values, count), sorted."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, n in sorted(counts):
        family.add_metric(list(key), n)
    return family


class MetricsServer:
    """Serves one :class:`StoreCollector` at ``/metrics`` (OpenMetrics when the scraper
    asks for it, as Prometheus does) on its own thread."""

    def __init__(self, config: MetricsConfig, collector: StoreCollector) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        from prometheus_client.exposition import start_http_server  # noqa: PLC0415

        c = self.config
        tls: dict[str, Any] = {}
        if c.tls:
            tls = {"certfile": str(c.cert), "keyfile": str(c.key),
                   "client_cafile": str(c.client_ca), "client_auth_required": True,
                   "tls_min_version": ssl.TLSVersion.TLSv1_2}
        try:
            self._server, self._thread = start_http_server(c.port, c.host,
                                                           registry=self.registry, **tls)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot start the metrics endpoint on {c.host}:{c.port}: "
                              f"{type(exc).__name__}: {getattr(exc, 'strerror', '') or exc}",
                              where="metrics") from None
        log.info("metrics on %s://%s:%d/metrics", "https" if c.tls else "http", c.host,
                 self.port, extra={"event": "metrics_listening"})
        return self

    @property
    def port(self) -> int:
        return int(self._server.server_port) if self._server is not None else 0

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
