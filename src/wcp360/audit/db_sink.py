"""The database copy of the trail: table `audit_logs` (append-only; RLS on PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from wcp360.audit.canonical import canonical
from wcp360.store.database import Database
from wcp360.store.models import AuditLog
from wcp360.store.scope import SYSTEM


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None  # "system", "host:root": kept in `body`


class DatabaseSink:
    def __init__(self, db: Database) -> None:
        self.db = db

    def deliver(self, records: list[dict[str, Any]]) -> None:
        rows = [
            {
                "seq": record["seq"],
                "ts": datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00")),
                "actor_id": _uuid_or_none(record.get("actor_id")),
                "action": record["action"],
                "resource_type": record.get("resource_type"),
                "resource_id": record.get("resource_id"),
                "ip_address": record.get("ip_address"),
                "user_agent": record.get("user_agent"),
                "outcome": record["outcome"],
                "request_id": record.get("request_id"),
                "details": record.get("details") or {},
                "chain_hash": record["chain"],
                "body": canonical(record).decode(),
            }
            for record in records
        ]
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        # Idempotent: a batch repeated after a crash (before the cursor moved) inserts nothing twice.
        statement = insert(AuditLog).values(rows).on_conflict_do_nothing(index_elements=["seq"])
        # ON CONFLICT makes PostgreSQL check the SELECT policy too: the sink is a system component
        # that must see every existing row to skip it, so it acts for all owners.
        with self.db.transaction(SYSTEM) as s:
            s.execute(statement)
