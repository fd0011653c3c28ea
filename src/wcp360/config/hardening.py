"""What production mode refuses: placeholder secrets, short JWT secrets, readable config files."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from wcp360.config.model import Config

# Secrets copied from documentation examples, including the seeds' own.
PLACEHOLDER_SECRETS = frozenset(
    {
        "your-256-bit-secret-key-here",
        "secure_random_password",
        "your-google-client-secret",
        "admin-password",
        "changeme",
        "change-me",
        "secret",
        "password",
        "example",
    }
)
MIN_JWT_SECRET_BYTES = 32

# Which file each top-level Config attribute came from, for error messages.
_FILE_OF = {
    "server": "wcp360.yml",
    "auth": "security.yml",
    "rbac": "rbac.yml",
    "tls": "tls.yml",
    "rate_limiting": "rate_limit.yml",
    "sandbox": "sandbox.yml",
    "static_analysis": "static_analysis.yml",
    "database": "database.yml",
    "audit": "audit.yml",
    "intrusion_detection": "ids.yml",
    "privacy": "privacy.yml",
    "soc2": "soc2.yml",
}
_ROOT_KEY = {
    "auth": "auth",
    "tls": "tls",
    "rate_limiting": "rate_limiting",
    "sandbox": "sandbox",
    "static_analysis": "static_analysis",
    "database": "database",
    "audit": "audit",
    "intrusion_detection": "intrusion_detection",
    "privacy": "privacy",
    "soc2": "soc2",
}


@dataclass(frozen=True)
class Problem:
    file: str
    key_path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" {self.key_path}:" if self.key_path else ""
        return f"{where}:{key} {self.message}"


def is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return lowered in PLACEHOLDER_SECRETS or lowered.startswith("your-") or lowered.endswith("-here")


def production_problems(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    for attribute, file in _FILE_OF.items():
        root = _ROOT_KEY.get(attribute)
        for path, value in _secrets(getattr(config, attribute), (root,) if root else ()):
            if is_placeholder(value.get_secret_value()):
                problems.append(Problem(file, path, None, "placeholder secret; set a real one"))
    jwt = config.auth.jwt
    secret = jwt.secret.get_secret_value() if jwt.secret is not None else None
    if jwt.algorithm.startswith("HS") and secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        message = f"JWT secret shorter than {MIN_JWT_SECRET_BYTES} bytes"
        problems.append(Problem("security.yml", "auth.jwt.secret", None, message))
    problems.extend(_permission_problems(config))
    return problems


def _permission_problems(config: Config) -> list[Problem]:
    # Seed 000: /etc/wcp360 is 0700 because it holds API keys and master secrets.
    problems: list[Problem] = []
    directory = config.config_dir
    if directory.is_dir() and directory.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(directory.stat().st_mode)
        problems.append(Problem(str(directory), "", None, f"config directory is mode {mode:04o}; must be 0700"))
    for name in config.loaded_files:
        path = directory / name
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(Problem(name, "", None, f"readable by group/others (mode {mode:04o}); use 0600"))
    return problems


def _secrets(value: Any, path: tuple[str | int, ...]) -> list[tuple[str, SecretStr]]:
    found: list[tuple[str, SecretStr]] = []
    if isinstance(value, SecretStr):
        found.append((".".join(str(p) for p in path), value))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found.extend(_secrets(getattr(value, name), (*path, name)))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(_secrets(item, (*path, key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(_secrets(item, (*path, index)))
    return found
