"""Read one YAML file into plain data, keeping the line of every key for error messages.

PyYAML's composed node tree carries marks; we walk it once to build {key path: line}, reject
duplicate keys (which `safe_load` silently merges) and substitute `${ENV}` references.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wcp360.config.errors import ConfigError

KeyPath = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class YamlDocument:
    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, loc: tuple[Any, ...]) -> tuple[str, int | None]:
        """The dotted key path and line for a pydantic error location.

        Pydantic puts union tags ('local' for `type: local`) and validator names into locations;
        those are dropped, and the line is that of the deepest part of the path found in the file.
        """
        path: KeyPath = ()
        shown: list[str | int] = []
        node = self.data
        for part in loc:
            candidate = (*path, part)
            if candidate in self.lines:
                path = candidate
                shown.append(part)
                node = node[part] if isinstance(node, dict | list) else None
            elif isinstance(node, dict) and node.get("type") == part:
                continue  # discriminated-union tag
            elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
                continue  # pydantic's own validator names
            else:
                shown.append(part)  # a key the file lacks (e.g. a missing required field)
                node = None
        return _dotted(tuple(shown)), self.lines.get(path)


def load_yaml(path: Path, env: Mapping[str, str] | None = None) -> YamlDocument:
    env = os.environ if env is None else env
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, "", None, f"cannot read: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(name, "", line, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    doc = YamlDocument(file=name, data=None)
    if node is None:
        doc.data = {}
        return doc
    doc.data = _convert(node, (), doc, env)
    if not isinstance(doc.data, dict):
        raise ConfigError(name, "", node.start_mark.line + 1, "the top level must be a mapping")
    return doc


def _convert(node: yaml.Node, path: KeyPath, doc: YamlDocument, env: Mapping[str, str]) -> Any:
    # A mapping value's line is that of its key (set by the caller), not of its first child: an
    # unknown key on line 1 is reported on line 1.
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str | int):
                raise ConfigError(doc.file, _dotted(path), key_node.start_mark.line + 1, "keys must be strings")
            if key in result:
                raise ConfigError(doc.file, _dotted((*path, key)), key_node.start_mark.line + 1, "duplicate key")
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, (*path, key), doc, env)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc, env) for i, item in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "${" in value:
        value = _substitute(value, path, node.start_mark.line + 1, doc.file, env)
    return value


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _substitute(value: str, path: KeyPath, line: int, file: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(file, _dotted(path), line, f"environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(replace, value)


def _dotted(path: KeyPath) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
