"""``kiln styles train DIR``: on the database directly, with a progress line on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest
from job_helpers import png

from serving.cli import main
from serving.core.ledger import Ledger


@pytest.fixture
def home(tmp_path: Path, catalog, monkeypatch) -> Path:
    """A KILN_HOME of its own whose catalog points at the session's built tiny model."""
    home = tmp_path / "home"
    home.mkdir()
    source = catalog.get("tiny-sd15").source
    (home / "models.toml").write_text(f'[models.tiny-sd15]\nsource = "{source}"\n')
    monkeypatch.setenv("KILN_HOME", str(home))
    monkeypatch.delenv("KILN_DATABASE_URL", raising=False)
    monkeypatch.delenv("KILN_CATALOG", raising=False)
    monkeypatch.setenv("KILN_TRAINING_RANK", "4")
    return home


def images(folder: Path, count: int) -> Path:
    folder.mkdir()
    for index in range(count):
        (folder / f"{index}.png").write_bytes(png((255, 120, 0), 64, index))
    (folder / "0.txt").write_text("a pot on a wheel")
    return folder


def test_train_prints_progress_and_the_new_style(home: Path, tmp_path: Path, capsys):
    assert main(["tenants", "create", "studio"]) == 0
    tenant_id = capsys.readouterr().out.split()[1]
    folder = images(tmp_path / "look", 5)
    args = ["styles", "train", str(folder), "--name", "Look", "--model", "tiny-sd15"]
    assert main([*args, "--tenant", tenant_id, "--steps", "2", "--trigger", "lk"]) == 0
    captured = capsys.readouterr()
    assert "2 steps on 5 images" in captured.out and "(0 credits if it succeeds)" in captured.out
    assert f"private to tenant={tenant_id}" in captured.out
    assert "] 2/2  loss " in captured.err  # the progress bar's last state
    style_id = captured.out.split("style ")[1].split()[0]
    assert main(["styles", "list", "--tenant", tenant_id]) == 0
    assert style_id in capsys.readouterr().out

    # The second style is priced: without credits, nothing is trained or held.
    assert main([*args, "--tenant", tenant_id, "--steps", "2"]) == 1
    assert "not enough credits: 200 needed, 0 available" in capsys.readouterr().err
    with Ledger(f"sqlite:///{home / 'kiln.db'}") as ledger:
        assert ledger.balance(tenant_id).held == 0
    assert not list((home / "jobs").iterdir())


def test_train_refuses_bad_folders(home: Path, tmp_path: Path, capsys):
    assert main(["tenants", "create", "studio"]) == 0
    tenant_id = capsys.readouterr().out.split()[1]
    args = ["--name", "Look", "--model", "tiny-sd15", "--tenant", tenant_id]
    assert main(["styles", "train", str(tmp_path / "missing"), *args]) == 1
    assert main(["styles", "train", str(images(tmp_path / "few", 4)), *args]) == 1
    assert "images: a style trains on 5-50 images, got 4" in capsys.readouterr().err
    folder = images(tmp_path / "five", 5)
    assert main(["styles", "train", str(folder), *args[:4], "--tenant", "ten_nobody"]) == 1
    assert "ten_nobody" in capsys.readouterr().err
