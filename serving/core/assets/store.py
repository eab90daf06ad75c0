"""Content-addressed files of assets: ``KILN_HOME/assets/ab/abcdef…64hex.png``.

A file is named by the SHA-256 of its bytes, so two assets with the same bytes share one
file, a file is never rewritten with other content, and the name alone verifies it. The
two-character fan-out keeps directories small. On a cluster the folder is a shared mount
(DESIGN.md §6); writes are atomic (temp file, then rename), so a reader never sees half a
file. Folders are made 0700 and files 0600 (``weights.home``): tenants' images are nobody
else's on the host.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from weights.home import open_private, private_dir

SHA256 = re.compile(r"^[0-9a-f]{64}$")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class BlobStore:
    """Files by SHA-256 under ``root``. Blocking I/O: call off the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str, media_type: str) -> Path:
        """Where the file ``sha256`` of ``media_type`` lives (whether or not it exists)."""
        if not SHA256.match(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.{EXTENSIONS[media_type]}"

    def put(self, data: bytes, media_type: str) -> str:
        """Store ``data``; returns its SHA-256. Storing bytes already there is a no-op."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest, media_type)
        if path.is_file():
            return digest
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
        try:
            with open_private(tmp) as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # replaced, it is gone already: no unlink then
            raise
        return digest

    def read(self, sha256: str, media_type: str) -> bytes:
        """The bytes of ``sha256``; FileNotFoundError when the file is gone."""
        return self.path(sha256, media_type).read_bytes()

    def remove(self, sha256: str, media_type: str) -> bool:
        """Delete the file (callers check no asset still refers to it); True if it existed."""
        path = self.path(sha256, media_type)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
