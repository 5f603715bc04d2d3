"""The monitoring sections of the configuration: ``[metrics]``, ``[logging]`` and
``[alerts]`` (read by :func:`gateway.node.config.load_config` through :func:`parse`).

Kept apart from ``config.py`` so that file stays small; the reader passed in is
``config.py``'s ``_Reader`` (it records problems with the key that has them, never raising).
Every key, default and example is in ``docs/configuration.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AlertRules",
    "AlertsConfig",
    "EmailConfig",
    "LoggingConfig",
    "MetricsConfig",
    "WebhookConfig",
    "parse",
]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class MetricsConfig:
    """The ``/metrics`` endpoint: off unless ``enabled``; plain HTTP only on a loopback
    address, mutual TLS (``cert``, ``key``, ``client_ca``) anywhere else."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None

    @property
    def tls(self) -> bool:
        return self.cert is not None


@dataclass(frozen=True)
class LoggingConfig:
    format: str = "text"  # "text" or "json" (one object per line)
    level: str = "warning"  # as before this option existed


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = True
    ca_file: Path | None = None
    username: str | None = None
    password_env: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class AlertRules:
    """Each rule's threshold; ``None`` (``false`` in the file) turns a rule off."""

    message_failed: bool = True
    breaker_open: float | None = 15 * 60.0  # seconds open before it is an alert
    oldest_pending: float | None = 60 * 60.0  # seconds
    certificate_expiry: tuple[int, ...] = (30, 7, 1)  # days ahead, each fires once
    audit_verify: float | None = 86400.0  # how often the chain is verified
    login_failures: int | None = 5  # failed console logins within login_window
    login_window: float = 15 * 60.0
    login_codes: tuple[str, ...] = ("console_login_failed",)
    clock_due_within: int | None = 2  # working days before an open clock's due date
    clock_overdue: bool = True
    clock_owed_by: str = "any"  # which clocks the two clock rules watch: us, partner, any


@dataclass(frozen=True)
class AlertsConfig:
    email: EmailConfig | None = None
    webhook: WebhookConfig | None = None
    interval: float = 30.0  # how often the rules are evaluated
    rate_limit: float = 15 * 60.0  # per rule: one delivery per this; the rest in a digest
    rules: AlertRules = AlertRules()

    @property
    def enabled(self) -> bool:
        return self.email is not None or self.webhook is not None


