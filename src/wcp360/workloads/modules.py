"""Modules: upload (validated by wasmtime, then analysed), content-addressed storage, listing,
download, deletion and the quarantine decisions. Every call goes through the policy function and
the audit trail; on PostgreSQL the `modules` rows are also behind row-level security."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit, metrics
from wcp360.authz import Policy, Principal
from wcp360.authz.owned import Owned
from wcp360.authz.resources import MODULES
from wcp360.config.sandbox import SandboxConfig
from wcp360.config.static_analysis import StaticAnalysisConfig
from wcp360.errors import Conflict, InvalidInput, NotFound
from wcp360.keys import ensure_private_dir, write_private
from wcp360.store.database import Database
from wcp360.store.models import Module, User
from wcp360.store.scope import SYSTEM, RowScope
from wcp360.store.types import utcnow
from wcp360.workloads.engine.analysis import analyse
from wcp360.workloads.engine.grants import Grant, Owner, capabilities_with, could_apply, grant_for
from wcp360.workloads.engine.limits import limits_for, refuse_beyond_limits
from wcp360.workloads.engine.wasm_reader import Buffer, WasmFormatError, read_module
from wcp360.workloads.incoming import Incoming, TooLarge, mapped, move_into, validate
from wcp360.workloads.views import CompileView, ModuleView

if TYPE_CHECKING:
    import wasmtime

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$")


class QuotaExceeded(Conflict):
    code = "quota-exceeded"
    title = "Quota exceeded"


class NotReady(Conflict):
    """A run asked of a module still compiling (with Retry-After), or whose compile failed."""

    code = "module-not-ready"
    title = "Module not ready"


def compile_view(module: Module) -> CompileView:
    """compiling (seconds so far) -> ready | failed (seconds it took; why it failed)."""
    seconds = module.compile_seconds
    if module.compile_state == "compiling" and module.compile_started_at is not None:
        seconds = (utcnow() - module.compile_started_at).total_seconds()
    return CompileView(
        state=module.compile_state,  # a column of those three values
        seconds=round(seconds, 3) if seconds is not None else None,
        error=module.compile_error,
    )


def module_view(module: Module) -> ModuleView:
    return ModuleView(
        id=str(module.id),
        name=module.name,
        version=module.version,
        owner_id=str(module.owner_id),
        size=module.size,
        digest=module.digest,
        status=module.status,
        risk_score=module.risk_score,
        findings=list(module.findings),
        compile=compile_view(module),
        created_at=module.created_at.isoformat(),
    )


class ModuleService:
    def __init__(
        self, db: Database, policy: Policy, store: Path, sandbox: SandboxConfig, analysis: StaticAnalysisConfig
    ) -> None:
        self.db = db
        self.policy = policy
        self.store = store
        self.sandbox = sandbox
        self.analysis = analysis
        self._engine: wasmtime.Engine | None = None
        self.owned = Owned(db, policy, MODULES)
        self.sharing = self.owned.sharing
        # Called with the digest of every newly stored module (the executor compiles it ahead of time).
        self.on_stored: list[Callable[[str], object]] = []
        # ... and of every digest whose bytes were removed (no module names them any more).
        self.on_discarded: list[Callable[[str], None]] = []
        self.incoming = Incoming(
            store.parent / "incoming", sandbox.max_module_size, sandbox.quotas.max_concurrent_uploads_per_user
        )

    @property
    def engine(self) -> wasmtime.Engine:
        # Made on the first upload: wasmtime is not imported by commands that never see a module.
        if self._engine is None:
            import wasmtime

            self._engine = wasmtime.Engine()
        return self._engine

    # -- upload ---------------------------------------------------------------------------

    def upload(self, actor: Principal, name: str, body: bytes | Path, text_format: bool = False) -> ModuleView:
        """Store a module from `body`: its bytes, or a file the upload was streamed into (mapped,
        never read whole; moved into the store, not copied)."""
        self.policy.require(actor, "modules:create")
        if actor.user_id is None:
            raise InvalidInput("modules belong to user accounts")
        if not NAME.match(name):
            raise InvalidInput("name must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if isinstance(body, Path):
            with mapped(body) as raw:
                return self._upload(actor, name, raw, text_format, body)
        return self._upload(actor, name, body, text_format, None)

    def _upload(
        self, actor: Principal, name: str, body: Buffer, text_format: bool, received: Path | None
    ) -> ModuleView:
        if len(body) > self.sandbox.max_module_size:
            raise TooLarge(
                f"module is {len(body)} bytes; the limit is {self.sandbox.max_module_size} "
                "(sandbox.yml max_module_size)"
            )
        raw = self._binary(body, text_format)
        with self.db.transaction(RowScope.of(actor.user_id), readonly=True) as s:
            self._within_quota(s, actor, len(raw))  # before any work; checked again under a lock below
        import wasmtime

        try:
            validate(self.engine, raw)
        except wasmtime.WasmtimeError as exc:
            raise InvalidInput(f"not a valid WebAssembly module: {str(exc).splitlines()[0]}") from None
        digest = hashlib.sha256(raw).hexdigest()
        grant = grant_for(self.sandbox, name, digest, Owner(actor.username, actor.roles))
        try:
            info = read_module(raw)
        except WasmFormatError as exc:  # wasmtime accepted it: a section this reader cannot follow
            raise InvalidInput(f"module not readable for analysis: {exc}") from None
        # Before the analysis (seconds for a large program): a module that could never run is
        # refused whatever the rules say, never stored, never sent to a worker.
        refuse_beyond_limits(info, limits_for(self.sandbox, grant))
        if received is not None and raw is body:
            move_into(received, self.store / digest[:2] / digest)
        else:
            self._store(digest, bytes(raw))
        # The compile starts now, in a confined worker, while the analysis runs here: for 69 MB of
        # yosys they were 36 s and 4 s one after the other. Every upload was compiled ahead of
        # time already, quarantined or not (a quarantined module never runs, compiled or not);
        # the hooks run again once the row exists (below), which also catches a compile that
        # finished before there was a row to mark ready.
        self._stored(digest)
        report = analyse(raw, self.analysis, capabilities_with(self.sandbox, grant), info)
        precompile = self.sandbox.precompile

        def new_module(s: OrmSession) -> Module:
            # The account's row lock (PostgreSQL; SQLite writes are serial) makes check-then-insert
            # atomic: two uploads cannot both take the last place.
            s.execute(select(User.id).where(User.id == actor.user_id).with_for_update())
            self._within_quota(s, actor, len(raw))
            latest = s.scalar(
                select(func.max(Module.version)).where(Module.owner_id == actor.user_id, Module.name == name)
            )
            return Module(
                owner_id=actor.user_id,
                name=name,
                version=(latest or 0) + 1,
                size=len(raw),
                digest=digest,
                status=report.status,
                risk_score=report.risk_score,
                findings=[f.as_dict() for f in report.findings],
                # Compiled ahead of time in a worker (executor.precompile), else on its first run.
                compile_state="compiling" if precompile else "ready",
                compile_started_at=utcnow() if precompile else None,
            )

        def recorded(module: Module) -> dict[str, object]:
            return {
                "name": name,
                "version": module.version,
                "size": len(raw),
                "digest": digest,
                "status": report.status,
                "risk_score": report.risk_score,
                "suspicious": report.suspicious,
                # The module_capabilities entry that applies (capabilities, own limits), if any.
                "grant": grant.key if grant else None,
            }

        try:
            # The event is recorded after the row exists: the IDS may act on it (its quarantine hook
            # needs the row).
            view = self.owned.create(actor, new_module, module_view, recorded, event="module_upload")
        except QuotaExceeded:
            self._discard_if_unused(digest)
            raise
        if report.suspicious:
            metrics.SUSPICIOUS_MODULES.inc()
        self._stored(digest)
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
            current = s.get(Module, uuid.UUID(view.id))
            return module_view(current) if current is not None else view

    def _binary(self, body: Buffer, text_format: bool) -> Buffer:
        if body[:4] == b"\0asm":
            return body
        if not text_format:
            raise InvalidInput("not a WebAssembly module (bad magic); send text format as text/plain")
        import wasmtime

        try:
            return bytes(wasmtime.wat2wasm(bytes(body).decode("utf-8")))
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
            raise InvalidInput(f"not valid WebAssembly text: {str(exc).splitlines()[0]}") from None

    def _within_quota(self, s: OrmSession, actor: Principal, size: int) -> None:
        """Modules count with every status (quarantined ones fill the disk too)."""
        quotas = self.sandbox.quotas
        kept, total = s.execute(
            select(func.count(), func.coalesce(func.sum(Module.size), 0)).where(Module.owner_id == actor.user_id)
        ).one()
        if kept >= quotas.max_modules_per_user:
            raise QuotaExceeded(
                f"this account keeps {kept} modules; the limit is {quotas.max_modules_per_user} "
                "(sandbox.yml quotas.max_modules_per_user): delete some first"
            )
        if total + size > quotas.max_module_bytes_per_user:
            raise QuotaExceeded(
                f"this account's modules hold {total} bytes and this one is {size}; the limit is "
                f"{quotas.max_module_bytes_per_user} (sandbox.yml quotas.max_module_bytes_per_user)"
            )

    def _stored(self, digest: str) -> None:
        for callback in self.on_stored:
            callback(digest)

    def _discard_if_unused(self, digest: str) -> None:
        """Remove stored bytes no module row names any more (content-addressed: rows share files)."""
        with self.db.transaction(SYSTEM, readonly=True) as s:
            if s.scalar(select(Module.id).where(Module.digest == digest).limit(1)) is not None:
                return
        (self.store / digest[:2] / digest).unlink(missing_ok=True)
        for callback in self.on_discarded:
            callback(digest)

    def _store(self, digest: str, raw: bytes) -> None:
        directory = ensure_private_dir(self.store / digest[:2])
        path = directory / digest
        if path.exists():
            return  # content-addressed: the same bytes are stored once
        write_private(path, raw)

    # -- reading --------------------------------------------------------------------------

    def list_modules(
        self,
        actor: Principal,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        owner_id: uuid.UUID | None = None,
    ) -> tuple[list[ModuleView], int]:
        """The actor's modules and those shared with them (every owner's for administrators)."""
        wanted = ((Module.owner_id, owner_id), (Module.status, status))
        filters = [column == value for column, value in wanted if value is not None]
        return self.owned.page(
            actor, module_view, *filters, order_by=Module.created_at.desc(), limit=limit, offset=offset
        )

    def get(self, actor: Principal, module_id: uuid.UUID) -> ModuleView:
        return module_view(self.authorised(actor, module_id, "modules:read"))

    def download(self, actor: Principal, module_id: uuid.UUID) -> tuple[str, bytes]:
        module = self.authorised(actor, module_id, "modules:read")
        return f"{module.name}-v{module.version}.wasm", (self.store / module.digest[:2] / module.digest).read_bytes()

    def delete(self, actor: Principal, module_id: uuid.UUID) -> None:
        module = self.owned.delete(
            actor, module_id, "modules:delete", lambda m: {"name": m.name, "version": m.version, "status": m.status}
        )
        self._discard_if_unused(module.digest)

    # -- compile state ------------------------------------------------------------------

    def compile_finished(self, digest: str, error: str | None, seconds: float) -> None:
        """Every module with these bytes is ready (a success also mends earlier failures, e.g.
        after max_compile_time was raised), or those still compiling failed, with the reason."""
        with self.db.transaction(SYSTEM) as s:
            query = update(Module).where(Module.digest == digest)
            if error is None:
                s.execute(query.values(compile_state="ready", compile_seconds=seconds, compile_error=None))
            else:
                s.execute(
                    query.where(Module.compile_state == "compiling").values(
                        compile_state="failed", compile_seconds=seconds, compile_error=error[:1000]
                    )
                )

    def still_compiling(self) -> list[str]:
        """Digests whose compile a stopped server left unfinished (resumed when the next starts)."""
        with self.db.transaction(SYSTEM, readonly=True) as s:
            return list(s.scalars(select(Module.digest).where(Module.compile_state == "compiling").distinct()))

    # -- quarantine -----------------------------------------------------------------------

    def release(self, actor: Principal, module_id: uuid.UUID) -> ModuleView:
        """An administrator's decision that a quarantined module may run."""
        self.policy.require(actor, "modules:release")
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
            module = s.get(Module, module_id)
            if module is None:
                raise NotFound("no such module")
            if module.status != "quarantined":
                raise InvalidInput(f"module is {module.status}, not quarantined")
            module.status = "active"
            view = module_view(module)
        audit.record(
            "module_release",
            actor=actor,
            resource_type="module",
            resource_id=str(module_id),
            details={"name": view.name, "risk_score": view.risk_score},
        )
        return view

    def quarantine(self, module_id: str, reason: str) -> None:
        """Quarantine from the IDS (`quarantine` action); no actor: the rule already decided."""
        try:
            key = uuid.UUID(module_id)
        except ValueError:
            return
        with self.db.transaction(SYSTEM) as s:
            module = s.get(Module, key)
            if module is None or module.status == "quarantined":
                return
            module.status = "quarantined"
        metrics.SUSPICIOUS_MODULES.inc()
        audit.record(
            "module_quarantine",
            actor_id="ids",
            resource_type="module",
            resource_id=module_id,
            details={"reason": reason},
        )

    def authorised(self, actor: Principal, module_id: uuid.UUID, permission: str) -> Module:
        return self.owned.authorised(actor, module_id, permission)

    def grant(self, module: Module) -> Grant | None:
        """The `module_capabilities` entry that applies to this module (its owner is read only when
        an entry names the module at all)."""
        if not could_apply(self.sandbox, module.name):
            return None
        with self.db.transaction(SYSTEM, readonly=True) as s:
            user = s.get(User, module.owner_id)
            owner = Owner(user.username, tuple(user.role_names)) if user is not None else None
        return grant_for(self.sandbox, module.name, module.digest, owner)
