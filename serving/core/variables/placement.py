"""Ray placement, batching and scaling of the model replicas and jobs.

Each field declares one environment variable (``env_field``: name, parser, help);
``Settings`` (serving/core/settings.py) inherits them, and README.md's configuration
table is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.env_fields import env_field, flag, non_negative_float, non_negative_int, positive_int


@dataclass(frozen=True)
class PlacementVariables:
    """Ray placement, batching and scaling of the model replicas and jobs."""

    # fmt: off
    gpus_per_replica: float | None = env_field(
        "KILN_GPUS_PER_REPLICA", None, parse=non_negative_float,
        help="GPUs per model replica, may be fractional (default: 1 with CUDA, an equal share "
        "when models outnumber GPUs; 0 on CPU)",
    )
    # A quarter: Ray schedules by these logical CPUs, and a 2-core workstation must fit a
    # replica per model (base, instruct, CLIP ...) plus a training task; torch's own
    # thread count (KILN_TORCH_THREADS) is what uses the cores.
    replica_cpus: float = env_field(
        "KILN_REPLICA_CPUS", 0.25, parse=non_negative_float,
        help="Ray CPUs per model replica, may be fractional (default 0.25)",
    )
    ingress_cpus: float = env_field(
        "KILN_INGRESS_CPUS", 0.1, parse=non_negative_float,
        help="Ray CPUs of the HTTP ingress, may be fractional (default 0.1)",
    )
    torch_threads: int | None = env_field(
        "KILN_TORCH_THREADS", None, parse=positive_int,
        help="torch threads per replica (default: the node's cores less one)",
    )
    ray_num_cpus: int | None = env_field(
        "KILN_RAY_NUM_CPUS", None, parse=positive_int,
        help="logical CPUs of a local Ray (default: what the catalog's replicas, CLIP, the ingress "
        "and one training task ask for, at least this machine's cores)",
    )
    ray_address: str | None = env_field(
        "KILN_RAY_ADDRESS", None, parse=str,
        help="join this Ray cluster instead of starting a local one",
    )
    max_batch_size: int = env_field(
        "KILN_MAX_BATCH_SIZE", 8, parse=positive_int,
        help="images per shared pipeline call (default 8)",
    )
    batch_wait_s: float = env_field(
        "KILN_BATCH_WAIT_S", 0.02, parse=non_negative_float,
        help="seconds a batch waits to fill (default 0.02)",
    )
    max_queued: int = env_field(
        "KILN_MAX_QUEUED", 512, parse=positive_int,
        help="queued requests per model (default 512)",
    )
    clip_gpus: float = env_field(
        "KILN_CLIP_GPUS", 0.0, parse=non_negative_float,
        help="GPU share of the image-to-prompt CLIP replica; 0 (default) runs it on CPU",
    )
    oom_retry: bool = env_field(
        "KILN_OOM_RETRY", True, parse=flag,
        help="retry a call that runs out of GPU memory with half the images, down to one "
        "(default on; `0`/`off` turns it off)",
    )
    oom_max_failures: int = env_field(
        "KILN_OOM_MAX_FAILURES", 3, parse=positive_int,
        help="calls in a row that run out of GPU memory even at one image before the replica's "
        "health check fails and Ray Serve replaces it (default 3)",
    )
    model_min_replicas: int = env_field(
        "KILN_MODEL_MIN_REPLICAS", 1, parse=non_negative_int,
        help="fewest replicas of each model deployment; 0 scales an idle model to zero and loads "
        "it on first use (default 1; `min_replicas` in models.toml per model)",
    )
    model_max_replicas: int = env_field(
        "KILN_MODEL_MAX_REPLICAS", 1, parse=positive_int,
        help="most replicas of each model deployment, added under load (default 1; "
        "`max_replicas` in models.toml per model)",
    )
    model_idle_s: float = env_field(
        "KILN_MODEL_IDLE_S", 300.0, parse=non_negative_float,
        help="seconds below its load target before a model replica is removed, down to the "
        "minimum (default 300)",
    )
    training_cpus: float = env_field(
        "KILN_TRAINING_CPUS", 0.5, parse=non_negative_float,
        help="CPUs of a training job's Ray task, may be fractional (default 0.5)",
    )
    training_gpus: float | None = env_field(
        "KILN_TRAINING_GPUS", None, parse=non_negative_float,
        help="GPUs of a training job's Ray task (default: 1 where the cluster has one, else 0)",
    )
    # fmt: on
