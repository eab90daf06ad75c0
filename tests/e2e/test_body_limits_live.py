"""Request bodies against a live ``kiln serve``, under both HTTP fronts
(serving/ray/http_front.py): the first reader of a body must neither take one from an
unknown caller nor buffer more than a route's limit (serving/http/body_guard.py).

- ``kiln`` (the default): the ``kiln serve`` process reads bodies itself, under uvicorn;
  it is the session server.
- ``serve`` (``KILN_HTTP_SERVER=serve``, what ``serve deploy`` runs): Ray Serve's HTTP
  proxy reads them (serving/ray/serve_proxy.py) and streams them to a ``KilnIngress``
  replica; a module server of its own, which also answers a generation end to end.

The private resident memory of the reading processes is read by pid (psutil) while
300 MiB stream at them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from live_accounts import TenantKey, create_tenant
from raw_http import stream_body

from serving.ray.serve_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV, READ_AHEAD_BYTES

# The benchmarks' sampler of other processes' private memory (benchmarks/_peak.py).
_PEAK = Path(__file__).resolve().parents[2] / "benchmarks" / "_peak.py"
_spec = importlib.util.spec_from_file_location("kiln_bench_peak", _PEAK)
peak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peak)

MiB = 1 << 20
STREAM = 300 * MiB
JSON_LIMIT = 32 * MiB  # both servers' KILN_BODY_MAX_JSON (tests/e2e/conftest.py)
SLACK = 16 * MiB


@dataclass(frozen=True)
class Front:
    """A live server under one HTTP front: its tenant, and the processes that read bodies."""

    name: str
    server: object  # conftest's LiveServer
    tenant: TenantKey
    readers: dict[str, psutil.Process]


def _serve_process(server_pid: int, marker: str) -> psutil.Process:
    """The Ray worker of ``server_pid``'s local Ray whose title names ``marker`` (Ray sets
    ``ray::<actor>``); other servers' workers may run beside it."""
    for process in psutil.Process(server_pid).children(recursive=True):
        if marker in " ".join(process.cmdline()):
            return process
    pytest.fail(f"no process {marker!r} under kiln serve ({server_pid})")


def _has_process(server_pid: int, marker: str) -> bool:
    children = psutil.Process(server_pid).children(recursive=True)
    return any(marker in " ".join(p.cmdline()) for p in children)


# The serve front's tests carry the marker that keeps its server up until they ran.
@pytest.fixture(
    scope="module", params=["kiln", pytest.param("serve", marks=pytest.mark.serve_front_server)]
)
def front(request, server, tenant: TenantKey) -> Front:
    if request.param == "kiln":
        return Front("kiln", server, tenant, {"kiln serve": psutil.Process(server.process.pid)})
    live = request.getfixturevalue("serve_front_server")
    pid = live.process.pid
    readers = {
        "proxy": _serve_process(pid, "ray::ProxyActor"),
        "ingress": _serve_process(pid, "ray::ServeReplica:kiln:KilnIngress"),
    }
    return Front("serve", live, create_tenant(live.url, "serve front", 100), readers)


