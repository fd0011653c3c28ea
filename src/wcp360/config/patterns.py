"""Path patterns in config files (`rate_limit.yml per_endpoint`, body limits): `*` is one segment."""

from __future__ import annotations

import re


def segment_pattern(pattern: str) -> re.Pattern[str]:
    """A config path pattern: `*` matches exactly one segment ("/api/v1/modules/*/execute")."""
    return re.compile("^" + "/".join("[^/]+" if p == "*" else re.escape(p) for p in pattern.split("/")) + "$")
