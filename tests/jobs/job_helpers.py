"""Helpers of the job tests: a tenant's client, training images, waiting for a job."""

from __future__ import annotations

import io
import time

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image


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
