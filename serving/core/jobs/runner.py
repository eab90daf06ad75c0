"""Running jobs: a registry of job kinds, one worker function, a port for where it runs.

    runner = JobRunner(settings, ledger, catalog)            # jobs on a thread of this process
    runner = JobRunner(settings, ledger, catalog, RayJobBackend())   # as Ray tasks
    runner.submit(job)

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

Backends (``JobBackend``, the port): ``ThreadJobBackend``, the default, runs jobs one
after another on a single worker thread of this process (``build_core`` and
``create_app`` without a backend: tools, tests, an app over a ``LocalModelClient``).
``serving.ray.jobs.RayJobBackend`` runs each job as a Ray task with the kind's resources
from settings (training: ``KILN_TRAINING_GPUS``, else a GPU where the cluster has one,
and ``KILN_TRAINING_CPUS``, fractional so it fits beside the replicas of a 2-core box).
Who runs under Ray chooses it explicitly: the Serve ingress passes it to ``create_app``
(``job_backend=``), and so do tests that want jobs as Ray tasks; being in a process
where Ray happens to be initialised does not change where jobs run.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from serving.core.errors import KilnError
from serving.core.jobs.errors import INTERNAL_ERROR, public_error
from serving.core.jobs.image_jobs import ImageJobs
from serving.core.jobs.service import ACTIVE_STATES, Job, JobCancelled, Jobs, UnknownJob
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


class JobBackend(Protocol):
    """Where submitted jobs run (the port; ``serving.ray.jobs`` has the Ray one)."""

    def start(
        self, job: Job, kind: JobKind, settings: Settings, ledger: Ledger, catalog: Catalog
    ) -> Future[Any]:
        """Start ``execute_job`` for ``job`` and return at once. The future is done when
        the worker returned; its exception means the worker died before it could record
        the job's end. ``ledger`` and ``catalog`` are this process's (a worker elsewhere
        opens its own)."""
        ...

    def close(self) -> None:
        """Start no more jobs; those running finish."""
        ...


class ThreadJobBackend:
    """Jobs on one worker thread of this process, one after another: jobs are heavy
    and torch uses every core already."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    def start(
        self, job: Job, kind: JobKind, settings: Settings, ledger: Ledger, catalog: Catalog
    ) -> Future[Any]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="kiln-job")
        return self._executor.submit(execute_job, settings, job.id, ledger=ledger, catalog=catalog)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)


# A running job reports every step (seconds apart); a queued one waits for resources.
# Past these without a word, its worker is taken to be gone (reap_stale).
STALE_RUNNING = timedelta(minutes=30)
STALE_QUEUED = timedelta(hours=24)
REAP_EVERY_S = 3600.0


class JobRunner:
    """Starts submitted jobs on its backend (a thread of this process unless given
    another). Keeps the credits of the jobs it started held until their workers return;
    made at server start, it releases the holds whose lease ran out while no process was
    alive to renew them."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        catalog: Catalog,
        backend: JobBackend | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.catalog = catalog
        self.backend = backend or ThreadJobBackend()
        self.jobs = Jobs(ledger.engine)
        # Image requests run as jobs (Prefer: respond-async) in this process's loop.
        self.images = ImageJobs(self.jobs)
        self._pending: set[Future[Any]] = set()
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
            future = self.backend.start(job, kind, self.settings, self.ledger, self.catalog)
        except BaseException:
            self._leases.drop(job.reservation_id)
            raise
        self._pending.add(future)
        future.add_done_callback(lambda done: self._worker_returned(job, done))

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

    def _worker_returned(self, job: Job, future: Future[Any]) -> None:
        self._pending.discard(future)
        self._leases.drop(job.reservation_id)
        error = None if future.cancelled() else future.exception()
        if error is None:
            return
        # The worker itself died (a Ray task's process or node, an import), so it could
        # not record the job's end: the job is failed and settled here. A backend that
        # knows why says so with a KilnError (Ray's: 503 model_unavailable).
        logger.error("the worker of job %s died: %r", job.id, error)
        known = isinstance(error, KilnError) and error.code is not None
        if not self.jobs.load(job.id).done:
            settle(job, self.ledger, self.settings)
            self.jobs.finish(
                job.id,
                "failed",
                error=error.message if known else "the job's worker died; it was given up",
                error_code=error.code if known else "worker_lost",
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
        """Stop taking jobs; running ones finish (and renew their own leases)."""
        self._leases.close()
        self.backend.close()


__all__ = [
    "JOB_KINDS",
    "JobBackend",
    "JobContext",
    "JobKind",
    "JobRunner",
    "ThreadJobBackend",
    "public_error",
    "UnknownJob",
    "UnknownJobKind",
    "execute_job",
    "job_kind",
    "register_kind",
    "settle",
]
