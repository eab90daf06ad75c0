"""The ``batch`` job: a tenant's JSONL of requests, uploaded over HTTP, rendered as a job.

Submitting (``POST /v1/batches``) is the core's: ``serving.core.batches.submission``
stages the checked lines in the job's workspace; the worker reads them from there.

The work (``run_batch_job``, on the job's worker: a Ray task under Serve, else a thread)
is ``serving.ray.batch.runner.run_batch`` with the job's tenant as the tenant and the job's
workspace as the output folder, so every line runs through the same services as HTTP:
its images become the tenant's assets (``GET /v1/assets``) and it is charged as HTTP
charges it. The output folder's files and manifest go with the workspace when the job
ends; the assets are what the tenant keeps.

Decisions (the issue is silent on them):

- **Credits.** The job itself costs nothing (``credits: 0``) and reserves nothing: each
  line reserves and captures its own HTTP price when it runs, so nothing is charged
  twice and a long batch does not hold a tenant's credits for hours. There is no
  pre-check of the batch's total: as with ``kiln batch --tenant``, a line the tenant can
  no longer pay fails with its 402 message in the result and the batch goes on, and a
  studio that tops up its credits can resubmit the failed lines.
- **Failures.** A failed line does not fail the job: the job succeeds and its result
  lists every line with its ``asset_ids``, ``seeds`` and ``error``. A job in which
  *every* line failed produced nothing and is ``failed``, its error naming the first
  failures (nothing was charged: a failed line charges nothing).
- **Cancellation.** ``DELETE /v1/jobs/{id}`` stops the batch at the next finished line
  (``should_stop``); the runner's workers then start no further line and the lines
  already running are finished and recorded. Lines finished stay: their images are the
  tenant's assets and were charged when delivered, exactly as separate HTTP requests
  would have been. The job ends ``cancelled``, and its last progress report (``stage:
  "cancelled"``) lists the lines kept with their asset ids (``kept``). The ledger is
  then reconciled with the run, line by line through each line's request id (its
  reservation reference), for what a drained stop cannot cover (a worker process that
  died mid-line): credits still held are released (``released``), and a line charged
  whose result never reached the job is named with its credits
  (``finished_after_cancel``; its images are in ``GET /v1/assets``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import select

from serving.core.batches.submission import LINES_FILE, read_lines
from serving.core.jobs.runner import JobContext
from serving.core.jobs.service import JobFailed, Jobs
from serving.core.ledger import Ledger
from serving.core.ledger.schema import reservations

logger = logging.getLogger(__name__)

OUTPUT_DIR = "out"
# Failures named in the error of a job whose every line failed.
MAX_LISTED_FAILURES = 5
# Request ids looked up in one query when a cancelled run is reconciled.
_LOOKUP_CHUNK = 500
# Cancellation is read from the database at most this often while lines run.
CANCEL_POLL_S = 0.5


class BatchFailed(JobFailed):
    """Every line of a batch failed: the job failed (and charged nothing). Its message
    lists the lines' own API errors, public already, so the client is told it as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="batch_failed")


