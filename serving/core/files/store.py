"""Files behind ``response_format=url``: stored under ``KILN_HOME/files`` (folder 0700, files
0600: ``weights.home``), served by expiring HMAC-signed URLs that need no API key (as
OpenAI's image URLs do).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from serving.core.errors import KilnError, not_found
from serving.core.files.refs import FILE_ID, SignedFileRef
from serving.core.imaging import MEDIA_TYPES
from weights.home import open_private, private_dir

logger = logging.getLogger(__name__)

# How often a save sweeps out files whose every URL has expired.
PURGE_EVERY_S = 300.0


def _not_found() -> KilnError:
    # One answer for unknown, expired and tampered: existence never leaks.
    return not_found("file not found or link expired")


class FileStore:
    """Writes files and signs, checks and resolves their URLs."""

    def __init__(self, root: Path, secret: str, ttl_s: int):
        self.root = root
        self._key = secret.encode()
        self.ttl_s = ttl_s
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()

    def save(self, data: bytes, fmt: str) -> str:
        """Store ``data`` (blocking I/O: call off the event loop); returns the file id."""
        if fmt not in MEDIA_TYPES:
            raise ValueError(f"unknown format {fmt!r}")
        private_dir(self.root)
        file_id = f"{uuid.uuid4().hex}.{fmt}"
        tmp = self.root / f".{file_id}.part"
        with open_private(tmp) as out:
            out.write(data)
        tmp.replace(self.root / file_id)
        self._maybe_purge()
        return file_id

    def sign(self, file_id: str, expires: int) -> str:
        """The signature of a file id and expiry."""
        message = f"{file_id}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def signed_url(self, base_url: str, file_id: str, now: float | None = None) -> str:
        """An absolute URL for ``file_id`` that works without a key until it expires."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        query = urlencode({"expires": expires, "sig": self.sign(file_id, expires)})
        return f"{base_url.rstrip('/')}/v1/files/{file_id}?{query}"

    def resolve(self, ref: SignedFileRef, now: float | None = None) -> tuple[Path, str]:
        """The path and media type behind a signed reference; 404 for anything wrong."""
        expires = ref.expires_at()
        if not FILE_ID.match(ref.file_id) or expires is None or not ref.sig:
            raise _not_found()
        if not hmac.compare_digest(self.sign(ref.file_id, expires), ref.sig):
            raise _not_found()
        if expires < (time.time() if now is None else now):
            raise _not_found()
        path = self.root / ref.file_id
        if not path.is_file():
            raise _not_found()
        return path, MEDIA_TYPES[ref.file_id.rsplit(".", 1)[1]]

    def _maybe_purge(self) -> None:
        now = time.time()
        if now - self._last_purge < PURGE_EVERY_S or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._last_purge = now
            # Every URL of a file expires ttl after the file was written.
            cutoff = now - self.ttl_s - 60
            for path in self.root.iterdir():
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink(missing_ok=True)
                except OSError as exc:
                    logger.warning("could not purge %s: %s", path, exc)
        finally:
            self._purge_lock.release()
