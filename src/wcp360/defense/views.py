"""How a ban is shown by the API and the CLI."""

from __future__ import annotations

from wcp360.views import View


class BanView(View):
    id: str
    network: str
    reason: str
    rule: str | None
    created_by: str | None
    created_at: str
    expires_at: str | None  # None: until lifted
