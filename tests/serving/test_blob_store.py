"""The content-addressed blob store (``serving.core.assets.store``): a file whole or not
at all, under its SHA-256, 0600; a write that fails leaves no temp file behind."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from serving.core.assets import store as store_module
from serving.core.assets.store import BlobStore


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_blob_is_stored_once_under_its_digest_and_nothing_else_is_left(tmp_path: Path):
    store = BlobStore(tmp_path / "assets")
    data = b"\x89PNG not really"
    digest = store.put(data, "image/png")
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data, "image/png") == digest  # already there: a no-op
    (only,) = files_under(tmp_path / "assets")
    assert only == store.path(digest, "image/png")
    assert only.read_bytes() == data
    assert stat.S_IMODE(only.stat().st_mode) == 0o600


def test_a_write_that_fails_leaves_no_temp_file(tmp_path: Path, monkeypatch):  # noqa: ANN001
    store = BlobStore(tmp_path / "assets")

    def failing_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        store.put(b"some bytes", "image/png")
    assert files_under(tmp_path / "assets") == []
