"""Style files shared by content: the locks that keep a row from naming a missing file.

Two styles of the same bytes name one file, ``KILN_HOME/styles/<sha256>.safetensors``.
An import writes its row and puts the file in place, a delete removes its row and the
file when no row names it any more, and each holds ``lock_file`` for the file's SHA-256
while it does: the database's write lock on SQLite (every writing transaction begins
``IMMEDIATE``), a transaction-scoped advisory lock on PostgreSQL, which every node of a
cluster shares. A file lock (``flock``) beside the file would serve one host only: on
network file systems it is advisory at best, so the database, which every node already
agrees on, holds the lock.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import Connection, func, select, text

from serving.core.ledger.schema import styles

# PostgreSQL advisory locks of style files: (this class, 32 bits of the SHA-256). Two-key
# locks live apart from the one-key migration lock; two files sharing 32 bits only
# take turns.
STYLE_FILE_LOCK_CLASS = 0x73747966  # "styf"


def lock_file(conn: Connection, sha256: str) -> None:
    """Hold the style file of ``sha256`` until ``conn``'s transaction ends."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(bytes.fromhex(sha256[:8]), "big", signed=True)
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:cls AS integer), CAST(:key AS integer))"),
            {"cls": STYLE_FILE_LOCK_CLASS, "key": key},
        )


def is_named(conn: Connection, sha256: str) -> bool:
    """Whether any style names the file of ``sha256``."""
    count = conn.execute(
        select(func.count()).select_from(styles).where(styles.c.sha256 == sha256)
    ).scalar_one()
    return count > 0


def set_aside(path: Path) -> Path | None:
    """Rename ``path`` to a hidden name beside it (None if it is not there), so that a
    delete can remove it after its commit and put it back if the commit fails."""
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.deleted")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    return aside
