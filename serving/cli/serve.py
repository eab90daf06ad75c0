"""``kiln serve``: a local Ray (or the cluster at ``KILN_RAY_ADDRESS``), the models as
Serve deployments and the HTTP API in this process (``KILN_HTTP_SERVER=kiln``,
serving/ray/http_front.py) or behind Serve's proxy (``serve``), until Ctrl-C; a newly
generated admin key is printed once."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from serving.cli.base import Command, build_tiny, check_sources, load_catalog
from serving.core.settings import Settings
from weights.catalog import Catalog

logger = logging.getLogger("kiln")

APP_NAME = "kiln"


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start a local Ray (or join ``KILN_RAY_ADDRESS``), deploy, serve until interrupted.

    While ``ray.init`` waits for Ray's own processes (its own thread is idle: 0.3 s of
    CPU in its 4 s on 2 cores), a thread migrates the database and prepares the admin
    key, work that used to come before it on the way to the first image."""
    from serving.ray.serve_tuning import SERVE_LATENCY_ENV, apply_serve_latency_env

    # Serve's request path without thread hops (serving/ray/serve_tuning.py): before Serve
    # is imported here, whose constants read them once (this process's handles run their
    # router on uvicorn's loop), and before Ray starts (its processes inherit them).
    apply_serve_latency_env()
    import ray
    from ray import serve

    from serving.ray.app import build_application
    from serving.ray.placement import local_ray_cpus
    from serving.ray.serve_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV

    settings = settings.with_overrides(host=args.host, port=args.port)
    catalog = load_catalog(settings)
    beside = ThreadPoolExecutor(1, thread_name_prefix="kiln-start")
    preparing = beside.submit(_admin_key_beside_ray, settings)
    beside.shutdown(wait=False)
    built = build_tiny(catalog)
    for path in built:
        print(f"built tiny model {path}")
    check_sources(catalog)
    prepared_before_ray = preparing.done()  # e.g. a fresh home's tiny models took longer
    if prepared_before_ray:  # a database that failed already stops the start before Ray
        _print_new_admin_key(settings, preparing.result())

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    # Serve's HTTP proxy reads request bodies first: it installs the body guard from this
    # variable, which the proxy processes of a local Ray inherit from this one.
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    if settings.ray_address and settings.http_server == "serve":
        logger.warning(
            "joining the Ray cluster at %s: its nodes must have been started with %s=%s "
            "for the HTTP proxy to check keys and body limits (README: Scaling out)",
            settings.ray_address, PROXY_CALLBACK_ENV, PROXY_CALLBACK,
        )  # fmt: skip
        logger.info(
            "the cluster's nodes should also export %s (serving/ray/serve_tuning.py)",
            ", ".join(f"{k}={v}" for k, v in SERVE_LATENCY_ENV.items()),
        )
    if settings.ray_address:
        ray.init(address=settings.ray_address, include_dashboard=False)
    else:
        # "local": a Ray of its own even when another runs on this machine (``ray.init()``
        # would join that one, and refuse the CPU count).
        num_cpus = local_ray_cpus(settings, catalog)
        logger.info("starting a local Ray with %d logical CPUs", num_cpus)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    if not prepared_before_ray:
        try:  # a database that cannot be migrated stops the start here, Ray shut down
            _print_new_admin_key(settings, preparing.result())
        except BaseException:
            ray.shutdown()
            raise
    url = f"http://{settings.host}:{settings.port}"
    try:
        if settings.http_server == "kiln":
            _serve_http_here(settings, catalog, url)
        else:
            serve.start(http_options={"host": settings.host, "port": settings.port})
            serve.run(build_application(settings, catalog), name=APP_NAME, route_prefix="/")
            _announce(catalog, url)
            # A short timeout keeps the main thread responsive to signals.
            while not stop.wait(0.5):
                pass
        print("shutting down", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def _serve_http_here(settings: Settings, catalog: Catalog, url: str) -> None:
    """``KILN_HTTP_SERVER=kiln``: the models as Serve applications without routes, and
    the HTTP API in this process under uvicorn (serving/ray/http_front.py) until SIGINT or
    SIGTERM; Serve's HTTP proxy is not started."""
    from ray import serve

    from serving.ray.http_front import deploy_models, front_app, serve_http

    serve.start(proxy_location="Disabled")
    handles, clip_handle = deploy_models(settings, catalog)
    app = front_app(settings, catalog, handles, clip_handle)
    _announce(catalog, url)
    serve_http(app, settings)


def _announce(catalog: Catalog, url: str) -> None:
    logger.info("Kiln serving %s at %s", ", ".join(catalog.ids()), url)
    print(f"Kiln is serving at {url} (API docs at {url}/docs); Ctrl-C stops it", flush=True)


def _admin_key_beside_ray(settings: Settings) -> str | None:
    """The database migrated and the admin key ensured, on a thread beside ``ray.init``:
    a newly generated key returned, printed by the main thread. It imports nothing that
    ``ray.init`` imports (alembic and the ledger's modules), so the two threads never
    import the same modules at once."""
    from serving.core.accounts import prepare_admin

    return prepare_admin(settings.database_url, settings.home, settings.admin_key)


def _print_new_admin_key(settings: Settings, admin_key: str | None) -> None:
    from serving.core.accounts.service import ADMIN_KEY_FILE

    if admin_key is not None:
        print(f"admin API key (shown once; also in {settings.home / ADMIN_KEY_FILE}):")
        print(f"  {admin_key}", flush=True)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default KILN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default KILN_PORT or 8000)")


SERVE = Command("serve", "start the HTTP server (local Ray)", cmd_serve, _serve_arguments)
