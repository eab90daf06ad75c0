"""HTTP routes of styles: import a LoRA (multipart), list and read the caller's styles,
delete one."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from serving.core.errors import KilnError
from serving.core.styles.service import StyleImport
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.styles.protocol import DeletedStyle, StyleList, StyleObject
from serving.http.styles.uploads import spool
from styles.lora_file import check_size
from styles.record import DEFAULT_STRENGTH

router = APIRouter(tags=["styles"])


@router.post("/v1/styles", response_model=StyleObject, status_code=201)
async def import_style(
    core: CoreDep,
    tenant: TenantDep,
    file: Annotated[UploadFile, File(description="the LoRA, a .safetensors file")],
    name: Annotated[str, Form()],
    model: Annotated[str, Form(description="the catalog model the LoRA is for")],
    kind: Annotated[str, Form(description="private (default) | artist (admin key)")] = "private",
    trigger_words: Annotated[
        list[str], Form(description="repeat the field, or separate words with commas")
    ] = [],  # noqa: B006 (FastAPI copies defaults per request)
    default_strength: Annotated[float, Form()] = DEFAULT_STRENGTH,
) -> StyleObject:
    """Import a LoRA style: kohya/civitai or diffusers/peft layout, safetensors only,
    checked against ``model``'s architecture and rank (400 and nothing stored when
    refused); a file over ``KILN_STYLE_MAX_BYTES`` is cut as it streams (413). An artist
    style (``kind=artist``) needs the admin key and is visible to every tenant; a private
    one belongs to the caller alone, within the tenant's quota (``KILN_STYLE_IMPORTS_MAX``
    styles: 429, ``KILN_STYLE_IMPORTS_MAX_BYTES``: 413; code ``style_quota_exceeded``)."""
    words = tuple(w for field in trigger_words for w in field.split(","))
    request = StyleImport(name, model, kind, words, default_strength)
    # Who may make an artist style is the caller's check (serving.core.styles.service).
    if request.kind == "artist" and not tenant.is_admin:
        raise KilnError(403, "importing an artist style needs the admin key", code="admin_required")
    max_bytes = core.settings.style_max_bytes
    if file.size is not None:
        check_size(file.size, max_bytes)  # before a byte is read
    owner = tenant.id if request.kind == "private" else None
    path = await asyncio.to_thread(spool, file, max_bytes)
    try:
        # A tenant's own import is bounded by its quota; the admin's is not.
        record = await asyncio.to_thread(
            core.styles.import_file, path, request, owner, within_quota=not tenant.is_admin
        )
    finally:
        path.unlink(missing_ok=True)
    return StyleObject.of(record)


@router.get("/v1/styles", response_model=StyleList)
async def list_styles(core: CoreDep, tenant: TenantDep) -> StyleList:
    """The styles the caller may use: every artist style and its own private ones."""
    records = await asyncio.to_thread(core.styles.list, tenant.id)
    return StyleList(data=[StyleObject.of(r) for r in records])


@router.get("/v1/styles/{style_id}", response_model=StyleObject)
async def get_style(style_id: str, core: CoreDep, tenant: TenantDep) -> StyleObject:
    """One style the caller may use (another tenant's private style is 404)."""
    return StyleObject.of(await asyncio.to_thread(core.styles.get, tenant.id, style_id))


@router.delete("/v1/styles/{style_id}", response_model=DeletedStyle)
async def delete_style(style_id: str, core: CoreDep, tenant: TenantDep) -> DeletedStyle:
    """Delete a style: the owner its private style, the admin any (a tenant's key on an
    artist style is 403). Its file goes when no other style shares it."""
    await asyncio.to_thread(core.styles.delete, tenant.id, style_id, admin=tenant.is_admin)
    return DeletedStyle(id=style_id)
