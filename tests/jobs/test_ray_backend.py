"""On the Ray backend (as the Serve ingress runs its jobs) a job runs as a Ray task in
another process with the training resources from settings; it reports through the
database only."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from job_helpers import png

from serving.core.jobs import Jobs
from serving.core.jobs.runner import JobRunner
from serving.core.jobs.style_training import (
    StyleTrainingRequest,
    check_request,
    decode_training_image,
    submit_style_training,
)
from serving.core.ledger import Ledger
from serving.core.settings import Settings
from serving.ray.jobs import RayJobBackend


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_a_training_job_runs_as_a_ray_task(ray_cluster, catalog, tmp_path, caplog):
    settings = Settings(
        home=tmp_path,
        database=f"sqlite:///{tmp_path / 'kiln.db'}",
        training_steps=2,
        training_rank=4,
        torch_threads=1,
    )
    with Ledger(settings.database_url) as ledger:
        tenant = ledger.create_tenant("studio")
        images = [decode_training_image(png((255, 120, 0), 64, i), i, settings) for i in range(5)]
        request = check_request(StyleTrainingRequest("Look", "tiny-sd15"), 5, settings, catalog)
        job = submit_style_training(
            tenant.id, request, images, settings=settings, catalog=catalog, ledger=ledger
        )
        runner = JobRunner(settings, ledger, catalog, RayJobBackend())
        with caplog.at_level("INFO", logger="serving.ray.jobs"):
            runner.submit(job)
        assert "submitted as a Ray task {'num_cpus': 0.5, 'num_gpus': 0.0}" in caplog.text
        jobs = Jobs(ledger.engine)
        deadline = time.monotonic() + 240
        while not (done := jobs.get(tenant.id, job.id)).done:
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
        runner.wait(timeout=60)
    assert done.state == "succeeded", done.error
    assert done.result["style"]["owner"] == tenant.id and done.progress["step"] == 2
    assert not (settings.jobs_dir / job.id).exists()