def _target(server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def test_each_front_answers_http_where_it_says(front: Front):
    pid = front.server.process.pid
    has_proxy = _has_process(pid, "ray::ProxyActor")
    has_ingress = _has_process(pid, "KilnIngress")
    assert (has_proxy, has_ingress) == ((False, False) if front.name == "kiln" else (True, True))
    # The request id is echoed once, by the app (kiln) or by Serve's proxy (serve).
    r = httpx.get(
        f"{front.server.url}/v1/models", headers={**front.tenant.headers, "x-request-id": "front-1"}
    )
    assert r.status_code == 200 and r.headers.get_list("x-request-id") == ["front-1"]


def _logged_at(log: str, text: str) -> datetime:
    """When the first line of ``log`` holding ``text`` was written (its own timestamp:
    Ray ships replica lines to the driver's log later than they happen)."""
    line = next(line for line in log.splitlines() if text in line)
    stamp = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", line)
    assert stamp, line
    return datetime.strptime(stamp.group(0), "%Y-%m-%d %H:%M:%S,%f")


def test_kiln_serve_starts_edit_models_and_clip_after_the_base_models(server):
    """The kiln front's start order (serving/ray/http_front.py ``start_stages``)."""
    log = server.log.read_text(errors="replace")
    stage = next(line for line in log.splitlines() if "second start stage deployed: " in line)
    assert "kiln-model-tiny-instruct" in stage and "kiln-clip" in stage, stage
    deployed = _logged_at(log, "second start stage deployed: ")
    for base in ("tiny-sd15", "tiny-sdxl"):
        assert _logged_at(log, f"model {base} ready (") < deployed
    assert _logged_at(log, "model tiny-instruct ready (") > deployed
    assert _logged_at(log, "CLIP tiny-clip ready") > deployed


def test_a_generation_answers_through_each_front(front: Front):
    body = {"model": "tiny-sd15", "prompt": "a kiln", "resolution": "128px", "steps": 1}
    r = httpx.post(
        f"{front.server.url}/v1/generations", json=body, headers=front.tenant.headers, timeout=120
    )
    assert r.status_code == 200, r.text
    assert r.json()["credits_charged"] == 1 and len(r.json()["data"]) == 1
    if front.name == "kiln":
        # No access log line per replica call: Ray ships each one to this process to print
        # (a second or so after it is written: this and earlier tests' calls are in by then).
        time.sleep(1.5)
        log = front.server.log.read_text(errors="replace")
        assert "CALL generate" not in log and "CALL ready" not in log


def test_each_front_runs_the_fair_queue_where_it_says(front: Front):
    """KILN_SCHEDULER=auto: in the kiln serve process under its own front (no hop), in a
    named actor per model under Serve's (shared by its ingress replicas). A generation
    through each front ran above, so the serve front's actor exists by now."""
    has_actor = _has_process(front.server.process.pid, "ray::SchedulerActor")
    assert has_actor == (front.name == "serve")


def test_the_serve_proxy_runs_the_body_guard(front: Front):
    if front.name != "serve":
        pytest.skip("only Serve's front has a proxy")
    assert front.readers["proxy"].environ().get(PROXY_CALLBACK_ENV) == PROXY_CALLBACK


def test_serve_runs_the_request_path_without_thread_hops(front: Front):
    """kiln serve starts its Ray with serving/ray/serve_tuning.py's settings: the model
    replicas (and Serve's proxy and ingress, under that front) read them from their
    environment."""
    from serving.ray.serve_tuning import SERVE_LATENCY_ENV

    model = _serve_process(front.server.process.pid, "ray::ServeReplica:")
    processes = [model] + ([] if front.name == "kiln" else list(front.readers.values()))
    for process in processes:
        environ = process.environ()
        assert {name: environ.get(name) for name in SERVE_LATENCY_ENV} == SERVE_LATENCY_ENV


def test_an_unauthenticated_stream_is_refused_unread(front: Front):
    host, port = _target(front.server)
    with peak.peak_growth(front.readers) as growth:
        result = stream_body(host, port, "/v1/generations", {}, total=STREAM)
    assert result.status == 401, result.response[:300]
    assert json.loads(result.body)["error"]["code"] == "missing_api_key"
    assert result.sent < SLACK, f"{result.sent} bytes taken before the 401"
    assert result.closed
    assert all(grown < SLACK for grown in growth.values()), growth


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_an_authenticated_stream_over_the_limit_is_413_with_bounded_memory(
    front: Front, chunked: bool
):
    host, port = _target(front.server)
    headers = {**front.tenant.headers, "content-type": "application/json"}
    with peak.peak_growth(front.readers) as growth:
        result = stream_body(host, port, "/v1/generations", headers, STREAM, chunked=chunked)
    assert result.status == 413, result.response[:300]
    assert json.loads(result.body)["error"]["code"] == "request_too_large"
    assert result.closed
    if chunked:
        assert JSON_LIMIT <= result.sent < JSON_LIMIT + SLACK
    else:
        assert result.sent < SLACK  # refused by its Content-Length, unread
    for name, grown in growth.items():
        assert grown <= JSON_LIMIT + SLACK, f"{name} grew {grown / MiB:.0f} MiB"
    if front.name == "serve":
        # The proxy holds a bounded read-ahead, whatever the route's limit.
        assert growth["proxy"] <= 2 * READ_AHEAD_BYTES + SLACK, growth
