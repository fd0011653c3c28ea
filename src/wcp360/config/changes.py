"""`config_change` audit events: which config files changed since the last start.

Configuration is files edited outside WCP360, so the change is noticed (and recorded) when the
server next starts: the SHA-256 of every file is compared with the digests kept in the data dir.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from wcp360 import audit
from wcp360.config.loader import CONFIG_FILES
from wcp360.config.model import Config
from wcp360.keys import write_private


def file_digests(config_dir: Path) -> dict[str, str]:
    digests = {}
    for name in CONFIG_FILES:
        path = config_dir / name
        if path.is_file():
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def record_config_changes(config: Config) -> list[str]:
    state = config.data_dir / "config-digests.json"
    current = file_digests(config.config_dir)
    try:
        previous: dict[str, str] = json.loads(state.read_text())
    except FileNotFoundError:
        previous = {}
    changed = sorted(name for name in set(current) | set(previous) if current.get(name) != previous.get(name))
    if changed:
        audit.record(
            "config_change",
            actor_id="system",
            resource_type="config",
            resource_id=str(config.config_dir),
            details={"files": {name: current.get(name, "removed") for name in changed}, "first_start": not previous},
        )
        write_private(state, json.dumps(current, sort_keys=True).encode())
    return changed
