"""HTTP route of native edits."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.edits.protocol import EditRequest, EditResponse
from serving.http.edits.serving import ServingEdits
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent

router = APIRouter(tags=["edits"])


@router.post("/v1/edits", response_model=EditResponse)
async def create_edit(
    body: EditRequest, request: Request, state: CoreDep, tenant: TenantDep
) -> Response:
    """Instruct, replace, recreate or erase on ``image`` or ``asset_id``. Results have the
    input's size; outside the (feathered) mask they keep its pixels exactly. Charged the
    catalog's price of its tool per image; an edit of a style image is a style image."""
    service = ServingEdits(state)
    return await run_idempotent(
        state, tenant, request, lambda: service.create(body, tenant, request_id_of(request))
    )
