"""The style routes' work: uploads spooled to a temp file, validation and the database off
the event loop."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from fastapi import UploadFile

from serving.core.app import KilnCore
from serving.core.styles.service import StyleImport
from serving.http.auth import Tenant
from serving.http.errors import KilnError
from serving.http.styles.protocol import DeletedStyle, StyleList, StyleObject
from styles.lora_file import check_size

_CHUNK = 1 << 20


class ServingStyles:
    """``/v1/styles`` and ``/v1/styles/{id}``."""

    def __init__(self, state: KilnCore):
        self.state = state
        self.styles = state.styles

    async def create(self, tenant: Tenant, file: UploadFile, request: StyleImport) -> StyleObject:
        """Import the uploaded LoRA: an artist style (admin key only) or the caller's
        private style. The upload is checked for size before it is read."""
        if request.kind == "artist" and not tenant.is_admin:
            raise KilnError(
                403, "importing an artist style needs the admin key", code="admin_required"
            )
        max_bytes = self.state.settings.style_max_bytes
        if file.size is not None:
            check_size(file.size, max_bytes)
        owner = tenant.id if request.kind == "private" else None
        path = await asyncio.to_thread(_spool, file, max_bytes)
        try:
            # A tenant's own import is bounded by its quota; the admin's is not.
            record = await asyncio.to_thread(
                self.styles.import_file, path, request, owner, within_quota=not tenant.is_admin
            )
        finally:
            path.unlink(missing_ok=True)
        return StyleObject.of(record)

    async def list(self, tenant: Tenant) -> StyleList:
        records = await asyncio.to_thread(self.styles.list, tenant.id)
        return StyleList(data=[StyleObject.of(r) for r in records])

    async def get(self, tenant: Tenant, style_id: str) -> StyleObject:
        return StyleObject.of(await asyncio.to_thread(self.styles.get, tenant.id, style_id))

    async def delete(self, tenant: Tenant, style_id: str) -> DeletedStyle:
        await asyncio.to_thread(self.styles.delete, tenant.id, style_id, admin=tenant.is_admin)
        return DeletedStyle(id=style_id)


def _spool(file: UploadFile, max_bytes: int) -> Path:
    """Copy the upload to a private temp file, refusing it once past ``max_bytes`` (for
    uploads whose size was not known up front)."""
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
