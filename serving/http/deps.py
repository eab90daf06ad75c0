"""FastAPI's way to the core: routes declare ``core: CoreDep`` and get the app's
``KilnCore`` (built once per app by ``serving.http.app.create_app``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.core.app import KilnCore


def get_core(request: Request) -> KilnCore:
    """FastAPI dependency: the app's ``KilnCore``."""
    return request.app.state.kiln


# Route parameter type: ``core: CoreDep``.
CoreDep = Annotated[KilnCore, Depends(get_core)]
