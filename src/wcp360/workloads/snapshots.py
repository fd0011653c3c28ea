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

from sqlalchemy import delete, func, select

from wcp360 import audit
from wcp360.authz import Policy, Principal, Resource
from wcp360.errors import Conflict, NotFound
from wcp360.keys import ensure_private_dir, write_private
from wcp360.store.database import Database
from wcp360.store.models import Module, Share, Snapshot
from wcp360.store.paging import page
from wcp360.workloads.modules import ModuleService
from wcp360.workloads.sharing import Sharing, grantee_keys, owned_or_shared, shared_with
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
        self.sharing = Sharing(db, policy)

    def _path(self, snapshot_id: uuid.UUID) -> Path:
        return self.directory / f"{snapshot_id}.state"

    def create(self, actor: Principal, module: Module, run_id: uuid.UUID, state: bytes) -> SnapshotView:
        """Store the state a run captured (the executor checked `snapshots:create` before the run)."""
        assert actor.user_id is not None
        snapshot_id = uuid.uuid4()
        ensure_private_dir(self.directory)
        write_private(self._path(snapshot_id), state)
        with self.db.transaction(actor.user_id) as s:
            snapshot = Snapshot(
                id=snapshot_id,
                owner_id=actor.user_id,
                module_id=module.id,
                module_digest=module.digest,
                run_id=run_id,
                size=len(state),
                checksum=hashlib.sha256(state).hexdigest(),
            )
            s.add(snapshot)
            s.flush()
            view = snapshot_view(snapshot)
        audit.record(
            "snapshot_create",
            actor=actor,
            resource_type="snapshot",
            resource_id=view.id,
            details={"module_id": str(module.id), "run_id": str(run_id), "size": len(state)},
        )
        return view

    def check_quota(self, actor: Principal, limit: int, byte_limit: int) -> None:
        """Refuse a new snapshot once the actor keeps `limit` of them or `byte_limit` bytes in them
        (before the run, not after: one snapshot, at most max_memory, may pass the byte limit)."""
        with self.db.transaction(actor.user_id, readonly=True) as s:
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
        self.policy.require(actor, "snapshots:read")
        visible_owner = self.policy.owner_filter(actor, "snapshots")
        keys = grantee_keys(actor)
        query = select(Snapshot)
        if visible_owner is not None:
            query = owned_or_shared(query, Snapshot.owner_id, Snapshot.id, "snapshots", visible_owner, keys)
        if module_id is not None:
            query = query.where(Snapshot.module_id == module_id)
        with self.db.transaction(actor.user_id, all_owners=visible_owner is None, grantees=keys) as s:
            return page(s, query, Snapshot.created_at.desc(), limit, offset, snapshot_view)

    def get(self, actor: Principal, snapshot_id: uuid.UUID) -> SnapshotView:
        return snapshot_view(self.authorised(actor, snapshot_id, "snapshots:read"))

    def delete(self, actor: Principal, snapshot_id: uuid.UUID) -> None:
        snapshot = self.authorised(actor, snapshot_id, ("snapshots:delete", "snapshots:create"), owner_only=True)
        with self.db.transaction(actor.user_id, all_owners=True) as s:
            s.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))
            s.execute(delete(Share).where(Share.resource_type == "snapshots", Share.resource_id == snapshot_id))
        self._path(snapshot_id).unlink(missing_ok=True)
        audit.record(
            "snapshot_delete",
            actor=actor,
            resource_type="snapshot",
            resource_id=str(snapshot_id),
            details={"module_id": str(snapshot.module_id)},
        )

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

    def authorised(
        self,
        actor: Principal,
        snapshot_id: uuid.UUID,
        permission: str | tuple[str, ...],
        owner_only: bool = False,
    ) -> Snapshot:
        with self.db.transaction(actor.user_id, all_owners=True) as s:
            snapshot = s.get(Snapshot, snapshot_id)
            if snapshot is None:
                raise NotFound("no such snapshot")
            shares = frozenset() if owner_only else shared_with(s, "snapshots", snapshot.id)
            s.expunge(snapshot)
        resource = Resource("snapshots", id=str(snapshot.id), owner_id=snapshot.owner_id, shared_with=shares)
        self.policy.require(actor, permission, resource)
        return snapshot

    def owned(self, actor: Principal, snapshot_id: uuid.UUID) -> Resource:
        snapshot = self.authorised(actor, snapshot_id, "snapshots:read")
        return Resource("snapshots", id=str(snapshot.id), owner_id=snapshot.owner_id)