def line_result(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry as the job's result shows it: the line, its kind, its assets,
    seeds, credits and error (the API's error object, as the line's route would have
    answered it). Output paths and hashes name files of the workspace, which goes."""
    return {
        "line": entry["line"],
        "kind": entry["kind"],
        "asset_ids": list(entry.get("asset_ids") or []),
        "seeds": list(entry.get("seeds") or []),
        "credits_charged": entry.get("credits_charged", 0),
        "error": entry.get("error"),
    }


def _error_text(error: Any) -> str:
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)


class _CancelWatch:
    """``should_stop`` for ``run_batch``: the job's cancel flag, seen in every progress
    report and read from the database at most every ``CANCEL_POLL_S`` between them."""

    def __init__(self, jobs: Jobs, job_id: str) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.requested = threading.Event()
        self._last_poll = float("-inf")

    def __call__(self) -> bool:
        if not self.requested.is_set() and time.monotonic() - self._last_poll >= CANCEL_POLL_S:
            self._last_poll = time.monotonic()
            if self.jobs.cancel_requested(self.job_id):
                self.requested.set()
        return self.requested.is_set()


def reconcile_stopped_run(
    ledger: Ledger,
    tenant_id: str,
    run_ids: set[str],
    numbers: list[int],
    received: set[int],
) -> tuple[list[dict[str, int]], int]:
    """Settle the ledger of a run stopped mid-way (``run_ids``: the run, as its manifest
    entries name it): release every reservation of its lines still open (a line its
    worker never finished) and name the lines charged whose results the job never
    ``received`` (a worker finished them after the stop). Returns those lines with their
    credits, and the credits released."""
    from serving.ray.batch.worker import request_id

    line_of = {request_id(run_id, n): n for run_id in run_ids for n in numbers}
    references = list(line_of)
    rows = []
    with ledger.engine.begin() as conn:
        for start in range(0, len(references), _LOOKUP_CHUNK):
            chunk = references[start : start + _LOOKUP_CHUNK]
            rows += conn.execute(
                select(
                    reservations.c.id,
                    reservations.c.reference,
                    reservations.c.state,
                    reservations.c.captured,
                ).where(  # fmt: skip
                    reservations.c.tenant_id == tenant_id, reservations.c.reference.in_(chunk)
                )
            ).all()
    released = 0
    late: dict[int, int] = {}
    for row in rows:
        if row.state == "open":
            released += ledger.release(row.id)
        number = line_of[row.reference]
        if row.captured and number not in received:
            late[number] = late.get(number, 0) + row.captured
    return [{"line": n, "credits_charged": late[n]} for n in sorted(late)], released


def run_batch_job(ctx: JobContext) -> dict[str, Any]:
    """The job's work: run the staged lines as the job's tenant, reporting progress
    (images done/total, images/s, ETA) and stopping when cancelled."""
    from serving.ray.batch.runner import BatchOptions, run_batch

    lines = read_lines(ctx.workspace / LINES_FILE)
    watch = _CancelWatch(ctx.jobs, ctx.job.id)
    ctx.report(stage="starting", lines_done=0, lines_total=len(lines), images_done=0,
               images_total=sum(line.images for line in lines))  # fmt: skip

    def progress(figures: dict[str, Any]) -> None:
        report = {**figures, "stage": "rendering"}
        if ctx.jobs.report(ctx.job.id, report):
            watch.requested.set()
        if ctx.listener is not None:
            ctx.listener(report)

    options = BatchOptions(out_dir=ctx.workspace / OUTPUT_DIR, tenant_id=ctx.job.tenant_id)
    summary = run_batch(
        ctx.settings, ctx.catalog, lines, options, on_progress=progress, should_stop=watch
    )
    results = sorted((line_result(e) for e in summary.entries), key=lambda r: r["line"])
    done = [r for r in results if r["error"] is None]
    # A cancel that came after the last line finished stops nothing: the job succeeds.
    if summary.stopped and len(results) < len(lines):
        kept = [{"line": r["line"], "asset_ids": r["asset_ids"]} for r in done]
        received = {r["line"] for r in results}
        run_ids = {e["run_id"] for e in summary.entries if e.get("run_id")}
        late, released = reconcile_stopped_run(
            ctx.ledger, ctx.job.tenant_id, run_ids, [n.number for n in lines], received
        )
        logger.info("job %s cancelled after %d line(s); %d finished after the cancel, %d "
                    "credit(s) released", ctx.job.id, len(kept), len(late), released)  # fmt: skip
        # Records what was kept as the last progress, then raises JobCancelled.
        ctx.report(stage="cancelled", lines_done=len(results), lines_total=len(lines),
                   images_done=sum(len(r["asset_ids"]) for r in done), kept=kept,
                   finished_after_cancel=late, released=released)  # fmt: skip
    failed = [r for r in results if r["error"] is not None]
    if lines and not done:
        named = "; ".join(
            f"line {r['line']}: {_error_text(r['error'])}" for r in failed[:MAX_LISTED_FAILURES]
        )
        raise BatchFailed(f"every line of the batch failed ({len(failed)}): {named}")
    asset_ids = [asset_id for r in done for asset_id in r["asset_ids"]]
    logger.info("job %s rendered %d image(s) from %d line(s), %d failed",
                ctx.job.id, len(asset_ids), len(done), len(failed))  # fmt: skip
    return {
        "lines": results,
        "ran": summary.ran,
        "failed": len(failed),
        "images": len(asset_ids),
        "asset_ids": asset_ids,
        "credits_charged": sum(r["credits_charged"] for r in results),
        "seconds": round(summary.seconds, 3),
        "images_per_s": round(len(asset_ids) / summary.seconds, 3) if summary.seconds else None,
    }
