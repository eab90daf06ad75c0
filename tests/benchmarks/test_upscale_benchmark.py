"""benchmarks/upscale.py cannot rot: one small run prints both rows and the ratio."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "upscale.py"


def test_upscale_benchmark_prints_tiled_and_untiled(caplog) -> None:
    spec = importlib.util.spec_from_file_location("upscale_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["upscale_bench"] = module
    try:
        spec.loader.exec_module(module)
        with caplog.at_level(logging.INFO, logger="upscale_bench"):
            assert module.main(["--long-side", "1024", "--tile", "128"]) == 0
    finally:
        sys.modules.pop("upscale_bench", None)
    lines = [r.getMessage() for r in caplog.records]
    rows = [line for line in lines if line.startswith(("| tiled", "| untiled"))]
    assert len(rows) == 2 and all("1024x576" in row for row in rows)
    assert any(line.startswith("untiled / tiled peak memory") for line in lines)
