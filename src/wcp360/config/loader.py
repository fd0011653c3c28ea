"""Load the config directory into one `Config`: read, substitute ${ENV}, validate, harden."""

from __future__ import annotations

import difflib
import os
import typing
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
# Config attribute -> the file it comes from (for config_change events).
FILE_OF_SECTION = {attribute: name for name, (_, _, _, attribute) in _FILES.items()}


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
    problems: list[ConfigError] | None = None,
) -> Config:
    """Load and validate every file; raise ConfigError naming file, key path and line.

    With `problems`, nothing is raised for a file that does not validate: every error of every
    file is appended there (a file in error counts as absent), so `wcp360 config validate` lists
    them all in one run. `enforce_production=False` likewise leaves the hardening problems to it.
    """
    env = os.environ if env is None else env
    directory = resolve_config_dir(config_dir, env)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(str(directory), "", None, "the config path is not a directory")
    sections: dict[str, Any] = {}
    loaded: list[str] = []
    for name, (model, default, section_of, attribute) in _FILES.items():
        path = directory / name
        sections[attribute] = section_of(default)
        if path.is_file():
            try:
                sections[attribute] = section_of(_validate(path, model, env))
                loaded.append(name)
            except ConfigErrors as errors:
                if problems is None:
                    raise errors.first() from None
                problems.extend(errors.errors)
            except ConfigError as error:
                if problems is None:
                    raise
                problems.append(error)

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
        hardening = production_problems(config)
        if hardening:
            first = hardening[0]
            raise ConfigError(first.file, first.key_path, first.line, first.message)
    return config


class ConfigErrors(Exception):
    """Every validation error of one file (the loader raises the first, or collects them all)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__(str(errors[0]))
        self.errors = errors

    def first(self) -> ConfigError:
        return self.errors[0]


def _validate(path: Path, model: type[BaseModel], env: Mapping[str, str]) -> BaseModel:
    doc = load_yaml(path, env)
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            key_path, line = doc.line_of(tuple(error["loc"]))
            message = error["msg"].removeprefix("Value error, ")
            scalar_input = "input" in error and isinstance(error["input"], str | int | float | bool)
            if error["type"] == "extra_forbidden":
                message = "unknown key" + _suggestion(model, tuple(error["loc"]))
            elif scalar_input and error["type"] != "missing" and not _looks_secret(key_path):
                message = f"{message} (got {error['input']!r})"
            errors.append(ConfigError(doc.file, key_path, line, message))
        raise ConfigErrors(sorted(errors, key=lambda e: e.line or 0)) from None


def _suggestion(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """" (did you mean 'x'?)" for a misspelt key, from the keys its model accepts at that place."""
    known = _keys_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys a model accepts after walking `loc` (through nested models, lists, dicts, unions)."""
    current: Any = model
    parts = list(loc)
    while True:
        current = _model_in(current)
        if current is None:
            return []
        if not parts:
            return [info.alias or name for name, info in current.model_fields.items()]
        part = parts.pop(0)
        field = next(
            (info for name, info in current.model_fields.items() if part in (name, info.alias)), None
        )
        if field is None:
            return []
        current = field.annotation
        # A list index or a dict key comes next for containers: skip it.
        while typing.get_origin(current) in (list, dict) and parts:
            parts.pop(0)
            current = typing.get_args(current)[-1]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _looks_secret(key_path: str) -> bool:
    # Never echo a value that might be a secret back into an error message or a log.
    last = key_path.rsplit(".", 1)[-1].lower()
    return any(word in last for word in ("secret", "password", "key", "token"))
