"""The outermost ASGI middleware: request id, priority class, metrics, the last-resort 500.

``x-kiln-priority: batch`` puts the request's model calls in the fair queue's batch
class (``serving.core.scheduling``); without it a request is ``interactive``; any other
value is a 400 ``invalid_priority``.

Pure ASGI rather than ``BaseHTTPMiddleware`` so streaming responses pass through
untouched and an exception anywhere below (route, handler, serialisation) still gets an
OpenAI-shaped 500 with the request id, which an exception handler alone cannot promise.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.core.errors import REQUEST_ID_HEADER
from serving.core.logs import current_request_id
from serving.core.metrics import Metrics
from serving.core.scheduling.context import PRIORITY_HEADER, check_priority, current_priority
from serving.http.errors import api_error_for, error_response

logger = logging.getLogger(__name__)


def new_request_id() -> str:
    """A fresh request id."""
    return f"req_{uuid.uuid4().hex}"


class RequestContextMiddleware:
    """Gives each request an id (incoming ``x-request-id`` or new), times and counts it.

    ``echo_request_id=False`` is for Ray Serve: its proxy already generates a missing id
    into the request headers and appends ``x-request-id`` to every response, so setting
    it here too would send the header twice.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, echo_request_id: bool = True):
        self.app = app
        self.metrics = metrics
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = MutableHeaders(scope=scope)
        request_id = headers.get(REQUEST_ID_HEADER) or new_request_id()
        if REQUEST_ID_HEADER not in headers:
            headers.append(REQUEST_ID_HEADER, request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        current_request_id.set(request_id)  # this request's task and what it awaits
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                if self.echo_request_id:
                    MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            if PRIORITY_HEADER in headers:  # a client may send its own request as batch work
                current_priority.set(check_priority(headers[PRIORITY_HEADER], PRIORITY_HEADER))
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.exception("request %s failed", request_id)
            if response_started:
                # Headers are gone; the client sees a cut-off body. Nothing more to send.
                return
            response = error_response(api_error_for(exc))
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                template, scope.get("method", "?"), status, time.perf_counter() - started
            )
