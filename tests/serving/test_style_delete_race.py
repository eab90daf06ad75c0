"""Styles share files by content: deleting one style while the same bytes are being imported
for another must never leave the new style without its file (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import event, select

import serving.styles.service as style_service
from serving.ledger import Ledger
from serving.ledger.schema import styles as styles_table
from serving.styles import StyleImport, Styles


@pytest.fixture
def ledger(db_url: str):
    with Ledger(db_url) as opened:
        yield opened


@pytest.fixture
def registry(ledger, catalog, tmp_path: Path) -> Styles:
    return Styles(ledger.engine, catalog, tmp_path / "styles", max_bytes=1 << 24, max_rank=64)


def every_row_has_its_file(registry: Styles) -> None:
    with registry.engine.begin() as conn:
        shas = set(conn.execute(select(styles_table.c.sha256)).scalars())
    names = sorted(p.name for p in registry.styles_dir.iterdir())
    # No row without its file, no file without a row, nothing staged or set aside left.
    assert names == sorted(f"{sha}.safetensors" for sha in shas)


def test_a_delete_while_the_same_bytes_are_imported_keeps_the_new_styles_file(
    registry, ledger, tiny_sd15_loras, monkeypatch
):
    lora = tiny_sd15_loras[0]
    alice = ledger.create_tenant("alice").id
    old = registry.import_file(lora, StyleImport("old", "tiny-sd15"), alice)

    # The import of the same bytes is held just after its file is in place (the file is
    # already there: the old style's). The old style is deleted in another thread then,
    # given 0.5 s to finish: a correct registry makes it wait for the import instead.
    real_store = style_service.store_lora_file
    deleting = threading.Thread(target=registry.delete, args=(alice, old.id))

    def store_then_delete(*args, **kwargs):
        stored = real_store(*args, **kwargs)
        deleting.start()
        deleting.join(0.5)
        return stored

    monkeypatch.setattr(style_service, "store_lora_file", store_then_delete)
    new = registry.import_file(lora, StyleImport("new", "tiny-sd15"), alice)
    deleting.join(30)
    assert not deleting.is_alive()

    assert [s.id for s in registry.list(alice)] == [new.id]
    assert registry.file_path(new).read_bytes() == lora.read_bytes()
    every_row_has_its_file(registry)


def test_imports_and_deletes_of_the_same_bytes_in_parallel_never_lose_a_file(
    registry, ledger, tiny_sd15_loras
):
    lora = tiny_sd15_loras[0]
    tenants = [ledger.create_tenant(name).id for name in ("alice", "bob")]
    missing: list[str] = []

    def churn(tenant: str) -> None:
        for round_ in range(12):
            record = registry.import_file(lora, StyleImport(f"r{round_}", "tiny-sd15"), tenant)
            if not registry.file_path(record).is_file():
                missing.append(record.id)
            registry.delete(tenant, record.id)

    threads = [threading.Thread(target=churn, args=(t,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert missing == []
    every_row_has_its_file(registry)
    assert not any(registry.styles_dir.iterdir())


def test_a_delete_whose_commit_fails_puts_the_file_back(registry, ledger, tiny_sd15_loras):
    alice = ledger.create_tenant("alice").id
    record = registry.import_file(tiny_sd15_loras[0], StyleImport("kept", "tiny-sd15"), alice)

    def fail_once(_conn) -> None:
        event.remove(registry.engine, "commit", fail_once)
        raise RuntimeError("the database went away at the commit")

    event.listen(registry.engine, "commit", fail_once)
    with pytest.raises(RuntimeError, match="went away"):
        registry.delete(alice, record.id)
    assert registry.get(alice, record.id) == record  # rolled back: the row stays...
    every_row_has_its_file(registry)  # ...and so does its file, under its own name
