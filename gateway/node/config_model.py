"""The configuration as values: one frozen dataclass per section (read by
:mod:`gateway.node.config`, which checks every key and names the file and key of any error)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.node.clocks import ClocksConfig
from gateway.node.console_config import ConsoleConfig
from gateway.node.monitor_config import AlertsConfig, LoggingConfig, MetricsConfig
from gateway.node.routing import RoutingTable

SERVICES = ("interstate", "international")
READY_MODES = ("stable", "marker")
OUTBOX_FORMATS = ("xml", "csenet", "auto")
INBOX_FORMATS = ("xml", "csenet")
NEWLINES = ("any", "lf", "crlf")  # CSENet framing (gateway.documents.csenet.NEWLINES)
TRANSPORT_SCHEMES = ("https", "sftp", "file", "memory")


@dataclass(frozen=True)
class NodeConfig:
    party: str
    keys_dir: Path
    key_passphrase_env: str | None = None


@dataclass(frozen=True)
class SpoolConfig:
    database: Path
    payloads: Path  # directory for durable payload files


@dataclass(frozen=True)
class OutboxConfig:
    path: Path
    service: str | None = None
    format: str = "xml"      # xml, csenet (CSENet 2000 files), auto (by the file's first byte)
    newline: str = "any"     # CSENet framing: any, lf, crlf


@dataclass(frozen=True)
class IntakeConfig:
    ready: str = "stable"  # "stable": size+mtime unchanged across a poll; "marker": NAME.ready
    poll_interval: float = 2.0
    min_age: float = 0.0  # seconds since last modification before a file is considered


@dataclass(frozen=True)
class HttpsListener:
    host: str
    port: int
    cert: Path
    key: Path
    client_ca: Path
    max_body: int
    as4_path: str = "/as4"  # where AS4 partners POST (eb:UserMessage)
    #: the most envelopes one ``POST /v1/messages/batch`` may carry (more: 413)
    max_batch: int = 64


@dataclass(frozen=True)
class InboundConfig:
    folders: tuple[Path, ...] = ()  # local folders partners push into (our own SFTP server)
    poll_interval: float = 2.0


@dataclass(frozen=True)
class TransportConfig:
    url: str
    scheme: str
    key_file: Path | None = None
    known_hosts: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_file: Path | None = None
    timeout: float = 30.0
    #: the most envelopes sent in one request (``POST .../batch``; https only, 1: never)
    batch: int = 1

    def options(self) -> dict[str, Any]:
        """Keyword options for ``transports.open_transport`` for this URL's scheme."""
        if self.scheme == "https":
            return {"cert": self.client_cert, "key": self.client_key, "ca": self.ca_file,
                    "timeout": self.timeout}
        if self.scheme == "sftp":
            return {"key_file": self.key_file, "known_hosts": self.known_hosts,
                    "timeout": self.timeout}
        return {}


@dataclass(frozen=True)
class As4PMode:
    """An AS4 partner's processing mode (``[partners.as4]``): who is who in eb:PartyInfo,
    the collaboration, the partner's certificates and our algorithm choices."""

    party_id: str
    party_type: str | None
    role: str
    our_party_id: str
    our_party_type: str | None
    our_role: str
    service: str
    service_type: str | None
    agreement: str | None
    actions: tuple[tuple[str, str], ...]  # (our document type, eb:Action)
    signing_cert: Path
    encryption_cert: Path
    compress: bool = True
    allow_sha1: bool = False
    allow_cbc: bool = False

    def action(self, document_type: str) -> str:
        return dict(self.actions).get(document_type, document_type)

    def document_type(self, action: str) -> str:
        return {a: d for d, a in self.actions}.get(action, action)


@dataclass(frozen=True)
class PartnerConfig:
    party: str
    name: str
    transports: tuple[TransportConfig, ...]
    pull: tuple[TransportConfig, ...] = ()
    certificates: tuple[Path, ...] = ()
    protocol: str = "cse"  # or "as4" (eDelivery AS4; then ``as4`` holds the PMode)
    as4: As4PMode | None = None


