"""The layer where a request body is first read: the caller first, then every byte counted.

FastAPI resolves a route's body before its dependencies, so checking the API key in a
dependency comes after the body is in memory. This ASGI middleware runs before any of
that, on every request:

1. Public routes (``PUBLIC_PATHS``, signed file URLs, Serve's ``/-/`` probes) need no key.
   Every other request presents one (``serving.http.credentials.api_key_from``) and it is
   looked up *before a single body byte is read*: missing, unknown or revoked → 401, and
   the connection closes with the body unread.
2. The route's family sets a byte limit (``BodyLimits``, from the ``KILN_BODY_MAX_*``
   settings): a ``Content-Length`` over it → 413 at once; a body that streams past it
   (chunked, or lying about its length) → 413 as soon as the count passes the limit, the
   connection closed and the application told the client went away.
3. A multipart body is parsed as it streams, only to count: at most
   ``KILN_MULTIPART_MAX_PARTS`` parts, each text field at most 1 MiB and each *file* at
   most the family's file limit (Starlette caps text fields only) → 413 naming the field.

Where it runs. Under ``kiln serve`` and ``serve deploy`` the first reader of a body is Ray
Serve's HTTP proxy, which installs this guard itself (``serving.ray.serve_proxy``). The
FastAPI app installs the same guard too (``serving.http.app``), for runs without Serve and as
a second line behind the proxy.

The route families (``ROUTE_FAMILIES``), each with a limit on the whole body and one on a
file part of a multipart body:

- ``POST /v1/images/edits``, ``POST /v1/images/variations`` — images:
  ``KILN_BODY_MAX_IMAGES`` (64 MiB); a file ``KILN_IMAGE_MAX_BYTES``.
- ``POST /v1/styles`` — style: ``KILN_BODY_MAX_STYLE``; a file ``KILN_STYLE_MAX_BYTES``.
- ``POST /v1/styles/train`` — training: ``KILN_BODY_MAX_TRAINING``; a file
  ``KILN_TRAINING_IMAGE_MAX_BYTES``.
- ``POST /v1/batches`` — batch: ``KILN_BATCH_MAX_BYTES`` (+ 1 MiB of form); the file
  ``KILN_BATCH_MAX_BYTES``.
- everything else (JSON) — json: ``KILN_BODY_MAX_JSON`` (64 MiB).

Decision: base64 images in JSON count against ``KILN_BODY_MAX_JSON``; an agentic request
with ten large references may need it raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.core.errors import KilnError
from serving.http.credentials import PRINCIPAL_STATE, api_key_from, invalid_key

if TYPE_CHECKING:
    from serving.core.accounts.service import Principal
    from serving.core.settings import Settings

logger = logging.getLogger(__name__)

# Routes anyone may call: health, metrics, the API docs, signed file URLs (their HMAC is
# the credential) and Ray Serve's own health and route probes (Kubernetes probes them).
PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc"})
PUBLIC_PATHS |= {"/openapi.json", "/"}  # "/": the Studio page (it asks for the key)
PUBLIC_PREFIXES = ("/v1/files/", "/-/", "/studio/")  # /studio/: its static files

# Starlette's own cap on a text field of a form, kept: a field is a name or a number.
FIELD_MAX_BYTES = 1 << 20
# Room for a form's text fields and multipart framing on top of its files.
FORM_OVERHEAD = 1 << 20
# The most images a style training takes (styles.training.MAX_IMAGES, not imported: the
# proxy loads this module and should not load the training code).
TRAINING_MAX_IMAGES = 50

ROUTE_FAMILIES: dict[tuple[str, str], str] = {
    ("POST", "/v1/images/edits"): "images",
    ("POST", "/v1/images/variations"): "images",
    ("POST", "/v1/styles"): "style",
    ("POST", "/v1/styles/train"): "training",
    ("POST", "/v1/batches"): "batch",
}
DEFAULT_FAMILY = "json"

Authenticate = Callable[[str], "Principal | None"]


@dataclass(frozen=True)
class BodyLimit:
    """One route family's limits: the whole body, and one file part of a multipart body,
    each with the setting that sets it (named in the 413)."""

    family: str
    max_bytes: int
    setting: str
    file_bytes: int
    file_setting: str


@dataclass(frozen=True)
class BodyLimits:
    """The table of body limits by route family, and the multipart part caps."""

    families: dict[str, BodyLimit]
    max_parts: int
    field_bytes: int = FIELD_MAX_BYTES

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        """The limits ``settings`` set (derived defaults for styles and training)."""
        style = settings.body_max_style or settings.style_max_bytes + FORM_OVERHEAD
        training = (
            settings.body_max_training
            or TRAINING_MAX_IMAGES * settings.training_image_max_bytes + FORM_OVERHEAD
        )
        limits = [
            BodyLimit("json", settings.body_max_json, "KILN_BODY_MAX_JSON",
                      settings.body_max_json, "KILN_BODY_MAX_JSON"),
            BodyLimit("images", settings.body_max_images, "KILN_BODY_MAX_IMAGES",
                      settings.image_max_bytes, "KILN_IMAGE_MAX_BYTES"),
            BodyLimit("style", style, "KILN_BODY_MAX_STYLE",
                      settings.style_max_bytes, "KILN_STYLE_MAX_BYTES"),
            BodyLimit("training", training, "KILN_BODY_MAX_TRAINING",
                      settings.training_image_max_bytes, "KILN_TRAINING_IMAGE_MAX_BYTES"),
            BodyLimit("batch", settings.batch_max_bytes + FORM_OVERHEAD, "KILN_BATCH_MAX_BYTES",
                      settings.batch_max_bytes, "KILN_BATCH_MAX_BYTES"),
        ]  # fmt: skip
        return cls({limit.family: limit for limit in limits}, settings.multipart_max_parts)

    def for_route(self, method: str, path: str) -> BodyLimit:
        """The limits of a request to ``path`` with ``method``."""
        family = ROUTE_FAMILIES.get((method.upper(), path.rstrip("/") or "/"), DEFAULT_FAMILY)
        return self.families[family]


def is_public(path: str) -> bool:
    """Whether ``path`` is served without an API key."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class BodyRefused(Exception):
    """A body over one of its limits; ``error`` is the 413 to answer."""

    def __init__(self, error: KilnError) -> None:
        super().__init__(error.message)
        self.error = error


