"""``Idempotency-Key`` on the generation routes, with Stripe's semantics.

The first request with a key runs and its response is stored; a retry with the same key
and the same body (and route) gets the stored bytes back without running or charging
again; the same key with another body, or while the first is still running, is 409. A
request that fails (any error, 402 included) gives its key up, so a retry runs afresh.
Keys are scoped to the tenant. Keys expire after 24 hours, and a claim left in flight by
a crashed process is taken over after 10 minutes (``serving.core.ledger.idempotency``); each
request finishes or abandons only its own claim.

The image routes name their job ``kind``: with ``Prefer: respond-async`` the answer is the
job (202, ``Location: /v1/jobs/{id}``; ``serving.core.jobs.image_jobs``) and a replay with
the same key answers the same job (the asynchronous and the synchronous form of one body
are different requests to the key: 409). Without it, the work is cancelled if the client
hangs up (``serving.http.async_requests``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import Request, Response
from pydantic import BaseModel

from serving.core.app import KilnCore
from serving.core.ledger import body_hash
from serving.core.ledger.idempotency import ClaimLost
from serving.http.async_requests import CLIENT_CLOSED, job_params, respond_async, until_hang_up
from serving.http.auth import Tenant
from serving.http.errors import KilnError
from serving.http.jobs.protocol import JobObject

logger = logging.getLogger(__name__)

HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
MAX_KEY_CHARS = 255


def json_response(model: BaseModel | Response, exclude_none: bool) -> tuple[bytes, Response]:
    if isinstance(model, Response):  # a 499 to a client that hung up
        return bytes(model.body), model
    if isinstance(model, JobObject):  # a job's own shape, whatever the route's is
        body = model.model_dump_json().encode()
        return body, job_response(body)
    body = model.model_dump_json(exclude_none=exclude_none).encode()
    return body, Response(body, media_type="application/json")


def job_response(body: bytes, headers: dict[str, str] | None = None) -> Response:
    """A submitted job's 202, pointing at it (also for a replay of its stored body)."""
    job_id = json.loads(body)["id"]
    return Response(
        body,
        status_code=202,
        media_type="application/json",
        headers={"location": f"/v1/jobs/{job_id}", **(headers or {})},
    )


async def run_idempotent(
    state: KilnCore,
    tenant: Tenant,
    request: Request,
    produce: Callable[[], Awaitable[BaseModel]],
    *,
    exclude_none: bool = False,
    kind: str | None = None,
) -> Response:
    """Answer ``produce()`` as JSON, once per ``Idempotency-Key`` (when the header is set);
    as a job of ``kind`` when the request prefers ``respond-async``."""
    asynchronous = kind is not None and respond_async(request)
    answer: Callable[[], Awaitable[BaseModel | Response]]
    if kind is not None and asynchronous:

        async def body() -> dict:
            return json.loads((await produce()).model_dump_json(exclude_none=exclude_none))

        async def answer() -> BaseModel:
            params = await job_params(request)
            images = state.job_runner.images
            return JobObject.of(await images.submit(tenant.id, kind, params, body))
    else:

        async def answer() -> BaseModel | Response:
            return await until_hang_up(request, produce())

    key = request.headers.get(HEADER)
    if key is None:
        return json_response(await answer(), exclude_none)[1]
    if not key.strip() or len(key) > MAX_KEY_CHARS:
        raise KilnError(
            400,
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters",
            param="Idempotency-Key",
            code="invalid_value",
        )
    route = request.url.path + (" respond-async" if asynchronous else "")
    digest = body_hash(route.encode() + b"\n" + await request.body())
    keys = state.ledger.idempotency
    claimed = datetime.now(UTC)  # the claim's token: finish/abandon touch only this claim
    stored = await asyncio.to_thread(keys.begin, tenant.id, key, digest, claimed)
    if stored is not None:
        if stored.status == 202:
            return job_response(stored.body, {REPLAYED_HEADER: "true"})
        return Response(
            stored.body,
            status_code=stored.status,
            media_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )
    try:
        body, response = json_response(await answer(), exclude_none)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(keys.abandon, tenant.id, key, claimed))
        raise
    if response.status_code == CLIENT_CLOSED:  # nobody got an answer: the key is given up
        await asyncio.shield(asyncio.to_thread(keys.abandon, tenant.id, key, claimed))
        return response
    try:
        await asyncio.to_thread(keys.finish, tenant.id, key, response.status_code, body, claimed)
    except ClaimLost:
        # This request outlived its claim's lease and a retry took the key over: the
        # retry's answer is the one stored; this one still goes to its client.
        logger.warning("idempotency key %r was taken over before its request ended", key)
    return response
