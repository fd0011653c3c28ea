"""`ids.yml`: intrusion-detection rules with actions, and alert destinations (seed 003)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from wcp360.config.base import ConfigPath, Duration, Section


class IdsRule(Section):
    name: str
    # Parsed into a safe AST (wcp360.defense.conditions) when the file is loaded.
    condition: str
    action: Literal["block_ip", "quarantine", "alert", "throttle"]
    duration: Duration | None = None

    @model_validator(mode="after")
    def _condition_parses(self) -> IdsRule:
        from wcp360.defense.conditions import parse

        try:
            parse(self.condition)
        except ValueError as exc:
            raise ValueError(f"rule {self.name!r}: condition {exc}") from None
        return self


class BanEscalation(Section):
    """Repeat offenders (fail2ban's recidive): each ban within `lookback` multiplies the next."""

    factor: float = Field(default=2.0, ge=1.0)
    max_duration: Duration = timedelta(days=7)
    lookback: Duration = timedelta(days=30)


class BruteForce(Section):
    """Per-account protection that never locks the owner out (it throttles the attacker)."""

    # Failures of one (address, username) pair in `window` before that pair is refused for a while.
    pair_failures: int = Field(default=5, ge=1)
    # Failures for one username from anywhere in `window` before the account counts as under attack:
    # addresses without a recent success for it are then slowed and limited; its owner is notified.
    user_failures: int = Field(default=10, ge=1)
    window: Duration = timedelta(minutes=15)
    max_delay: Duration = timedelta(seconds=3)
    # Password checks running at once (argon2 is ~20 ms of CPU each); 0 = half the CPUs. Sign-ins
    # beyond that wait; beyond `max_waiting` they are refused (503), so a flood of guesses from
    # fresh addresses cannot starve every other request of CPU.
    max_concurrent_checks: int = Field(default=0, ge=0)
    max_waiting: int = Field(default=64, ge=0)


class Throttle(Section):
    # A throttled actor gets this fraction of its normal rate limits.
    factor: float = Field(default=0.1, gt=0, le=1)
    duration: Duration = timedelta(minutes=15)


class EmailAlert(Section):
    type: Literal["email"]
    recipients: list[str]
    smtp_host: str = "localhost"
    smtp_port: int = 587
    starttls: bool = True
    # CA bundle that signs the SMTP server's certificate (default: the system's).
    ca_file: ConfigPath | None = None
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "wcp360@localhost"


class SlackAlert(Section):
    type: Literal["slack"]
    webhook: str


class SyslogAlert(Section):
    type: Literal["syslog"]
    facility: str = "auth"
    address: str = "unix:/dev/log"


Alert = Annotated[EmailAlert | SlackAlert | SyslogAlert, Field(discriminator="type")]


class IdsConfig(Section):
    enabled: bool = True
    # "memory://" (one process) or "redis://host:port/db" (shared by several servers).
    storage: str = "memory://"
    ban_escalation: BanEscalation = BanEscalation()
    brute_force: BruteForce = BruteForce()
    throttle: Throttle = Throttle()
    # Repeats of one alert (same rule and subject) within this window are sent once.
    alert_dedupe: Duration = timedelta(minutes=10)
    rules: list[IdsRule] = [
        IdsRule(
            name="brute_force_login",
            condition="failed_logins > 5 in 5m",
            action="block_ip",
            duration=timedelta(hours=1),
        ),
        IdsRule(
            name="suspicious_module_upload",
            condition="module_size > 50MB or contains_suspicious_patterns",
            action="quarantine",
        ),
        IdsRule(
            name="privilege_escalation",
            condition="permission_denied and target_resource = admin",
            action="alert",
        ),
        IdsRule(name="unusual_execution_pattern", condition="execution_rate > 1000/min", action="throttle"),
    ]
    alerts: list[Alert] = []


class IdsFile(Section):
    intrusion_detection: IdsConfig = IdsConfig()
