"""Routes of the Studio's page and static files (package docstring: caching and CSP)."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI, Response

from serving.core.errors import not_found

STATIC = Path(__file__).with_name("static")
PREFIX = "/studio"
# The page template names its files under this placeholder; the digest replaces it.
BASE_PLACEHOLDER = "%STUDIO_BASE%"

# No inline script or style anywhere; images only from this origin, blob: (fetched with
# the key) and data: (CSS); the API is this origin. Nothing may frame the Studio.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
LONG_CACHE = "public, max-age=31536000, immutable"
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class StudioFiles:
    """The static files, read once: their bytes by relative path and their digest."""

    files: dict[str, bytes]
    digest: str
    page: bytes

    @classmethod
    def load(cls, root: Path = STATIC) -> StudioFiles:
        files = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        hasher = hashlib.sha256()
        for name, data in files.items():
            hasher.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        digest = hasher.hexdigest()[:16]
        page = files.pop("index.html").replace(
            BASE_PLACEHOLDER.encode(), f"{PREFIX}/{digest}".encode()
        )
        return cls(files, digest, page)

    def base(self) -> str:
        """The URL prefix the current files are served under."""
        return f"{PREFIX}/{self.digest}"


def studio_router(files: StudioFiles) -> APIRouter:
    """``GET /`` (the page, ``no-cache``) and ``GET /studio/<digest>/<path>`` (a year)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page() -> Response:
        headers = {**SECURITY_HEADERS, "cache-control": "no-cache"}
        return Response(files.page, media_type="text/html; charset=utf-8", headers=headers)

    @router.get(PREFIX + "/{digest}/{path:path}")
    async def static_file(digest: str, path: str) -> Response:
        data = files.files.get(path)
        # An old digest is a 404, not today's file: a year-long cache must never hold
        # bytes under a name that promised others.
        if digest != files.digest or data is None:
            raise not_found(f"no Studio file {path!r}")
        media_type = TYPES.get(Path(path).suffix) or mimetypes.guess_type(path)[0]
        headers = {**SECURITY_HEADERS, "cache-control": LONG_CACHE}
        return Response(data, media_type=media_type or "application/octet-stream", headers=headers)

    return router


def mount_studio(app: FastAPI) -> None:
    """Serve the Studio on ``app`` (its files read now, once)."""
    app.include_router(studio_router(StudioFiles.load()))
