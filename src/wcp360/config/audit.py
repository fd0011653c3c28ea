"""`audit.yml`: audit destinations, audited events and sensitive-field filtering (seed 003)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from wcp360.config.base import ByteSize, ConfigPath, Duration, Section


class Rotation(Section):
    max_size: ByteSize = 100 * 1000**2
    max_files: int = Field(default=10, ge=1)
    compress: bool = True


class FileDestination(Section):
    type: Literal["file"]
    # Relative paths are inside the log dir.
    path: ConfigPath = Path("audit.log")
    rotation: Rotation = Rotation()
    fsync: Literal["always", "batch"] = "batch"
    # `chattr +a` on the audit files where the filesystem and privileges allow.
    append_only: bool = True


class SyslogDestination(Section):
    type: Literal["syslog"]
    facility: str = "local0"
    tag: str = "wcp360"
    # "unix:/dev/log" (default) or "udp://host:port" / "tcp://host:port".
    address: str = "unix:/dev/log"


class DatabaseDestination(Section):
    type: Literal["database"]
    table: Literal["audit_logs"] = "audit_logs"


Destination = Annotated[FileDestination | SyslogDestination | DatabaseDestination, Field(discriminator="type")]


class Checkpoints(Section):
    every_records: int = Field(default=1000, gt=0)
    every_seconds: Duration = timedelta(minutes=5)


class AuditConfig(Section):
    enabled: bool = True
    # The file is the source of truth; the database copy is local and on by default. Syslog needs
    # a daemon (or a remote host) the operator names, so it is opt-in.
    destinations: list[Destination] = [FileDestination(type="file"), DatabaseDestination(type="database")]
    events: dict[str, list[str]] = {
        "authentication": ["login_success", "login_failure", "logout", "token_refresh"],
        "authorization": ["permission_denied", "role_change"],
        "modules": ["module_upload", "module_delete", "module_execute"],
        "system": ["config_change", "user_create", "user_delete", "service_start", "service_stop"],
    }
    filter_sensitive_data: bool = True
    sensitive_fields: list[str] = ["password", "token", "secret", "key"]
    checkpoints: Checkpoints = Checkpoints()


class AuditFile(Section):
    audit: AuditConfig = AuditConfig()
