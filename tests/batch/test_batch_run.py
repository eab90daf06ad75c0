"""``run_batch`` and ``kiln batch`` on a local Ray (one per module) with the tiny models:
outputs and manifest, reruns that do nothing, pixel-identical fresh runs, credits charged
as over HTTP, invalid lines and ``--skip-invalid``, images by path."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import (
    agentic_line,
    edit_line,
    gen,
    leftovers,
    pixels,
    read_manifest,
    write_images,
    write_jsonl,
)
from PIL import Image
from sqlalchemy import select

from serving.cli import main
from serving.core.ledger import Ledger
from serving.core.ledger.schema import assets, entries
from serving.core.settings import Settings
from serving.http.batch.parsing import parse_batch
from serving.ray.batch.runner import OPERATOR_TENANT_ID, BatchOptions, run_batch

pytestmark = pytest.mark.slow


def parse_file(path: Path, catalog, settings: Settings):
    lines, invalid = parse_batch(
        path.read_text(), base_dir=path.parent, catalog=catalog, settings=settings
    )
    assert invalid == []
    return lines


def forty_lines() -> list[dict]:
    """37 SD 1.5 generations (some n=2, some 3:2), an SDXL one (a second pool), an edit
    and an agentic line whose images are paths relative to the file."""
    lines: list[dict] = []
    for i in range(37):
        extra = {"n": 2} if i % 9 == 0 else {"aspect_ratio": "3:2"} if i % 5 == 0 else {}
        lines.append(gen(f"a kiln, variation {i}", **extra))
    lines.insert(20, edit_line())
    lines.insert(30, agentic_line())
    lines.append(gen("an sdxl kiln", model="tiny-sdxl", seed=42))
    return lines


def test_forty_lines_then_a_no_op_rerun_then_identical_pixels_in_a_fresh_folder(
    local_ray, catalog, batch_settings, tmp_path
):
    write_images(tmp_path)
    jobs = write_jsonl(tmp_path / "jobs.jsonl", forty_lines())
    lines = parse_file(jobs, catalog, batch_settings)
    assert len(lines) == 40 and {line.model for line in lines} == {"tiny-sd15", "tiny-sdxl"}
    out = tmp_path / "out"
    seen: list[dict] = []
    summary = run_batch(
        batch_settings, catalog, lines, BatchOptions(out, workers=2), on_progress=seen.append
    )
    expected_images = sum(line.images for line in lines)
    assert (summary.lines, summary.ran, summary.skipped, summary.failed) == (40, 40, 0, 0)
    assert summary.images == expected_images == 45
    assert seen[-1]["images_done"] == seen[-1]["images_total"] == 45
    assert seen[-1]["lines_done"] == 40 and len(seen) == 40

    manifest = read_manifest(out)
    assert [e["line"] for e in manifest] == list(range(1, 41))
    assert all(e["error"] is None for e in manifest)
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == sorted(name for e in manifest for name in e["outputs"])
    assert len(files) == 45 and leftovers(out) == []
    by_line = {e["line"]: e for e in manifest}
    for line in lines:
        e = by_line[line.number]
        assert e["kind"] == line.kind and e["request"] == line.recorded
        assert len(e["seeds"]) == len(e["asset_ids"]) == len(e["outputs"]) == line.images
        assert e["outputs"][0] == f"{line.number:06d}-0.png" and e["node_id"]
        assert e["timings"]["line_total"] > 0
        assert (e["tenant_id"], e["metered"]) == (OPERATOR_TENANT_ID, False)
        for name, digest in zip(e["outputs"], e["sha256"], strict=True):
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert by_line[40]["seeds"] == [42]
    assert by_line[1]["seeds"] == [lines[0].request["seed"], lines[0].request["seed"] + 1]
    with Image.open(out / "000001-0.png") as image:
        meta = json.loads(image.text["kiln:request"])
        assert meta == {"kind": "generation", "request": lines[0].recorded}
        assert image.size == (128, 128)
    with Image.open(out / by_line[21]["outputs"][0]) as image:  # the edit keeps its size
        assert image.size == (64, 64)
    # Unmetered: the operator tenant owns the assets, nobody's ledger moved.
    with Ledger(batch_settings.database_url) as ledger, ledger.engine.begin() as conn:
        owners = {row.tenant_id for row in conn.execute(select(assets.c.tenant_id))}
        assert owners == {OPERATOR_TENANT_ID}
        assert conn.execute(select(entries.c.id)).first() is None

    # A rerun recomputes nothing: every line skipped, no file touched.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_batch(batch_settings, catalog, lines, BatchOptions(out, workers=2))
    assert (again.ran, again.skipped, again.images) == (0, 40, 0)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert read_manifest(out) == manifest
    assert [e["line"] for e in again.entries] == list(range(1, 41))

    # A fresh folder: the same files, byte for byte (so the same pixels).
    fresh = tmp_path / "fresh"
    third = run_batch(batch_settings, catalog, lines, BatchOptions(fresh, workers=2))
    assert (third.ran, third.failed) == (40, 0)
    for name in files:
        assert np.array_equal(pixels(out / name), pixels(fresh / name)), name
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name


@pytest.fixture
def cli_env(batch_settings, monkeypatch, kiln_home) -> Settings:
    """``kiln`` reads its settings from the environment: the session's KILN_HOME (its
    tiny models) with this test's ledger."""
    monkeypatch.setenv("KILN_HOME", str(kiln_home))
    monkeypatch.setenv("KILN_DATABASE_URL", batch_settings.database_url)
    monkeypatch.setenv("KILN_TORCH_THREADS", "1")
    batch_settings.home.mkdir(parents=True, exist_ok=True)
    return batch_settings


