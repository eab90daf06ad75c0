"""Alembic environment: runs on the connection ``serving.core.ledger.db.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from serving.core.ledger.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through serving.core.ledger.db.migrate (needs a connection)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables in later migrations.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
