"""An async job whose Ray worker is SIGKILLed mid-run (issue 25) is failed at once with 503
``model_unavailable`` and its credits released: never left ``running`` (Ray's default
task retry would have re-run it into a job already marked running, which then returned
without running it, so the job sat ``running`` until the stale-job reaper)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import psutil
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

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def job_worker(kind: str, timeout_s: float = 120) -> psutil.Process:
    """The Ray worker process running a ``kind`` job, among this process's descendants."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in psutil.Process(os.getpid()).children(recursive=True):
            try:
                if process.cmdline()[:1] == [f"ray::kiln-job-{kind}"]:
                    return process
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        time.sleep(0.2)
    raise TimeoutError(f"no worker of a {kind} job")


def test_a_job_whose_worker_is_killed_fails_as_model_unavailable(ray_cluster, catalog, tmp_path):
    settings = Settings(
        home=tmp_path,
        database=f"sqlite:///{tmp_path / 'kiln.db'}",
        training_steps=5000,  # far longer than the test: the kill lands mid-run
        training_rank=4,
        torch_threads=1,
    )
    with Ledger(settings.database_url) as ledger:
        tenant = ledger.create_tenant("studio")
        ledger.grant(tenant.id, 1000)
        images = [decode_training_image(png((255, 120, 0), 64, i), i, settings) for i in range(5)]
        request = check_request(StyleTrainingRequest("Look", "tiny-sd15"), 5, settings, catalog)
        job = submit_style_training(
            tenant.id, request, images, settings=settings, catalog=catalog, ledger=ledger
        )
        runner = JobRunner(settings, ledger, catalog, RayJobBackend())
        runner.submit(job)
        jobs = Jobs(ledger.engine)
        deadline = time.monotonic() + 180
        while jobs.get(tenant.id, job.id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        job_worker("style_training").send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (done := jobs.get(tenant.id, job.id)).done:  # the runner records it
            assert time.monotonic() < deadline, done
            time.sleep(0.1)
        balance = ledger.balance(tenant.id)
    assert (done.state, done.error_code) == ("failed", "model_unavailable"), done
    assert "died" in done.error
    assert balance.held == 0 and balance.available == 1000
    assert not (settings.jobs_dir / job.id).exists()
