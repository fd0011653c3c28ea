"""URL layout shared by the routers, and the path patterns config files use."""

from __future__ import annotations

import re

API_PREFIX = "/api/v1"


def segment_pattern(pattern: str) -> re.Pattern[str]:
    """A config path pattern: `*` matches exactly one segment ("/api/v1/modules/*/execute")."""
    return re.compile("^" + "/".join("[^/]+" if p == "*" else re.escape(p) for p in pattern.split("/")) + "$")
