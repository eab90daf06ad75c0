"""HTTP route of native edits: the wire request converted once, the core's ``edits`` use
case, the answer encoded as base64 PNG."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.edits.protocol import EditRequest, EditResponse
from serving.http.errors import request_id_of
from serving.http.idempotency import run_idempotent

router = APIRouter(tags=["edits"])


@router.post("/v1/edits", response_model=EditResponse)
async def create_edit(
    body: EditRequest, request: Request, core: CoreDep, tenant: TenantDep
) -> Response:
    """Instruct, replace, recreate or erase on ``image`` or ``asset_id``. Results have the
    input's size; outside the (feathered) mask they keep its pixels exactly. Charged the
    catalog's price of its tool per image; an edit of a style image is a style image.
    ``Prefer: respond-async`` answers 202 with an ``edit`` job whose result is this body."""
    order = body.to_order()
    body.use_priority()

    async def answer() -> EditResponse:
        result = await core.edits.create(tenant.id, order, request_id_of(request))
        return EditResponse.of(result, order.tool)

    return await run_idempotent(core, tenant, request, answer, kind="edit")
