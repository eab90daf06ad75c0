"""One live ``kiln serve`` per test session, on a free port, over the session KILN_HOME.

The server is the real thing: a subprocess running the console script, a local Ray with
the ingress and one deployment per tiny model. Tests talk to it only over HTTP. It starts
with a known ``KILN_ADMIN_KEY``; the session's tenant (``tenant``) is created through the
admin routes and holds a key and plenty of credits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from live_accounts import ADMIN_KEY, TenantKey, bearer, create_tenant

from serving.cli.ports import free_port

STARTUP_TIMEOUT_S = 300  # more deployments (instruct, CLIP) start side by side on 2 cores
SHUTDOWN_TIMEOUT_S = 60
# Requests waiting in a model's fair queue beyond this are turned away (503 overloaded):
# above the other live tests' concurrency (test_fair_queue_live.py queues 25 of tenant
# A's requests and B's at once), below test_server.py's burst of 96.
MAX_QUEUED = 32
SESSION_CREDITS = 1_000_000
# The JSON body limit of the session server (test_body_limits_live.py streams past it):
# below the 64 MiB default so the proxy's memory bound is measured with a clear margin.
BODY_MAX_JSON = 32 * 1024 * 1024


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def kiln_command() -> list[str]:
    """The installed ``kiln`` console script next to this interpreter (else ``-m``)."""
    script = Path(sys.executable).with_name("kiln")
    return [str(script)] if script.exists() else [sys.executable, "-m", "serving.cli"]


def wait_until_ready(server: LiveServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"kiln serve exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.process.kill()
    pytest.fail(f"kiln serve not ready after {timeout_s}s:\n{server.log_tail()}")


def start_server(home: Path, log: Path, extra_env: dict[str, str] | None = None) -> LiveServer:
    """Start ``kiln serve`` on a free port over ``home``; returns once it is ready."""
    port = free_port()
    env = {
        **os.environ,
        "KILN_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        **(extra_env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*kiln_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    wait_until_ready(server, STARTUP_TIMEOUT_S)
    return server


def stop_server(server: LiveServer) -> int:
    """Ctrl-C the server and wait for a clean exit; returns its exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
            pytest.fail(f"kiln serve ignored SIGINT:\n{server.log_tail()}")
    return server.process.returncode


# The session's live servers while they run, by fixture name. Each stops after the last
# test that may use it (``pytest_runtest_teardown``), not at the session's end: an idle
# Ray (controller, replicas, a proxy) beside every later test slows them on CI's 2 cores.
_RUNNING: dict[str, LiveServer] = {}
E2E_DIR = Path(__file__).resolve().parent
SERVE_FRONT = "serve_front_server"
_LAST_USE = pytest.StashKey[dict[str, int]]()  # fixture name -> index of its last user
_INDEX = pytest.StashKey[dict[int, int]]()  # id(item) -> its index in the session


def _may_use(name: str, item: pytest.Item) -> bool:
    """Whether ``item`` may use the live server of fixture ``name``: any e2e test the
    session's ``server`` (fixtures such as ``studio_server`` reach it too); the
    ``serve_front_server`` tests that name it or carry its marker (a parametrized
    fixture that asks for it by ``request.getfixturevalue``)."""
    if name == "server":
        return E2E_DIR in item.path.resolve().parents
    return name in item.fixturenames or item.get_closest_marker(name) is not None


def _last_use(session: pytest.Session, name: str) -> int:
    """The index in the session's (final) order of the last test that may use ``name``."""
    cache = session.stash.setdefault(_LAST_USE, {})
    if name not in cache:
        cache[name] = max(
            (i for i, item in enumerate(session.items) if _may_use(name, item)), default=-1
        )
    return cache[name]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop each running live server after the last test that may use it; runs after the
    item's own fixture teardowns."""
    yield
    session = item.session
    index = session.stash.setdefault(_INDEX, {})
    if not index:
        index.update((id(it), i) for i, it in enumerate(session.items))
    here = index.get(id(item), -1)
    for name in list(_RUNNING):
        if here >= _last_use(session, name):
            stop_server(_RUNNING.pop(name))


def _session_server(name: str, live: LiveServer) -> Iterator[LiveServer]:
    """Yield ``live``, stopped by the hook above or else here; its exit code must be 0."""
    _RUNNING[name] = live
    yield live
    _RUNNING.pop(name, None)
    code = stop_server(live)  # its exit code, where the hook stopped it already
    assert code == 0, f"kiln serve exited with {code} after SIGINT:\n{live.log_tail()}"


@pytest.fixture(scope="session")
def server(catalog, kiln_home: Path, tmp_path_factory) -> Iterator[LiveServer]:
    """The session's live server (``catalog`` builds the tiny models first, once); it
    stops after the last e2e test."""
    log = tmp_path_factory.mktemp("server") / "kiln-serve.log"
    # A short model queue, so a burst in test_server.py reaches the 503 path.
    env = {
        "KILN_MAX_QUEUED": str(MAX_QUEUED),
        "KILN_ADMIN_KEY": ADMIN_KEY,
        "KILN_BODY_MAX_JSON": str(BODY_MAX_JSON),
    }
    yield from _session_server("server", start_server(kiln_home, log, env))


@pytest.fixture(scope="session")
def tenant(server: LiveServer) -> TenantKey:
    """The session's tenant: a key and ``SESSION_CREDITS`` credits."""
    return create_tenant(server.url, "e2e studio", SESSION_CREDITS)


@pytest.fixture(scope="session")
def http(server: LiveServer, tenant: TenantKey) -> Iterator[httpx.Client]:
    """An httpx client on the live server with the session tenant's key."""
    with httpx.Client(base_url=server.url, timeout=120, headers=tenant.headers) as client:
        yield client


@pytest.fixture(scope="session")
def admin_http(server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client with the admin key."""
    with httpx.Client(base_url=server.url, timeout=120, headers=bearer(ADMIN_KEY)) as client:
        yield client


@dataclass(frozen=True)
class ServerControl:
    """``start_server``/``stop_server`` for a module that runs a live server of its own
    (test modules cannot import this conftest: several test packages have one)."""

    start: Callable[..., LiveServer] = start_server
    stop: Callable[[LiveServer], int] = stop_server


@pytest.fixture(scope="session")
def server_control() -> ServerControl:
    return ServerControl()


@pytest.fixture(scope="session")
def serve_front_server(catalog, kiln_home: Path, tmp_path_factory) -> Iterator[LiveServer]:
    """A second ``kiln serve`` with ``KILN_HTTP_SERVER=serve`` (Ray Serve's proxy, the
    ``KilnIngress`` replicas, each model's scheduler in a named actor), its own KILN_HOME
    with the session's tiny models linked in: test_body_limits_live.py's serve front (its
    tests carry the ``serve_front_server`` marker), test_fair_queue_live.py's scheduler
    kill. One for the session, stopped after the last test that uses it: those tests run
    one after another (the two modules are neighbours, the kill test first in its own)."""
    root = tmp_path_factory.mktemp("serve_front")
    home = root / "home"
    home.mkdir()
    (home / "models").symlink_to(kiln_home / "models", target_is_directory=True)
    env = {
        "KILN_HTTP_SERVER": "serve",
        "KILN_ADMIN_KEY": ADMIN_KEY,
        "KILN_BODY_MAX_JSON": str(BODY_MAX_JSON),
    }
    yield from _session_server(SERVE_FRONT, start_server(home, root / "kiln-serve.log", env))
