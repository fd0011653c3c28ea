"""Snapshots: the state of a module instance after a run, kept as an owned, checksummed object.

The state (exported memories and mutable globals, instance_state.py) is a file under the data
directory named by the snapshot id; the row holds its SHA-256 and the digest of the module it was
taken of. Restoring verifies both before any worker sees the bytes: a snapshot whose file changed,
or that is offered to another module, is refused.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sqlalchemy import func, select

from wcp360 import audit
from wcp360.authz import Policy, Principal
from wcp360.authz.owned import Owned
from wcp360.authz.resources import SNAPSHOTS
from wcp360.errors import Conflict
from wcp360.keys import ensure_private_dir, write_private
from wcp360.store.database import Database
from wcp360.store.models import Module, Snapshot
from wcp360.store.scope import RowScope
from wcp360.workloads.modules import ModuleService
from wcp360.workloads.views import SnapshotView


class SnapshotMismatch(Conflict):
    code = "snapshot-mismatch"
    title = "Snapshot does not match"


def snapshot_view(snapshot: Snapshot) -> SnapshotView:
    return SnapshotView(
        id=str(snapshot.id),
        owner_id=str(snapshot.owner_id),
        module_id=str(snapshot.module_id),
        module_digest=snapshot.module_digest,
        run_id=str(snapshot.run_id) if snapshot.run_id else None,
        size=snapshot.size,
        checksum=snapshot.checksum,
        created_at=snapshot.created_at.isoformat(),
    )


class SnapshotService:
    def __init__(self, db: Database, policy: Policy, modules: ModuleService, directory: Path) -> None:
        self.db = db
        self.policy = policy
        self.modules = modules
        self.directory = directory
        self.owned = Owned(db, policy, SNAPSHOTS)

    def _path(self, snapshot_id: uuid.UUID) -> Path:
        return self.directory / f"{snapshot_id}.state"

    def create(self, actor: Principal, module: Module, run_id: uuid.UUID, state: bytes) -> SnapshotView:
        """Store the state a run captured (the executor checked `snapshots:create` before the run)."""
        assert actor.user_id is not None
        snapshot_id = uuid.uuid4()
        ensure_private_dir(self.directory)
        write_private(self._path(snapshot_id), state)
        snapshot = Snapshot(
            id=snapshot_id,
            owner_id=actor.user_id,
            module_id=module.id,
            module_digest=module.digest,
            run_id=run_id,
            size=len(state),
            checksum=hashlib.sha256(state).hexdigest(),
        )
        details = {"module_id": str(module.id), "run_id": str(run_id), "size": len(state)}
        return self.owned.create(actor, lambda _s: snapshot, snapshot_view, lambda _row: details)

    def check_quota(self, actor: Principal, limit: int, byte_limit: int) -> None:
        """Refuse a new snapshot once the actor keeps `limit` of them or `byte_limit` bytes in them
        (before the run, not after: one snapshot, at most max_memory, may pass the byte limit)."""
        with self.db.transaction(RowScope.of(actor.user_id), readonly=True) as s:
            kept, size = s.execute(
                select(func.count(), func.coalesce(func.sum(Snapshot.size), 0)).where(
                    Snapshot.owner_id == actor.user_id
                )
            ).one()
        if (kept or 0) >= limit:
            raise Conflict(
                f"{kept} snapshots kept; the limit is {limit} (sandbox.yml max_snapshots_per_user): delete some first"
            )
        if (size or 0) >= byte_limit:
            raise Conflict(
                f"snapshots hold {size} bytes; the limit is {byte_limit} "
                "(sandbox.yml quotas.max_snapshot_bytes_per_user): delete some first"
            )

    def list_snapshots(
        self, actor: Principal, limit: int = 50, offset: int = 0, module_id: uuid.UUID | None = None
    ) -> tuple[list[SnapshotView], int]:
        filters = [Snapshot.module_id == module_id] if module_id is not None else []
        return self.owned.page(
            actor, snapshot_view, *filters, order_by=Snapshot.created_at.desc(), limit=limit, offset=offset
        )

    def get(self, actor: Principal, snapshot_id: uuid.UUID) -> SnapshotView:
        return snapshot_view(self.authorised(actor, snapshot_id, "snapshots:read"))

    def delete(self, actor: Principal, snapshot_id: uuid.UUID) -> None:
        self.owned.delete(
            actor, snapshot_id, ("snapshots:delete", "snapshots:create"), lambda row: {"module_id": str(row.module_id)}
        )
        self._path(snapshot_id).unlink(missing_ok=True)

    def state_for_restore(
        self, actor: Principal, snapshot_id: uuid.UUID, module_id: uuid.UUID | None = None
    ) -> tuple[Module, bytes]:
        """The module to run and the verified state to start it from."""
        snapshot = self.authorised(actor, snapshot_id, "snapshots:restore")
        module = self.modules.authorised(actor, module_id or snapshot.module_id, "modules:execute")
        if module.digest != snapshot.module_digest:
            raise SnapshotMismatch(
                f"snapshot {snapshot_id} was taken of module digest {snapshot.module_digest[:16]}…, "
                f"not of module {module.id} ({module.digest[:16]}…)"
            )
        try:
            state = self._path(snapshot_id).read_bytes()
        except FileNotFoundError:
            raise SnapshotMismatch(f"snapshot {snapshot_id}: its state file is missing") from None
        if hashlib.sha256(state).hexdigest() != snapshot.checksum:
            audit.record(
                "snapshot_restore",
                actor=actor,
                outcome="refused",
                resource_type="snapshot",
                resource_id=str(snapshot_id),
                details={"reason": "checksum mismatch"},
            )
            raise SnapshotMismatch(f"snapshot {snapshot_id}: checksum mismatch, the stored state was altered")
        return module, state

    def authorised(self, actor: Principal, snapshot_id: uuid.UUID, permission: str) -> Snapshot:
        return self.owned.authorised(actor, snapshot_id, permission)