def _bool(r: Any, t: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    if key not in t:
        return default
    if not isinstance(t[key], bool):
        r.problem(where, "expected true or false")
        return default
    return bool(t[key])


def _metrics(r: Any, doc: Mapping[str, Any]) -> MetricsConfig:
    t = r.table(doc, "metrics", "metrics")
    r.known(t, "metrics", {"enabled", "host", "port", "cert", "key", "client_ca"})
    port = int(r.number(t, "port", "metrics.port", 9464, minimum=1, integer=True))
    if port > 65535:
        r.problem("metrics.port", "must be at most 65535")
    config = MetricsConfig(
        enabled=_bool(r, t, "enabled", "metrics.enabled", False),
        host=r.string(t, "host", "metrics.host", "127.0.0.1") or "127.0.0.1",
        port=port,
        cert=r.path(t, "cert", "metrics.cert"),
        key=r.path(t, "key", "metrics.key"),
        client_ca=r.path(t, "client_ca", "metrics.client_ca"),
    )
    tls = [config.cert, config.key, config.client_ca]
    if any(x is not None for x in tls) and not all(x is not None for x in tls):
        r.problem("metrics", "cert, key and client_ca go together (mutual TLS)")
    if config.enabled and not config.tls and config.host not in ("127.0.0.1", "::1",
                                                                  "localhost"):
        r.problem("metrics.host", "plain HTTP only on 127.0.0.1 or ::1; set cert, key and "
                  "client_ca for mutual TLS on another address")
    return config


def _logging(r: Any, doc: Mapping[str, Any]) -> LoggingConfig:
    t = r.table(doc, "logging", "logging")
    r.known(t, "logging", {"format", "level"})
    return LoggingConfig(
        format=r.choice(t, "format", "logging.format", "text", LOG_FORMATS) or "text",
        level=r.choice(t, "level", "logging.level", "warning", LOG_LEVELS) or "warning",
    )


def _strings(r: Any, t: Mapping[str, Any], key: str, where: str,
             default: tuple[str, ...]) -> tuple[str, ...]:
    value = t.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        r.problem(where, "expected an array of strings")
        return default
    return tuple(value)


def _email(r: Any, alerts: Mapping[str, Any]) -> EmailConfig | None:
    if "email" not in alerts:
        return None
    t = r.table(alerts, "email", "alerts.email")
    w = "alerts.email"
    r.known(t, w, {"host", "port", "from", "to", "starttls", "ca_file", "username",
                   "password_env", "timeout"})
    host = r.string(t, "host", f"{w}.host", required=True)
    sender = r.string(t, "from", f"{w}.from", required=True)
    to = _strings(r, t, "to", f"{w}.to", ())
    if not to:
        r.problem(f"{w}.to", "at least one address is required")
    starttls = _bool(r, t, "starttls", f"{w}.starttls", True)
    username = r.string(t, "username", f"{w}.username")
    password_env = r.string(t, "password_env", f"{w}.password_env")
    if username is not None and not starttls:
        r.problem(f"{w}.starttls", "a password is only sent over STARTTLS")
    if host is None or sender is None:
        return None
    return EmailConfig(
        host=host, port=int(r.number(t, "port", f"{w}.port", 587, minimum=1, integer=True)),
        sender=sender, to=to, starttls=starttls, ca_file=r.path(t, "ca_file", f"{w}.ca_file"),
        username=username, password_env=password_env,
        timeout=r.duration(t, "timeout", f"{w}.timeout", 10.0, positive=True))


def _webhook(r: Any, alerts: Mapping[str, Any]) -> WebhookConfig | None:
    if "webhook" not in alerts:
        return None
    t = r.table(alerts, "webhook", "alerts.webhook")
    w = "alerts.webhook"
    r.known(t, w, {"url", "ca_file", "client_cert", "client_key", "timeout"})
    url = r.string(t, "url", f"{w}.url", required=True)
    if url is not None and not url.startswith("https://"):
        r.problem(f"{w}.url", "must be an https:// URL")
        return None
    cert = r.path(t, "client_cert", f"{w}.client_cert")
    key = r.path(t, "client_key", f"{w}.client_key")
    if (cert is None) != (key is None):
        r.problem(w, "client_cert and client_key go together")
    if url is None:
        return None
    return WebhookConfig(url=url, ca_file=r.path(t, "ca_file", f"{w}.ca_file"),
                         client_cert=cert, client_key=key,
                         timeout=r.duration(t, "timeout", f"{w}.timeout", 10.0, positive=True))


def _off_or_duration(r: Any, t: Mapping[str, Any], key: str, where: str,
                     default: float | None) -> float | None:
    if t.get(key) is False:
        return None
    if default is None and key not in t:
        return None
    value: float = r.duration(t, key, where, default, positive=True)
    return value


def _rules(r: Any, alerts: Mapping[str, Any]) -> AlertRules:
    t = r.table(alerts, "rules", "alerts.rules")
    w = "alerts.rules"
    r.known(t, w, {"message_failed", "breaker_open", "oldest_pending", "certificate_expiry",
                   "audit_verify", "login_failures", "login_window", "login_codes",
                   "clock_due_within", "clock_overdue", "clock_owed_by"})
    d = AlertRules()
    days_raw = t.get("certificate_expiry", list(d.certificate_expiry))
    days = d.certificate_expiry
    if days_raw is False:
        days = ()
    elif not isinstance(days_raw, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in days_raw):
        r.problem(f"{w}.certificate_expiry", "expected an array of whole days, or false")
    else:
        days = tuple(sorted(set(days_raw), reverse=True))
    logins: int | None = d.login_failures
    if t.get("login_failures") is False:
        logins = None
    else:
        logins = int(r.number(t, "login_failures", f"{w}.login_failures", 5, minimum=1,
                              integer=True))
    due_within: int | None = None
    if t.get("clock_due_within") is not False:
        due_within = int(r.number(t, "clock_due_within", f"{w}.clock_due_within",
                                  d.clock_due_within or 2, integer=True))
    return AlertRules(
        message_failed=_bool(r, t, "message_failed", f"{w}.message_failed", True),
        breaker_open=_off_or_duration(r, t, "breaker_open", f"{w}.breaker_open",
                                      d.breaker_open),
        oldest_pending=_off_or_duration(r, t, "oldest_pending", f"{w}.oldest_pending",
                                        d.oldest_pending),
        certificate_expiry=days,
        audit_verify=_off_or_duration(r, t, "audit_verify", f"{w}.audit_verify",
                                      d.audit_verify),
        login_failures=logins,
        login_window=r.duration(t, "login_window", f"{w}.login_window", d.login_window,
                                positive=True),
        login_codes=_strings(r, t, "login_codes", f"{w}.login_codes", d.login_codes),
        clock_due_within=due_within,
        clock_overdue=_bool(r, t, "clock_overdue", f"{w}.clock_overdue", True),
        clock_owed_by=r.choice(t, "clock_owed_by", f"{w}.clock_owed_by", "any",
                               ("us", "partner", "any")) or "any",
    )


def _alerts(r: Any, doc: Mapping[str, Any]) -> AlertsConfig:
    t = r.table(doc, "alerts", "alerts")
    r.known(t, "alerts", {"interval", "rate_limit", "email", "webhook", "rules"})
    return AlertsConfig(
        email=_email(r, t), webhook=_webhook(r, t),
        interval=r.duration(t, "interval", "alerts.interval", 30.0, positive=True),
        rate_limit=r.duration(t, "rate_limit", "alerts.rate_limit", 900.0),
        rules=_rules(r, t),
    )


def parse(r: Any, doc: Mapping[str, Any]) -> tuple[MetricsConfig, LoggingConfig, AlertsConfig]:
    """The three sections (each defaulted when absent); problems go to ``r``."""
    return _metrics(r, doc), _logging(r, doc), _alerts(r, doc)


def files(config: tuple[MetricsConfig, AlertsConfig]) -> list[tuple[Path | None, str]]:
    """(file, key) pairs that must exist, for ``check_files``."""
    metrics, alerts = config
    found: list[tuple[Path | None, str]] = [
        (metrics.cert, "metrics.cert"), (metrics.key, "metrics.key"),
        (metrics.client_ca, "metrics.client_ca")]
    if alerts.email is not None:
        found.append((alerts.email.ca_file, "alerts.email.ca_file"))
    if alerts.webhook is not None:
        found += [(alerts.webhook.ca_file, "alerts.webhook.ca_file"),
                  (alerts.webhook.client_cert, "alerts.webhook.client_cert"),
                  (alerts.webhook.client_key, "alerts.webhook.client_key")]
    return found
