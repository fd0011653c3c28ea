"""Who a transaction acts for: the settings PostgreSQL's row-level security reads.

Every transaction names its scope, so none can be opened without deciding whose rows it may
reach. Owned resources get theirs from `authz` (`Policy.scope`, after the policy function allowed);
the server's own work (the scheduler, the IDS, compile results, the audit copy) acts as SYSTEM.
On SQLite, which has no RLS, the scope is only documentation; the policy function is the fence.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class RowScope:
    # The acting account (`app.user_id`): RLS shows it its own rows.
    actor_id: uuid.UUID | None = None
    # Every owner's rows (`app.all_owners`): set only for the server's own work, or after the
    # policy function granted `system:any_owner` or decided on the very row about to be touched.
    all_owners: bool = False
    # Keys a share may name to reach the actor (`app.grantees`): its user id and `role:<name>`.
    grantees: tuple[str, ...] = ()

    @classmethod
    def of(cls, actor_id: uuid.UUID | None) -> RowScope:
        """The actor's own rows, nothing else."""
        return cls(actor_id)

    @classmethod
    def decided(cls, actor_id: uuid.UUID | None) -> RowScope:
        """The policy function has decided on the row this transaction touches (or reads the row
        to decide on, so a denial is audited rather than answered as "not found")."""
        return cls(actor_id, all_owners=True)


# Nobody signed in (sign-in looking an account up by name): RLS shows no owner's rows.
NOBODY = RowScope()
# The server's own work, on behalf of no user.
SYSTEM = RowScope(all_owners=True)
