"""Filtering events read back from the log (`wcp360 audit search`, `GET /api/v1/audit`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class EventFilter:
    action: str | None = None
    actor: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        if self.action is not None and record.get("action") != self.action:
            return False
        if self.actor is not None and record.get("actor_id") != self.actor:
            return False
        if self.outcome is not None and record.get("outcome") != self.outcome:
            return False
        if self.since is not None or self.until is not None:
            moment = datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00"))
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment >= self.until:
                return False
        return True


def parse_moment(text: str) -> datetime:
    """RFC 3339 / ISO 8601; a date alone means its midnight UTC; naive times are UTC."""
    from datetime import UTC

    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
