"""`ids.yml`: intrusion-detection rules with actions, and alert destinations (seed 003)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from wcp360.config.base import Duration, Section


class IdsRule(Section):
    name: str
    # Parsed into a safe AST by the IDS (the abuse-defense issue); kept as text here.
    condition: str
    action: Literal["block_ip", "quarantine", "alert", "throttle"]
    duration: Duration | None = None


class EmailAlert(Section):
    type: Literal["email"]
    recipients: list[str]
    smtp_host: str = "localhost"
    smtp_port: int = 587
    starttls: bool = True
    sender: str = "wcp360@localhost"


class SlackAlert(Section):
    type: Literal["slack"]
    webhook: str


class SyslogAlert(Section):
    type: Literal["syslog"]
    facility: str = "auth"


Alert = Annotated[EmailAlert | SlackAlert | SyslogAlert, Field(discriminator="type")]


class IdsConfig(Section):
    enabled: bool = True
    rules: list[IdsRule] = [
        IdsRule(
            name="brute_force_login",
            condition="failed_logins > 5 in 5m",
            action="block_ip",
            duration=timedelta(hours=1),
        ),
        IdsRule(
            name="privilege_escalation",
            condition="permission_denied and target_resource = admin",
            action="alert",
        ),
    ]
    alerts: list[Alert] = []


class IdsFile(Section):
    intrusion_detection: IdsConfig = IdsConfig()
