"""benchmarks/agentic_extract.py cannot rot: one small run prints every figure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "agentic_extract.py"


def test_agentic_extract_prints_totals_and_every_component(capsys) -> None:
    spec = importlib.util.spec_from_file_location("agentic_extract", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["agentic_extract"] = module
    try:
        spec.loader.exec_module(module)
        assert module.main(["--references", "3", "--side", "128", "--repeats", "1"]) == 0
    finally:
        sys.modules.pop("agentic_extract", None)
    out = capsys.readouterr().out
    assert "references: 3 x 128x128 RGB" in out and "per reference:" in out
    for name in ("palette", "grading", "lighting", "composition"):
        assert f"  {name}: " in out
