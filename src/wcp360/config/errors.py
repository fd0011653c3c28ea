"""The one error type of config loading: it always names the file, the key path and the line."""

from __future__ import annotations


class ConfigError(Exception):
    def __init__(self, file: str, key_path: str, line: int | None, message: str) -> None:
        self.file = file
        self.key_path = key_path
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        key = f" {key_path}:" if key_path else ""
        super().__init__(f"{where}:{key} {message}")
