"""Errors as HTTP answers, mapped in one place.

Every error Kiln answers has OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}``. The core raises ``KilnError`` values (each domain error is one, carrying its
status and code); ``api_error_for`` adds HTTP's own two (FastAPI's validation errors and
Starlette's ``HTTPException``) and leaves the rest to the core's translation of the lower
layers' errors (``serving.core.lower_errors``: anything unknown is a 500 that tells
nothing). ``install_error_handler`` registers the one handler; ``error_response``
renders an answer.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.core.errors import REQUEST_ID_HEADER, KilnError, not_found
from serving.core.lower_errors import LOWER_ERROR_TYPES, kiln_error_for

logger = logging.getLogger(__name__)


def api_error_for(exc: BaseException) -> KilnError:
    """The single mapping from an exception to the error a client sees."""
    if isinstance(exc, KilnError):
        return exc
    if isinstance(exc, RequestValidationError):
        return validation_error(exc.errors())
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return not_found("no such route; see /docs for the API")
        unparsed = _unparsed_body(exc)
        if unparsed is not None:
            return unparsed
        return KilnError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    return kiln_error_for(exc)


def _unparsed_body(exc: StarletteHTTPException) -> KilnError | None:
    """FastAPI's "error parsing the body" (a 400 it raises from the parser's own error,
    other than a JSON syntax error) as the ``invalid_json`` error it is, saying why."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, RecursionError):
        reason = "nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        reason = "not UTF-8 (or UTF-16/32) text"
    else:
        return None
    return KilnError(400, f"request body is not valid JSON: {reason}", code="invalid_json")


def _loc_param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or None


def validation_error(errors: list[dict[str, Any]] | Any) -> KilnError:
    """A 400 from pydantic/FastAPI errors: ``param`` is the first bad field's dotted name."""
    errors = list(errors)
    if not errors:
        return KilnError(400, "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "malformed JSON")
        return KilnError(400, f"request body is not valid JSON: {reason}", code="invalid_json")
    messages = []
    for err in errors:
        param = _loc_param(err.get("loc", ()))
        msg = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        messages.append(f"{param}: {msg}" if param else msg)
    param = _loc_param(first.get("loc", ()))
    if first.get("type") == "missing" and param is None:
        messages = ["request body is required"]
    return KilnError(400, "; ".join(messages), param=param, code="invalid_value")


def request_id_of(request: Request) -> str | None:
    """The request id set by the middleware (or the proxy) for this request."""
    return getattr(request.state, "request_id", None) or request.headers.get(REQUEST_ID_HEADER)


def error_response(error: KilnError, request_id: str | None = None) -> JSONResponse:
    """Render a ``KilnError`` as the JSON response, with its headers and the request id."""
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def handle_exception(request: Request, exc: Exception) -> JSONResponse:
    """The FastAPI exception handler of every type ``api_error_for`` maps."""
    error = api_error_for(exc)
    if error.status == 503 and isinstance(exc, KilnError):
        # Expected and answered with retry-after (a model loading, a full queue): one
        # line, not a traceback per health probe.
        logger.warning("request %s: %s", request_id_of(request), error.message)
    elif error.status >= 500:
        logger.error("request %s failed: %r", request_id_of(request), exc, exc_info=exc)
    return error_response(error)


def install_error_handler(app: FastAPI) -> None:
    """Answer the core's errors, HTTP's own and the lower layers' with
    ``handle_exception``; anything else reaches the middleware's last-resort 500."""
    for exc_type in (KilnError, RequestValidationError, StarletteHTTPException,
                     *LOWER_ERROR_TYPES):  # fmt: skip
        app.add_exception_handler(exc_type, handle_exception)
