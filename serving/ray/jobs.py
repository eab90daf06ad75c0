"""``RayJobBackend``: the core's ``JobBackend`` port as Ray tasks.

Each job is one Ray task (``execute_job`` in a Ray worker, which opens its own ledger
and catalog from the settings), with the kind's resources from settings: a training
asks for ``KILN_TRAINING_GPUS`` (else a GPU where the cluster has one) and
``KILN_TRAINING_CPUS``. The Serve ingress runs its jobs so (``KilnIngress`` passes it to
``create_app``); the task's future is done when the worker returned, and its exception
tells the runner that the worker died without recording the job's end.

A job's task is never retried by Ray (``max_retries=0``; Ray's default re-runs a task
whose worker died): a second attempt would find its job ``running``, left by the dead
first, and return without running it, leaving the job running until the stale-job reaper
(``STALE_RUNNING``) gave it up. Instead the worker's death (its process killed or
crashed, its node lost: ``serving.ray.errors.replica_died``) reaches the runner at once as
a 503 ``model_unavailable``, and the runner fails the job with that code and releases its
credits; the client submits it again.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

import ray

from serving.core.errors import KilnError
from serving.core.jobs.runner import JobKind, UnknownJobKind, execute_job
from serving.core.jobs.service import Job
from serving.core.ledger import Ledger
from serving.core.settings import Settings
from serving.ray.errors import replica_died
from weights.catalog import Catalog

logger = logging.getLogger(__name__)


def _execute_in_ray(settings: Settings, job_id: str) -> str:
    """A Ray task's body: torch threads as a replica's, then ``execute_job``."""
    import torch

    # Ray sets OMP_NUM_THREADS=1 in fractional-CPU workers; a trainer wants the node's.
    torch.set_num_threads(settings.effective_torch_threads())
    return execute_job(settings, job_id).state


class RayJobBackend:
    """Jobs as Ray tasks on the cluster this process is connected to."""

    def start(
        self, job: Job, kind: JobKind, settings: Settings, ledger: Ledger, catalog: Catalog
    ) -> Future[Any]:
        if callable(kind.target):
            raise UnknownJobKind(f"{job.kind} (a callable target cannot run as a Ray task)")
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
        resources = kind.resources(settings, cluster_gpus)
        task = ray.remote(_execute_in_ray).options(
            name=f"kiln-job-{job.kind}", max_retries=0, **resources
        )
        # The task runs whether or not its reference is kept; keeping it lets a failure
        # of the task itself (not of the job: that is a state) reach the runner.
        future = task.remote(settings, job.id).future()
        logger.info("job %s (%s) submitted as a Ray task %s", job.id, job.kind, resources)
        return _worker_death_as_unavailable(future, job)

    def close(self) -> None:
        """Nothing to stop: submitted tasks run on the cluster."""


def _worker_death_as_unavailable(future: Future[Any], job: Job) -> Future[Any]:
    """``future``, with a dead worker's error (Ray's) as the 503 ``model_unavailable``
    the runner fails the job with."""
    translated: Future[Any] = Future()

    def done(finished: Future[Any]) -> None:
        if finished.cancelled():
            translated.cancel()
            return
        error = finished.exception()
        if error is None:
            translated.set_result(finished.result())
        elif replica_died(error):
            message = f"the worker running job {job.id} ({job.kind}) died; submit it again"
            translated.set_exception(KilnError(503, message, code="model_unavailable"))
        else:
            translated.set_exception(error)

    future.add_done_callback(done)
    return translated
