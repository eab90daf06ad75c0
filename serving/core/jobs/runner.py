"""Running jobs: a registry of job kinds, one worker function, two execution backends.

    runner = JobRunner(settings, ledger, catalog)
    runner.submit(job)            # a Ray task under Ray Serve, else a thread of this process

A *kind* names the function that does the work (``JOB_KINDS``: ``"style_training"`` ->
``serving.core.jobs.style_training:run_style_training``). Targets are import paths, resolved
where the job runs, so a Ray worker on another node imports the kind's module itself;
tests may register a plain callable (``register_kind``), which only the in-process
backend can run. An unknown kind is refused loudly when submitted, and fails the job if
it ever reaches a worker.

``execute_job`` is the whole life of a job on its worker: move it to ``running`` (a job
cancelled while queued stops there), call the kind's function with a ``JobContext``,
record its result, its failure or its cancellation, and always *settle*: release what is
left of the job's credit reservation (its function captured what it earned) and delete
the job's workspace (``KILN_HOME/jobs/<id>``). Settling comes before the final state is
written, so whoever sees a finished job also sees its credits settled and its partial
work gone. A failure is told to the client as a ``JobFailed`` says it, or else as a
generic message and ``internal_error`` (exception texts carry paths, SQL and CUDA
messages); its detail goes to the log under the job's id.

Credits held by a job stay held while it is alive: its reservation's lease is renewed by
the runner that submitted it from submission until its worker returns (so a job queued
behind others, or waiting hours for a GPU, is never swept), and by ``execute_job`` while
it runs (``kiln styles train`` has no runner). A process that dies with its jobs stops
renewing; the sweeper then gives their credits back after one lease, at this runner's
start or with the stale-job reaper, whichever comes first (``reap_stale``).

Backends: under Ray (``ray.is_initialized()``, as in every Serve replica) a job is a
Ray task with the kind's resources from settings (training: ``KILN_TRAINING_GPUS``, else
a GPU where the cluster has one, and ``KILN_TRAINING_CPUS``, fractional so it fits beside
the replicas of a 2-core box); elsewhere (``create_app`` with a ``LocalModelClient``,
the tests) a single worker thread of this process runs jobs one after another.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from serving.core.jobs.service import ACTIVE_STATES, Job, JobCancelled, JobFailed, Jobs, UnknownJob
from serving.core.ledger import Ledger
from serving.core.ledger.leases import LeaseKeeper
from serving.core.settings import Settings
from weights.catalog import Catalog, load_catalog
from weights.home import private_dir

logger = logging.getLogger(__name__)

# A job kind's work: JobContext -> the job's result (JSON-able), or raise.
JobFunction = Callable[["JobContext"], dict[str, Any]]


class UnknownJobKind(KeyError):
    """A job kind nobody registered; the message names the known ones."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown job kind {kind!r}; known: {', '.join(sorted(JOB_KINDS))}")

    def __str__(self) -> str:
        return self.args[0]


def _training_resources(settings: Settings, cluster_gpus: float) -> dict[str, float]:
    return {
        "num_cpus": settings.training_cpus,
        "num_gpus": settings.effective_training_gpus(cluster_gpus),
    }


@dataclass(frozen=True)
class JobKind:
    """What runs a kind of job (``module:function`` or a callable) and with what resources."""

    target: str | JobFunction
    resources: Callable[[Settings, float], dict[str, float]] = field(
        default=lambda settings, cluster_gpus: {"num_cpus": settings.training_cpus}
    )

    def function(self) -> JobFunction:
        if callable(self.target):
            return self.target
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


JOB_KINDS: dict[str, JobKind] = {
    "style_training": JobKind(
        "serving.core.jobs.style_training:run_style_training", _training_resources
    ),
    # An upscale past serving.core.exports.service.SYNC_MAX_PIXELS (default resources).
    "upscale": JobKind("serving.core.exports.jobs:run_upscale_job"),
    # POST /v1/batches: the task drives Ray Data; the lines run in its actors.
    "batch": JobKind("serving.ray.batch.jobs:run_batch_job", lambda s, gpus: {"num_cpus": 0.1}),
}


