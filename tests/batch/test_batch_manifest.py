"""The output folder's crash safety (torn manifest lines, leftover temp files, atomic
files, one entry per line after compaction) and the progress figures and texts."""

from __future__ import annotations

import hashlib
import io
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
from batch_helpers import leftovers, read_manifest
from PIL import Image

from serving.cli.progress import BatchBar, summary_text
from serving.ray.batch.manifest import Manifest, output_name, write_atomic
from serving.ray.batch.progress import Progress
from serving.ray.batch.worker import output_png


def entry(number: int, data: bytes = b"img", **fields) -> dict:
    return {"line": number, "kind": "generation", "request": {"prompt": f"p{number}"},
            "outputs": [output_name(number, 0)], "sha256": [hashlib.sha256(data).hexdigest()],
            "error": None, **fields}  # fmt: skip


def test_output_names_are_zero_padded_line_and_index():
    assert output_name(7, 0) == "000007-0.png"
    assert output_name(123456, 11) == "123456-11.png"


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.prepare()
    manifest.append(entry(1))
    manifest.append(entry(2))
    with manifest.path.open("a") as f:
        f.write('{"line": 3, "kind": "gen')  # a kill mid-append
    assert sorted(manifest.entries()) == [1, 2]
    assert sorted(manifest.prepare()) == [1, 2]
    manifest.append(entry(3))
    assert [e["line"] for e in read_manifest(tmp_path)] == [1, 2, 3]


def test_the_latest_entry_wins_and_compaction_keeps_one_per_line(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.prepare()
    manifest.append(entry(2, error={"status": 500, "message": "boom"}))
    manifest.append(entry(1))
    manifest.append(entry(2))
    assert manifest.entries()[2]["error"] is None
    assert manifest.compact() == 2
    assert [(e["line"], e["error"]) for e in read_manifest(tmp_path)] == [(1, None), (2, None)]
    assert leftovers(tmp_path) == []


def test_leftover_temp_files_are_removed_on_prepare(tmp_path):
    (tmp_path / ".000001-0.png.kiln-tmp-abcd").write_bytes(b"half")
    (tmp_path / "keep.txt").write_text("mine")
    Manifest(tmp_path).prepare()
    assert leftovers(tmp_path) == []
    assert (tmp_path / "keep.txt").exists()


def test_an_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    target = tmp_path / "000001-0.png"
    write_atomic(target, b"old")

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_line_is_complete_only_with_the_same_request_and_intact_outputs(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.prepare()
    names, digests = manifest.write_outputs(4, [b"img"])
    done = entry(4)
    assert (names, digests) == (done["outputs"], done["sha256"])
    request = done["request"]
    assert manifest.is_complete(done, "generation", request)
    assert not manifest.is_complete(None, "generation", request)
    assert not manifest.is_complete(done, "edit", request)
    assert not manifest.is_complete(done, "generation", {"prompt": "changed"})
    assert not manifest.is_complete({**done, "error": {"status": 402}}, "generation", request)
    (tmp_path / names[0]).write_bytes(b"tampered")
    assert not manifest.is_complete(done, "generation", request)
    (tmp_path / names[0]).unlink()
    assert not manifest.is_complete(done, "generation", request)


def test_output_pngs_are_a_function_of_pixels_and_request():
    """A batch file is encoded once from the delivered pixels: its bytes depend on them
    and the line only (not on the asset, whose PNG carries its id), alpha kept."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)
    first = output_png(pixels, 3, "generation", {"x": 1}, 9)
    assert output_png(pixels.copy(), 3, "generation", {"x": 1}, 9) == first
    assert output_png(pixels, 3, "generation", {"x": 2}, 9) != first
    assert output_png(pixels, 4, "generation", {"x": 1}, 9) != first
    with Image.open(io.BytesIO(first)) as image:
        assert json.loads(image.text["kiln:request"]) == {"kind": "generation", "request": {"x": 1}}
        assert image.text["kiln:line"] == "3" and image.text["kiln:seed"] == "9"
        assert "asset_id" not in image.text
        assert np.array_equal(np.asarray(image), pixels)
    cutout = np.dstack([pixels, rng.integers(0, 255, (16, 16)).astype(np.uint8)])
    with Image.open(io.BytesIO(output_png(cutout, 1, "edit", {}, 1))) as image:
        assert image.mode == "RGBA" and np.array_equal(np.asarray(image), cutout)


def test_progress_figures_rate_and_eta(monkeypatch):
    clock = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr("serving.ray.batch.progress.time.monotonic", lambda: next(clock))
    progress = Progress(images_total=10, lines_total=5)
    first = progress.advance(2)
    assert first == {"images_done": 2, "images_total": 10, "lines_done": 1, "lines_total": 5,
                     "images_per_s": 0.2, "eta_s": 40.0}  # fmt: skip
    second = progress.advance(3)
    assert (second["images_done"], second["images_per_s"], second["eta_s"]) == (5, 0.25, 20.0)


def test_the_bar_and_the_summary_say_what_happened():
    stream = io.StringIO()
    bar = BatchBar(stream)
    bar.update({"images_done": 5, "images_total": 10, "images_per_s": 2.5, "eta_s": 2.0,
                "lines_done": 5, "lines_total": 10})  # fmt: skip
    bar.close()
    assert stream.getvalue() == f"\r[{'#' * 15}{'.' * 15}] 5/10 images  2.50 img/s  ETA 00:02\n"
    failed = {"line": 9, "error": {"status": 402, "message": "not enough credits"}}
    counts = {"lines": 12, "ran": 10, "skipped": 2, "failed": 1, "images": 9, "seconds": 4.5}
    summary = SimpleNamespace(**counts, manifest="out/manifest.jsonl", entries=[entry(1), failed])
    text = summary_text(summary)
    assert "12 line(s): 10 ran, 2 already done (skipped), 1 failed; 9 image(s)" in text
    assert "(2.00 images/s)" in text and "out/manifest.jsonl" in text
    assert "line 9: not enough credits" in text
