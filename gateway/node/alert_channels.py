"""Where alerts go: e-mail over SMTP with STARTTLS, and an HTTPS webhook (a JSON POST).

Both verify the server's certificate (the system's CAs, or ``ca_file``), both have a finite
timeout, and every failure becomes an :class:`AlertDeliveryError` that says which channel
and what went wrong (never the alert's content). An SMTP password comes from the
environment variable ``password_env`` names and is sent only after STARTTLS.
"""

from __future__ import annotations

import http.client
import json
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlsplit

from gateway.errors import GatewayError
from gateway.node.monitor_config import AlertsConfig, EmailConfig, WebhookConfig

__all__ = ["Alert", "AlertDeliveryError", "Channel", "Delivery", "EmailChannel",
           "WebhookChannel", "channels_for"]


_DIGEST_LINES = 50


@dataclass(frozen=True)
class Alert:
    rule: str
    key: str  # what raised it: fires once per key
    summary: str  # one line: codes, ids, parties, numbers only
    facts: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """What one message to the channels carries: one alert, or a digest."""

    node: str
    rule: str
    alerts: tuple[Alert, ...]
    held_since: datetime | None  # set for a digest: alerts held back since then

    @property
    def subject(self) -> str:
        first = self.alerts[0]
        if len(self.alerts) == 1:
            return f"[cse-gateway {self.node}] {self.rule}: {first.summary}"
        return f"[cse-gateway {self.node}] {self.rule}: {len(self.alerts)} alerts (digest)"

    def text(self) -> str:
        lines = [f"node: {self.node}", f"rule: {self.rule}"]
        if len(self.alerts) > 1:
            since = self.held_since.isoformat(timespec="seconds") if self.held_since else "-"
            lines.append(f"{len(self.alerts)} alerts, held back by the rate limit since "
                         f"{since}:")
        for alert in self.alerts[:_DIGEST_LINES]:
            facts = " ".join(f"{k}={v}" for k, v in sorted(alert.facts.items()))
            lines.append(f"- {alert.summary}" + (f" ({facts})" if facts else ""))
        if len(self.alerts) > _DIGEST_LINES:
            lines.append(f"... and {len(self.alerts) - _DIGEST_LINES} more")
        return "\n".join(lines) + "\n"

    def document(self) -> dict[str, object]:
        return {"node": self.node, "rule": self.rule, "count": len(self.alerts),
                "digest": len(self.alerts) > 1,
                "held_since": self.held_since.isoformat() if self.held_since else None,
                "alerts": [{"rule": a.rule, "key": a.key, "summary": a.summary,
                            "facts": dict(a.facts)} for a in self.alerts]}



class AlertDeliveryError(GatewayError):
    code = "AlertDeliveryFailed"
    retryable = True


class Channel(Protocol):
    name: str

    def send(self, delivery: Delivery) -> None: ...


def _context(ca_file: object) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class EmailChannel:
    name = "email"

    def __init__(self, config: EmailConfig) -> None:
        self.config = config

    def send(self, delivery: Delivery) -> None:
        c = self.config
        message = EmailMessage()
        message["From"] = c.sender
        message["To"] = ", ".join(c.to)
        message["Subject"] = delivery.subject
        message.set_content(delivery.text())
        where = f"alerts.email {c.host}:{c.port}"
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout) as smtp:
                smtp.ehlo()
                if c.starttls:
                    smtp.starttls(context=_context(c.ca_file))
                    smtp.ehlo()
                if c.username is not None:
                    password = os.environ.get(c.password_env or "", "")
                    if not password:
                        raise AlertDeliveryError("the SMTP password variable is not set",
                                                 where=f"alerts.email.password_env {where}")
                    smtp.login(c.username, password)
                smtp.send_message(message)
        except AlertDeliveryError:
            raise
        except smtplib.SMTPException as exc:
            raise AlertDeliveryError(f"SMTP refused the alert ({type(exc).__name__})",
                                     where=where) from None
        except ssl.SSLError as exc:
            raise AlertDeliveryError(f"TLS with the mail server failed ({exc.reason})",
                                     where=where) from None
        except OSError as exc:
            raise AlertDeliveryError(f"cannot reach the mail server "
                                     f"({exc.strerror or type(exc).__name__})",
                                     where=where) from None


class WebhookChannel:
    name = "webhook"

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    def send(self, delivery: Delivery) -> None:
        c = self.config
        url = urlsplit(c.url)
        where = f"alerts.webhook {url.hostname}:{url.port or 443}"
        context = _context(c.ca_file)
        body = json.dumps(delivery.document(), sort_keys=True).encode()
        try:
            if c.client_cert is not None:
                context.load_cert_chain(str(c.client_cert), str(c.client_key))
            conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443,
                                               timeout=c.timeout, context=context)
            try:
                conn.request("POST", url.path or "/", body=body,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            finally:
                conn.close()
        except ssl.SSLError as exc:
            raise AlertDeliveryError(f"TLS with the webhook failed ({exc.reason})",
                                     where=where) from None
        except (OSError, http.client.HTTPException) as exc:
            raise AlertDeliveryError(f"cannot reach the webhook "
                                     f"({getattr(exc, 'strerror', None) or type(exc).__name__})",
                                     where=where) from None
        if not 200 <= response.status < 300:
            raise AlertDeliveryError(f"the webhook answered HTTP {response.status}",
                                     where=where)


def channels_for(config: AlertsConfig) -> list[Channel]:
    channels: list[Channel] = []
    if config.email is not None:
        channels.append(EmailChannel(config.email))
    if config.webhook is not None:
        channels.append(WebhookChannel(config.webhook))
    return channels
