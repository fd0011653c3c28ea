"""Typed views of the authz package: a share of an owned resource."""

from __future__ import annotations

from wcp360.views import View


class ShareView(View):
    id: str
    resource_type: str
    resource_id: str
    grantee: str
    user: str | None
    role: str | None
    action: str
    created_at: str
