"""KILN_HOME is its user's alone: the folders Kiln makes there are 0700 and the files it
stores 0600 (the ledger's SQLite file and its -wal/-shm included) under a permissive umask;
a home or a database Kiln finds open is left as it is, with one warning each."""

from __future__ import annotations

import base64
import io
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from secrets_for_tests import TEST_SECRET

from serving.core.accounts import prepare_admin
from serving.core.ledger import Ledger
from serving.core.ledger.db import sqlite_url
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.home import private_dir


@pytest.fixture
def umask():
    """Run with ``os.umask(mask)``; the test's own umask comes back after."""
    saved = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_under(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(folders, files) under ``root`` by relative path, ``root`` itself as "."."""
    folders, files = {".": mode(root)}, {}
    for path in root.rglob("*"):
        (folders if path.is_dir() else files)[str(path.relative_to(root))] = mode(path)
    return folders, files


def png_b64(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_a_new_home_and_everything_stored_in_it_are_private(
    tmp_path, catalog, make_client, tiny_sd15_loras, umask
):
    home = tmp_path / "studio" / "kiln"  # neither folder exists yet
    settings = Settings(home=home, secret=TEST_SECRET)
    prepare_admin(settings.database_url, home, None)  # what `kiln serve` does first
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    alice = make_client(app, credits=100, name="alice")
    generated = alice.post(
        "/v1/images/generations",
        json={"model": "tiny-sd15", "prompt": "a kiln", "size": "128x128", "steps": 2,
              "response_format": "url"},
    )  # fmt: skip
    assert generated.status_code == 200, generated.text
    with open(tiny_sd15_loras[0], "rb") as f:
        imported = alice.post(
            "/v1/styles", data={"name": "Ink", "model": "tiny-sd15"}, files={"file": ("a", f)}
        )
    assert imported.status_code == 201, imported.text
    pinned = alice.post(
        "/v1/pins", json={"kind": "character", "name": "Mira", "images": [png_b64(1)]}
    )
    assert pinned.status_code == 201, pinned.text

    folders, files = modes_under(home)
    assert {"assets", "files", "styles", "pins"} <= set(folders)
    assert {"kiln.db", "kiln.db-wal", "kiln.db-shm", "admin.key"} <= set(files)
    assert {n.split("/")[0] for n in files} >= {"assets", "files", "styles", "pins"}
    assert folders == dict.fromkeys(folders, 0o700), folders
    assert files == dict.fromkeys(files, 0o600), files
    assert mode(home.parent) == 0o700  # Kiln made it on the way


def test_a_home_or_database_kiln_finds_keeps_its_mode_and_is_warned_about_once(
    tmp_path, caplog, umask
):
    shared = tmp_path / "shared"  # a group's mount, on purpose or not: the operator decides
    shared.mkdir()
    shared.chmod(0o750)
    older = tmp_path / "older"  # a private home where an older Kiln left SQLite's 0644
    older.mkdir(0o700)
    (older / "kiln.db").touch()
    (older / "kiln.db").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="weights.home"):
        for _ in range(2):
            for home in (shared, older):
                Ledger(sqlite_url(home / "kiln.db")).close()
    assert mode(shared) == 0o750 and mode(shared / "kiln.db") == 0o600  # the new file: Kiln's
    assert mode(older / "kiln.db") == 0o644
    warned = [r.getMessage() for r in caplog.records if r.name == "weights.home"]
    assert len(warned) == 2, warned
    assert f"{shared} has mode 750" in warned[0] and f"chmod 700 {shared}" in warned[0]
    db = older / "kiln.db"
    assert f"{db} has mode 644" in warned[1] and f"chmod 600 {db}" in warned[1]


def test_folders_are_0700_whatever_the_umask(tmp_path, umask):
    umask(0o277)  # would leave the owner unable to write into a folder made under it
    made = private_dir(tmp_path / "a" / "b")
    (made / "file").write_text("the owner can still write here")
    assert mode(tmp_path / "a") == mode(made) == 0o700
    umask(0)  # would leave a plain mkdir world-writable
    assert mode(private_dir(tmp_path / "c")) == 0o700


def test_a_jobs_staged_inputs_are_private(tmp_path, catalog, umask):
    """A training's photos and a batch's request lines wait in the job's workspace until a
    worker takes them: a tenant's data, 0700 folders and 0600 files like the rest."""
    from serving.core.batches.submission import submit_batch
    from serving.core.jobs.style_training import StyleTrainingRequest, submit_style_training
    from serving.http.batch.parsing import parse_batch

    settings = Settings(home=tmp_path / "kiln", secret=TEST_SECRET)
    with Ledger(settings.database_url) as ledger:
        tenant = ledger.create_tenant("studio")
        ledger.grant(tenant.id, 100)
        photos = [Image.new("RGB", (32, 32), (i * 40, 90, 200)) for i in range(5)]
        submit_style_training(
            tenant.id, StyleTrainingRequest(name="Ink", model="tiny-sd15"), photos,
            settings=settings, catalog=catalog, ledger=ledger,
        )  # fmt: skip
        lines, invalid = parse_batch(
            '{"kind": "generation", "model": "tiny-sd15", "prompt": "a kiln"}',
            base_dir=None, catalog=catalog, settings=settings,
        )  # fmt: skip
        assert not invalid
        submit_batch(settings, ledger, tenant.id, lines, [])
    folders, files = modes_under(settings.jobs_dir)
    assert len(folders) == 3 and len(files) == 6, (folders, files)  # 5 photos, 1 JSONL
    assert folders == dict.fromkeys(folders, 0o700), folders
    assert files == dict.fromkeys(files, 0o600), files
