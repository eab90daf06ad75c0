"""``kiln weights build-tiny``: build (or check) the tiny models the catalog lists."""

from __future__ import annotations

import argparse
import time

from serving.cli.base import Command, Group, build_tiny, load_catalog
from serving.core.settings import Settings


def cmd_build_tiny(args: argparse.Namespace, settings: Settings) -> int:
    """Build missing tiny models; print each one's folder and sha256 manifest."""
    from weights.tiny import MANIFEST

    catalog = load_catalog(settings)
    started = time.perf_counter()
    built = {str(p) for p in build_tiny(catalog)}
    tiny = [spec for spec in catalog if spec.tiny is not None]
    if not tiny:
        print("the catalog lists no tiny models")
    for spec in tiny:
        state = "built" if str(spec.source) in built else "present"
        print(f"{spec.id}: {state} at {spec.source}")
        print(f"  sha256 manifest: {spec.source / MANIFEST}")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


WEIGHTS = Group(
    "weights",
    "model weights",
    (Command("build-tiny", "build the tiny models", cmd_build_tiny),),
)
