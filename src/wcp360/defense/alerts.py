"""Alerts from IDS rules (ids.yml `alerts`): email, Slack-compatible webhook, syslog.

Sent from a background thread so a slow mail server never slows a request. Each delivery is
retried with exponential backoff; one that still fails is counted (`alert_failures_total`) and
logged with the alert, never dropped silently. Repeats of one (rule, subject) within the
de-duplication window are sent once.
"""

from __future__ import annotations

import json
import queue
import smtplib
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import structlog

from wcp360 import metrics
from wcp360.audit.syslog import SyslogTransport
from wcp360.config.ids import Alert, EmailAlert, SlackAlert, SyslogAlert

_log = structlog.get_logger("wcp360.alerts")
Send = Callable[[str, dict[str, Any]], None]


def _text(rule: str, subject: str, detail: dict[str, Any]) -> str:
    return f"WCP360 security alert: rule {rule} fired for {subject}\n\n{json.dumps(detail, indent=2, sort_keys=True)}"


def email_sender(settings: EmailAlert) -> Send:
    def send(title: str, detail: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = title
        message["From"] = settings.sender
        message["To"] = ", ".join(settings.recipients)
        message.set_content(detail["text"])
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            if settings.starttls:
                context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
                smtp.starttls(context=context)
            if settings.username and settings.password:
                smtp.login(settings.username, settings.password.get_secret_value())
            smtp.send_message(message)

    return send


def webhook_sender(settings: SlackAlert) -> Send:
    if not settings.webhook.startswith(("https://", "http://127.", "http://localhost", "http://[::1]")):
        raise ValueError("alert webhooks must use https (plain http only to loopback)")

    def send(title: str, detail: dict[str, Any]) -> None:
        body = json.dumps({"text": f"*{title}*\n```{json.dumps(detail['event'], sort_keys=True)}```"}).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme was checked above
            settings.webhook,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            if response.status >= 300:
                raise OSError(f"webhook answered HTTP {response.status}")

    return send


def syslog_sender(settings: SyslogAlert) -> Send:
    transport = SyslogTransport(settings.address, settings.facility, "wcp360-alert")

    def send(title: str, detail: dict[str, Any]) -> None:
        transport.deliver(
            [
                {
                    **detail["event"],
                    "action": "security_alert",
                    "outcome": "alert",
                    "details": {"title": title, "rule": detail["rule"]},
                }
            ]
        )

    return send


def senders_for(alerts: list[Alert]) -> list[tuple[str, Send]]:
    built: list[tuple[str, Send]] = []
    for alert in alerts:
        if isinstance(alert, EmailAlert):
            built.append(("email", email_sender(alert)))
        elif isinstance(alert, SlackAlert):
            built.append(("slack", webhook_sender(alert)))
        else:
            built.append(("syslog", syslog_sender(alert)))
    return built


class Alerter:
    def __init__(
        self, senders: list[tuple[str, Send]], dedupe_seconds: float, attempts: int = 4, first_backoff: float = 0.5
    ) -> None:
        self.senders = senders
        self.dedupe_seconds = dedupe_seconds
        self.attempts = attempts
        self.first_backoff = first_backoff
        self._queue: queue.SimpleQueue[tuple[str, Send, str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def __call__(self, rule: str, subject: str, detail: dict[str, Any]) -> None:
        """Queue an alert (from the IDS); returns at once."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get((rule, subject), -1e9) < self.dedupe_seconds:
                return
            self._last[(rule, subject)] = now
        title = f"[WCP360] {rule}: {subject}"
        payload = {**detail, "text": _text(rule, subject, detail)}
        for name, send in self.senders:
            self._queue.put((name, send, title, payload))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            name, send, title, payload = item
            delay = self.first_backoff
            for attempt in range(1, self.attempts + 1):
                try:
                    send(title, payload)
                    metrics.ALERTS_SENT.labels(destination=name).inc()
                    break
                except Exception as exc:
                    if attempt == self.attempts:
                        metrics.ALERT_FAILURES.labels(destination=name).inc()
                        _log.error(
                            "alert not delivered",
                            destination=name,
                            title=title,
                            error=f"{type(exc).__name__}: {str(exc)[:200]}",
                            attempts=attempt,
                        )
                    else:
                        time.sleep(delay)
                        delay *= 2
