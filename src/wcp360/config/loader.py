"""Load the config directory into one `Config`: read, substitute ${ENV}, validate, harden."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from wcp360.config.audit import AuditFile
from wcp360.config.database import EMBEDDED_DATABASE, DatabaseFile
from wcp360.config.errors import ConfigError
from wcp360.config.hardening import production_problems
from wcp360.config.ids import IdsFile
from wcp360.config.model import Config
from wcp360.config.privacy import PrivacyFile
from wcp360.config.rate_limit import RateLimitFile
from wcp360.config.rbac import RbacFile
from wcp360.config.sandbox import SandboxFile
from wcp360.config.security import SecurityFile
from wcp360.config.server import ServerFile
from wcp360.config.soc2 import Soc2File
from wcp360.config.static_analysis import StaticAnalysisFile
from wcp360.config.tls import TlsFile
from wcp360.config.yaml_source import load_yaml

DEFAULT_CONFIG_DIR = Path("/etc/wcp360")

# file name -> (file model, default when the file is absent, how to take the section out of it)
_FILES: dict[str, tuple[type[BaseModel], BaseModel, Callable[[Any], Any], str]] = {
    "wcp360.yml": (ServerFile, ServerFile(), lambda f: f, "server"),
    "security.yml": (SecurityFile, SecurityFile(), lambda f: f.auth, "auth"),
    "rbac.yml": (RbacFile, RbacFile(), lambda f: f, "rbac"),
    "tls.yml": (TlsFile, TlsFile(), lambda f: f.tls, "tls"),
    "rate_limit.yml": (RateLimitFile, RateLimitFile(), lambda f: f.rate_limiting, "rate_limiting"),
    "sandbox.yml": (SandboxFile, SandboxFile(), lambda f: f.sandbox, "sandbox"),
    "static_analysis.yml": (
        StaticAnalysisFile,
        StaticAnalysisFile(),
        lambda f: f.static_analysis,
        "static_analysis",
    ),
    "database.yml": (DatabaseFile, EMBEDDED_DATABASE, lambda f: f.database, "database"),
    "audit.yml": (AuditFile, AuditFile(), lambda f: f.audit, "audit"),
    "ids.yml": (IdsFile, IdsFile(), lambda f: f.intrusion_detection, "intrusion_detection"),
    "privacy.yml": (PrivacyFile, PrivacyFile(), lambda f: f.privacy, "privacy"),
    "soc2.yml": (Soc2File, Soc2File(), lambda f: f.soc2, "soc2"),
}

CONFIG_FILES = tuple(_FILES)


def resolve_config_dir(flag: Path | None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if flag is not None:
        return flag
    if env.get("WCP360_CONFIG_DIR"):
        return Path(env["WCP360_CONFIG_DIR"])
    return DEFAULT_CONFIG_DIR


def load_config(
    config_dir: Path | None = None,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    enforce_production: bool = True,
) -> Config:
    """Load and validate every file; raise ConfigError naming file, key path and line.

    `enforce_production=False` lets `wcp360 config validate` list every hardening problem
    instead of stopping at the first.
    """
    env = os.environ if env is None else env
    directory = resolve_config_dir(config_dir, env)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(str(directory), "", None, "the config path is not a directory")
    sections: dict[str, Any] = {}
    loaded: list[str] = []
    for name, (model, default, section_of, attribute) in _FILES.items():
        path = directory / name
        if path.is_file():
            loaded.append(name)
            sections[attribute] = section_of(_validate(path, model, env))
        else:
            sections[attribute] = section_of(default)

    server: ServerFile = sections["server"]
    resolved_data = data_dir or (Path(env["WCP360_DATA_DIR"]) if env.get("WCP360_DATA_DIR") else None)
    resolved_data = (resolved_data or server.paths.data_dir).absolute()
    log_dir = (server.paths.log_dir or resolved_data / "log").absolute()
    config = Config(
        config_dir=directory.absolute(),
        data_dir=resolved_data,
        log_dir=log_dir,
        loaded_files=tuple(loaded),
        **sections,
    )
    if enforce_production and config.production:
        problems = production_problems(config)
        if problems:
            raise ConfigError(problems[0].file, problems[0].key_path, problems[0].line, problems[0].message)
    return config


def _validate(path: Path, model: type[BaseModel], env: Mapping[str, str]) -> BaseModel:
    doc = load_yaml(path, env)
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key_path, line = doc.line_of(tuple(first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        scalar_input = "input" in first and isinstance(first["input"], str | int | float | bool)
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif scalar_input and first["type"] != "missing" and not _looks_secret(key_path):
            message = f"{message} (got {first['input']!r})"
        raise ConfigError(doc.file, key_path, line, message) from None


def _looks_secret(key_path: str) -> bool:
    # Never echo a value that might be a secret back into an error message or a log.
    last = key_path.rsplit(".", 1)[-1].lower()
    return any(word in last for word in ("secret", "password", "key", "token"))
