"""Image jobs on a real SQLite ledger: every step preview an order makes reaches the job's
events, however the order's end falls against the writes in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pipelines.progress import StepEvent
from serving.core.jobs import Jobs
from serving.core.jobs.image_jobs import ImageJobs
from serving.core.ledger import Ledger
from serving.core.order_progress import ORDER_PROGRESS


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as opened:
        yield opened


class SlowPreviewJobs(Jobs):
    """The real job table, each preview write taking a while (a busy database)."""

    def preview(self, job_id: str, preview: dict[str, Any]) -> None:
        time.sleep(0.1)
        super().preview(job_id, preview)


async def two_images_previewed_at_steps_2_and_4(submitted: asyncio.Event) -> dict[str, Any]:
    """What the paid path tells a job of n=2, steps=4, preview_every=2 (the engine's
    events), its steps told at once (a tiny model's stream comes in a burst) and the
    order ending while the job's writer writes their previews."""
    progress = ORDER_PROGRESS.get()
    assert progress is not None
    progress.held(0)
    await submitted.wait()  # the job row is written; its writer runs
    for step in (1, 2, 3, 4):
        previews = [b"webp-%d-0" % step, b"webp-%d-1" % step] if step % 2 == 0 else None
        progress.step(StepEvent(0, step, 4, images=2, previews=previews))
    await asyncio.sleep(0.05)
    return {"ok": True}


def test_an_order_ending_mid_write_keeps_every_preview(ledger: Ledger):
    """The writer holds all four previews when the order ends: all are written before
    the job ends, in order (the order's end used to cancel the writer mid-write and lose
    the previews it had taken but not yet written: CI once saw only (2, 0))."""
    jobs = SlowPreviewJobs(ledger.engine)
    tenant = ledger.create_tenant("studio")

    async def run() -> str:
        image_jobs, submitted = ImageJobs(jobs), asyncio.Event()
        job = await image_jobs.submit(
            tenant.id, "generation", {}, lambda: two_images_previewed_at_steps_2_and_4(submitted)
        )
        submitted.set()
        await image_jobs.wait(job.id)
        return job.id

    job_id = asyncio.run(run())
    events = jobs.events(job_id)
    previews = [(e.data["step"], e.data["image"]) for e in events if e.type == "preview"]
    assert previews == [(2, 0), (2, 1), (4, 0), (4, 1)]
    assert events[-1].data["state"] == "succeeded"
    assert jobs.get(tenant.id, job_id).progress["step"] == 4
