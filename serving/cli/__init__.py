"""The ``kiln`` command line: ``serve``, ``models list``, ``weights build-tiny``, ``batch``,
and the admin's ``tenants create``, ``keys create|list|revoke``, ``credits grant``,
``assets purge``, ``styles import|list|train`` (directly on the database at
``KILN_DATABASE_URL``, no server needed).

One module per command group (``serving.cli.serve``, ``.models``, ``.weights``,
``.accounts``, ``.assets``, ``.styles``, ``.batch``), each listing its commands
(``serving.cli.base``); this module puts them on one parser and runs the one asked for.
Heavy imports (torch, Ray) wait inside the commands: ``kiln --help`` starts at once.

The only package that prints: everything else logs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from serving.cli.accounts import CREDITS, KEYS, TENANTS
from serving.cli.assets import ASSETS
from serving.cli.base import CommandFailed
from serving.cli.batch import BATCH
from serving.cli.models import MODELS
from serving.cli.serve import SERVE
from serving.cli.styles import STYLES
from serving.cli.weights import WEIGHTS
from serving.core.settings import Settings, SettingsError

# In the order ``kiln --help`` lists them.
COMMANDS = (SERVE, MODELS, WEIGHTS, TENANTS, KEYS, CREDITS, ASSETS, STYLES, BATCH)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kiln``."""
    parser = argparse.ArgumentParser(prog="kiln", description="Kiln image-generation server")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kiln`` console script."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Before anything imports huggingface_hub: nothing is downloaded at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except SettingsError as exc:
        print(f"kiln: configuration error: {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"kiln: {exc}", file=sys.stderr)
        return 1
