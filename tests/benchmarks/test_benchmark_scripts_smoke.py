"""No benchmark can break silently: every ``benchmarks/*.py`` runs with ``--smoke``.

Each script runs as a user would run it, in its own process from the repository root,
offline, with a temp ``KILN_HOME`` whose ``models/`` is this session's tiny models (built
once by the ``catalog`` fixture) and no other ``KILN_*`` variable from the caller's shell.
It must exit 0 and print figures; scripts listed in ``PRINTS`` must print those lines too
(their figures' labels: a script that stops measuring something fails here). Discovery is
a glob, so a new script that has no ``--smoke`` fails this test until it gets one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Every script; ``_name.py`` is a helper the scripts import, not a benchmark.
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
# A smoke run is seconds to a minute; a server's start on a busy 2-core machine is more.
TIMEOUT_S = 300
# A figure: a number with a unit or a ratio.
FIGURE = re.compile(r"\d\s*(ms|s|MiB|KiB|GiB|x|%|img/s|TFLOP/s)(\W|$)", re.MULTILINE)

# What each script's smoke run prints, at least.
PRINTS: dict[str, tuple[str, ...]] = {
    "agentic_extract.py": (
        "references: 3 x 128x128 RGB", "per reference:", "  palette: ", "  grading: ",
        "  lighting: ", "  composition: ",
    ),
    "agentic_grading.py": (
        "tiny-sd15 128px, seed 8", "tiny-sd15 256px, seed 8", "-- tuning set",
        "-- reported: synthetic extremes", "delivered cut median", "delivered 2x cut median",
        "monotone in strength:",
    ),
    "batch_throughput.py": ("| 1 | 4 |", "| 2 | 4 |", "scaling 2 vs 1 worker: end to end"),
    "call_overhead.py": ("| tiny-sdxl |", "| True |", "trimmed / plain"),
    "delivery_cost.py": (
        "| 256² | plain PNG (before assets) |",
        "| 256² | invisible mark alone (embed + read-back) |",
        "| 256² | base asset: mark + PNG + store |",
        "| 256² | style asset: + visible preview |", "| 256² | base asset + C2PA manifest |",
        "| 128² | noise | ", "| 256² | textured | ", "| 256² | 4 | ",
        "deflate: isal", "| zlib level 1 | deflate (isal) |",
        "| 256² | C2PA manifest: claim thumbnail / none |",
        "| 256² | visible mark: layer drawn / kept |",
    ),
    "fair_queue.py": (
        "with scheduler: A 16 images (batch)", "with scheduler: A 16 images (interactive)",
        "without scheduler: A 16 images (batch)", "B wait p50",
        "two saturating tenants over 3 s:",
    ),
    "fast_path_parts.py": (
        "fast path parts: sdxl 64x64 2 steps n=1 on cpu", "plain ", "engine ", "compile+slot ",
        "x plain", "graph breaks 0",
    ),
    "gpu_generate.py": (
        "TFLOP/s", "vs plain: latency", "kiln phases", "sdxl fast path:", "sd15 fast path:",
        "skipped: fa3 (not on CUDA)",
        "sdxl style switch (eager adapters, ranks 16, 32, 16)",
        "sd15 style switch (eager adapters, ranks 16, 32, 16)",
        "graphs compiled by style loads, switches and the styled calls: 0",
        "flux1-dev style switch (eager adapters", "flux2-klein-4b style switch (eager adapters",
        "flux1-dev 64x64 2 steps n=1: transformer call", "text encoders",
        "flux2-klein-4b 64x64 2 steps n=2: transformer call", "flux1-dev fast path:",
        "flux2-klein-4b fast path:", "summary (",
    ),
    "image_to_prompt.py": ("computed / cached:", "one image, everything, precise"),
    "ip_adapter_sources.py": ("no adapter loaded (before)", "4 source(s)", "embed 4 pictures"),
    "ledger_cost.py": (
        "sqlite, 20 requests of 1 image(s)", "back to back, driver: reserve median",
        "back to back, sqlalchemy: reserve median", "settle (with its asset row)",
        "after 100 ms: through SQLAlchemy / on the driver =",
        "statements a request sends (BEGIN and COMMIT not counted): 8, and 2 PRAGMA",
        "a burst of 8 requests at once",
    ),
    "preview_overhead.py": (
        "tiny-sd15 128x128 5 steps n=1 on cpu: decoder autoencoder_tiny, 1 previews a call",
        "tiny-flux2-klein 128x128 5 steps n=1 on cpu: decoder linear, 1 previews a call",
        "previews every 5 steps:", "with / without =",
    ),
    "replica_kill_load.py": ("SIGKILLed at", "500 answers: 0", "ledger load-1: balanced"),
    "serving_overhead.py": (
        "overhead ratio http/direct =", "time outside the pipeline call",
        "structural floor (authenticated no-op", "held as long as the pipeline call",
        "outside the pipeline call above the floor:", "the held no-op, by part",
        "the held no-op right after the instant one",
        "CPU while idle: kiln serve",
        "CPU per no-op: kiln serve", "CPU per generation: kiln serve",
        "to its first image", "  round 1: ", "(median of 1 rounds)",
        "throughput ratio concurrent/sequential =", "server stopped",
    ),
    "style_switch.py": (
        "| reload the base pipeline from disk |", "| switch between loaded styles |",
    ),
    "svg_memory.py": (
        "| 512² (", "before: tuple per pixel (reference)", "512²: before / after: peak memory",
        "after: peak",
    ),
    "upscale.py": (
        "| tiled (128 px tiles) | 512x288 |", "| untiled | 512x288 |",
        "untiled / tiled peak memory:",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def smoke_home(catalog, kiln_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KILN_HOME of its own whose ``models/`` are the session's tiny models."""
    home = tmp_path_factory.mktemp("bench_home")
    (home / "models").symlink_to(kiln_home / "models", target_is_directory=True)
    return home


def smoke_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env.update(HF_HUB_OFFLINE="1", KILN_HOME=str(home), PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")  # fmt: skip
    return env


def run_smoke(script: Path, env: dict[str, str]) -> tuple[int, str]:
    """Exit status and output (stdout and stderr: some scripts log their tables)."""
    # A session of its own, so a timeout also ends what it started (a server, Ray).
    process = subprocess.Popen(
        [sys.executable, str(script), "--smoke"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{script.name} --smoke ran past {TIMEOUT_S}s:\n{output[-4000:]}")
    return process.returncode, output


def test_every_script_is_known_or_new():
    assert SCRIPTS, "no benchmarks found"
    missing = sorted(set(PRINTS) - {script.name for script in SCRIPTS})
    assert not missing, f"PRINTS names scripts that are gone: {missing}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[script.name for script in SCRIPTS])
def test_the_smoke_run_exits_0_and_prints_its_figures(script: Path, smoke_home: Path):
    code, output = run_smoke(script, smoke_env(smoke_home))
    assert code == 0, f"{script.name} --smoke exited {code}:\n{output[-4000:]}"
    assert FIGURE.search(output), f"{script.name} --smoke printed no figure:\n{output[-4000:]}"
    absent = [line for line in PRINTS.get(script.name, ()) if line not in output]
    assert not absent, f"{script.name} --smoke did not print {absent}:\n{output[-4000:]}"
