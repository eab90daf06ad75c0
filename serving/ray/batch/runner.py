"""Running a parsed batch on Ray Data: one actor pool per model, outputs streamed to the
driver, which writes the files and the manifest (``serving.ray.batch.manifest``).

    lines, invalid = parse_batch(text, base_dir=..., catalog=catalog, settings=settings)
    summary = run_batch(settings, catalog, lines, BatchOptions(out_dir=Path("out")))

Decisions where the issue is silent:

- **Pools one after the other.** Lines are grouped by the model they run on (in order of
  first appearance) and each group is a ``from_items(...).map_batches(BatchWorker, ...)``
  pool of ``workers`` actors; the pools run in turn, so each gets every GPU (or core) of
  the cluster, and a model's weights load once per actor. Actors ask for the GPU share
  the model's serving replicas get (its ``gpus`` in models.toml, else
  ``KILN_GPUS_PER_REPLICA``, default 1 where the cluster has GPUs) and
  ``KILN_REPLICA_CPUS`` logical CPUs; Ray Data spreads them over the nodes. A pool hands
  out its first line once every actor has loaded its model (so lines spread over all of
  them), one line in flight an actor.
- **Workers.** ``BatchOptions.workers``, else as many as the cluster's GPUs hold at that
  share on a GPU cluster, else the
  cluster's CPUs divided by the torch threads of one actor (``KILN_TORCH_THREADS``, default
  the cores less one); never more than the pool's lines.
- **Ray.** An already connected Ray is used as it is; else ``address`` (or
  ``KILN_RAY_ADDRESS``) is joined; else a local Ray with ``KILN_RAY_NUM_CPUS`` is started
  and shut down at the end. Worker logs stay out of the terminal (the progress bar is
  there); a line's failure is in the manifest.
- **Accounting.** With ``tenant_id`` the lines run as that tenant with the catalog's
  prices: credits reserved and captured per line as over HTTP, a line that cannot be paid
  fails (402 in its entry) and the run goes on. Without one the run is not metered: lines
  run as the local operator tenant ``ten_batch`` (created on first use) with every price
  at zero, so no reservation is made and nobody's credits move; its images are still
  stored as that tenant's assets, as every generation is.
- **Skipping.** A line whose latest manifest entry has no error, the same kind and
  recorded request, and intact outputs (present, matching sha256) is skipped; failed lines
  run again on a rerun.
- **A dead worker.** An actor whose process dies (killed, crashed, its node lost) is
  restarted by Ray, and the line it was running is handed out again, at most
  ``WORKER_RETRIES`` times each (Ray Data's own default is unbounded: a line that kills
  every worker it reaches would never end the run). The driver records a line once, when
  its result arrives; the rerun first releases the reservation the dead attempt left
  held (``serving.ray.batch.worker``). Past the bound the run fails, as any run whose
  pool cannot finish; its recorded lines stay and a rerun runs the rest.
- **Stopping.** ``should_stop`` is asked after every finished line; when it answers true
  the run's ``StopSignal`` actor is set: workers run no further line (each asks it
  before starting one), and the driver drains the lines already running and records
  them, so every line that was charged has its entry and files (a job's cancel leaves no
  credits held and no delivered image unlisted). Lines not started run on a rerun.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.core.batches.lines import BatchLine
from serving.core.settings import Settings
from serving.ray.batch.manifest import Manifest
from serving.ray.batch.progress import Progress
from weights.catalog import Catalog, ModelSpec

logger = logging.getLogger(__name__)

OPERATOR_TENANT_ID = "ten_batch"
OPERATOR_TENANT_NAME = "batch (unmetered)"
# How long a pool may take to start all its actors (placing them, loading the model).
POOL_START_TIMEOUT_S = 900
# Restarts of a pool's actor, and reruns of a line, after a worker died under it.
WORKER_RETRIES = 3


@dataclass
class BatchOptions:
    """Where and how a batch runs."""

    out_dir: Path
    tenant_id: str | None = None  # None: not metered (see the module docstring)
    address: str | None = None  # None: KILN_RAY_ADDRESS, else a local Ray; "auto", "host:port"
    workers: int | None = None  # actors per model pool (default: see the module docstring)


@dataclass
class BatchSummary:
    """What a run did; ``entries`` are the manifest entries of the given lines."""

    lines: int
    ran: int
    skipped: int
    failed: int
    images: int
    seconds: float
    manifest: Path
    entries: list[dict] = field(default_factory=list)
    stopped: bool = False  # ``should_stop`` ended the run before every line ran


class UnknownBatchTenant(LookupError):
    """``--tenant`` names no tenant (or several by name)."""


def resolve_tenant(settings: Settings, id_or_name: str) -> str:
    """The id of the tenant with this id, else with this name (exactly one)."""
    from sqlalchemy import select

    from serving.core.ledger import Ledger
    from serving.core.ledger.schema import tenants

    with Ledger.of(settings) as ledger, ledger.engine.begin() as conn:
        found = conn.execute(select(tenants.c.id).where(tenants.c.id == id_or_name)).first()
        if found is not None:
            return found.id
        named = conn.execute(select(tenants.c.id).where(tenants.c.name == id_or_name)).all()
    if len(named) == 1:
        return named[0].id
    if named:
        ids = ", ".join(row.id for row in named)
        raise UnknownBatchTenant(f"several tenants are named {id_or_name!r} ({ids}): give the id")
    raise UnknownBatchTenant(f"no tenant with id or name {id_or_name!r}")


def unmetered(catalog: Catalog) -> Catalog:
    """``catalog`` with every price at zero (an unmetered run charges nothing)."""
    models = {
        model_id: replace(spec, credits=dict.fromkeys(spec.credits, 0))
        for model_id, spec in catalog.models.items()
    }
    return replace(catalog, models=models, prices=dict.fromkeys(catalog.prices, 0))


def accounting(settings: Settings, catalog: Catalog, tenant_id: str | None) -> tuple[str, Catalog]:
    """The tenant the lines run as and the catalog they are priced by (see the module
    docstring). Opens (and migrates) the ledger before any worker does."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from serving.core.ledger import Ledger
    from serving.core.ledger.schema import balances, tenants

    with Ledger.of(settings) as ledger:
        if tenant_id is not None:
            ledger.tenant(tenant_id)  # UnknownTenant before anything runs
            return tenant_id, catalog
        with contextlib.suppress(IntegrityError), ledger.engine.begin() as conn:
            conn.execute(
                insert(tenants).values(
                    id=OPERATOR_TENANT_ID, name=OPERATOR_TENANT_NAME, created=datetime.now(UTC)
                )
            )
            conn.execute(insert(balances).values(tenant_id=OPERATOR_TENANT_ID, available=0, held=0))
    return OPERATOR_TENANT_ID, unmetered(catalog)


