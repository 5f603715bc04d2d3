"""The gateway's configuration: one TOML file read into frozen, typed dataclasses.

``load_config(path)`` finds the file (explicit path, else ``$GATEWAY_CONFIG``, else
``./gateway.toml``), parses it with :mod:`tomllib`, checks every key and collects *every*
problem before raising one :class:`~gateway.errors.ConfigError` that names the file and,
for each problem, the key. Relative paths are relative to the config file's directory.
Unknown keys are errors (a typo must not silently fall back to a default).

:func:`check_files` is the second, I/O half of the check (files the configuration
references must exist); ``gateway config check`` and ``gateway run`` call both.

Every key, its default and an example are documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.node import monitor_config
from gateway.node.clocks import parse_clocks
from gateway.node.config_model import (
    INBOX_FORMATS,
    NEWLINES,
    OUTBOX_FORMATS,
    READY_MODES,
    SERVICES,
    TRANSPORT_SCHEMES,
    As4PMode,
    AuditConfig,
    BreakerPolicy,
    Config,
    HttpsListener,
    InboundConfig,
    IntakeConfig,
    Limits,
    NodeConfig,
    OutboxConfig,
    PartnerConfig,
    RetryPolicy,
    RouteConfig,
    ScheduleConfig,
    SchemaSet,
    SecurityConfig,
    SpoolConfig,
    StoreConfig,
    TransportConfig,
    default_intake_workers,
)
from gateway.node.console_config import read_console
from gateway.node.reminder_config import read_reminders
from gateway.node.routing import build_table, valid_party

__all__ = [
    "As4PMode",
    "AuditConfig",
    "BreakerPolicy",
    "Config",
    "HttpsListener",
    "InboundConfig",
    "IntakeConfig",
    "Limits",
    "NodeConfig",
    "OutboxConfig",
    "PartnerConfig",
    "RetryPolicy",
    "RouteConfig",
    "ScheduleConfig",
    "SchemaSet",
    "SecurityConfig",
    "SpoolConfig",
    "StoreConfig",
    "TransportConfig",
    "check_files",
    "config_path",
    "load_config",
    "parse_duration",
]

def config_path(path: Path | str | None = None) -> Path:
    """Resolve which file to read: explicit, else ``$GATEWAY_CONFIG``, else ./gateway.toml."""
    if path:
        return Path(path)
    env = os.environ.get("GATEWAY_CONFIG")
    if env:
        return Path(env)
    return Path("gateway.toml")


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"500ms"``, ``"30s"``, ``"5m"``, ``"72h"``,
    ``"3d"``. Raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError("expected a duration such as 30, \"30s\", \"5m\", \"72h\" or \"3d\"")


class _Reader:
    """Reads typed values out of TOML tables, recording problems instead of raising."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.base = file.parent
        self.problems: list[tuple[str, str]] = []

    def problem(self, key: str, text: str) -> None:
        self.problems.append((key, text))

    def table(self, parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, Mapping):
            self.problem(where, "expected a table")
            return {}
        return value

    def tables(self, parent: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = parent.get(key, [])
        if isinstance(value, Mapping):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.problem(key, f"expected an array of tables ([[{key}]])")
            return []
        return value

    def known(self, table: Mapping[str, Any], where: str, keys: set[str]) -> None:
        for key in table:
            if key not in keys:
                prefix = f"{where}." if where else ""
                self.problem(f"{prefix}{key}", "unknown key")

    def string(self, table: Mapping[str, Any], key: str, where: str, default: str | None = None,
               *, required: bool = False) -> str | None:
        if key not in table:
            if required:
                self.problem(where, "is required")
            return default
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            self.problem(where, "expected a non-empty string")
            return default
        return value

    def path(self, table: Mapping[str, Any], key: str, where: str, default: str | None = None,
             *, required: bool = False) -> Path | None:
        text = self.string(table, key, where, default, required=required)
        if text is None:
            return None
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else (self.base / path)

    def number(self, table: Mapping[str, Any], key: str, where: str, default: float,
               *, minimum: float = 0.0, integer: bool = False) -> float:
        if key not in table:
            return default
        value = table[key]
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            self.problem(where, "expected an integer" if integer else "expected a number")
            return default
        if value < minimum:
            self.problem(where, f"must be at least {minimum:g}")
            return default
        return float(value)

    def duration(self, table: Mapping[str, Any], key: str, where: str, default: float,
                 *, positive: bool = False) -> float:
        if key not in table:
            return default
        try:
            seconds = parse_duration(table[key])
        except ValueError as exc:
            self.problem(where, str(exc))
            return default
        if positive and seconds <= 0:
            self.problem(where, "must be greater than zero")
            return default
        return seconds

    def choice(self, table: Mapping[str, Any], key: str, where: str, default: str | None,
               choices: tuple[str, ...]) -> str | None:
        value = self.string(table, key, where, default)
        if value is not None and value not in choices:
            self.problem(where, f"must be one of {', '.join(choices)}")
            return default
        return value

    def party(self, table: Mapping[str, Any], key: str, where: str) -> str:
        value = self.string(table, key, where, required=True) or ""
        if value and not valid_party(value):
            self.problem(where, "not a party: expected 'fips:SSCCCLL' or 'iso3166:CC[-ID]'")
        return value


_TRANSPORT_KEYS = {"url", "key_file", "known_hosts", "client_cert", "client_key", "ca_file",
                   "timeout", "batch"}
#: the most envelopes one HTTPS request may carry (``batch``; a receiver's ``max_batch``)
MAX_BATCH = 64


def _transport(r: _Reader, table: Mapping[str, Any], where: str) -> TransportConfig | None:
    r.known(table, where, _TRANSPORT_KEYS)
    url = r.string(table, "url", f"{where}.url", required=True)
    if url is None:
        return None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in TRANSPORT_SCHEMES:
        r.problem(f"{where}.url", f"unsupported URL scheme: use {', '.join(TRANSPORT_SCHEMES)}")
        return None
    transport = TransportConfig(
        url=url,
        scheme=scheme,
        key_file=r.path(table, "key_file", f"{where}.key_file"),
        known_hosts=r.path(table, "known_hosts", f"{where}.known_hosts"),
        client_cert=r.path(table, "client_cert", f"{where}.client_cert"),
        client_key=r.path(table, "client_key", f"{where}.client_key"),
        ca_file=r.path(table, "ca_file", f"{where}.ca_file"),
        timeout=r.duration(table, "timeout", f"{where}.timeout", 30.0, positive=True),
        batch=int(r.number(table, "batch", f"{where}.batch", 1, minimum=1, integer=True)),
    )
    if transport.batch > MAX_BATCH:
        r.problem(f"{where}.batch", f"must be at most {MAX_BATCH}")
    if transport.batch > 1 and scheme != "https":
        r.problem(f"{where}.batch", "only an https:// transport sends several envelopes "
                                    "per request")
    if scheme == "sftp":
        for name in ("key_file", "known_hosts"):
            if getattr(transport, name) is None:
                r.problem(f"{where}.{name}", "is required for sftp:// (host keys are pinned)")
    if scheme == "https":
        for name in ("client_cert", "client_key", "ca_file"):
            if getattr(transport, name) is None:
                r.problem(f"{where}.{name}", "is required for https:// (mutual TLS)")
    return transport


def _partners(r: _Reader, doc: Mapping[str, Any]) -> list[PartnerConfig]:
    partners: list[PartnerConfig] = []
    seen: dict[str, str] = {}
    for i, table in enumerate(r.tables(doc, "partners")):
        where = f"partners[{i}]"
        r.known(table, where, {"party", "name", "transports", "pull", "certificates",
                               "protocol", "as4"})
        party = r.party(table, "party", f"{where}.party")
        if party in seen:
            r.problem(f"{where}.party", f"duplicate of {seen[party]}")
        seen[party] = where
        transports = [tc for j, raw in enumerate(r.tables(table, "transports"))
                      if (tc := _transport(r, raw, f"{where}.transports[{j}]")) is not None]
        if not transports and "transports" not in table:
            r.problem(f"{where}.transports", "at least one transport is required")
        pulls = [tc for j, raw in enumerate(r.tables(table, "pull"))
                 if (tc := _transport(r, raw, f"{where}.pull[{j}]")) is not None]
        certs_raw = table.get("certificates", [])
        certs: list[Path] = []
        if not isinstance(certs_raw, list) or not all(isinstance(c, str) for c in certs_raw):
            r.problem(f"{where}.certificates", "expected an array of file paths")
        else:
            certs = [p if (p := Path(c)).is_absolute() else r.base / p for c in certs_raw]
        name = r.string(table, "name", f"{where}.name", party) or party
        protocol = r.choice(table, "protocol", f"{where}.protocol", "cse", ("cse", "as4"))
        pmode = None
        if protocol == "as4":
            t = r.table(table, "as4", f"partners[{i}].as4")
            r.known(t, f"partners[{i}].as4", _AS4_KEYS)
            actions: list[tuple[str, str]] = []
            for j, raw in enumerate(r.tables(t, "actions")):
                r.known(raw, f"partners[{i}].as4.actions[{j}]", {"document", "action"})
                document = r.string(raw, "document", f"{where}.as4.actions[{j}].document",
                                    required=True)
                action = r.string(raw, "action", f"{where}.as4.actions[{j}].action",
                                  required=True)
                if document and action:
                    actions.append((document, action))
            pmode = _as4(r, t, f"{where}.as4", tuple(actions))
            if any(tc.scheme != "https" for tc in transports) or pulls:
                r.problem(f"{where}.transports", "an AS4 partner is reached over https:// only")
            if any(tc.batch > 1 for tc in transports):
                r.problem(f"{where}.transports", "an AS4 partner takes one message per "
                                                 "request: batch must be 1")
        elif "as4" in table:
            r.problem(f"{where}.as4", 'needs protocol = "as4"')
        partners.append(PartnerConfig(party, name, tuple(transports), tuple(pulls),
                                      tuple(certs), protocol or "cse", pmode))
    return partners


_AS4_KEYS = {"party_id", "party_type", "role", "our_party_id", "our_party_type", "our_role",
             "service", "service_type", "agreement", "actions", "signing_cert",
             "encryption_cert", "compress", "allow_sha1", "allow_cbc"}
_EB = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/"


def _as4(r: _Reader, t: Mapping[str, Any], w: str,
         actions: tuple[tuple[str, str], ...]) -> As4PMode | None:
    flags: dict[str, bool] = {}
    for key, default in (("compress", True), ("allow_sha1", False), ("allow_cbc", False)):
        value = t.get(key, default)
        if not isinstance(value, bool):
            r.problem(f"{w}.{key}", "expected true or false")
            value = default
        flags[key] = value
    party_id = r.string(t, "party_id", f"{w}.party_id", required=True)
    our_party_id = r.string(t, "our_party_id", f"{w}.our_party_id", required=True)
    service = r.string(t, "service", f"{w}.service", required=True)
    signing = r.path(t, "signing_cert", f"{w}.signing_cert", required=True)
    encryption = r.path(t, "encryption_cert", f"{w}.encryption_cert", required=True)
    if not (party_id and our_party_id and service and signing and encryption):
        return None
    return As4PMode(
        party_id=party_id, party_type=r.string(t, "party_type", f"{w}.party_type"),
        role=r.string(t, "role", f"{w}.role", f"{_EB}responder") or "",
        our_party_id=our_party_id,
        our_party_type=r.string(t, "our_party_type", f"{w}.our_party_type"),
        our_role=r.string(t, "our_role", f"{w}.our_role", f"{_EB}initiator") or "",
        service=service, service_type=r.string(t, "service_type", f"{w}.service_type"),
        agreement=r.string(t, "agreement", f"{w}.agreement"),
        actions=actions,
        signing_cert=signing, encryption_cert=encryption, **flags,
    )


def _https(r: _Reader, doc: Mapping[str, Any]) -> HttpsListener | None:
    listeners = r.table(doc, "listeners", "listeners")
    r.known(listeners, "listeners", {"https"})
    if "https" not in listeners:
        return None
    t = r.table(listeners, "https", "listeners.https")
    w = "listeners.https"
    r.known(t, w, {"host", "port", "cert", "key", "client_ca", "max_body", "as4_path",
                   "max_batch"})
    port = int(r.number(t, "port", f"{w}.port", 8443, integer=True))
    if port > 65535:
        r.problem(f"{w}.port", "must be at most 65535")
    cert = r.path(t, "cert", f"{w}.cert", required=True)
    key = r.path(t, "key", f"{w}.key", required=True)
    ca = r.path(t, "client_ca", f"{w}.client_ca", required=True)
    if cert is None or key is None or ca is None:
        return None
    return HttpsListener(
        host=r.string(t, "host", f"{w}.host", "127.0.0.1") or "127.0.0.1",
        port=port, cert=cert, key=key, client_ca=ca,
        max_body=int(r.number(t, "max_body", f"{w}.max_body", 0, minimum=1, integer=True)),
        as4_path=r.string(t, "as4_path", f"{w}.as4_path", "/as4") or "/as4",
        max_batch=int(r.number(t, "max_batch", f"{w}.max_batch", MAX_BATCH, minimum=1,
                               integer=True)),
    )


_TOP = {"node", "spool", "outbox", "inbox", "rejected", "intake", "inbound", "listeners",
        "partners", "routes", "retry", "breaker", "limits", "schema_sets", "security",
        "schedule", "audit", "store", "clocks", "console", "metrics", "logging", "alerts"}


def _build(r: _Reader, doc: Mapping[str, Any]) -> Config:
    r.known(doc, "", _TOP)
    t = r.table(doc, "node", "node")
    r.known(t, "node", {"party", "keys_dir", "key_passphrase_env"})
    node = NodeConfig(
        party=r.party(t, "party", "node.party"),
        keys_dir=r.path(t, "keys_dir", "node.keys_dir", "keys") or r.base / "keys",
        key_passphrase_env=r.string(t, "key_passphrase_env", "node.key_passphrase_env"),
    )
    t = r.table(doc, "spool", "spool")
    r.known(t, "spool", {"database", "payloads"})
    spool = SpoolConfig(
        database=r.path(t, "database", "spool.database", "spool/gateway.db") or r.base,
        payloads=r.path(t, "payloads", "spool.payloads", "spool/payloads") or r.base,
    )
    outboxes = []
    for i, t in enumerate(r.tables(doc, "outbox")):
        w = f"outbox[{i}]"
        r.known(t, w, {"path", "service", "format", "newline"})
        path = r.path(t, "path", f"{w}.path", required=True)
        service = r.choice(t, "service", f"{w}.service", None, SERVICES)
        fmt = r.choice(t, "format", f"{w}.format", "xml", OUTBOX_FORMATS) or "xml"
        newline = r.choice(t, "newline", f"{w}.newline", "any", NEWLINES) or "any"
        if path is not None:
            outboxes.append(OutboxConfig(path, service, fmt, newline))
    dirs: dict[str, Path] = {}
    t = r.table(doc, "inbox", "inbox")
    r.known(t, "inbox", {"path", "format", "newline"})
    dirs["inbox"] = r.path(t, "path", "inbox.path", "inbox") or r.base / "inbox"
    inbox_format = r.choice(t, "format", "inbox.format", "xml", INBOX_FORMATS) or "xml"
    inbox_newline = r.choice(t, "newline", "inbox.newline", "lf", ("lf", "crlf")) or "lf"
    t = r.table(doc, "rejected", "rejected")
    r.known(t, "rejected", {"path"})
    dirs["rejected"] = r.path(t, "path", "rejected.path", "rejected") or r.base / "rejected"
    t = r.table(doc, "intake", "intake")
    r.known(t, "intake", {"ready", "poll_interval", "min_age"})
    intake = IntakeConfig(
        ready=r.choice(t, "ready", "intake.ready", "stable", READY_MODES) or "stable",
        poll_interval=r.duration(t, "poll_interval", "intake.poll_interval", 2.0, positive=True),
        min_age=r.duration(t, "min_age", "intake.min_age", 0.0),
    )
    t = r.table(doc, "inbound", "inbound")
    r.known(t, "inbound", {"folders", "poll_interval"})
    folders_raw = t.get("folders", [])
    folders: list[Path] = []
    if not isinstance(folders_raw, list) or not all(isinstance(f, str) for f in folders_raw):
        r.problem("inbound.folders", "expected an array of directory paths")
    else:
        folders = [p if (p := Path(f)).is_absolute() else r.base / p for f in folders_raw]
    inbound = InboundConfig(tuple(folders), r.duration(t, "poll_interval",
                                                       "inbound.poll_interval", 2.0, positive=True))
    https = _https(r, doc)
    partners = _partners(r, doc)
    routes: list[RouteConfig] = []
    raw_routes: list[tuple[str, str, str]] = []
    for i, t in enumerate(r.tables(doc, "routes")):
        w = f"routes[{i}]"
        r.known(t, w, {"to", "partner"})
        to = r.string(t, "to", f"{w}.to", required=True)
        partner = r.string(t, "partner", f"{w}.partner", required=True)
        if to and partner:
            routes.append(RouteConfig(to, partner))
            raw_routes.append((to, partner, w))
    routing, route_problems = build_table(node.party, raw_routes, [p.party for p in partners])
    for key, text in route_problems:
        r.problem(key, text)
    t = r.table(doc, "retry", "retry")
    r.known(t, "retry", {"base", "factor", "max_delay", "jitter", "expiry", "receipt_timeout"})
    retry = RetryPolicy(
        base=r.duration(t, "base", "retry.base", 5.0, positive=True),
        factor=r.number(t, "factor", "retry.factor", 2.0, minimum=1.0),
        max_delay=r.duration(t, "max_delay", "retry.max_delay", 900.0, positive=True),
        jitter=r.number(t, "jitter", "retry.jitter", 0.2),
        expiry=r.duration(t, "expiry", "retry.expiry", 3 * 86400.0, positive=True),
        receipt_timeout=r.duration(t, "receipt_timeout", "retry.receipt_timeout", 3600.0,
                                   positive=True),
    )
    if retry.jitter >= 1.0:
        r.problem("retry.jitter", "must be below 1 (a fraction of the delay)")
    t = r.table(doc, "breaker", "breaker")
    r.known(t, "breaker", {"failure_threshold", "reset_after"})
    breaker = BreakerPolicy(
        failure_threshold=int(r.number(t, "failure_threshold", "breaker.failure_threshold", 5,
                                       minimum=1, integer=True)),
        reset_after=r.duration(t, "reset_after", "breaker.reset_after", 60.0, positive=True),
    )
    t = r.table(doc, "limits", "limits")
    r.known(t, "limits", {"max_message_bytes", "send_workers", "intake_workers",
                          "receive_workers"})
    limits = Limits(
        max_message_bytes=int(r.number(t, "max_message_bytes", "limits.max_message_bytes",
                                       10 * 1024 * 1024, minimum=1024, integer=True)),
        send_workers=int(r.number(t, "send_workers", "limits.send_workers", 8, minimum=1,
                                  integer=True)),
        intake_workers=int(r.number(t, "intake_workers", "limits.intake_workers",
                                    default_intake_workers(), integer=True)),
        receive_workers=int(r.number(t, "receive_workers", "limits.receive_workers",
                                     default_intake_workers(), integer=True)),
    )
    schema_sets = []
    for i, t in enumerate(r.tables(doc, "schema_sets")):
        w = f"schema_sets[{i}]"
        r.known(t, w, {"directory", "entry"})
        directory = r.path(t, "directory", f"{w}.directory", required=True)
        if directory is not None:
            entry_text = r.string(t, "entry", f"{w}.entry")
            entry = (directory / entry_text) if entry_text else None
            schema_sets.append(SchemaSet(directory, entry))
    t = r.table(doc, "security", "security")
    r.known(t, "security", {"replay_window", "cert_warn_days"})
    security = SecurityConfig(
        replay_window=r.duration(t, "replay_window", "security.replay_window", 7 * 86400.0,
                                 positive=True),
        cert_warn_days=int(r.number(t, "cert_warn_days", "security.cert_warn_days", 30,
                                    integer=True)),
    )
    t = r.table(doc, "schedule", "schedule")
    r.known(t, "schedule", {"outbox_scan", "sftp_pull", "retry_scan", "cert_check"})
    schedule = ScheduleConfig(
        outbox_scan=r.duration(t, "outbox_scan", "schedule.outbox_scan", intake.poll_interval,
                               positive=True),
        sftp_pull=r.duration(t, "sftp_pull", "schedule.sftp_pull", 10.0, positive=True),
        retry_scan=r.duration(t, "retry_scan", "schedule.retry_scan", 5.0, positive=True),
        cert_check=r.duration(t, "cert_check", "schedule.cert_check", 3600.0, positive=True),
    )
    t = r.table(doc, "audit", "audit")
    r.known(t, "audit", {"checkpoint_interval", "keep_events"})
    audit = AuditConfig(
        checkpoint_interval=r.duration(t, "checkpoint_interval", "audit.checkpoint_interval",
                                       AuditConfig.checkpoint_interval, positive=True),
        keep_events=r.duration(t, "keep_events", "audit.keep_events",
                               AuditConfig.keep_events, positive=True),
    )
    metrics, logging_, alerts = monitor_config.parse(r, doc)
    store = _store(r, r.table(doc, "store", "store"))
    t = r.table(doc, "clocks", "clocks")
    r.known(t, "clocks", {"enabled", "timezone", "holidays", "partner_holidays", "disable",
                          "rules", "reminders"})
    rule_tables = t.get("rules", [])
    for i, rule in enumerate(rule_tables if isinstance(rule_tables, list) else []):
        if isinstance(rule, Mapping):
            r.known(rule, f"clocks.rules[{i}]", {"name", "title", "citation", "source",
                                                 "start", "answer", "period", "owes",
                                                 "direction", "enabled", "note"})
    clocks = parse_clocks(t, r.problem,  # the rest of [clocks]: gateway/node/clocks.py
                          reminders=read_reminders(r, t))
    if https is not None and https.max_body == 0:  # the default follows the message limit
        https = dataclasses.replace(https, max_body=limits.max_message_bytes * 2)
    return Config(
        path=r.file, node=node, spool=spool, outboxes=tuple(outboxes), inbox=dirs["inbox"],
        rejected=dirs["rejected"], intake=intake, inbound=inbound, https=https,
        partners=tuple(partners), routes=tuple(routes), routing=routing, retry=retry,
        breaker=breaker, limits=limits, schema_sets=tuple(schema_sets), security=security,
        schedule=schedule, audit=audit, store=store, clocks=clocks,
        inbox_format=inbox_format, inbox_newline=inbox_newline,
        console=read_console(r, doc), metrics=metrics, logging=logging_, alerts=alerts,
    )


def _store(r: _Reader, t: Mapping[str, Any]) -> StoreConfig:
    r.known(t, "store", {"url", "node", "lease", "keep_payloads", "keep_receipts"})
    url = r.string(t, "url", "store.url")
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        r.problem("store.url", "expected a postgresql:// URL (leave it out for SQLite)")
        url = None
    d = StoreConfig()
    return StoreConfig(
        url=url, node=r.string(t, "node", "store.node"),
        lease=r.duration(t, "lease", "store.lease", d.lease, positive=True),
        keep_payloads=r.duration(t, "keep_payloads", "store.keep_payloads", d.keep_payloads,
                                 positive=True),
        keep_receipts=r.duration(t, "keep_receipts", "store.keep_receipts", d.keep_receipts,
                                 positive=True))


def _raise(file: Path, problems: list[tuple[str, str]]) -> None:
    lines = [f"{key}: {text}" if key else text for key, text in problems]
    noun = "problem" if len(lines) == 1 else "problems"
    raise ConfigError(
        f"{len(lines)} configuration {noun}:\n  " + "\n  ".join(lines),
        where=str(file),
        details={"file": str(file),
                 "problems": [{"key": k, "problem": t} for k, t in problems]},
    )


def load_config(path: Path | str | None = None) -> Config:
    """Read and check the configuration; raises :class:`ConfigError` listing every problem."""
    file = config_path(path).absolute()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration ({exc.strerror})", where=str(file)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("configuration is not UTF-8 text", where=str(file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=str(file)) from None
    reader = _Reader(file)
    config = _build(reader, doc)
    if reader.problems:
        _raise(file, reader.problems)
    return config


def check_files(config: Config) -> None:
    """Check that files the configuration points at exist (listener and transport keys and
    certificates, known_hosts, schema sets); raises one :class:`ConfigError` for all."""
    problems: list[tuple[str, str]] = []

    def need(path: Path | None, key: str, *, directory: bool = False) -> None:
        if path is None:
            return
        ok = path.is_dir() if directory else path.is_file()
        if not ok:
            problems.append((key, f"{'directory' if directory else 'file'} not found: {path}"))

    if config.https is not None:
        for name in ("cert", "key", "client_ca"):
            need(getattr(config.https, name), f"listeners.https.{name}")
    for i, partner in enumerate(config.partners):
        for kind, items in (("transports", partner.transports), ("pull", partner.pull)):
            for j, t in enumerate(items):
                for name in ("key_file", "known_hosts", "client_cert", "client_key", "ca_file"):
                    need(getattr(t, name), f"partners[{i}].{kind}[{j}].{name}")
        for j, cert in enumerate(partner.certificates):
            need(cert, f"partners[{i}].certificates[{j}]")
        if partner.as4 is not None:
            need(partner.as4.signing_cert, f"partners[{i}].as4.signing_cert")
            need(partner.as4.encryption_cert, f"partners[{i}].as4.encryption_cert")
    for i, s in enumerate(config.schema_sets):
        need(s.directory, f"schema_sets[{i}].directory", directory=True)
        need(s.entry, f"schema_sets[{i}].entry")
    need(config.node.keys_dir, "node.keys_dir", directory=True)
    for path, key in monitor_config.files((config.metrics, config.alerts)):
        need(path, key)
    if problems:
        _raise(config.path, problems)
