"""HTTP route of signed file URLs: no API key, the signature is the credential."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from serving.core.files.refs import SignedFileRef
from serving.http.deps import CoreDep

router = APIRouter(tags=["files"])


@router.get(
    "/v1/files/{file_id}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
async def get_file(
    file_id: str,
    core: CoreDep,
    expires: str | None = None,
    sig: str | None = None,
) -> FileResponse:
    """The bytes behind a ``response_format=url`` link, until it expires."""
    path, media_type = core.files.resolve(SignedFileRef(file_id, expires, sig))
    # private: the URL is a bearer credential; shared caches must not keep the bytes.
    return FileResponse(path, media_type=media_type, headers={"cache-control": "private"})
