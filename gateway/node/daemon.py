"""The gateway daemon: one :class:`Gateway` wires config, spool, keys, intake, sender,
inbound and the HTTPS listener together; :func:`run` drives it with APScheduler until
SIGTERM/SIGINT.

Periodic work (APScheduler 3.11 ``BackgroundScheduler``, every job ``coalesce=True,
max_instances=1``): outbox scans, sending due messages, pulls (partners' SFTP outboxes and
our own inbound folders), receipt timeouts, certificate expiry checks. On start, work a
crash left half-done is finished first (:meth:`Gateway.recover`). SIGHUP reloads the key
directory (partner registrations, trust, rollovers) without a restart. On stop the listener
closes, the scheduler stops, in-flight sends finish and queued ones are left in the spool
to resume (they were never claimed).

For tests and benchmarks the same steps can be driven by hand (:meth:`scan`,
:meth:`send_all`, :meth:`pull`) with an injected clock.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from gateway.errors import ConfigError, GatewayError
from gateway.node import sdnotify
from gateway.node.alerts import AlertEngine, VerifyResult
from gateway.node.as4_node import RESPONSE_TYPE, As4Inbound, As4ReceiptCheck
from gateway.node.clocks import ClockKeeper, ClockWatch
from gateway.node.config import Config, check_files
from gateway.node.dead_letters import report_failures
from gateway.node.inbound import Inbound
from gateway.node.intake import OutboxScanner
from gateway.node.intake_pool import IntakePool
from gateway.node.logs import scheduler_logger
from gateway.node.metrics import CertInfo, MetricsServer, StoreCollector
from gateway.node.nodekeys import NodeKeys, load_node_keys
from gateway.node.outbound import Sender
from gateway.node.prepare import make_preparer
from gateway.node.receive_pool import ReceivePool
from gateway.node.reminders import ReminderDrafter
from gateway.node.retry import BreakerBoard
from gateway.node.storeopen import AnySpool, open_spool, sealer_for
from gateway.node.transport_pool import TransportPool
from gateway.node.workers import WorkerPool, schema_registry
from gateway.protocol import certs
from gateway.store.audit import AuditLog, retention_cutoff
from gateway.store.audit_chain import KeySigner
from gateway.store.fsutil import remove_orphaned_temps
from gateway.store.retention import purge_payloads
from gateway.store.states import PENDING, Direction, State
from transports import Transport, TransportError, open_transport

__all__ = ["Gateway", "run", "utcnow"]

log = logging.getLogger("gateway.node.daemon")

P = TypeVar("P", bound=WorkerPool)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Gateway:
    """One node. Thread-safe; create, :meth:`recover`, then :meth:`start` (or drive by
    hand), finally :meth:`stop`."""

    SCAN_CHUNK = 25

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = utcnow,
                 keys: NodeKeys | None = None,
                 transport_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.keys = keys or load_node_keys(config)
        self.spool = open_spool(config)
        self.spool.use_sealer(sealer_for(self.keys))  # no document rests in clear
        self.registry = schema_registry(config)
        self._extra = dict(transport_options or {})
        self.pool = TransportPool(extra=self._extra)
        self.breakers = BreakerBoard(config.breaker)
        self.inbound = Inbound(config, self.spool, self.keys, clock=clock,
                               registry=self.registry)
        self.as4 = As4Inbound(config, self.spool, self.keys, clock=clock,
                              registry=self.registry)
        self.sender = Sender(config, self.spool, self.pool, self.breakers,
                             As4ReceiptCheck(config, self.spool, lambda: self.keys.check_receipt),
                             clock=clock, relay_answer=self._relay_answer)
        prepare = make_preparer(config, self.keys, registry=self.registry)
        # worker processes validate and seal outbox files once start_intake_pool() ran
        # (`gateway run`); until then, and when driven by hand, this process does
        self.intake_pool: IntakePool | None = None
        # and open arriving envelopes once start_receive_pool() ran (likewise)
        self.receive_pool: ReceivePool | None = None
        self.scanners = [
            OutboxScanner(outbox, config.intake, spool=self.spool,
                          rejected_dir=config.rejected, prepare=prepare,
                          max_bytes=config.limits.max_message_bytes)
            for outbox in config.outboxes
        ]
        lanes = max(1, len(config.partners)) * config.limits.send_workers
        self.executor = ThreadPoolExecutor(max_workers=min(64, lanes),
                                           thread_name_prefix="gateway-send")
        self._pull_lock = threading.Lock()
        self._pullers: list[Transport] | None = None
        self.server: Any = None
        self.scheduler: Any = None
        self.metrics: MetricsServer | None = None
        self._monitor_spool: AnySpool | None = None
        # the clocks read by the metrics, the clock alerts and the reminders (docs/clocks.md)
        self.clock_watch = ClockWatch(ClockKeeper(config.clocks)) if config.clocks.enabled \
            else None
        self.reminders = None if self.clock_watch is None or not config.clocks.reminders.enabled \
            else ReminderDrafter(config.clocks.reminders, self.clock_watch, self.spool,
                                 node=config.node.party, clock=clock)
        self.alerts: AlertEngine | None = None
        if config.alerts.enabled:
            self.alerts = AlertEngine(config.alerts, self.spool, node=config.node.party,
                                      clock=clock, certificates=self.certificate_info,
                                      verify=self.verify_audit, clocks=self.clock_watch)
        self._stopped = threading.Event()
        self._signer = KeySigner(self.keys.identity.signing_key, self.keys.identity.signing_cert)

    # --- steps (each safe to call at any time, from any thread) -----------------------

    def recover(self) -> dict[str, int]:
        """Finish what a crash left: inbound ``received`` messages are processed, sends
        that were in flight go back to ``retrying``."""
        done = {"inbound": self.inbound.recover() + self.as4.recover(),
                "sending": self.sender.recover()}
        done["temporary_files"] = self.remove_orphaned_temps()
        if any(done.values()):
            log.warning("recovered after an unclean stop: %s", done,
                        extra={"event": "recovered"})
        return done

    def remove_orphaned_temps(self) -> int:
        """Remove the temporary files a killed process left in the folders this node
        writes to (inbox, rejected): complete copies of documents that no record names.
        Files a record still names (an inbound delivery in progress) and files of live
        processes are kept. Each removal is counted in one ``temp_removed`` audit event."""
        keep = {m.source for m in self.spool.select(states=[State.DELIVERING],
                                                      direction=Direction.IN, limit=100_000)
                if m.source}
        removed = 0
        for folder in (self.config.inbox, self.config.rejected):
            names = remove_orphaned_temps(folder, keep)
            if names:
                log.warning("removed %d temporary file(s) left by a stopped process in %s",
                            len(names), folder)
                with self.spool.transaction(self.clock()) as txn:
                    txn.audit("temp_removed", None, detail={"folder": folder.name,
                                                            "files": len(names)})
                removed += len(names)
        return removed

    def scan(self) -> int:
        """Scan every outbox once; returns how many files were recorded."""
        count = 0
        for scanner in self.scanners:
            # sending starts after every chunk, while a big batch is still coming in
            result = scanner.scan(self.clock(), chunk=self.SCAN_CHUNK, progress=self.dispatch,
                                  stopping=self._stopped.is_set)
            count += len(result.accepted) + len(result.rejected)
        if count:
            self.dispatch()
        return count

    def dispatch(self) -> int:
        """Hand due messages to the send workers (non-blocking)."""
        try:
            return self.sender.dispatch(self.executor)
        except GatewayError as exc:
            log.error("dispatch failed: %s", exc)
            return 0

    def send_all(self, *, timeout: float = 60.0) -> None:
        """Dispatch and wait until no send is in flight (tests, benchmarks)."""
        deadline = threading.Event()
        end = self.clock().timestamp() + timeout
        while True:
            self.dispatch()
            if self.sender.idle() and not self.spool.due(self.clock(), limit=1):
                return
            if self.clock().timestamp() > end:
                return
            deadline.wait(0.01)

    def _open_pullers(self) -> list[Transport]:
        if self._pullers is None:
            pullers: list[Transport] = []
            for folder in self.config.inbound.folders:
                folder.mkdir(parents=True, exist_ok=True)
                pullers.append(open_transport(folder.as_uri()))
            for partner in self.config.partners:
                for tc in partner.pull:
                    pullers.append(open_transport(tc.url, **{**tc.options(),
                                                             **self._extra.get(tc.scheme, {})}))
            self._pullers = pullers
        return self._pullers

    def pull(self) -> int:
        """Take what waits in our inbound folders and partners' SFTP outboxes."""
        taken = 0
        with self._pull_lock:
            try:
                pullers = self._open_pullers()
            except TransportError as exc:
                log.error("cannot open an inbound folder or pull endpoint: %s", exc)
                return 0
            for transport in pullers:
                try:
                    taken += self.inbound.pull(transport)
                except (TransportError, GatewayError) as exc:
                    log.warning("pull from %s failed: %s", transport.endpoint, exc)
        if taken:
            self.dispatch()  # receipts to send back, relays to forward
        return taken

    def expire(self) -> int:
        return self.sender.expire()

    def reload_keys(self) -> bool:
        """Read the key directory again (``gateway run`` does this on SIGHUP): partner
        registrations, the trust store, this node's own keys and extra decryption keys.
        Work in progress finishes with the snapshot it started with; everything after
        uses the new one. A key directory that does not load is logged and the old keys
        stay in use. Returns whether the new keys were taken."""
        try:
            keys = load_node_keys(self.config)
        except GatewayError as exc:
            log.error("key reload refused, the old keys stay in use: %s (%s)", exc.code,
                      exc.message)
            return False
        prepare = make_preparer(self.config, keys, registry=self.registry)
        self.keys = keys
        self.inbound.keys = keys
        self.as4.keys = keys
        for scanner in self.scanners:
            scanner.prepare = prepare
        if self.intake_pool is not None:
            self.intake_pool.recycle(keys)  # no worker seals with the old keys
        if self.receive_pool is not None:
            self.receive_pool.recycle(keys)  # nor opens with them
        self._signer = KeySigner(keys.identity.signing_key, keys.identity.signing_cert)
        self.spool.use_sealer(sealer_for(keys))  # a new encryption key seals from now on
        with self.spool.transaction(self.clock()) as txn:
            txn.audit("keys_reloaded", None,
                      detail={"partners": len(keys.directory.entries),
                              "trust": len(keys.trust)})
        log.info("key directory reloaded: %d partner parties, %d trust anchors",
                 len(keys.directory.entries), len(keys.trust))
        return True

    def report_failures(self, limit: int = 200) -> int:
        """Put each outbound message that failed for good back in the rejected folder with
        its reason (:func:`gateway.node.dead_letters.report_failures`)."""
        return report_failures(self.spool, self.config.rejected, self.clock, limit)

    def check_certificates(self) -> list[tuple[str, float]]:
        """Certificates expiring within ``security.cert_warn_days``: logged and audited."""
        now = self.clock()
        found: list[tuple[str, float]] = []
        seen: list[tuple[str, Any]] = [("sign", self.keys.identity.signing_cert),
                                       ("encrypt", self.keys.identity.encryption_cert)]
        # the extra decryption keys (KEYS/decrypt/), by fingerprint as `keys list` shows it
        seen += [(f"decrypt:{certs.fingerprint(c)[:16]}", c)
                 for _, c in self.keys.identity.decryption]
        for party, certificates in self.keys.encryption.items():
            seen += [(f"partner:{party}", c) for c in certificates]
        for what, cert in seen:
            days = (cert.not_valid_after_utc - now).total_seconds() / 86400
            if days <= self.config.security.cert_warn_days:
                found.append((what, days))
                log.warning("certificate %s expires in %.1f days", what, days,
                            extra={"event": "certificate_expiring"})
                with self.spool.transaction(now) as txn:
                    txn.audit("key_expiring", None, detail={"what": what[:60],
                                                            "days": int(days)})
        return found

    def certificate_info(self) -> list[CertInfo]:
        """Every certificate in use with its expiry (metrics, the expiry alert)."""
        keys = self.keys
        me = str(self.config.node.party)
        found = [CertInfo("sign", me,
                          certs.fingerprint(keys.identity.signing_cert)[:16],
                          keys.identity.signing_cert.not_valid_after_utc.timestamp()),
                 CertInfo("encrypt", me,
                          certs.fingerprint(keys.identity.encryption_cert)[:16],
                          keys.identity.encryption_cert.not_valid_after_utc.timestamp())]
        found += [CertInfo("decrypt", me, certs.fingerprint(c)[:16],
                           c.not_valid_after_utc.timestamp())
                  for _, c in keys.identity.decryption]
        found += [CertInfo("partner_encrypt", str(party), certs.fingerprint(c)[:16],
                           c.not_valid_after_utc.timestamp())
                  for party, cs in keys.encryption.items() for c in cs]
        return found

    def verify_audit(self) -> VerifyResult:
        """Verify the whole audit chain (checkpoints pinned to this node's signing
        certificate) on a connection of its own; the ``audit_verify`` alert runs this."""
        pinned = {certs.fingerprint(self.keys.identity.signing_cert)}
        with self.spool.audit_log() as audit:
            report = audit.verify(pinned=pinned, max_problems=1)
        problem = report.first_problem
        # recorded like a verify from the console or the CLI (the dashboard's last verify)
        detail: dict[str, str | int] = {"ok": int(report.ok), "events": report.events,
                                        "problems": len(report.problems), "via": "daemon"}
        if problem is not None:
            detail["first_bad_seq"] = problem.seq
        with self.spool.transaction(self.clock()) as txn:
            txn.audit("audit_verified", actor="daemon", detail=detail)
        return VerifyResult(report.ok, problem.seq if problem else None,
                            problem.kind if problem else "")

    def check_alerts(self) -> int:
        return self.alerts.run_once() if self.alerts is not None else 0

    def checkpoint(self, *, force: bool = False) -> bool:
        """Sign an audit checkpoint when one is due (``audit.checkpoint_interval``), or
        whenever events were written since the last one (``force``, at shutdown).
        Returns whether a checkpoint was written."""
        now = self.clock()
        interval = timedelta(seconds=self.config.audit.checkpoint_interval)
        if not force and not self.spool.leader("audit-checkpoint", now):
            return False  # another node of a shared store signs them now
        with self.spool.transaction(now) as txn:
            audit = AuditLog(txn.conn)
            if not force:
                return audit.checkpoint_if_due(self._signer, now, interval) is not None
            last = audit.last_checkpoint()
            if audit.tail()[0] <= (last.seq if last else 0):
                return False
            audit.checkpoint(self._signer, now)
            return True

    def retention(self) -> int:
        """Drop audit events older than ``audit.keep_events`` (whole chain prefixes only,
        after verifying the chain and signing a checkpoint); returns how many."""
        now = self.clock()
        keep = timedelta(seconds=self.config.audit.keep_events)
        if not self.spool.leader("audit-retention", now):
            return 0  # another node of a shared store does it
        # Its own connection: prune verifies the whole chain before its short write
        # transaction, and must not hold the spool's write lock meanwhile.
        with self.spool.audit_log() as audit:
            removed = audit.prune(retention_cutoff(now, keep), self._signer, now)
        if removed:
            log.info("audit retention removed %d events older than %s", removed, keep)
        return removed

    def purge_payloads(self) -> int:
        """Remove the payloads of finished messages past ``store.keep_payloads`` /
        ``store.keep_receipts`` (one node of a shared store at a time); returns how many."""
        now = self.clock()
        if not self.spool.leader("payload-retention", now):
            return 0
        keep = self.config.store
        result = purge_payloads(self.spool, now,
                                payloads_before=now - timedelta(seconds=keep.keep_payloads),
                                receipts_before=now - timedelta(seconds=keep.keep_receipts))
        return result.payloads

    def _relay_answer(self, data: bytes, now: datetime) -> None:
        self.inbound.accept(data, channel="relay-answer")
        self.dispatch()

    def handle_https(self, body: bytes, peer: Any) -> tuple[int, bytes]:
        status, answer = self.inbound.handle_https(body, peer)
        if status == 202:
            self.dispatch()  # forward a relayed message at once
        return status, answer

    def handle_https_batch(self, parts: list[bytes], peer: Any) -> list[tuple[int, bytes]]:
        """Several envelopes in one request (``POST /v1/messages/batch``): each answered
        as :meth:`handle_https` would, processed together."""
        answers = self.inbound.handle_https_batch(parts, peer)
        if any(status == 202 for status, _ in answers):
            self.dispatch()  # forward relayed messages at once
        return answers

    def _as4_routes(self) -> dict[str, tuple[Any, str]]:
        """The AS4 endpoint beside ``/v1/messages``, when any partner speaks AS4."""
        if self.config.https is None or not any(p.as4 for p in self.config.partners):
            return {}
        return {self.config.https.as4_path: (self.as4.handle_https, RESPONSE_TYPE)}

    # --- life cycle -----------------------------------------------------------------

    def start(self, *, listen: bool = True, schedule: bool = True) -> Gateway:
        if listen and self.config.https is not None:
            from transports.https_server import HttpsServer  # noqa: PLC0415

            h = self.config.https
            try:
                self.server = HttpsServer(h.host, h.port, cert=h.cert, key=h.key,
                                          client_ca=h.client_ca, handler=self.handle_https,
                                          max_body=h.max_body,
                                          batch_handler=self.handle_https_batch,
                                          max_batch=h.max_batch,
                                          routes=self._as4_routes()).start()
            except TransportError as exc:
                raise ConfigError(f"cannot start the HTTPS listener: {exc}",
                                  where=f"{self.config.path}: listeners.https") from None
            log.info("listening on %s", self.server.url)
        if listen and self.config.metrics.enabled:
            self._monitor_spool = open_spool(self.config)  # its own connection(s)
            collector = StoreCollector(self._monitor_spool, party=self.config.node.party,
                                       certificates=self.certificate_info,
                                       clocks=self.clock_watch)
            self.metrics = MetricsServer(self.config.metrics, collector).start()
        if schedule:
            self._start_scheduler()
        return self

    def start_intake_pool(self) -> IntakePool | None:
        """Validate and seal outbox files in ``limits.intake_workers`` worker processes
        (:mod:`gateway.node.intake_pool`), started now from this thread; none when the
        setting is 0. ``gateway run`` calls this after :meth:`start`."""
        if self.intake_pool is None:
            self.intake_pool = self._new_pool(IntakePool, self.config.limits.intake_workers)
            for scanner in self.scanners:
                scanner.prepare_batch = self.intake_pool
        return self.intake_pool

    def start_receive_pool(self) -> ReceivePool | None:
        """Open and check arriving envelopes in ``limits.receive_workers`` worker processes
        (:mod:`gateway.node.receive_pool`), started now from this thread; none when the
        setting is 0. ``gateway run`` calls this after :meth:`start`; until the workers
        are ready, and when driven by hand, this process does."""
        if self.receive_pool is None:
            self.receive_pool = self._new_pool(ReceivePool,
                                               self.config.limits.receive_workers)
            self.inbound.pool = self.receive_pool
        return self.receive_pool

    def _new_pool(self, kind: type[P], workers: int) -> P | None:
        if workers <= 0 or self._stopped.is_set():
            return None
        pool = kind(self.config, self.keys, workers=workers)
        pool.start()
        return pool

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler  # noqa: PLC0415

        s = self.config.schedule
        # a run skipped because the previous one still runs is normal here: the
        # scheduler's own logger drops that warning (gateway.node.logs)
        scheduler = BackgroundScheduler(timezone=UTC, logger=scheduler_logger(), job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
        jobs: list[tuple[str, Callable[[], Any], float]] = [
            ("outbox-scan", self.scan, s.outbox_scan),
            ("send", self.dispatch, min(1.0, s.retry_scan)),
            ("pull", self.pull, min(s.sftp_pull, self.config.inbound.poll_interval)),
            ("receipt-timeouts", self.expire, 60.0),
            ("failure-reports", self.report_failures, max(1.0, s.retry_scan)),
            ("certificates", self.check_certificates, s.cert_check),
            ("audit-checkpoint", self.checkpoint,
             min(300.0, self.config.audit.checkpoint_interval)),
            ("audit-retention", self.retention, 86400.0),
            ("payload-retention", self.purge_payloads, 3600.0),
        ]
        if self.alerts is not None:
            jobs.append(("alerts", self.check_alerts, self.config.alerts.interval))
        if self.reminders is not None:
            jobs.append(("clock-reminders", self.reminders.run_once,
                         self.config.clocks.reminders.interval))
        for name, func, seconds in jobs:
            scheduler.add_job(_guarded(name, func), "interval", seconds=seconds, id=name,
                              name=name, next_run_time=datetime.now(UTC))
        scheduler.start()
        self.scheduler = scheduler

    def stop(self) -> None:
        """Stop accepting, stop scheduling, let in-flight sends finish; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.server is not None:
            self.server.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.intake_pool is not None:
            self.intake_pool.close()  # after the scheduler: no scan is running
        if self.receive_pool is not None:
            self.inbound.pool = None  # a late request (or pull) works in-process
            self.receive_pool.close()  # after the listener and the scheduler
        try:
            self.checkpoint(force=True)
        except GatewayError as exc:
            log.error("could not sign the audit checkpoint at shutdown: %s", exc)
        self.pool.close()
        for transport in self._pullers or []:
            with contextlib.suppress(Exception):
                transport.close()
        if self._monitor_spool is not None:
            self._monitor_spool.close()
        self.spool.close()

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, state, _, n in self.spool.counts():
            counts[state] = counts.get(state, 0) + n
        return counts

    def pending(self) -> int:
        return len(self.spool.select(states=sorted(PENDING), limit=100_000))


def _guarded(name: str, func: Callable[[], Any]) -> Callable[[], None]:
    def job() -> None:
        try:
            func()
        except Exception:
            log.exception("scheduled job %s failed", name)

    job.__name__ = f"gateway_{name.replace('-', '_')}"
    return job


def run(config: Config, *, ready: Callable[[Gateway], None] | None = None) -> int:
    """``gateway run``: check, recover, listen, schedule, wait for SIGTERM/SIGINT (stop)
    or SIGHUP (reload the key directory, :meth:`Gateway.reload_keys`). Under systemd
    (``Type=notify``) it reports READY=1 once listening and scheduling, RELOADING=1
    around a key reload and STOPPING=1 (:mod:`gateway.node.sdnotify`)."""
    check_files(config)
    gateway = Gateway(config)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    reload = threading.Event()

    def on_hangup(signum: int, frame: Any) -> None:
        reload.set()  # done by the main loop, not inside the signal handler

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    try:
        with gateway.spool.transaction(gateway.clock()) as txn:
            txn.audit("config_loaded", None, detail={"partners": len(config.partners)})
        gateway.recover()
        gateway.start()
        gateway.start_intake_pool()  # from the main thread, which lives as long as the pool
        gateway.start_receive_pool()
        log.info("gateway %s running", config.node.party, extra={"event": "gateway_started"})
        sdnotify.notify(f"READY=1\nSTATUS=gateway {config.node.party} running")
        if ready is not None:
            ready(gateway)
        while not stop.wait(0.5):
            if reload.is_set():
                reload.clear()
                log.info("SIGHUP: reloading the key directory")
                sdnotify.reloading()
                gateway.reload_keys()
                sdnotify.notify("READY=1")
    finally:
        sdnotify.notify("STOPPING=1")
        gateway.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("gateway %s stopped", config.node.party, extra={"event": "gateway_stopped"})
    return 0