def register_kind(name: str, kind: JobKind) -> None:
    """Add (or replace) a job kind; upscaling and batch rendering register theirs here."""
    JOB_KINDS[name] = kind


def job_kind(name: str) -> JobKind:
    """The registered kind ``name``; ``UnknownJobKind`` otherwise."""
    try:
        return JOB_KINDS[name]
    except KeyError:
        raise UnknownJobKind(name) from None


def workspace_of(settings: Settings, job_id: str) -> Path:
    """The job's private folder for inputs and partial work, removed when it ends."""
    return settings.jobs_dir / job_id


@dataclass
class JobContext:
    """What a job's function gets: its job, the shared services, progress and cancel."""

    job: Job
    settings: Settings
    ledger: Ledger
    jobs: Jobs
    catalog: Catalog
    workspace: Path
    # In-process listeners of every report (the CLI's progress bar).
    listener: Callable[[dict[str, Any]], None] | None = None

    def report(self, **progress: Any) -> None:
        """Record progress (``step``, ``total``, ``loss``, …) as the job's state and an
        event; raises ``JobCancelled`` when someone asked the job to stop."""
        cancel = self.jobs.report(self.job.id, progress)
        if self.listener is not None:
            self.listener(progress)
        if cancel:
            raise JobCancelled(self.job.id)

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if cancellation was requested (before keeping results)."""
        if self.jobs.cancel_requested(self.job.id):
            raise JobCancelled(self.job.id)

    def capture(self, amount: int) -> int:
        """Spend ``amount`` of the job's reservation (what it earned; the rest returns);
        the credits charged: 0 when there is nothing to charge, or when the sweeper
        released the reservation after the job stalled past its lease (logged)."""
        if not amount or self.job.reservation_id is None:
            return 0
        entry = self.ledger.capture(self.job.reservation_id, amount)
        return 0 if entry is None else amount


def settle(job: Job, ledger: Ledger, settings: Settings) -> None:
    """Release the rest of the job's reservation and delete its workspace (idempotent)."""
    if job.reservation_id is not None:
        returned = ledger.release(job.reservation_id)
        if returned:
            logger.info("job %s: released %d credit(s)", job.id, returned)
    shutil.rmtree(workspace_of(settings, job.id), ignore_errors=True)


def execute_job(
    settings: Settings,
    job_id: str,
    *,
    ledger: Ledger | None = None,
    catalog: Catalog | None = None,
    listener: Callable[[dict[str, Any]], None] | None = None,
) -> Job:
    """Run job ``job_id`` to its end on this thread; the job as it finished.

    ``ledger`` and ``catalog`` default to fresh ones from ``settings`` (a Ray worker has
    nothing else). Never raises for the job's own failure: that is the job's state. A
    ``KeyboardInterrupt`` (the CLI's Ctrl-C) cancels the job and propagates.
    """
    own_ledger = ledger is None
    ledger = ledger or Ledger.of(settings, run_migrations=False)
    jobs = Jobs(ledger.engine)
    leases = LeaseKeeper(ledger, name=f"kiln-leases-{job_id}")
    try:
        job = jobs.load(job_id)
        if not jobs.start(job_id):
            # Cancelled while queued (whoever cancelled settled it), or run already.
            logger.info("job %s not started: it is %s", job_id, jobs.load(job_id).state)
            return jobs.load(job_id)
        job = jobs.load(job_id)
        leases.keep(job.reservation_id)
        outcome: dict[str, Any] = {}
        try:
            function = job_kind(job.kind).function()
            workspace = private_dir(workspace_of(settings, job_id))  # tenants' inputs: 0700
            context = JobContext(
                job=job,
                settings=settings,
                ledger=ledger,
                jobs=jobs,
                catalog=catalog or load_catalog(settings.home, settings.catalog_path),
                workspace=workspace,
                listener=listener,
            )
            outcome = {"state": "succeeded", "result": function(context)}
        except JobCancelled:
            outcome = {"state": "cancelled"}
        except KeyboardInterrupt:
            outcome = {"state": "cancelled"}
            raise
        except Exception as exc:
            logger.exception("job %s (%s) failed", job_id, job.kind)
            error, code = public_error(exc, job_id)
            outcome = {"state": "failed", "error": error, "error_code": code}
        finally:
            leases.close()  # before settling: a renewal must not race the release
            settle(job, ledger, settings)
            state = outcome.pop("state", "failed")
            if state == "failed":
                outcome.setdefault("error", INTERNAL_ERROR.format(job_id=job_id))
                outcome.setdefault("error_code", "internal_error")
            jobs.finish(job_id, state, **outcome)
            logger.info("job %s (%s) %s", job_id, job.kind, state)
        return jobs.load(job_id)
    finally:
        if own_ledger:
            ledger.close()


