"""The intrusion-detection engine: rules from ids.yml evaluated on the audit event stream.

It is an audit sink: every recorded event is counted into sliding windows and checked against
each rule; a rule that holds fires its action (block_ip, throttle, alert, quarantine). Events
the engine causes itself (a ban is audited too) are not evaluated again.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from wcp360.audit import AuditEvent
from wcp360.config.ids import IdsConfig, IdsRule
from wcp360.defense.bans import BanList
from wcp360.defense.conditions import WINDOWED, Node, evaluate, parse, windows_of
from wcp360.defense.throttles import Throttles
from wcp360.defense.windows import Windows

_log = structlog.get_logger("wcp360.ids")

# Counters the login guard reads, fed from the same events.
PAIR = "failed_login_pair"
SUCCESS_PAIR = "login_success_pair"


@dataclass(frozen=True)
class CompiledRule:
    rule: IdsRule
    condition: Node
    counters: frozenset[str]


def event_key(counter: str, event: dict[str, Any]) -> str | None:
    details = event.get("details") or {}
    if counter in {PAIR, SUCCESS_PAIR}:
        username, ip = details.get("username"), event.get("ip_address")
        return f"{ip}|{username}" if username and ip else None
    field = WINDOWED[counter][1]
    value = details.get(field) if field == "username" else event.get(field)
    return str(value) if value else None


class Ids:
    def __init__(
        self,
        config: IdsConfig,
        windows: Windows,
        bans: BanList,
        throttles: Throttles,
        alert: Callable[[str, str, dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.windows = windows
        self.bans = bans
        self.throttles = throttles
        self.alert = alert
        self.quarantine_hooks: list[Callable[[str, dict[str, Any]], None]] = []
        self.rules = [
            CompiledRule(r, parse(r.condition), frozenset(n for n, _ in windows_of(parse(r.condition))))
            for r in config.rules
        ]
        self._acting = threading.local()
        self._recent: dict[tuple[str, str], float] = {}

    # AuditSink
    def write(self, event: AuditEvent) -> None:
        if not self.config.enabled or getattr(self._acting, "busy", False):
            return
        record = event.as_dict()
        self._count(record)
        for compiled in self.rules:
            if not self._relevant(compiled, record):
                continue
            counts = self._counts_for(record)
            if evaluate(compiled.condition, record, counts):
                self._fire(compiled.rule, record)

    def _count(self, record: dict[str, Any]) -> None:
        action = record.get("action")
        for counter, (actions, _) in WINDOWED.items():
            if action in actions and (key := event_key(counter, record)) is not None:
                self.windows.add(counter, key)
        if action == "login_failure" and (key := event_key(PAIR, record)):
            self.windows.add(PAIR, key)
        if action == "login_success" and (key := event_key(SUCCESS_PAIR, record)):
            self.windows.add(SUCCESS_PAIR, key)

    def _relevant(self, compiled: CompiledRule, record: dict[str, Any]) -> bool:
        # A windowed rule is checked when an event it counts arrives; others on every event.
        if not compiled.counters:
            return True
        return any(record.get("action") in WINDOWED[c][0] for c in compiled.counters)

    def _counts_for(self, record: dict[str, Any]) -> Callable[[str, timedelta], int]:
        def counts(name: str, window: timedelta) -> int:
            key = event_key(name, record)
            return self.windows.count(name, key, window.total_seconds()) if key else 0

        return counts

    def _fire(self, rule: IdsRule, record: dict[str, Any]) -> None:
        subject = str(
            record.get("ip_address")
            if rule.action == "block_ip"
            else record.get("module_id") or record.get("resource_id")
            if rule.action == "quarantine"
            else record.get("actor_id") or record.get("ip_address")
        )
        if self._duplicate(rule.name, subject):
            return
        # After the transaction the event was recorded in, if any (a ban is a write of its own).
        self.bans.db.after_writes(functools.partial(self._act, rule, record, subject))

    def _act(self, rule: IdsRule, record: dict[str, Any], subject: str) -> None:
        self._acting.busy = True
        try:
            _log.warning("ids rule fired", rule=rule.name, action=rule.action, subject=subject)
            if rule.action == "block_ip" and record.get("ip_address"):
                ip = str(record["ip_address"])
                if not self.bans.whitelisted(ip) and self.bans.banned(ip) is None:
                    self.bans.block(
                        None,
                        ip,
                        rule.duration or timedelta(hours=1),
                        f"ids rule {rule.name}",
                        rule=rule.name,
                        escalate=True,
                    )
            elif rule.action == "throttle":
                self.throttles.add(subject, rule.duration or self.config.throttle.duration)
            elif rule.action == "quarantine":
                for hook in self.quarantine_hooks:
                    hook(subject, record)
            self.alert(rule.name, subject, _summary(rule, record))
        except Exception:
            _log.exception("ids action failed", rule=rule.name)
        finally:
            self._acting.busy = False

    def _duplicate(self, rule: str, subject: str) -> bool:
        # The same rule for the same subject acts once per second at most (concurrent requests).
        now = time.monotonic()
        last = self._recent.get((rule, subject), 0.0)
        self._recent[(rule, subject)] = now
        if len(self._recent) > 10_000:
            self._recent = {k: v for k, v in self._recent.items() if now - v < 60}
        return now - last < 1.0


def _summary(rule: IdsRule, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "action": rule.action,
        "condition": rule.condition,
        "event": {
            k: record.get(k)
            for k in ("seq", "ts", "action", "actor_id", "ip_address", "resource_type", "resource_id", "outcome")
        },
    }
