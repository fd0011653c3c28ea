"""How events of the trail are shown by the API: the fields every event has, and whatever else
an action records (an event's details are its own)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from wcp360.views import View


class AuditEventView(View):
    model_config = ConfigDict(frozen=True, extra="allow")  # e.g. module_id

    seq: int
    ts: str
    action: str
    outcome: str
    channel: str | None = None
    actor_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = {}
    prev: str
    chain: str


class AuditPageView(View):
    items: list[AuditEventView]  # newest first
    next_before_seq: int | None  # pass as before_seq for the next (older) page; None at the end
