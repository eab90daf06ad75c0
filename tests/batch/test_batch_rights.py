"""Batch lines decide an asset's rights as their route does (serving/core/asset_rights.py):
a worker (built as Ray Data builds one, called directly) refuses a line that uses an
unlicensed style image as a reference, charging and storing nothing, and runs the line
once the image is licensed."""

from __future__ import annotations

import pytest
import torch
from batch_helpers import gen

from serving.core.assets.service import ImageRecord
from serving.core.ledger.types import Balance
from serving.ray.batch.worker import BatchWorker


@pytest.fixture
def worker(batch_settings, catalog):
    threads = torch.get_num_threads()
    # The tenant is made in the worker's own ledger once it exists: a placeholder id.
    made = BatchWorker(batch_settings, catalog, tenant_id="", run_id="rights")
    yield made
    made.loop.close()
    torch.set_num_threads(threads)  # the worker sets its own; give the session's back


def style_asset(worker: BatchWorker) -> str:
    import numpy as np

    state = worker.core
    tenant = state.accounts.create_tenant("studio")
    state.ledger.grant(tenant.id, 100)
    worker.tenant_id = tenant.id
    pixels = np.full((64, 64, 3), 120, np.uint8)
    record = ImageRecord(
        kind="artist_style", model="tiny-sd15", prompt="x", seed=1, width=64, height=64,
        style="sty_ink",
    )  # fmt: skip
    asset, _ = state.assets.create(tenant.id, record, pixels)
    return asset.id


def test_a_batch_line_refuses_an_unlicensed_style_reference_then_runs_licensed(worker):
    asset = style_asset(worker)
    request = {k: v for k, v in gen(seed=1).items() if k != "kind"}
    line = {"kind": "generation", "request": {**request, "reference": {"asset_id": asset}}}
    result = worker.run_line(1, line)
    assert result.error is not None and result.error["status"] == 403
    assert result.error["code"] == "license_required"
    assert result.error["param"] == "reference.asset_id"
    assert result.images == [] and result.credits_charged == 0
    state, tenant_id = worker.core, worker.tenant_id
    assert state.ledger.balance(tenant_id) == Balance(100, 0)
    assert len(state.assets.list(tenant_id)[0]) == 1  # the style image alone

    state.licenses.purchase(tenant_id, asset, 0)
    result = worker.run_line(2, line)
    assert result.error is None and len(result.images) == 1
    made = state.assets.get(tenant_id, result.asset_ids[0])
    assert made.kind == "base" and made.parent_id == asset


def test_a_worker_called_outside_ray_starts_no_ray(worker):
    """A worker called directly (a test, a tool) runs its line without a local Ray: one
    started behind the caller's back would make later in-process job runners send their
    jobs to it."""
    import ray

    request = {k: v for k, v in gen(seed=3).items() if k != "kind"}
    worker.tenant_id = worker.core.accounts.create_tenant("t").id
    worker.run_line(1, {"kind": "generation", "request": request})
    assert not ray.is_initialized()
