"""benchmarks/delivery_cost.py cannot rot: one small run prints its table."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "delivery_cost.py"


def test_delivery_cost_prints_every_variant(caplog) -> None:
    spec = importlib.util.spec_from_file_location("delivery_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["delivery_cost"] = module
    try:
        spec.loader.exec_module(module)
        with caplog.at_level(logging.INFO, logger="delivery_cost"):
            assert module.main(["--sizes", "256", "--repeats", "1"]) == 0
    finally:
        sys.modules.pop("delivery_cost", None)
    rows = [r.getMessage() for r in caplog.records if r.getMessage().startswith("| 256")]
    assert len(rows) == 4 and rows[0].endswith("1.00x |")
