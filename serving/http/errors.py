"""Errors as values, mapped to HTTP status in one place.

Every error Kiln answers has OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}``. Services raise domain exceptions (``ParamError``, ``UnknownModelError``,
``KilnError``, Ray's ``BackPressureError``); ``api_error_for`` turns any of them into an
``KilnError`` value and ``error_response`` renders it. Nothing else picks status codes.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.oom import RETRY_AFTER_S as OOM_RETRY_AFTER_S
from pipelines.oom import OutOfGpuMemory
from pipelines.params import ParamError
from serving.core.accounts.service import UnknownKey
from serving.core.assets.service import LicenseRequired, UnknownAsset
from serving.core.errors import REQUEST_ID_HEADER, KilnError
from serving.core.image_inputs import UnsupportedImageFormat, UploadTooLarge
from serving.core.jobs.service import UnknownJob
from serving.core.ledger.types import IdempotencyConflict, InsufficientCredits, UnknownTenant
from serving.core.licenses.service import LicenseNotRequired, UnknownLicense
from serving.core.pagination import UnknownCursor
from serving.core.pins.service import UnknownPin
from serving.core.styles.service import StyleAdminOnly, UnknownStyle
from styles.lora_file import StyleFileError, StyleFileTooLarge
from weights.catalog import CatalogError, UnknownModelError

logger = logging.getLogger(__name__)


def not_found(message: str, code: str = "not_found") -> KilnError:
    """A 404 that says nothing about whether the thing exists for someone else."""
    return KilnError(404, message, code=code)


def service_unavailable(
    message: str, retry_after_s: float = 1.0, code: str = "overloaded"
) -> KilnError:
    """A 503 with ``retry-after``: queues are full (``overloaded``) or a model is loading."""
    retry = str(max(1, round(retry_after_s)))
    return KilnError(503, message, code=code, headers={"retry-after": retry})


def _ray_unavailable_types() -> tuple[type[BaseException], ...]:
    # Only consult Ray when it is already loaded: the router unit tests run without it,
    # and an exception of Ray's cannot exist in a process that never imported Ray.
    if "ray" not in sys.modules:
        return ()
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    return (BackPressureError, DeploymentUnavailableError)


def _unwrap_ray(exc: BaseException) -> BaseException:
    # An exception raised in a replica arrives wrapped in RayTaskError; map its cause.
    if "ray" not in sys.modules:
        return exc
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        return exc.cause
    return exc


def api_error_for(exc: BaseException) -> KilnError:
    """The single mapping from an exception to the error a client sees."""
    exc = _unwrap_ray(exc)
    if isinstance(exc, KilnError):
        return exc
    if isinstance(exc, RequestValidationError):
        return validation_error(exc.errors())
    if isinstance(exc, UnsupportedImageFormat):
        return KilnError(400, str(exc), param=exc.param, code="unsupported_image_format")
    if isinstance(exc, ParamError):
        return KilnError(400, str(exc), param=exc.param, code="invalid_value")
    if isinstance(exc, UnknownModelError):
        return KilnError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, InsufficientCredits):
        # The OpenAI SDK retries unknown statuses unless told not to.
        return KilnError(
            402,
            f"not enough credits: this request needs {exc.needed}, {exc.available} available",
            code="insufficient_credits",
            headers={"x-should-retry": "false"},
        )
    if isinstance(exc, IdempotencyConflict):
        code = {"body_mismatch": "idempotency_key_reused", "in_flight": "idempotency_key_in_flight"}
        return KilnError(409, str(exc), param="Idempotency-Key", code=code[exc.reason])
    if isinstance(exc, UnknownTenant):
        return not_found(f"no tenant {exc.tenant_id!r}", code="tenant_not_found")
    if isinstance(exc, UnknownKey):
        return not_found(f"no API key {exc.key_id!r}", code="key_not_found")
    if isinstance(exc, UnknownAsset):
        return not_found(str(exc), code="asset_not_found")
    if isinstance(exc, UnknownLicense):
        return not_found(str(exc), code="license_not_found")
    if isinstance(exc, LicenseRequired):
        # ``param``: the request's field where the asset was an input (asset_rights).
        param = getattr(exc, "param", None)
        return KilnError(403, str(exc), param=param, code="license_required")
    if isinstance(exc, LicenseNotRequired):
        return KilnError(400, str(exc), code="license_not_required")
    if isinstance(exc, UnknownCursor):
        return KilnError(400, f"{exc}: not one of your ids", param="after", code="invalid_value")
    if isinstance(exc, UnknownStyle):
        return not_found(str(exc), code="style_not_found")
    if isinstance(exc, StyleAdminOnly):
        return KilnError(403, str(exc), code="admin_required")
    if isinstance(exc, StyleFileTooLarge):
        # Over HTTP the body guard cuts such a file as it streams, with the same answer.
        return KilnError(413, str(exc), param=exc.param, code="upload_too_large")
    if isinstance(exc, StyleFileError):
        return KilnError(400, str(exc), param=exc.param, code="invalid_style_file")
    if isinstance(exc, UnknownJob):
        return not_found(str(exc), code="job_not_found")
    if isinstance(exc, UnknownPin):
        return not_found(str(exc), code="pin_not_found")
    if isinstance(exc, UploadTooLarge):
        return KilnError(413, str(exc), param=exc.param, code="upload_too_large")
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return not_found("no such route; see /docs for the API")
        return KilnError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    if isinstance(exc, OutOfGpuMemory):
        # The card is full right now (other work, fragmentation): a retry may fit.
        return service_unavailable(f"{exc}; retry later", OOM_RETRY_AFTER_S, code="out_of_memory")
    unavailable = _ray_unavailable_types()
    if unavailable and isinstance(exc, unavailable):
        retry = getattr(exc, "retry_after_s", None) or 1.0
        return service_unavailable("server busy: the model's queue is full; retry later", retry)
    if isinstance(exc, CatalogError):
        logger.error("catalog error while serving: %s", exc)
    return KilnError(500, "internal server error", code="internal_error")


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
    """Render an ``KilnError`` as the JSON response, with its headers and the request id."""
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def handle_exception(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI exception handler for every mapped exception type."""
    error = api_error_for(exc)
    if error.status == 503 and isinstance(exc, KilnError):
        # Expected and answered with retry-after (a model loading, a full queue): one
        # line, not a traceback per health probe.
        logger.warning("request %s: %s", request_id_of(request), error.message)
    elif error.status >= 500:
        logger.error("request %s failed: %r", request_id_of(request), exc, exc_info=exc)
    return error_response(error)


# Exception types registered with FastAPI; anything else is caught by the middleware.
HANDLED_EXCEPTIONS: tuple[type[Exception], ...] = (
    KilnError,
    RequestValidationError,
    ParamError,
    UnknownModelError,
    StarletteHTTPException,
    InsufficientCredits,
    IdempotencyConflict,
    UnknownTenant,
    UnknownKey,
    UnknownAsset,
    UnknownLicense,
    LicenseRequired,
    LicenseNotRequired,
    UnknownCursor,
    UnknownStyle,
    StyleAdminOnly,
    StyleFileError,
    UnknownJob,
    UnknownPin,
    UploadTooLarge,
    OutOfGpuMemory,
)
