"""Alembic environment: always run on a connection handed in by wcp360.store.migrate."""

from __future__ import annotations

from alembic import context

from wcp360.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
