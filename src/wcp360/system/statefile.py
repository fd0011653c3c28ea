"""The agent's own records (tenants, their processes, their databases): JSON files in its state
directory (root, 0700), each replaced whole (written beside, then renamed), never through a link."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out)
    os.replace(temporary, path)


def read_json(path: Path, missing: Any) -> Any:
    """The document, or `missing` when there is no file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return missing
