"""HTTP routes of styles: import a LoRA (multipart), list and read the caller's styles,
delete one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from serving.core.styles.service import StyleImport
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.styles.protocol import DeletedStyle, StyleList, StyleObject
from serving.http.styles.serving import ServingStyles
from styles.record import DEFAULT_STRENGTH

router = APIRouter(tags=["styles"])


@router.post("/v1/styles", response_model=StyleObject, status_code=201)
async def import_style(
    state: CoreDep,
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
    return await ServingStyles(state).create(tenant, file, request)


@router.get("/v1/styles", response_model=StyleList)
async def list_styles(state: CoreDep, tenant: TenantDep) -> StyleList:
    """The styles the caller may use: every artist style and its own private ones."""
    return await ServingStyles(state).list(tenant)


@router.get("/v1/styles/{style_id}", response_model=StyleObject)
async def get_style(style_id: str, state: CoreDep, tenant: TenantDep) -> StyleObject:
    """One style the caller may use (another tenant's private style is 404)."""
    return await ServingStyles(state).get(tenant, style_id)


@router.delete("/v1/styles/{style_id}", response_model=DeletedStyle)
async def delete_style(style_id: str, state: CoreDep, tenant: TenantDep) -> DeletedStyle:
    """Delete a style: the owner its private style, the admin any (a tenant's key on an
    artist style is 403). Its file goes when no other style shares it."""
    return await ServingStyles(state).delete(tenant, style_id)
