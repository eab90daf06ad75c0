"""``Idempotency-Key`` on the generation routes, with Stripe's semantics.

The first request with a key runs and its response is stored; a retry with the same key
and the same body (and route) gets the stored bytes back without running or charging
again; the same key with another body, or while the first is still running, is 409. A
request that fails (any error, 402 included) gives its key up, so a retry runs afresh.
Keys are scoped to the tenant. Keys expire after 24 hours, and a claim left in flight by
a crashed process is taken over after 10 minutes (``serving.core.ledger.idempotency``); each
request finishes or abandons only its own claim.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import Request, Response
from pydantic import BaseModel

from serving.core.app import KilnCore
from serving.core.ledger import body_hash
from serving.core.ledger.idempotency import ClaimLost
from serving.http.auth import Tenant
from serving.http.errors import KilnError

logger = logging.getLogger(__name__)

HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
MAX_KEY_CHARS = 255


def json_response(model: BaseModel, exclude_none: bool) -> tuple[bytes, Response]:
    body = model.model_dump_json(exclude_none=exclude_none).encode()
    return body, Response(body, media_type="application/json")


async def run_idempotent(
    state: KilnCore,
    tenant: Tenant,
    request: Request,
    produce: Callable[[], Awaitable[BaseModel]],
    *,
    exclude_none: bool = False,
) -> Response:
    """Answer ``produce()`` as JSON, once per ``Idempotency-Key`` (when the header is set)."""
    key = request.headers.get(HEADER)
    if key is None:
        return json_response(await produce(), exclude_none)[1]
    if not key.strip() or len(key) > MAX_KEY_CHARS:
        raise KilnError(
            400,
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters",
            param="Idempotency-Key",
            code="invalid_value",
        )
    digest = body_hash(request.url.path.encode() + b"\n" + await request.body())
    keys = state.ledger.idempotency
    claimed = datetime.now(UTC)  # the claim's token: finish/abandon touch only this claim
    stored = await asyncio.to_thread(keys.begin, tenant.id, key, digest, claimed)
    if stored is not None:
        return Response(
            stored.body,
            status_code=stored.status,
            media_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )
    try:
        body, response = json_response(await produce(), exclude_none)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(keys.abandon, tenant.id, key, claimed))
        raise
    try:
        await asyncio.to_thread(keys.finish, tenant.id, key, response.status_code, body, claimed)
    except ClaimLost:
        # This request outlived its claim's lease and a retry took the key over: the
        # retry's answer is the one stored; this one still goes to its client.
        logger.warning("idempotency key %r was taken over before its request ended", key)
    return response
