"""Following a job as it runs: its events in batches, as they are written, until it ends.

``GET /v1/jobs/{id}/events`` frames what ``follow`` yields as Server-Sent Events
(``serving.http.jobs.events``); following costs little while it waits, whoever writes
the job:

- It wakes on change. A write made in this process (the thread backend's worker, a
  cancel) signals the job after its commit (``serving.core.jobs.watch.SIGNALS``), and the
  follower reads at once. A write by another process (a Ray task's worker, another
  ingress replica) raises no signal here, so it also polls every ``POLL_S``: that bounds
  how late such progress shows, and a second is plenty for a progress bar. Reads are at
  least ``MIN_READ_INTERVAL_S`` apart, so a job reporting fast is sent in batches. The old
  design (two queries every 0.25 s, each taking SQLite's write lock) made 50 streams
  400 write-locked transactions a second.
- Each wake-up is one read on ``read_only`` (``Jobs.watch``): the job's row, and its
  events only when its counter moved. On SQLite it takes no lock, so followers neither
  wait for writers nor hold them up.
- A tenant holds at most ``KILN_EVENT_STREAMS_PER_TENANT`` followers per process
  (``open_stream``: 429 ``too_many_streams`` with ``retry-after`` past it).
- The follower's API key is looked up again every ``KEY_RECHECK_S`` (answers shared by
  the followers of one key); once it is revoked, ``follow`` raises ``KeyRevoked``, so the
  caller can tell the client why it stops rather than just stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from serving.core.accounts import Accounts
from serving.core.errors import too_many_requests
from serving.core.jobs.service import JobEvent, Jobs
from serving.core.jobs.watch import KEYS, SIGNALS, STREAMS

logger = logging.getLogger(__name__)

# How often a follower asks the database, for progress written by another process.
POLL_S = 1.0
# The least time between two reads of one follower: a job that reports a hundred steps a
# second is sent in batches, not read a hundred times a second per follower.
MIN_READ_INTERVAL_S = 0.1
# What a client over the stream cap is told to wait before trying again.
STREAMS_RETRY_AFTER_S = 5


class KeyRevoked(Exception):
    """The API key a job was followed with was revoked while it was followed."""


def open_stream(tenant_id: str, cap: int) -> Callable[[], None]:
    """Take one of the tenant's ``cap`` stream slots in this process (429
    ``too_many_streams`` when all are taken); returns what frees it."""
    if not STREAMS.acquire(tenant_id, cap):
        raise too_many_requests(
            f"too many open event streams: a tenant may hold {cap} at once "
            "(KILN_EVENT_STREAMS_PER_TENANT); close one or poll GET /v1/jobs/{id}",
            "too_many_streams",
            STREAMS_RETRY_AFTER_S,
        )
    return lambda: STREAMS.release(tenant_id)


async def follow(
    jobs: Jobs,
    accounts: Accounts,
    tenant_id: str,
    job_id: str,
    *,
    key_id: str,
    key: str,
    after: int = 0,
) -> AsyncIterator[list[JobEvent]]:
    """The tenant's job's events numbered above ``after``, a batch per read that found
    some, until the job ends; an empty batch at each quiet wake-up (at most ``POLL_S``
    apart), where a caller may keep its connection alive. Raises ``KeyRevoked`` once
    ``key`` (``key_id``'s key, the caller's) no longer authenticates."""
    last_checked = time.monotonic()
    last_read = float("-inf")
    with SIGNALS.watching(job_id) as changed:
        while True:
            await asyncio.sleep(max(0.0, last_read + MIN_READ_INTERVAL_S - time.monotonic()))
            changed.clear()  # before the read: a change during it wakes the next wait
            last_read = time.monotonic()
            job, events = await asyncio.to_thread(jobs.watch, tenant_id, job_id, after)
            now = time.monotonic()
            if events:
                # One batch for what one read found: a send costs more than its bytes.
                yield events
                after = events[-1].seq
            if job.done and after >= job.event_seq:
                return
            if events and after < job.event_seq:
                continue  # more than one read's worth was waiting
            if now - last_checked >= KEYS.every_s:
                last_checked = now
                if not await KEYS.alive(key_id, lambda: _key_alive(accounts, key)):
                    logger.info("event stream of job %s closed: its key was revoked", job_id)
                    raise KeyRevoked(key_id)
            yield []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_S)


def _key_alive(accounts: Accounts, key: str) -> bool:
    try:
        return accounts.authenticate(key) is not None
    except Exception:  # the database is away: keep streaming, ask again later
        logger.warning("could not re-check an event stream's key", exc_info=True)
        return True
