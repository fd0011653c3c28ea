"""The control plane's tables.

`modules`, `tasks` and `audit_logs` are created here although later issues fill them, because
seed 003 puts row-level security on exactly these three and the policies belong in the first
migration.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from wcp360.store.types import UtcDateTime, utcnow


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    password_hash: Mapped[str] = mapped_column(String(256))
    # Who created the account: resellers own the tenants they create (rbac `users` ownership).
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # TOTP secrets are encrypted with the host data key (identity.crypto), never stored in clear.
    totp_secret: Mapped[str | None] = mapped_column(String(512))
    totp_pending_secret: Mapped[str | None] = mapped_column(String(512))
    totp_enabled_at: Mapped[datetime | None]
    # Last accepted TOTP time step, so a code cannot be replayed within its window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    # The tenant this account belongs to (a `tenant`-role account made for it): suspending the
    # tenant suspends the account (status "suspended"), resuming restores it.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"))

    roles: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="UserRole.role"
    )
    identities: Mapped[list[ExternalIdentity]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ExternalIdentity.provider"
    )

    @property
    def role_names(self) -> list[str]:
        return [r.role for r in self.roles]

    @property
    def totp_enabled(self) -> bool:
        return self.totp_enabled_at is not None


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(64), primary_key=True)


class ExternalIdentity(Base):
    """An identity at a directory or OpenID provider linked to one account, by the provider's
    stable subject (`issuer` + `subject`: OIDC `iss` + `sub`, LDAP the provider and entryUUID),
    never by an email or a name."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The provider's name in security.yml (`google`, `corp`, `ldap`).
    provider: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    # The name the directory knows the person by (LDAP: what they type), for the recheck sweep.
    external_name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    last_checked_at: Mapped[datetime | None]


class LoginFlow(Base):
    """An OpenID Connect sign-in between the redirect to the provider and its callback: used once."""

    __tablename__ = "login_flows"

    # sha256 of the `state` sent to the provider (a replayed or forged state finds no row).
    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    # The PKCE verifier, encrypted with the host data key.
    code_verifier: Mapped[str] = mapped_column(String(512))
    # sha256 of the secret in the browser's cookie: the callback must come from the browser that
    # started the flow (no login CSRF, no flow handed to a victim).
    binding_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Session(Base):
    """One login: the refresh-token family and the `sid` claim of its access tokens."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # True when this session was opened with a second factor.
    mfa: Mapped[bool] = mapped_column(default=False)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Set when this token was exchanged; presenting it again is replay.
    used_at: Mapped[datetime | None]


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]


class ApiToken(Base):
    __tablename__ = "api_tokens"

    # The public part of the token (`wcp_<id>_<secret>`), used to find the row without a scan.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    allowed_cidrs: Mapped[list[Any]] = mapped_column(default=list)
    secret_hash: Mapped[str] = mapped_column(String(64))
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_valid_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Module(Base):
    __tablename__ = "modules"
    __table_args__ = (UniqueConstraint("owner_id", "name", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[list[Any]] = mapped_column(default=list)
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Compiling is not running (issue #10): compiling -> ready | failed, shown to the owner.
    compile_state: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    compile_started_at: Mapped[datetime | None] = mapped_column(default=None)
    compile_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    compile_error: Mapped[str | None] = mapped_column(Text, default=None)


class Task(Base):
    """A scheduled execution of a module: on a cron expression, every interval, or once."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_due", "status", "next_run_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    module_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    # `cron`: a five-field expression; `interval`: seconds; `once`: an ISO 8601 instant.
    kind: Mapped[str] = mapped_column(String(16), default="cron")
    schedule: Mapped[str] = mapped_column(String(128))
    # args, stdin, env of each run
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # What to do with occurrences missed while no scheduler ran: `skip` them, or `run_once`.
    missed: Mapped[str] = mapped_column(String(16), default="skip")
    # active | paused | finished (a `once` task after its run)
    status: Mapped[str] = mapped_column(String(16), default="active")
    next_run_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """Database destination of the audit trail; append-only (trigger on both engines, grants on PG)."""

    __tablename__ = "audit_logs"
    __table_args__ = (Index("ix_audit_logs_action_ts", "action", "ts"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[datetime]
    actor_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    chain_hash: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(Text)


class AuditWitness(Base):
    """The latest signed checkpoint of an audit log, kept where whoever can rewrite the log
    directory cannot (the database): a log cut back to an earlier checkpoint is shorter than this."""

    __tablename__ = "audit_witness"

    log: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger())
    chain: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    sig: Mapped[str] = mapped_column(Text)
    # The checkpoint line itself (canonical JSON), so verify can check its signature.
    checkpoint: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ban(Base):
    """An address or network refused on every route (and dropped by the firewall when privileged)."""

    __tablename__ = "bans"
    __table_args__ = (Index("ix_bans_active", "network", "lifted_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    network: Mapped[str] = mapped_column(String(43))
    reason: Mapped[str] = mapped_column(String(256))
    rule: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(128))


class Run(Base):
    """One execution of a module; outputs are stored capped (sandbox max_output)."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("task_id", "scheduled_for", name="uq_runs_occurrence"),
        Index("ix_runs_user_status", "user_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    module_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # None until a queued run has finished.
    outcome: Mapped[str | None] = mapped_column(String(32))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    # UTF-8 bytes of stdout + stderr as stored (sandbox.yml quotas.max_run_output_bytes_per_user).
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str | None] = mapped_column(String(512))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    fuel_used: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_peak_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # queued -> running -> finished; synchronous runs are stored finished.
    status: Mapped[str] = mapped_column(String(16), default="finished")
    finished_at: Mapped[datetime | None]
    # Scheduled runs: the task and the occurrence. Unique together, so an occurrence claimed by two
    # schedulers at once cannot be stored (and so run) twice.
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))
    scheduled_for: Mapped[datetime | None]
    # The snapshot this run started from, and the one it captured.
    restored_from: Mapped[uuid.UUID | None]
    snapshot_id: Mapped[uuid.UUID | None]
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The process that will run a queued run, and when it last said it is alive: a run whose
    # process died is found by its stale heartbeat and marked `lost` (workloads/execution.py).
    runner: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None]


class Share(Base):
    """An owner's grant of one action on one resource (a module or a snapshot) to a user or a role."""

    __tablename__ = "shares"
    __table_args__ = (UniqueConstraint("resource_type", "resource_id", "grantee", "action"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[uuid.UUID] = mapped_column(index=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # A user id, or `role:<name>`, or `nobody:<uuid>` for a name no account had (matches no one).
    grantee: Mapped[str] = mapped_column(String(80), index=True)
    action: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The username the sharer gave (None for role shares and older rows).
    grantee_label: Mapped[str | None] = mapped_column(String(128))


class Snapshot(Base):
    """The exported memories and mutable globals of a module instance after a run (file + checksum)."""

    __tablename__ = "snapshots"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    module_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"), index=True)
    module_digest: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[uuid.UUID | None]
    size: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tenant(Base):
    """A hosting customer: a Linux user and group with a home beneath tenants.home_root, made by
    the system agent; owned by a `tenant`-role account or a reseller (rbac `tenants`)."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # active | suspended
    status: Mapped[str] = mapped_column(String(16), default="active")
    uid: Mapped[int] = mapped_column(Integer)
    gid: Mapped[int] = mapped_column(Integer)
    home: Mapped[str] = mapped_column(String(4096))
    # tenants.default_limits with the tenant's own values (TenantLimits fields).
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What the agent could not do when it made the tenant (development mode without root).
    degraded: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    suspended_at: Mapped[datetime | None]