# What a client is told of a failure whose detail is not for it (see the log, by job id).
INTERNAL_ERROR = (
    "the job failed on an internal error (job {job_id}); the server log has the details"
)


def public_error(exc: BaseException, job_id: str) -> tuple[str, str]:
    """What the client is told of a job's failure: a ``JobFailed``'s message and code,
    a client error's (4xx: credits, a bad parameter, a license) as the API would answer
    it, else a generic message and ``internal_error``, or the 5xx's own code."""
    if isinstance(exc, JobFailed):
        return str(exc), exc.code
    from serving.http.errors import api_error_for

    answer = api_error_for(exc)
    if answer.status < 500:
        return answer.message, answer.code or "invalid_request"
    return INTERNAL_ERROR.format(job_id=job_id), answer.code or "internal_error"


def _ray_ready() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized()


def _execute_in_ray(settings: Settings, job_id: str) -> str:
    """A Ray task's body: torch threads as a replica's, then ``execute_job``."""
    import torch

    # Ray sets OMP_NUM_THREADS=1 in fractional-CPU workers; a trainer wants the node's.
    torch.set_num_threads(settings.effective_torch_threads())
    return execute_job(settings, job_id).state


# A running job reports every step (seconds apart); a queued one waits for resources.
# Past these without a word, its worker is taken to be gone (reap_stale).
STALE_RUNNING = timedelta(minutes=30)
STALE_QUEUED = timedelta(hours=24)
REAP_EVERY_S = 3600.0


