"""The fair queue in front of each model: an interactive tenant's waits behind another's
backlog, with and without the scheduler, and two saturating tenants' shares.

On the tiny model, per server (``KILN_FAIR_QUEUE`` on, then off):

1. tenant A submits 100 images at once (25 requests of 4) in the ``batch`` class, then
   tenant B sends single-image interactive requests one after another while A's backlog
   lasts: B's p50/p95 wait against the run's median pipeline call (``timings.total`` of
   A's answers), and whether all of A's images came back;
2. the same with A's backlog ``interactive``;
3. two tenants each keep 3 requests of 4 images in flight for a minute: each one's share
   of the images delivered in the window.

    python benchmarks/fair_queue.py                 # kiln serve (Ray), a minute of share
    python benchmarks/fair_queue.py --local         # in-process app (no Ray)
    python benchmarks/fair_queue.py --smoke         # in-process, 16 images, 3 s of share

Self-contained: builds the tiny models into a temp KILN_HOME (or ``--home``), starts and
stops its own servers and makes the tenants through the admin API.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _fair_load import backlog, percentile, share
from _server import KilnServe, tenant_key

os.environ["HF_HUB_OFFLINE"] = "1"

CREDITS = 1_000_000
BODY = {"model": "tiny-sd15", "prompt": "a kiln at dusk, long exposure"}


def log(message: str) -> None:
    print(message, flush=True)


@contextmanager
def ray_server(home: Path, fair: bool) -> Iterator[tuple[str, str]]:
    """``kiln serve`` over ``home``: its url and admin key."""
    admin_key = "kiln_bench_" + secrets.token_hex(16)
    env = {"KILN_FAIR_QUEUE": "1" if fair else "0"}
    server = KilnServe.start(home, admin_key, log=home / f"serve-fair-{fair}.log", env=env)
    try:
        yield server.url, admin_key
    finally:
        server.stop()


@contextmanager
def local_server(home: Path, fair: bool) -> Iterator[tuple[str, str]]:
    """The app in this process (``LocalModelClient``: no Ray) under uvicorn on a thread."""
    import uvicorn

    from serving.core.accounts import ensure_admin_key
    from serving.core.model_client import LocalModelClient
    from serving.core.scheduling.admission import LocalAdmission
    from serving.core.settings import Settings
    from serving.http.app import create_app
    from weights.catalog import load_catalog

    settings = Settings.from_env(home=str(home), fair_queue="1" if fair else "0")
    catalog = load_catalog(settings.home, settings.catalog_path)
    models = LocalModelClient(
        catalog, device="cpu", admission=LocalAdmission.from_settings(settings)
    )
    models.load(BODY["model"])
    app = create_app(settings, catalog, models)
    admin_key = "kiln_bench_" + secrets.token_hex(16)
    ensure_admin_key(app.state.kiln.accounts, home, admin_key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", admin_key
    finally:
        server.should_exit = True
        thread.join(30)


def measure(url: str, admin_key: str, images: int, share_s: float, label: str) -> None:
    keys = [tenant_key(url, admin_key, CREDITS, name=f"{label}-{n}") for n in "abcd"]
    # Warm the model (and its replica's first call) before anything is timed.
    backlog(url, keys[0], keys[1], BODY, "interactive", images=4, settle_s=0.0)
    for priority in ("batch", "interactive"):
        run = backlog(url, keys[0], keys[1], BODY, priority, images=images)
        call = run.median_call
        p50, p95 = run.b_percentile(0.5), run.b_percentile(0.95)
        # B's time not being served: its wait less its own pipeline call.
        queued = percentile([w - c for w, c in zip(run.b_waits, run.b_calls, strict=True)], 0.5)
        log(
            f"{label}: A {images} images ({priority}), B {len(run.b_waits)} single images: "
            f"B wait p50 {p50:.2f} s ({p50 / call:.2f}x call), p95 {p95:.2f} s "
            f"({p95 / call:.2f}x call), p50 less its own call {queued:.2f} s; "
            f"median pipeline call {call:.2f} s ({statistics.median(run.call_images):.0f} "
            f"images); A {run.a_images}/{images} images in {run.a_seconds:.1f} s, "
            f"statuses {sorted(set(run.a_statuses))}"
        )
    a, b = share(url, (keys[2], keys[3]), BODY, share_s, warmup_s=min(2.0, share_s / 3))
    total = max(1, a + b)
    log(
        f"{label}: two saturating tenants over {share_s:.0f} s: {a} and {b} images "
        f"({100 * a / total:.0f}% / {100 * b / total:.0f}%)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="KILN_HOME (default: a temp dir)")
    parser.add_argument("--local", action="store_true", help="in-process app, no Ray")
    parser.add_argument("--smoke", action="store_true", help="in-process, small and short")
    parser.add_argument("--images", type=int, default=100, help="tenant A's backlog")
    parser.add_argument("--share-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.local, args.images, args.share_seconds = True, 16, 3.0

    from serving.core.settings import Settings
    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_components, ensure_tiny_models

    home = args.home or Path(tempfile.mkdtemp(prefix="kiln-fair-"))
    settings = Settings.from_env(home=str(home))
    catalog = load_catalog(settings.home, settings.catalog_path)
    ensure_tiny_models(catalog)
    ensure_tiny_components(catalog.components.values())
    where = "in-process (LocalModelClient)" if args.local else "kiln serve (Ray Serve)"
    log(f"fair queue on {BODY['model']}, {where}, {os.cpu_count()} CPUs")
    serve = local_server if args.local else ray_server
    for fair in (True, False):
        label = "with scheduler" if fair else "without scheduler"
        with serve(home, fair) as (url, admin_key):
            measure(url, admin_key, args.images, args.share_seconds, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
