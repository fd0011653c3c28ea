"""Typed views of the hosting package."""

from __future__ import annotations

from wcp360.views import View


class LimitsView(View):
    disk: int
    processes: int
    memory: int
    cpu_percent: int
    io_weight: int


class TenantView(View):
    id: str
    name: str
    owner_id: str
    status: str
    uid: int
    gid: int
    home: str
    limits: LimitsView
    # What the host could not do for this tenant (development mode without root), else empty.
    degraded: list[str]
    created_at: str
    suspended_at: str | None
