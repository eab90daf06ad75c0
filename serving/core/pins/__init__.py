"""Character and product pins: a tenant's IP-Adapter image embeddings, by name
(``POST/GET /v1/pins``, ``DELETE /v1/pins/{id}``), applied to generations by
``serving.core.pins.conditioning``."""

from serving.core.pins.service import Pins, UnknownPin

__all__ = ["Pins", "UnknownPin"]
