"""`config_change` audit events: what changed in the effective configuration since the last start.

Configuration is files (and `${ENV}` values) edited outside WCP360, so a change is noticed, and
recorded, when the server next starts: the effective configuration is flattened to key paths,
compared with the one kept from the last start (`<data_dir>/config-state.json`), and every file
with changed keys gets one event listing each path with its old and new value. Secrets are never
written: SecretStr values serialise masked, and any value under a key that looks secret is
replaced. (Detail keys are `path`/`was`/`now`: audit redaction hides detail keys naming keys.)
"""

from __future__ import annotations

import json
from typing import Any

from wcp360.audit.trail import record
from wcp360.config.loader import FILE_OF_SECTION
from wcp360.config.model import Config
from wcp360.keys import write_private

REDACTED = "[redacted]"
_SECRET_WORDS = ("secret", "password", "key", "token")
# One event carries at most this many changed paths per file (the rest are counted).
MAX_LISTED = 100


def effective_state(config: Config) -> dict[str, dict[str, Any]]:
    """{file: {dotted.key.path: value}} of the whole effective configuration, secrets masked."""
    state: dict[str, dict[str, Any]] = {}
    for attribute, file in FILE_OF_SECTION.items():
        flat: dict[str, Any] = {}
        _flatten(getattr(config, attribute).model_dump(mode="json", by_alias=True), attribute, flat)
        state[file] = flat
    return state


def _flatten(value: Any, path: str, into: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{path}.{key}", into)
        return
    last = path.rsplit(".", 1)[-1].lower()
    secret = any(word in last for word in _SECRET_WORDS) and value not in (None, "", [], {})
    into[path] = REDACTED if secret else value


def record_config_changes(config: Config) -> list[str]:
    """Record what changed since the last start; returns the files with changes."""
    path = config.data_dir / "config-state.json"
    current = effective_state(config)
    try:
        previous: dict[str, dict[str, Any]] | None = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        previous = None
    if previous is None:
        record(
            "config_change",
            actor_id="system",
            resource_type="config",
            resource_id=str(config.config_dir),
            details={"first_start": True, "files": list(config.loaded_files)},
        )
        write_private(path, json.dumps(current, sort_keys=True).encode())
        return sorted(config.loaded_files)
    changed_files = []
    for file in sorted(set(current) | set(previous)):
        before, after = previous.get(file, {}), current.get(file, {})
        changes = [
            {"path": key, "was": before.get(key), "now": after.get(key)}
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        ]
        if not changes:
            continue
        changed_files.append(file)
        record(
            "config_change",
            actor_id="system",
            resource_type="config",
            resource_id=file,
            details={
                "first_start": False,
                "changes": changes[:MAX_LISTED],
                "changed": len(changes),
                "present": file in config.loaded_files,
            },
        )
    if changed_files:
        write_private(path, json.dumps(current, sort_keys=True).encode())
    return changed_files
