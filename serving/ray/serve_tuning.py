"""Ray Serve's request-path settings Kiln runs with: environment variables Serve reads
when its processes start, so they are set before Ray starts (``kiln serve`` sets them for
its local Ray; a cluster's nodes export them before ``ray start``: deploy/serve.yaml,
deploy/kuberay/rayservice.yaml, README "Scaling out").

By default Serve runs each replica's code on an event loop of its own thread, and a
handle's router on another, apart from the replica's main loop; every request then
crosses threads twice in the ingress and twice in the model replica, and every request
log line is flushed on its own. Kiln's replicas never block their loop (pipeline calls,
CLIP and style loads run on an executor; sync routes on Starlette's thread pool), so
they run on the main loop, and request logs are buffered. Measured with
``benchmarks/serving_overhead.py`` (RESULTS.md): time outside the pipeline call 38.6 →
31.8 ms, concurrent/sequential 1.44x → 1.81x on the 2-core CI machine. These are three
of the switches Serve's own ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` mode sets (its others —
direct ingress without the HTTP proxy, gRPC between replicas — change where bodies are
first read and are not used). A value already in the environment wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

SERVE_LATENCY_ENV: dict[str, str] = {
    # Replica code on the replica's main event loop (no thread hop per request).
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    # A handle's router on the caller's loop (no loop hop per handle call).
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    # Request log lines written in batches (errors still flush at once).
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    # What a replica's gRPC server takes (the ingress calls the models over it:
    # serving/ray/model_client.py ``by_value``): gRPC's 4 MiB default is less than one
    # decoded reference image or a batch of generated ones; 1 GiB is past any body Kiln
    # accepts (KILN_BODY_MAX_IMAGES, KILN_IMAGE_MAX_PIXELS), below gRPC's 2 GiB ceiling.
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(1 << 30),
}


def apply_serve_latency_env(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set each of ``SERVE_LATENCY_ENV`` not already set; the values in effect."""
    for name, value in SERVE_LATENCY_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in SERVE_LATENCY_ENV}
