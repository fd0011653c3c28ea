"""The audit event record and sensitive-data redaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

REDACTED = "[redacted]"


@dataclass(frozen=True)
class AuditEvent:
    ts: str
    action: str
    outcome: str
    actor_id: str | None
    resource_type: str | None
    resource_id: str | None
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    channel: str
    details: dict[str, Any] = field(default_factory=dict)
    # Assigned by the file writer; None when no file destination is installed.
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def redact(value: Any, sensitive: Iterable[str]) -> Any:
    """Replace, at any depth, every value whose key contains a sensitive word (case-insensitive)."""
    words = tuple(w.lower() for w in sensitive)
    return _redact(value, words)


def _redact(value: Any, words: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if any(w in str(key).lower() for w in words) else _redact(item, words)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, words) for item in value]
    return value