def too_large(message: str, code: str, param: str | None = None) -> BodyRefused:
    return BodyRefused(KilnError(413, message, param=param, code=code))


@dataclass
class _Part:
    name: str = ""
    is_file: bool = False
    size: int = 0
    header_name: bytes = b""
    header_value: bytes = b""


class BodyCounter:
    """Counts a body's bytes as they arrive and, for a multipart body, its parts and each
    part's bytes. ``feed`` raises ``BodyRefused`` at the first byte past a limit.

    The multipart parser here only counts (it keeps no data); a body it cannot parse is
    left to the route, which answers its own 400.
    """

    def __init__(self, limit: BodyLimit, limits: BodyLimits, content_type: str | None) -> None:
        self.limit = limit
        self.limits = limits
        self.received = 0
        self.parts = 0
        self._part = _Part()
        self._parser: MultipartParser | None = None
        media, options = parse_options_header(content_type or "")
        boundary = options.get(b"boundary")
        if media == b"multipart/form-data" and boundary:
            callbacks: Any = {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
            }
            self._parser = MultipartParser(boundary, callbacks)

    def feed(self, chunk: bytes) -> None:
        """Count ``chunk``; ``BodyRefused`` once the body is over a limit."""
        self.received += len(chunk)
        if self.received > self.limit.max_bytes:
            raise too_large(
                f"the request body is over {self.limit.max_bytes} bytes ({self.limit.setting})",
                "request_too_large",
            )
        if self._parser is not None and chunk:
            try:
                self._parser.write(chunk)
            except MultipartParseError:
                self._parser = None  # not ours to judge: the route answers its 400

    def _on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise too_large(
                f"the multipart body has more than {self.limits.max_parts} parts "
                "(KILN_MULTIPART_MAX_PARTS)",
                "too_many_parts",
            )
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._part.header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._part.header_value += data[start:end]

    def _on_header_end(self) -> None:
        part = self._part
        if part.header_name.strip().lower() == b"content-disposition":
            _, options = parse_options_header(part.header_value)
            part.name = options.get(b"name", b"").decode("utf-8", "replace")[:200]
            part.is_file = b"filename" in options
        part.header_name = part.header_value = b""

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        part.size += end - start
        if part.is_file and part.size > self.limit.file_bytes:
            raise too_large(
                f"{part.name or 'a file'} is over {self.limit.file_bytes} bytes "
                f"({self.limit.file_setting})",
                "upload_too_large",
                part.name or None,
            )
        if not part.is_file and part.size > self.limits.field_bytes:
            raise too_large(
                f"{part.name or 'a field'} is over {self.limits.field_bytes} bytes "
                "(a text field of a form)",
                "upload_too_large",
                part.name or None,
            )


async def send_error(error: KilnError, send: Send) -> None:
    """Answer ``error`` and close the connection (its body, if any, stays unread)."""
    body = json.dumps(error.body()).encode()
    headers = {**error.headers, "content-type": "application/json", "connection": "close"}
    headers["content-length"] = str(len(body))
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """ASGI middleware: authenticate before the body, then count it (module docstring).

    ``authenticate`` maps a key to its principal (``None``: unknown or revoked); it is a
    blocking database call and runs in a thread. ``remember_principal`` leaves the
    principal on the request's state for ``serving.http.auth.current_tenant`` (in the app; the
    proxy's scope travels to another process, which authenticates again).
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: BodyLimits,
        authenticate: Authenticate,
        remember_principal: bool = False,
    ) -> None:
        self.app = app
        self.limits = limits
        self.authenticate = authenticate
        self.remember_principal = remember_principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if not is_public(path):
            try:
                principal = await self._principal(headers.get("authorization"))
            except KilnError as error:
                await send_error(error, send)
                return
            if self.remember_principal:
                scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        limit = self.limits.for_route(scope["method"], path)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit.max_bytes:
            message = (
                f"the request body is {length} bytes, over {limit.max_bytes} ({limit.setting})"
            )
            await send_error(KilnError(413, message, code="request_too_large"), send)
            return
        await _Guarded(self.app, BodyCounter(limit, self.limits, headers.get("content-type")))(
            scope, receive, send
        )

    async def _principal(self, authorization: str | None) -> Principal:
        key = api_key_from(authorization)
        principal = await asyncio.to_thread(self.authenticate, key)
        if principal is None:
            raise invalid_key()
        return principal


@dataclass
class _Guarded:
    """One request through the app with its body counted; past a limit the client gets
    the 413 and the app a disconnect, and what the app sends afterwards is dropped."""

    app: ASGIApp
    counter: BodyCounter
    refused: bool = False
    response_started: bool = field(default=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                try:
                    self.counter.feed(message.get("body", b""))
                except BodyRefused as refused:
                    self.refused = True
                    if not self.response_started:
                        self.response_started = True
                        await send_error(refused.error, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                return  # the client has its 413; the connection is closing
            if message["type"] == "http.response.start":
                self.response_started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not self.refused:
                raise
            # The app saw the disconnect we made (ClientDisconnect): expected, answered.
            logger.debug("request body refused mid-stream; the app stopped", exc_info=True)
