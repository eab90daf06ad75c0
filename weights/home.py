"""``KILN_HOME`` on disk: what Kiln creates there is its user's alone.

    private_dir(home / "assets")            # missing folders made 0700, whatever the umask
    with open_private(tmp) as out: ...      # a new file, 0600 from its first byte
    private_file(home / "kiln.db")          # an empty 0600 file unless one is there

The ledger holds API key hashes and every tenant's balance; assets, styles, pins and
signed-URL files are tenants' images and LoRAs. None of it is anyone else's business on
a shared host, so folders Kiln makes are 0700 and files it stores 0600 — set explicitly,
not left to the umask. What Kiln *finds* (a ``KILN_HOME`` the operator made, perhaps a
cluster mount with group access on purpose, or a ``kiln.db`` from an older version) is
left as it is: ``warn_if_shared`` says once per process what is open and how to close it.

The tiny models under ``KILN_HOME/models`` are public, deterministic weights: their files
keep the umask's mode (the folders on the way there are still 0700, so nobody else
reaches them through a home Kiln created).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600

_warned: set[Path] = set()
_warned_lock = threading.Lock()


def private_dir(path: Path) -> Path:
    """Make ``path`` and any missing parent a folder of mode 0700; folders that exist
    already are left alone. Safe when several processes create the same folder at once."""
    path = Path(path)
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # another process made it first: theirs, with our mode too
        # mkdir's mode is filtered by the umask (a 0o077 umask would still do, a 0o277
        # one would lock the owner out): set it exactly.
        os.chmod(folder, DIR_MODE)
    return path


def open_private(path: Path) -> BinaryIO:
    """A new file at ``path`` open for writing, created 0600 (never wider, whatever the
    umask); ``FileExistsError`` if something is there already (temp names are fresh)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    return os.fdopen(fd, "wb")


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists, creating it empty with mode 0600 (and its folders 0700)
    when missing; an existing file or folder is kept as it is, with a warning if others
    may read it.

    For SQLite's ``kiln.db``: SQLite creates a new database 0644, and its ``-wal`` and
    ``-shm`` files with the database's own mode, so a database file that starts 0600
    keeps all three private.
    """
    path = Path(path)
    warn_if_shared(private_dir(path.parent))  # quiet for a folder made here, 0700
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        warn_if_shared(path)
    else:
        os.close(fd)
    return path


def warn_if_shared(path: Path) -> bool:
    """Whether group or others have any access to ``path``; logged as a warning once per
    process and path, with the command that closes it. Kiln never changes the mode of
    what it did not create: a shared mount may be open to a group on purpose."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    if not mode & 0o077:
        return False
    with _warned_lock:
        if path in _warned:
            return True
        _warned.add(path)
    wanted = DIR_MODE if os.path.isdir(path) else FILE_MODE
    logger.warning(
        "%s has mode %o: other users of this host may read Kiln's data there; "
        "`chmod %o %s` unless that is on purpose",
        path, mode, wanted, path,
    )  # fmt: skip
    return True
