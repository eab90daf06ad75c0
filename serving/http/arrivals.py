"""Image requests counted as on their way to a model from the moment their route is known.

The fair queue gathers a burst's calls into one shared pipeline call when a call that
finds its replica free knows others are coming (``serving.core.scheduling.admission``).
An order says which model it is for only once its request is authenticated, parsed and
checked, a few milliseconds in. Without this count a burst's first request could reach the
queue before any other had got that far, and run alone while the other seven waited for it.
So this ASGI middleware counts a request (``Admission.arriving``) from the moment it
reaches one of ``IMAGE_ROUTES`` behind the body guard (authenticated callers only) until
its order names its model or the request ends.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.core.scheduling.admission import Admission

# The routes whose requests run a paid image order on a base model's replicas (an
# upscale's or an extract's model is not one of those queues).
IMAGE_ROUTES = frozenset(
    {
        "/v1/generations",
        "/v1/edits",
        "/v1/agentic/generations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/images/variations",
    }
)


class ArrivalsMiddleware:
    """Counts each POST to an image route as arriving at ``admission``'s models."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") not in IMAGE_ROUTES
        ):
            await self.app(scope, receive, send)
            return
        with self.admission.arriving():
            await self.app(scope, receive, send)