class JobRunner:
    """Starts submitted jobs: as Ray tasks where Ray runs, else on a worker thread. Keeps
    the credits of the jobs it started held until their workers return; made at server
    start, it releases the holds whose lease ran out while no process was alive to renew
    them."""

    def __init__(self, settings: Settings, ledger: Ledger, catalog: Catalog) -> None:
        self.settings = settings
        self.ledger = ledger
        self.catalog = catalog
        self.jobs = Jobs(ledger.engine)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Any] = set()
        self._leases = LeaseKeeper(ledger, name="kiln-job-leases")
        self.sweep_reservations()
        self._last_reap = float("-inf")  # the first submit looks for abandoned jobs

    def submit(self, job: Job) -> None:
        """Start ``job`` (queued). ``UnknownJobKind`` for a kind nobody registered."""
        kind = job_kind(job.kind)
        if time.monotonic() - self._last_reap > REAP_EVERY_S:
            self._last_reap = time.monotonic()
            self.reap_stale()
            self.sweep_reservations()
        # Renewed from now until the worker returns: queued, the job holds its credits.
        self._leases.keep(job.reservation_id)
        try:
            future = self._submit_ray(job, kind) if _ray_ready() else self._submit_thread(job)
        except BaseException:
            self._leases.drop(job.reservation_id)
            raise
        future.add_done_callback(lambda _: self._leases.drop(job.reservation_id))

    def sweep_reservations(self) -> dict[str, int]:
        """Release every reservation whose lease ran out (its holder died); logged."""
        swept = self.ledger.sweep_expired()
        if swept:
            logger.warning(
                "released %d expired reservation(s), %d credit(s) in all",
                len(swept),
                sum(swept.values()),
            )
        return swept

    def _submit_thread(self, job: Job) -> Future:
        if self._executor is None:
            # One at a time: jobs are heavy and torch uses every core already.
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="kiln-job")
        future: Future = self._executor.submit(
            execute_job, self.settings, job.id, ledger=self.ledger, catalog=self.catalog
        )
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def _submit_ray(self, job: Job, kind: JobKind) -> Future:
        import ray

        if callable(kind.target):
            raise UnknownJobKind(f"{job.kind} (a callable target cannot run as a Ray task)")
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
        resources = kind.resources(self.settings, cluster_gpus)
        task = ray.remote(_execute_in_ray).options(name=f"kiln-job-{job.kind}", **resources)
        # The task runs whether or not its reference is kept; keeping it lets a failure
        # of the task itself (not of the job: that is a state) reach this log.
        future = task.remote(self.settings, job.id).future()
        self._pending.add(future)
        future.add_done_callback(lambda done: self._ray_task_done(job.id, done))
        logger.info("job %s (%s) submitted as a Ray task %s", job.id, job.kind, resources)
        return future

    def _ray_task_done(self, job_id: str, future: Future) -> None:
        self._pending.discard(future)
        error = future.exception()
        if error is None:
            return
        # The task itself died (its worker or node, an import), so it could not record
        # its end: the job is failed and settled here.
        logger.error("the Ray task of job %s died: %r", job_id, error)
        job = self.jobs.load(job_id)
        if not job.done:
            settle(job, self.ledger, self.settings)
            self.jobs.finish(
                job_id,
                "failed",
                error="the job's worker died; it was given up",
                error_code="worker_lost",
                from_states=ACTIVE_STATES,
            )

    def reap_stale(self, now: datetime | None = None) -> list[str]:
        """Fail and settle jobs whose worker is gone (a process that died with a thread
        job, a Ray task whose submitter died): running ones silent for ``STALE_RUNNING``,
        queued ones never started within ``STALE_QUEUED``. Returns their ids.

        Safe from several replicas at once: ``finish`` moves a job only from an active
        state, and only the replica that moved it settles it."""
        now = now or datetime.now(UTC)
        reaped = []
        for job in self.jobs.stale(now - STALE_RUNNING, now - STALE_QUEUED):
            silent = "stopped reporting" if job.state == "running" else "never started"
            message = f"the job's worker {silent}; it was given up"
            if self.jobs.finish(
                job.id, "failed", error=message, error_code="worker_lost", from_states=ACTIVE_STATES
            ):
                settle(job, self.ledger, self.settings)
                logger.warning("job %s: %s", job.id, message)
                reaped.append(job.id)
        return reaped

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the jobs this runner started (tests and shutdown)."""
        for future in list(self._pending):
            future.exception(timeout)

    def cancel(self, tenant_id: str, job_id: str) -> Job:
        """Ask the tenant's job to stop; a job still queued ends here, settled here."""
        job, ended = self.jobs.request_cancel(tenant_id, job_id)
        if ended:
            settle(job, self.ledger, self.settings)
        return job

    def close(self) -> None:
        """Stop taking jobs; running thread jobs finish (and renew their own leases)."""
        self._leases.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)


__all__ = [
    "JOB_KINDS",
    "JobContext",
    "JobKind",
    "JobRunner",
    "UnknownJob",
    "UnknownJobKind",
    "execute_job",
    "job_kind",
    "register_kind",
    "settle",
]
