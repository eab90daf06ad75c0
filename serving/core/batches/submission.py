"""Submitting a ``batch`` job: the checked lines of a tenant's JSONL (``POST /v1/batches``)
staged in a new job's workspace, and the queued job.

Submitting happens after every line was checked, so a refused upload stores nothing and
charges nothing: ``submit_batch`` writes the checked lines (images already inlined,
seeds filled in) to the job's workspace and creates the queued job; the caller hands it
to the job runner. The worker never re-reads the upload: it reads ``read_lines``. The
job's work is ``serving.ray.batch.jobs:run_batch_job`` (``JOB_KINDS["batch"]``), which
documents what a batch job charges, how it fails and how it is cancelled.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from serving.core.batches.lines import BatchLine, InvalidLine
from serving.core.jobs.runner import workspace_of
from serving.core.jobs.service import Job, Jobs, new_job_id
from serving.core.ledger import Ledger
from serving.core.settings import Settings
from weights.home import DIR_MODE, open_private, private_dir

KIND = "batch"
LINES_FILE = "lines.jsonl"
# Skipped invalid lines kept in the job's params (the count is always kept): the params
# travel with every GET of the job.
MAX_LISTED_INVALID = 100


def submit_batch(
    settings: Settings,
    ledger: Ledger,
    tenant_id: str,
    lines: list[BatchLine],
    skipped: list[InvalidLine],
    filename: str | None = None,
) -> Job:
    """Stage the checked ``lines`` in a new job's workspace and create the queued job
    (``skipped``: invalid lines left out by ``skip_invalid``). The caller submits it to
    a runner; on any failure here nothing stays stored."""
    ledger.tenant(tenant_id)  # UnknownTenant before anything is written
    job_id = new_job_id()
    workspace = workspace_of(settings, job_id)
    try:
        private_dir(workspace.parent)
        workspace.mkdir(DIR_MODE)  # a fresh id: never there already
        with open_private(workspace / LINES_FILE) as f:  # the tenant's requests: 0600
            for line in lines:
                f.write((json.dumps(asdict(line), separators=(",", ":")) + "\n").encode())
        kinds: dict[str, int] = {}
        for line in lines:
            kinds[line.kind] = kinds.get(line.kind, 0) + 1
        params = {
            "file": filename[:200] if filename else None,
            "lines": len(lines),
            "images": sum(line.images for line in lines),
            "kinds": kinds,
            "skipped_invalid": len(skipped),
            "invalid": [asdict(line) for line in skipped[:MAX_LISTED_INVALID]],
        }
        return Jobs(ledger.engine).create(tenant_id, KIND, params, job_id=job_id)
    except BaseException:
        shutil.rmtree(workspace, ignore_errors=True)
        raise


def read_lines(path: Path) -> list[BatchLine]:
    """The lines ``submit_batch`` staged."""
    with open(path, encoding="utf-8") as f:
        return [BatchLine(**json.loads(text)) for text in f if text.strip()]
