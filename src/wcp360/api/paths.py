"""URL layout shared by the routers."""

from __future__ import annotations

API_PREFIX = "/api/v1"
