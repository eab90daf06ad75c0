"""Pins in the ledger's database, their embeddings and pictures under ``KILN_HOME/pins``.

    record = pins.create(tenant_id, "character", "Mira", {"tiny-ip-adapter-sd15": embeds},
                         [(pixels, "asset_…")])
    pins.get(tenant_id, record.id)     # UnknownPin (404) unless it is the tenant's own
    pins.embeddings(record)            # {component id: float32 (images, dim)}
    pins.picture_files(record)         # the kept pictures' PNG bytes, in order

Pictures (for multi-reference models, which take the images themselves) are PNG files
named by their SHA-256 (verified on every read) in the pin's own folder,
``pins/pictures/<pin id>/``: content-addressed within the pin, so deleting a pin removes
exactly its pictures and no other pin's (a store shared between pins would have to count
references across concurrent creates and deletes). They are the decoded input pixels at
the size given (within ``KILN_IMAGE_MAX_PIXELS``), as RGB.

A pin is its tenant's alone: another tenant's pin is *unknown*, never forbidden, so its
existence does not leak (DESIGN.md §5). The file is written (atomically) before the row,
so a row never names a missing file; a row that cannot be written takes its file along.
Blocking I/O: call off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, insert, select

from pipelines.param_error import check_text
from pipelines.params import ParamError
from pipelines.provenance import encode_png
from serving.core.assets.store import BlobStore
from serving.core.errors import KilnError
from serving.core.ledger.ledger import as_utc
from serving.core.ledger.schema import pins
from serving.core.pins.record import (
    MAX_NAME_CHARS,
    MAX_PIN_IMAGES,
    PIN_KINDS,
    KeptPicture,
    PinRecord,
    new_pin_id,
)
from weights.home import private_dir

logger = logging.getLogger(__name__)

PICTURE_MEDIA_TYPE = "image/png"


class UnknownPin(KilnError):
    """No pin with this id of this tenant (another tenant's counts as none: 404)."""

    def __init__(self, pin_id: str) -> None:
        super().__init__(404, f"no pin {pin_id!r}", code="pin_not_found")
        self.pin_id = pin_id


def check_pin_fields(kind: str, name: str) -> str:
    """The stripped name; ``ParamError`` for an unknown kind or a bad name."""
    if kind not in PIN_KINDS:
        raise ParamError("kind", f"kind must be one of {', '.join(PIN_KINDS)}, got {kind!r}")
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise ParamError("name", f"name must be 1-{MAX_NAME_CHARS} characters")
    return check_text("name", name)


class Pins:
    """Pin records in the database at ``engine``, embedding files under ``pins_dir``."""

    def __init__(self, engine: Engine, pins_dir: Path) -> None:
        self.engine = engine
        self.pins_dir = pins_dir

    def create(
        self,
        tenant_id: str,
        kind: str,
        name: str,
        embeddings: dict[str, np.ndarray],
        pictures: Sequence[tuple[np.ndarray, str | None]] = (),
    ) -> PinRecord:
        """Store a pin of ``tenant_id`` with its embeddings per IP-Adapter component and
        its ``pictures`` (uint8 HxWx3 pixels, and the asset each came from)."""
        name = check_pin_fields(kind, name)
        # Embeddings for every IP-Adapter alike, or none at all for a pin of pictures
        # alone (no IP-Adapter installed; models that take pictures use it).
        counts = {int(e.shape[0]) for e in embeddings.values()} or {len(pictures)}
        if len(counts) != 1 or not 1 <= counts.pop() <= MAX_PIN_IMAGES:
            raise ValueError("a pin needs 1-4 pictures, embedded for every component alike")
        tensors = {
            component: np.ascontiguousarray(e, dtype=np.float32)
            for component, e in embeddings.items()
        }
        record_id = new_pin_id()
        path = self.file_path(record_id)
        store = self._pictures(record_id)
        kept = tuple(
            KeptPicture(store.put(encode_png(pixels, {}), PICTURE_MEDIA_TYPE), asset_id)
            for pixels, asset_id in pictures
        )
        sha256 = _write_atomically(path, tensors, {"pin": record_id, "kind": kind})
        record = PinRecord(
            id=record_id,
            tenant_id=tenant_id,
            kind=kind,
            name=name,
            images=int(next(iter(tensors.values())).shape[0]) if tensors else len(kept),
            components=tuple(tensors),
            sha256=sha256,
            created=datetime.now(UTC),
            pictures=kept,
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(pins).values(**_row(record)))
        except BaseException:
            path.unlink(missing_ok=True)
            shutil.rmtree(store.root, ignore_errors=True)
            raise
        logger.info("pin %s (%s, %d images) for %s", record.id, kind, record.images, tenant_id)
        return record

    def get(self, tenant_id: str, pin_id: str) -> PinRecord:
        """The tenant's pin ``pin_id``; ``UnknownPin`` otherwise."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(pins).where(pins.c.id == pin_id, pins.c.tenant_id == tenant_id)
            ).one_or_none()
        if row is None:
            raise UnknownPin(pin_id)
        return _record(row._mapping)

    def list(self, tenant_id: str) -> list[PinRecord]:
        """The tenant's pins, newest first."""
        query = select(pins).where(pins.c.tenant_id == tenant_id)
        with self.engine.begin() as conn:
            rows = conn.execute(query.order_by(pins.c.created.desc(), pins.c.id.desc()))
            return [_record(row._mapping) for row in rows]

    def delete(self, tenant_id: str, pin_id: str) -> PinRecord:
        """Delete the tenant's pin and its file; ``UnknownPin`` for anyone else's."""
        record = self.get(tenant_id, pin_id)
        with self.engine.begin() as conn:
            conn.execute(delete(pins).where(pins.c.id == pin_id, pins.c.tenant_id == tenant_id))
        self.file_path(pin_id).unlink(missing_ok=True)
        shutil.rmtree(self._pictures(pin_id).root, ignore_errors=True)
        return record

    def picture_files(self, record: PinRecord) -> list[bytes]:
        """The PNG bytes of the pin's kept pictures, in order, each checked against its
        name (its SHA-256); empty for a pin made before Kiln kept them."""
        store = self._pictures(record.id)
        files = []
        for picture in record.pictures:
            data = store.read(picture.sha256, PICTURE_MEDIA_TYPE)
            if hashlib.sha256(data).hexdigest() != picture.sha256:
                raise RuntimeError(f"pin {record.id}: picture {picture.sha256} does not match")
            files.append(data)
        return files

    def _pictures(self, pin_id: str) -> BlobStore:
        return BlobStore(self.pins_dir / "pictures" / pin_id)

    def embeddings(self, record: PinRecord) -> dict[str, np.ndarray]:
        """The pin's embeddings by component, checked against the recorded SHA-256."""
        from safetensors.numpy import load

        data = self.file_path(record.id).read_bytes()
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise RuntimeError(f"pin {record.id}: embeddings file does not match its record")
        return load(data)

    def file_path(self, pin_id: str) -> Path:
        return self.pins_dir / f"{pin_id}.safetensors"


def _write_atomically(path: Path, tensors: dict[str, np.ndarray], metadata: dict) -> str:
    from safetensors.numpy import save

    data = save(tensors, metadata=metadata)
    private_dir(path.parent)  # tenants' embeddings; mkstemp makes the file 0600
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def _row(record: PinRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "tenant_id": record.tenant_id,
        "kind": record.kind,
        "name": record.name,
        "images": record.images,
        "components": json.dumps(list(record.components)),
        "sha256": record.sha256,
        "created": record.created,
        "pictures": json.dumps(
            [{"sha256": p.sha256, "asset_id": p.asset_id} for p in record.pictures]
        ),
    }


def _record(row: Any) -> PinRecord:
    return PinRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        kind=row["kind"],
        name=row["name"],
        images=row["images"],
        components=tuple(json.loads(row["components"])),
        sha256=row["sha256"],
        created=as_utc(row["created"]),
        pictures=tuple(
            KeptPicture(p["sha256"], p["asset_id"]) for p in json.loads(row["pictures"] or "[]")
        ),
    )
