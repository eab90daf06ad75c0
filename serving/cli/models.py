"""``kiln models list``: the catalog as the server would serve it."""

from __future__ import annotations

import argparse

from serving.cli.base import Command, Group, load_catalog
from serving.core.settings import Settings


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the catalog."""
    catalog = load_catalog(settings)
    for spec in catalog:
        prices = ", ".join(f"{tier}={credits:g}" for tier, credits in spec.credits.items())
        print(f"{spec.id}  kind={spec.kind}  family={spec.family}")
        print(f"  sizes: {' '.join(spec.sizes)}")
        print(f"  credits per image: {prices}")
        print(f"  source: {spec.source}")
    return 0


MODELS = Group(
    "models",
    "the model catalog",
    (Command("list", "list models, sizes, prices", cmd_models_list),),
)
