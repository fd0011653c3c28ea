"""Copies of the trail's head that a rewrite of the log directory cannot reach.

A signed log proves what it holds, not what it lost: cut back to an earlier checkpoint, or stripped
of its newest files, it still verifies by itself. So every checkpoint is also written to a witness
outside the log directory (the database; CloudTrail's digest files in a separate bucket are the
same idea), and `wcp360 audit verify` compares the file with the witness and with the database
copy of the events: a log shorter than either fails with the seqs that are missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, func, insert, select, update

from wcp360.audit.canonical import canonical
from wcp360.store.database import Database
from wcp360.store.models import AuditLog, AuditWitness
from wcp360.store.scope import SYSTEM
from wcp360.store.types import utcnow

_log = structlog.get_logger("wcp360.audit")


@dataclass(frozen=True)
class Anchor:
    """A (seq, chain) pair the log must contain, and where it was read."""

    source: str
    seq: int
    chain: str
    # The checkpoint line, when the anchor is a signed head (its signature is checked too).
    checkpoint: dict[str, Any] | None = None


class DatabaseWitness:
    def __init__(self, db: Database, log: str) -> None:
        self.db = db
        self.log = log

    def record(self, checkpoint: dict[str, Any]) -> None:
        """Keep `checkpoint` if it is newer than the one kept (several processes share one chain)."""
        values = {
            "seq": int(checkpoint["seq"]),
            "chain": str(checkpoint["chain"]),
            "key_id": str(checkpoint["key_id"]),
            "sig": str(checkpoint["sig"]),
            "checkpoint": canonical(checkpoint).decode(),
            "updated_at": utcnow(),
        }
        try:
            with self.db.transaction(SYSTEM) as s:
                moved = s.execute(
                    update(AuditWitness)
                    .where(AuditWitness.log == self.log, AuditWitness.seq < values["seq"])
                    .values(**values)
                )
                if cast("CursorResult[Any]", moved).rowcount == 0 and s.get(AuditWitness, self.log) is None:
                    s.execute(insert(AuditWitness).values(log=self.log, **values))
        except Exception as exc:  # the database is away: the next checkpoint tries again
            _log.warning("audit witness not updated", error=f"{type(exc).__name__}: {str(exc)[:200]}")

    def anchor(self) -> Anchor | None:
        with self.db.transaction(SYSTEM, readonly=True) as s:
            row = s.get(AuditWitness, self.log)
            if row is None:
                return None
            return Anchor("witness (database)", row.seq, row.chain, json.loads(row.checkpoint))


def database_copy_anchor(db: Database) -> Anchor | None:
    """The newest event of the database copy (audit.yml `type: database`), if it has one."""
    with db.transaction(SYSTEM, readonly=True) as s:
        last = s.scalar(select(func.max(AuditLog.seq)))
        if last is None:
            return None
        chain = s.scalar(select(AuditLog.chain_hash).where(AuditLog.seq == last))
    return Anchor("database copy", int(last), str(chain)) if chain else None