@contextlib.contextmanager
def ray_session(settings: Settings, address: str | None) -> Iterator[None]:
    """Use the connected Ray, join ``address``, or start (and later stop) a local one."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or settings.ray_address
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(  # a Ray of its own, even beside another on this machine
            address="local",
            num_cpus=settings.effective_ray_num_cpus(),
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        yield
    finally:
        ray.shutdown()


def pool_resources(
    settings: Settings, workers: int | None, lines: int, spec: ModelSpec | None = None
) -> dict[str, Any]:
    """``map_batches`` arguments of one model pool: actors and their CPUs/GPUs (the GPU
    share of ``spec``'s serving replicas: its catalog ``gpus``, else the settings')."""
    import ray

    from serving.ray.placement import placement_for

    resources = ray.cluster_resources()
    gpus = placement_for(settings, spec, float(resources.get("GPU", 0.0))).gpus
    if workers is None:
        if gpus > 0:
            workers = max(1, int(resources.get("GPU", 0.0) / gpus))
        else:
            workers = max(1, int(resources.get("CPU", 1.0)) // settings.effective_torch_threads())
    import ray.data

    size = max(1, min(workers, lines))
    # One line in flight per actor: lines are seconds long, and a queue per actor would
    # let the first actor up take lines that an idle one could run.
    compute = ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)
    return {
        "compute": compute,
        "num_cpus": settings.replica_cpus,
        "num_gpus": gpus,
        "max_restarts": WORKER_RETRIES,
        "max_task_retries": WORKER_RETRIES,
    }


def _groups(lines: list[BatchLine]) -> dict[str, list[BatchLine]]:
    groups: dict[str, list[BatchLine]] = {}
    for line in lines:
        groups.setdefault(line.model, []).append(line)
    return groups


def _entry(line: BatchLine, result: Any, outputs: list[str], digests: list[str], run: dict) -> dict:
    return {
        "line": line.number,
        "kind": line.kind,
        "request": line.recorded,
        "seeds": result.seeds,
        "outputs": outputs,
        "sha256": digests,
        "asset_ids": result.asset_ids,
        "credits_charged": result.credits_charged,
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
        "node_id": result.node_id,
        "error": result.error,
        **run,
    }


def run_batch(
    settings: Settings,
    catalog: Catalog,
    lines: list[BatchLine],
    options: BatchOptions,
    *,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchSummary:
    """Run every line not already done into ``options.out_dir`` (see the module
    docstring); raises ``UnknownTenant`` for an unknown ``tenant_id`` before anything runs."""
    started = time.monotonic()
    tenant_id, priced = accounting(settings, catalog, options.tenant_id)
    manifest = Manifest(options.out_dir)
    previous = manifest.prepare()
    todo = [
        line
        for line in lines
        if not manifest.is_complete(previous.get(line.number), line.kind, line.recorded)
    ]
    run = {
        "run_id": f"run_{secrets.token_hex(6)}",
        "tenant_id": tenant_id,  # the operator tenant when unmetered: it owns the assets
        "metered": options.tenant_id is not None,
    }
    progress = Progress(sum(line.images for line in todo), len(todo))
    ran = failed = images = 0
    stopped = False
    if todo:
        logger.info(
            "batch %s: %d line(s) to run, %d already done", run["run_id"], len(todo),
            len(lines) - len(todo),
        )  # fmt: skip
        with ray_session(settings, options.address):
            import ray

            signal = ray.remote(num_cpus=0)(StopSignal).remote()
            for model, group in _groups(todo).items():
                pool = _run_pool(settings, priced, tenant_id, run, group, options, signal)
                for line, result in pool:
                    if result.stopped:  # reached its worker after the stop: not run
                        continue
                    outputs, digests = manifest.write_outputs(line.number, result.images)
                    manifest.append(_entry(line, result, outputs, digests, run))
                    ran += 1
                    failed += result.error is not None
                    images += len(outputs)
                    figures = progress.advance(line.images)
                    if on_progress is not None:
                        on_progress(figures)
                    if not stopped and should_stop is not None and should_stop():
                        stopped = True
                        # Workers start no further line; the ones running are drained.
                        ray.get(signal.set.remote())
                        logger.info("batch %s: stopping; draining lines in flight", run["run_id"])
                logger.info("batch %s: pool of %s done", run["run_id"], model or "(by asset)")
                if stopped:
                    break
    manifest.compact()
    final = manifest.entries()
    return BatchSummary(
        lines=len(lines),
        ran=ran,
        skipped=len(lines) - len(todo),
        failed=failed,
        images=images,
        seconds=time.monotonic() - started,
        manifest=manifest.path,
        entries=[final[line.number] for line in lines if line.number in final],
        stopped=stopped,
    )


class StopSignal:
    """A run's stop flag, as a Ray actor every worker of every node can ask."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def _run_pool(
    settings: Settings,
    catalog: Catalog,
    tenant_id: str,
    run: dict,
    group: list[BatchLine],
    options: BatchOptions,
    stop_signal: Any = None,
) -> Iterator[tuple[BatchLine, Any]]:
    """One model's pool: (line, ``LineResult``) as each line finishes, in no fixed order."""
    import pickle

    import ray.data

    from serving.ray.batch.worker import BatchWorker

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is on stderr
    # Every actor of the pool loads its model before the first line goes out (see
    # BatchWorker); a cluster that cannot place them fails the run after this long.
    context.wait_for_min_actors_s = POOL_START_TIMEOUT_S
    by_number = {line.number: line for line in group}
    items = [
        {"number": line.number, "line": json.dumps({"kind": line.kind, "request": line.request})}
        for line in group
    ]
    model = group[0].model
    spec = catalog.get(model) if model in catalog else None
    resources = pool_resources(settings, options.workers, len(group), spec)
    logger.info("pool %s: %d line(s) on %s", group[0].model, len(group), resources)
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        BatchWorker,
        fn_constructor_kwargs={
            "settings": settings,
            "catalog": catalog,
            "tenant_id": tenant_id,
            "run_id": run["run_id"],
            "model": group[0].model,
            "stop_signal": stop_signal,
        },
        batch_size=1,
        **resources,
    )
    for row in dataset.iter_rows():
        result = pickle.loads(row["payload"])
        yield by_number[result.number], result
