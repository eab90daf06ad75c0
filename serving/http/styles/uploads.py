"""A LoRA upload spooled to a private temp file, so that the import (``Styles.import_file``)
reads a path like any other, and an upload over ``KILN_STYLE_MAX_BYTES`` whose size was
not known up front is cut as it is copied (413) rather than kept whole."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import UploadFile

from styles.lora_file import check_size

_CHUNK = 1 << 20


def spool(file: UploadFile, max_bytes: int) -> Path:
    """Copy the upload to a private temp file, refusing it once past ``max_bytes``. The
    caller removes the file. Blocking: run it in a thread."""
    fd, name = tempfile.mkstemp(prefix="kiln-style-", suffix=".safetensors")
    path = Path(name)
    try:
        file.file.seek(0)
        written = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := file.file.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    check_size(written, max_bytes)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
