"""What loads but deserves the administrator's attention (printed by `config validate`, logged by
`serve` at start): settings that work in a narrower way than their shape suggests."""

from __future__ import annotations

import os

from wcp360.config.errors import ConfigError
from wcp360.config.hardening import Problem
from wcp360.config.model import Config
from wcp360.config.yaml_source import load_yaml


def config_warnings(config: Config) -> list[Problem]:
    warnings: list[Problem] = []
    for key in config.sandbox.module_capabilities:
        if "/" in key:
            continue
        warnings.append(
            Problem(
                "sandbox.yml",
                f"sandbox.module_capabilities.{key}",
                _line(config, ("sandbox", "module_capabilities", key)),
                f"a grant keyed by module name alone applies only to modules named {key!r} owned by an "
                f"admin; to grant a user's module write 'USERNAME/{key}' (optionally with digest:)",
            )
        )
    return warnings


def _line(config: Config, loc: tuple[str, ...]) -> int | None:
    path = config.config_dir / "sandbox.yml"
    try:
        return load_yaml(path, os.environ).line_of(loc)[1] if path.is_file() else None
    except (OSError, ConfigError):
        return None
