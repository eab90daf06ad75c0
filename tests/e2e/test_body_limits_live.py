"""Request bodies against the live ``kiln serve``: Ray Serve's HTTP proxy is the first
reader of a body, and it must neither take one from an unknown caller nor buffer more than
a route's limit (serving/http/body_guard.py, serving/ray/serve_proxy.py). The private resident
memory of the proxy and of the ingress replica is read by pid (psutil) while 300 MiB
streams at them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from live_accounts import TenantKey
from raw_http import stream_body

from serving.ray.serve_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV, READ_AHEAD_BYTES

# The benchmarks' sampler of other processes' private memory (benchmarks/_peak.py).
_PEAK = Path(__file__).resolve().parents[2] / "benchmarks" / "_peak.py"
_spec = importlib.util.spec_from_file_location("kiln_bench_peak", _PEAK)
peak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peak)

MiB = 1 << 20
STREAM = 300 * MiB
JSON_LIMIT = 32 * MiB  # the session server's KILN_BODY_MAX_JSON (tests/e2e/conftest.py)
SLACK = 16 * MiB


def _serve_process(server_pid: int, marker: str) -> psutil.Process:
    """The Ray worker of ``server_pid``'s local Ray whose title names ``marker`` (Ray sets
    ``ray::<actor>``); other servers' workers may run beside it."""
    for process in psutil.Process(server_pid).children(recursive=True):
        if marker in " ".join(process.cmdline()):
            return process
    pytest.fail(f"no process {marker!r} under kiln serve ({server_pid})")


@pytest.fixture(scope="module")
def serve_processes(server) -> dict[str, psutil.Process]:
    pid = server.process.pid
    return {
        "proxy": _serve_process(pid, "ray::ProxyActor"),
        "ingress": _serve_process(pid, "ray::ServeReplica:kiln:KilnIngress"),
    }


def _target(server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def test_the_serve_proxy_runs_the_body_guard(serve_processes):
    assert serve_processes["proxy"].environ().get(PROXY_CALLBACK_ENV) == PROXY_CALLBACK


def test_serve_runs_the_request_path_without_thread_hops(serve_processes):
    """kiln serve starts its Ray with serving/ray/serve_tuning.py's settings: the replicas
    and the proxy read them from their environment."""
    from serving.ray.serve_tuning import SERVE_LATENCY_ENV

    for process in serve_processes.values():
        environ = process.environ()
        assert {name: environ.get(name) for name in SERVE_LATENCY_ENV} == SERVE_LATENCY_ENV


def test_an_unauthenticated_stream_is_refused_by_the_proxy_unread(server, serve_processes):
    host, port = _target(server)
    with peak.peak_growth(serve_processes) as growth:
        result = stream_body(host, port, "/v1/generations", {}, total=STREAM)
    assert result.status == 401, result.response[:300]
    assert json.loads(result.body)["error"]["code"] == "missing_api_key"
    assert result.sent < SLACK, f"{result.sent} bytes taken before the 401"
    assert result.closed
    assert growth["proxy"] < SLACK and growth["ingress"] < SLACK, growth


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_an_authenticated_stream_over_the_limit_is_413_with_bounded_memory(
    server, tenant: TenantKey, serve_processes, chunked: bool
):
    host, port = _target(server)
    headers = {**tenant.headers, "content-type": "application/json"}
    with peak.peak_growth(serve_processes) as growth:
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
    # The proxy holds a bounded read-ahead, whatever the route's limit.
    assert growth["proxy"] <= 2 * READ_AHEAD_BYTES + SLACK, growth