def test_cli_refuses_invalid_lines_then_skip_invalid_runs_the_rest_charging_the_tenant(
    local_ray, catalog, cli_env, tmp_path, capsys
):
    write_images(tmp_path / "batch")
    jobs = write_jsonl(
        tmp_path / "batch" / "jobs.jsonl",
        [
            gen("fine"),  # 1 credit
            gen("bad size", resolution="8K"),  # invalid
            edit_line(),  # in/cat.png relative to the JSONL file; the replace price
            "{oops",  # invalid
            gen("unknown style", style="sty_nope"),  # valid, fails when it runs (404)
            gen("too many", n=12),  # 12 credits: more than the tenant ever has (402)
            gen("big", resolution="256px"),  # 2 credits
        ],
    )
    out = tmp_path / "out"
    with Ledger(cli_env.database_url) as ledger:
        tenant = ledger.create_tenant("night-shift")
        ledger.grant(tenant.id, 5)
    args = ["batch", str(jobs), "--out", str(out), "--workers", "1", "--tenant", "night-shift"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "line 2: resolution '8K' is not offered" in err
    assert "line 4: not valid JSON" in err
    assert "2 invalid line(s), nothing ran" in err
    assert not out.exists()
    with Ledger(cli_env.database_url) as ledger:
        assert ledger.balance(tenant.id).available == 5

    cwd = Path.cwd()
    os.chdir(tmp_path)  # paths resolve against the file, wherever kiln runs
    try:
        assert main([*args, "--skip-invalid"]) == 1  # lines 5 and 6 failed
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    assert "5 line(s): 5 ran, 0 already done (skipped), 2 failed; 3 image(s)" in captured.out
    assert "First failure: line 5:" in captured.out
    assert "16/16 images" in captured.err and "img/s" in captured.err
    by_line = {e["line"]: e for e in read_manifest(out)}
    assert sorted(by_line) == [1, 3, 5, 6, 7]
    assert by_line[5]["error"]["status"] == 404 and by_line[5]["credits_charged"] == 0
    assert by_line[6]["error"]["status"] == 402
    assert by_line[6]["error"]["code"] == "insufficient_credits"
    assert all((e["tenant_id"], e["metered"]) == (tenant.id, True) for e in by_line.values())
    assert sorted(p.name for p in out.glob("*.png")) == [
        "000001-0.png", "000003-0.png", "000007-0.png"
    ]  # fmt: skip
    # HTTP's prices: the model's per-image price by resolution, the catalog's edit price,
    # reserved and captured under the run's and line's request id.
    spec = catalog.get("tiny-sd15")
    prices = [spec.credits["128px"], catalog.price_of("replace"), spec.credits["256px"]]
    assert [by_line[n]["credits_charged"] for n in (1, 3, 7)] == prices
    run_id = by_line[1]["run_id"]
    with Ledger(cli_env.database_url) as ledger:
        balance = ledger.balance(tenant.id)
        assert (balance.available, balance.held) == (5 - sum(prices), 0) == (0, 0)
        captured_entries = [e for e in ledger.entries(tenant.id, 100) if e.kind == "capture"]
        assert sum(-e.held for e in captured_entries) == sum(prices)
        references = {e.reference for e in captured_entries}
        assert references == {f"batch-{run_id}-line-{n}" for n in (1, 3, 7)}
        with ledger.engine.begin() as conn:
            query = select(assets.c.id).where(assets.c.tenant_id == tenant.id)
            owned = {row.id for row in conn.execute(query)}
    assert owned == {a for n in (1, 3, 7) for a in by_line[n]["asset_ids"]}


def test_should_stop_starts_no_further_line_and_records_the_lines_in_flight(
    local_ray, catalog, batch_settings, tmp_path
):
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [gen(f"kiln {i}") for i in range(6)])
    lines = parse_file(jobs, catalog, batch_settings)
    out = tmp_path / "out"
    seen: list[dict] = []
    summary = run_batch(
        batch_settings,
        catalog,
        lines,
        BatchOptions(out, workers=1),
        on_progress=seen.append,
        should_stop=lambda: len(seen) >= 1,
    )
    # The line that saw the stop, and at most the few already running or handed to the
    # worker before the signal: never the whole batch.
    assert summary.stopped and 1 <= summary.ran < 6 and summary.images == summary.ran
    assert [f["lines_done"] for f in seen] == list(range(1, summary.ran + 1))
    entries = read_manifest(out)
    assert len(entries) == summary.ran and all(e["error"] is None for e in entries)
    outputs = sorted(name for e in entries for name in e["outputs"])
    assert sorted(p.name for p in out.glob("*.png")) == outputs
    assert leftovers(out) == []


def test_a_pool_asks_for_the_models_gpu_share_from_the_catalog(local_ray, catalog, batch_settings):
    from dataclasses import replace

    from serving.ray.batch.runner import pool_resources

    spec = catalog.get("tiny-sd15")
    shared = replace(spec, extra={**spec.extra, "gpus": 0.5})
    resources = pool_resources(batch_settings, 3, 10, shared)
    assert resources["num_gpus"] == 0.5
    assert resources["num_cpus"] == batch_settings.replica_cpus
    assert resources["compute"].min_size == resources["compute"].max_size == 3
    # Without a catalog share: the settings' (none on a CPU cluster); never more actors
    # than lines.
    plain = pool_resources(batch_settings, 3, 2, spec)
    assert plain["num_gpus"] == 0.0 and plain["compute"].max_size == 2
