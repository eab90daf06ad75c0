"""``kiln assets purge``: the retention sweep a cron job runs, on the database."""

from __future__ import annotations

import argparse
import sys

from serving.cli.base import Command, Group
from serving.core.settings import Settings


def cmd_assets_purge(args: argparse.Namespace, settings: Settings) -> int:
    """Delete unlicensed assets older than N days (a cron job's retention sweep)."""
    from serving.core.assets import Assets, BlobStore
    from serving.core.ledger import Ledger

    days = args.days or settings.asset_retention_days
    if days is None or days < 1:
        print("kiln: give --days N (at least 1) or set KILN_ASSET_RETENTION_DAYS", file=sys.stderr)
        return 2
    ledger = Ledger.of(settings)
    try:
        purged = Assets(ledger.engine, BlobStore(settings.assets_dir)).purge_expired(days)
    finally:
        ledger.close()
    print(f"deleted {purged} unlicensed asset(s) older than {days} day(s)")
    return 0


def _purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, help="default KILN_ASSET_RETENTION_DAYS")


ASSETS = Group(
    "assets",
    "stored images (on the database)",
    (
        Command(
            "purge",
            "delete unlicensed assets older than N days (licensed ones stay)",
            cmd_assets_purge,
            _purge_arguments,
        ),
    ),
)
