"""`tls.yml`: listener certificates, protocol floor and optional client certificates (seed 003)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from wcp360.config.base import ConfigPath, Section


class ClientAuth(Section):
    enabled: bool = False
    ca_file: ConfigPath | None = None
    verify_mode: Literal["none", "request", "require", "require_and_verify"] = "require_and_verify"


class TlsConfig(Section):
    # Off by default only because a fresh machine has no certificate; plain HTTP is then
    # confined to loopback by the listener (see wcp360.server.listen).
    enabled: bool = False
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"
    cipher_suites: list[str] = []
    client_auth: ClientAuth = ClientAuth()

    @model_validator(mode="after")
    def _files_when_enabled(self) -> TlsConfig:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("tls.enabled needs cert_file and key_file")
        if self.client_auth.enabled and self.client_auth.ca_file is None:
            raise ValueError("client_auth.enabled needs ca_file")
        return self


class TlsFile(Section):
    tls: TlsConfig = TlsConfig()
