"""A pin as the service hands it around."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

PIN_KINDS = ("character", "product")
MAX_PIN_IMAGES = 4
MAX_NAME_CHARS = 200
PIN_ID_PREFIX = "pin_"


@dataclass(frozen=True)
class KeptPicture:
    """One picture a pin keeps: the SHA-256 of its PNG file, and the caller's asset it
    came from (None for an upload), whose rights are checked again at every use."""

    sha256: str
    asset_id: str | None = None


@dataclass(frozen=True)
class PinRecord:
    """One pin: ``images`` pictures embedded once for each IP-Adapter in ``components``
    (the file ``<pins dir>/<id>.safetensors``, of SHA-256 ``sha256``), and the pictures
    themselves (``pictures``, in the order given; empty for a pin made before Kiln kept
    them, which works on IP-Adapter models only)."""

    id: str
    tenant_id: str
    kind: str
    name: str
    images: int
    components: tuple[str, ...]
    sha256: str
    created: datetime
    pictures: tuple[KeptPicture, ...] = ()


def new_pin_id() -> str:
    return PIN_ID_PREFIX + secrets.token_hex(12)
