"""Helpers of the job tests: a tenant's client, training images, waiting for a job."""

from __future__ import annotations

import io
import time

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image


def tenant_client(app: FastAPI, credits: int = 1000, name: str = "studio") -> TestClient:
    """A client with a new tenant's key; ``client.tenant_id`` names the tenant."""
    state = app.state.kiln
    tenant = state.accounts.create_tenant(name)
    if credits:
        state.ledger.grant(tenant.id, credits)
    key = state.accounts.create_key(tenant.id).key
    client = TestClient(
        app, raise_server_exceptions=False, headers={"authorization": f"Bearer {key}"}
    )
    client.tenant_id = tenant.id  # type: ignore[attr-defined]
    return client


def png(color: tuple[int, int, int], size: int = 64, seed: int = 0) -> bytes:
    """A PNG of one colour with a little noise (so images differ)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color, np.float32) + rng.normal(0, 8, (size, size, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def image_files(count: int, color=(255, 120, 0), size: int = 64) -> list[tuple]:
    """Multipart ``images`` fields."""
    return [("images", (f"{i}.png", png(color, size, i), "image/png")) for i in range(count)]


def wait_done(client: TestClient, job_id: str, timeout: float = 180) -> dict:
    """Poll the job until it has finished; its last JSON."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        time.sleep(0.1)
