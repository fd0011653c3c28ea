"""`tls.yml`: listener certificates, protocol floor and optional client certificates (seed 003)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from wcp360.config.base import ConfigPath, Section

# The TLS 1.2 suites WCP360 offers: Mozilla's "intermediate" profile without the DHE ones (no
# dhparam to manage), by their IANA names (the seed's) and OpenSSL's (nginx's). Only forward-secret
# AEAD suites are known here, so a weak name in tls.yml is a config error, not a weak listener.
# TLS 1.3's suites are all strong and need no list.
INTERMEDIATE_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
_SEED_SPELLINGS = {  # seed 003 writes the ChaCha20 suites without their hash
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}


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

    @field_validator("cipher_suites")
    @classmethod
    def _known_suites(cls, suites: list[str]) -> list[str]:
        for suite in suites:
            if _SEED_SPELLINGS.get(suite, suite) not in INTERMEDIATE_SUITES:
                known = ", ".join(INTERMEDIATE_SUITES)
                raise ValueError(f"{suite} is not one of the forward-secret AEAD suites: {known}")
        return suites

    def openssl_ciphers(self) -> str:
        """The TLS 1.2 suites in OpenSSL's spelling, in the configured order (default: all)."""
        chosen = [_SEED_SPELLINGS.get(suite, suite) for suite in self.cipher_suites] or list(INTERMEDIATE_SUITES)
        return ":".join(INTERMEDIATE_SUITES[suite] for suite in chosen)

    @model_validator(mode="after")
    def _files_when_enabled(self) -> TlsConfig:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("tls.enabled needs cert_file and key_file")
        if self.client_auth.enabled and self.client_auth.ca_file is None:
            raise ValueError("client_auth.enabled needs ca_file")
        return self


class TlsFile(Section):
    tls: TlsConfig = TlsConfig()
