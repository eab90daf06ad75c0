"""FastAPI's way to the core: routes declare ``core: CoreDep`` and get the app's
``KilnCore`` (built once per app by ``serving.http.app.create_app``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.core.app import KilnCore


async def get_core(request: Request) -> KilnCore:
    """FastAPI dependency: the app's ``KilnCore``. ``async`` although it only reads an
    attribute: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop
    on every request for nothing."""
    return request.app.state.kiln


# Route parameter type: ``core: CoreDep``.
CoreDep = Annotated[KilnCore, Depends(get_core)]
