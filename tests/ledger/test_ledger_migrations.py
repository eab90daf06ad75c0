"""Migrations: an empty database gets the schema, a migrated one is left alone; the
schema matches the ORM tables; ledger entries are append-only in code and in the database.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from serving.core.ledger import Ledger, create_ledger_engine, migrate
from serving.core.ledger.db import alembic_config, current_revision, downgrade
from serving.core.ledger.schema import Base

REPO = Path(__file__).resolve().parents[2]
TABLES = {"tenants", "balances", "reservations", "ledger_entries", "idempotency_keys"}
# The newest revision shipped, whichever it is.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrations_on_empty_then_migrated_database(db_url: str):
    engine = create_ledger_engine(db_url)
    try:
        assert current_revision(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert current_revision(engine) == HEAD
        assert set(inspect(engine).get_table_names()) >= TABLES
        with Ledger(db_url) as ledger:  # opening migrates again: a no-op that keeps data
            tenant = ledger.create_tenant("studio")
            ledger.grant(tenant.id, 5)
        migrate(engine)
        assert current_revision(engine) == HEAD
        with Ledger(db_url) as ledger:
            assert ledger.balance(tenant.id).available == 5
    finally:
        engine.dispose()


def test_processes_starting_together_migrate_once(db_url: str):
    # Several server processes (ingress replicas) open a brand-new database at once.
    script = (
        "import sys; from serving.core.ledger import Ledger; print('ready', flush=True); "
        "sys.stdin.readline(); "
        "ledger = Ledger(sys.argv[1]); ledger.create_tenant('p'); ledger.close()"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, db_url],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    engine = create_ledger_engine(db_url)
    try:
        assert current_revision(engine) == HEAD
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tenants")).scalar_one() == 2
    finally:
        engine.dispose()


def test_schema_matches_the_orm_and_downgrades(db_url: str):
    engine = create_ledger_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        downgrade(engine)
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_the_database_refuses_to_change_entries(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 5)
    for statement in ("UPDATE ledger_entries SET amount = 500", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text(statement))
    assert [entry.amount for entry in ledger.entries(tenant.id)] == [5]


def test_no_code_updates_or_deletes_entries():
    forbidden = re.compile(
        r"(update|delete)\(\s*(entries|EntryRow|schema\.entries)\b"
        r"|UPDATE\s+ledger_entries|DELETE\s+FROM\s+ledger_entries",
        re.IGNORECASE,
    )
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("serving", "pipelines", "weights", "styles", "agentic")
        for path in (REPO / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []


def test_assets_stored_before_0011_read_without_terms(db_url: str, tmp_path: Path):
    # 0011 adds assets.terms (the model provider's terms): older rows keep null, and read.
    from datetime import UTC, datetime

    from serving.core.assets import Assets
    from serving.core.assets.store import BlobStore

    engine = create_ledger_engine(db_url)
    try:
        migrate(engine, "0010_job_error_codes")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO tenants (id, name, created) VALUES ('ten_1', 'studio', :now)"),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO assets (id, tenant_id, kind, model, prompt, seed, params, "
                    "width, height, media_type, bytes, sha256, preview_sha256, created) "
                    "VALUES ('ast_1', 'ten_1', 'base', 'tiny-sd15', 'p', 1, '{}', 8, 8, "
                    "'image/png', 1, 'a', 'a', :now)"
                ),
                {"now": now},
            )
        migrate(engine)
        assert current_revision(engine) == HEAD
        assert Assets(engine, BlobStore(tmp_path)).get("ten_1", "ast_1").terms is None
        downgrade(engine, "0010_job_error_codes")
        assert "terms" not in {c["name"] for c in inspect(engine).get_columns("assets")}
    finally:
        engine.dispose()