@dataclass(frozen=True)
class RouteConfig:
    to: str
    partner: str


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 5.0  # seconds before the first retry
    factor: float = 2.0
    max_delay: float = 900.0
    jitter: float = 0.2  # +/- fraction of the delay
    expiry: float = 3 * 86400.0  # after this long since intake a message is failed
    receipt_timeout: float = 3600.0  # sent but no receipt for this long: send again


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    reset_after: float = 60.0


def default_intake_workers() -> int:
    """``limits.intake_workers`` (and ``limits.receive_workers``) when not set: two worker
    processes where there are two CPUs or more, none (do it in the daemon) on one CPU."""
    cpus = os.cpu_count() or 1
    return min(2, cpus) if cpus > 1 else 0


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 10 * 1024 * 1024
    send_workers: int = 8
    #: worker processes that validate and seal outbox files (0: in the daemon itself)
    intake_workers: int = 0
    #: worker processes that open and check arriving envelopes (0: in the daemon itself)
    receive_workers: int = 0


@dataclass(frozen=True)
class SchemaSet:
    directory: Path
    entry: Path | None = None


@dataclass(frozen=True)
class SecurityConfig:
    replay_window: float = 7 * 86400.0
    cert_warn_days: int = 30


@dataclass(frozen=True)
class AuditConfig:
    """Signed checkpoints of the audit chain and how long events are kept."""

    checkpoint_interval: float = 3600.0
    keep_events: float = (7 * 365 + 2) * 86400.0  # seven years, leap days included


@dataclass(frozen=True)
class StoreConfig:
    """Where the spool and audit trail live: SQLite at ``spool.database`` (default) or a
    PostgreSQL database shared by several nodes (``url``); leases and payload retention."""

    url: str | None = None  # postgresql://...; None: SQLite at spool.database
    node: str | None = None  # this node's name in leases (default: host and config path)
    lease: float = 60.0  # seconds a claim holds a message before another node takes it
    keep_payloads: float = 30 * 86400.0  # documents and envelopes of finished messages
    keep_receipts: float = 365 * 86400.0  # receipts and error reports of finished messages


@dataclass(frozen=True)
class ScheduleConfig:
    outbox_scan: float = 2.0
    sftp_pull: float = 10.0
    retry_scan: float = 5.0
    cert_check: float = 3600.0


@dataclass(frozen=True)
class Config:
    path: Path
    node: NodeConfig
    spool: SpoolConfig
    outboxes: tuple[OutboxConfig, ...]
    inbox: Path
    rejected: Path
    intake: IntakeConfig
    inbound: InboundConfig
    https: HttpsListener | None
    partners: tuple[PartnerConfig, ...]
    routes: tuple[RouteConfig, ...]
    routing: RoutingTable
    retry: RetryPolicy
    breaker: BreakerPolicy
    limits: Limits
    schema_sets: tuple[SchemaSet, ...]
    security: SecurityConfig
    schedule: ScheduleConfig
    audit: AuditConfig = AuditConfig()
    store: StoreConfig = StoreConfig()
    inbox_format: str = "xml"    # xml, or csenet: interstate transactions as CSENet lines
    inbox_newline: str = "lf"    # the line ending of delivered CSENet files: lf or crlf
    clocks: ClocksConfig = field(default_factory=ClocksConfig)
    console: ConsoleConfig | None = None  # [console]: see console_config.py
    # [metrics], [logging], [alerts]: gateway/node/monitor_config.py (frozen dataclasses)
    metrics: MetricsConfig = MetricsConfig()  # noqa: RUF009
    logging: LoggingConfig = LoggingConfig()  # noqa: RUF009
    alerts: AlertsConfig = AlertsConfig()  # noqa: RUF009

    def partner(self, party: str) -> PartnerConfig:
        found = self.find_partner(party)
        if found is None:
            raise KeyError(party)
        return found

    def find_partner(self, party: str | None) -> PartnerConfig | None:
        """The partner whose party is ``party``, or None."""
        return next((p for p in self.partners if p.party == party), None)
