"""The output folder of a batch: image files and ``manifest.jsonl``, crash-safe.

Every file is written atomically (a temp file in the same folder, fsync, ``os.replace``),
so a reader, or a rerun after a SIGKILL, sees a whole file or none. A line's manifest
entry is appended (flushed and fsynced) only after its images are in place, so an entry
always points at complete files; a kill between the two loses that line's entry and the
rerun redoes it, replacing the files by name.

Reading tolerates a torn last line (a kill mid-append): it is ignored, and cut off before
the next append so it cannot glue itself to a new entry. A line's latest entry wins;
``compact`` rewrites the manifest with exactly one entry per line (atomically) at the end
of a run.

An entry (one JSON object a line)::

    {"line": 7, "kind": "generation", "request": {...recorded form...},
     "seeds": [...], "outputs": ["000007-0.png"], "sha256": ["..."],
     "asset_ids": ["..."], "credits_charged": 1, "timings": {...},
     "node_id": "...", "run_id": "...", "tenant_id": "...", "metered": true,
     "error": null}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
# Temp files carry this marker: ``.<name>.kiln-tmp-<random>``; a rerun deletes leftovers.
TEMP_MARKER = ".kiln-tmp-"


def output_name(number: int, index: int) -> str:
    """The file of image ``index`` of line ``number``: ``000007-0.png``."""
    return f"{number:06d}-{index}.png"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    # The rename itself must survive a power cut, not only the bytes.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}{TEMP_MARKER}{secrets.token_hex(4)}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class Manifest:
    """``OUT/manifest.jsonl`` and the output files beside it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST

    def prepare(self) -> dict[int, dict[str, Any]]:
        """Create the folder, delete leftover temp files, cut a torn last line; the
        latest entry of every line, by line number."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(f".*{TEMP_MARKER}*"):
            logger.info("removing the partial file %s of an interrupted run", leftover.name)
            leftover.unlink(missing_ok=True)
        return self._read(repair=True)

    def entries(self) -> dict[int, dict[str, Any]]:
        """The latest entry of every line (a torn last line ignored)."""
        return self._read(repair=False)

    def _read(self, *, repair: bool) -> dict[int, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        entries: dict[int, dict[str, Any]] = {}
        good = 0  # bytes up to the end of the last whole, parseable line
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break  # torn: a kill mid-append
            try:
                entry = json.loads(raw)
            except ValueError:
                break
            good += len(raw)
            if isinstance(entry, dict) and isinstance(entry.get("line"), int):
                entries[entry["line"]] = entry
        if repair and good < len(data):
            logger.warning("manifest %s ends in a torn entry; cutting it off", self.path)
            with self.path.open("r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        """Add one entry durably (flushed and fsynced before returning)."""
        line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def write_outputs(self, number: int, images: Iterable[bytes]) -> tuple[list[str], list[str]]:
        """Each image of line ``number`` written atomically; (relative paths, sha256s)."""
        names, digests = [], []
        for index, data in enumerate(images):
            name = output_name(number, index)
            write_atomic(self.folder / name, data)
            names.append(name)
            digests.append(hashlib.sha256(data).hexdigest())
        return names, digests

    def is_complete(self, entry: dict[str, Any] | None, kind: str, request: dict) -> bool:
        """Whether ``entry`` finished this very request and its files are intact: no
        error, the same kind and recorded request, every output present with its sha256."""
        if entry is None or entry.get("error") is not None:
            return False
        if entry.get("kind") != kind or entry.get("request") != request:
            return False
        outputs, digests = entry.get("outputs") or [], entry.get("sha256") or []
        if not outputs or len(outputs) != len(digests):
            return False
        for name, digest in zip(outputs, digests, strict=True):
            path = self.folder / name
            if not path.is_file() or sha256_file(path) != digest:
                return False
        return True

    def compact(self) -> int:
        """Rewrite the manifest with one entry per line (its latest), in line order,
        atomically; the number of entries."""
        entries = self.entries()
        text = "".join(
            json.dumps(entries[number], sort_keys=True, ensure_ascii=False) + "\n"
            for number in sorted(entries)
        )
        data = text.encode("utf-8")
        if not self.path.exists() or self.path.read_bytes() != data:
            write_atomic(self.path, data)  # a rerun that did nothing leaves it untouched
        return len(entries)
