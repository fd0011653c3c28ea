"""The one config model: every file of the config directory, typed, with secure defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from wcp360.config.audit import AuditConfig
from wcp360.config.database import DatabaseConfig
from wcp360.config.ids import IdsConfig
from wcp360.config.privacy import PrivacyConfig
from wcp360.config.rate_limit import RateLimitConfig
from wcp360.config.rbac import RbacFile
from wcp360.config.sandbox import SandboxConfig
from wcp360.config.security import AuthConfig
from wcp360.config.server import ServerFile
from wcp360.config.soc2 import Soc2Config
from wcp360.config.static_analysis import StaticAnalysisConfig
from wcp360.config.tls import TlsConfig


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    config_dir: Path
    data_dir: Path
    log_dir: Path
    # Names of the files that were present; every other section is its documented default.
    loaded_files: tuple[str, ...]

    server: ServerFile
    auth: AuthConfig
    rbac: RbacFile
    tls: TlsConfig
    rate_limiting: RateLimitConfig
    sandbox: SandboxConfig
    static_analysis: StaticAnalysisConfig
    database: DatabaseConfig
    audit: AuditConfig
    intrusion_detection: IdsConfig
    privacy: PrivacyConfig
    soc2: Soc2Config

    @property
    def production(self) -> bool:
        return self.server.mode == "production"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"
