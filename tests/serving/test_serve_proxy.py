"""Kiln in Ray Serve's HTTP proxy (serving/ray/serve_proxy.py): the proxy callback builds the
body guard from the environment, and the proxy's receive queue holds a bounded amount of
a body ahead of the replica (Serve's own queue takes everything the client sends)."""

from __future__ import annotations

import asyncio

import pytest
from ray.serve._private import proxy
from ray.serve._private.http_util import MessageQueue

from serving.ray.serve_proxy import bound_read_ahead, proxy_middlewares


@pytest.fixture
def bounded(monkeypatch):
    """Serve's proxy module with the read-ahead bound at 1000 bytes, restored after."""
    monkeypatch.setattr(proxy, "MessageQueue", MessageQueue)
    assert bound_read_ahead(limit=1000)
    return proxy.MessageQueue


def _body(size: int) -> dict:
    return {"type": "http.request", "body": b"\0" * size, "more_body": True}


def test_the_proxy_queue_stops_taking_a_body_past_its_read_ahead(bounded):
    async def scenario() -> list[int]:
        queue = bounded()
        await asyncio.wait_for(queue(_body(600)), 1)  # under the bound: at once
        sending = asyncio.ensure_future(queue(_body(600)))  # 1200 queued: waits
        await asyncio.sleep(0.05)
        assert not sending.done(), "the proxy would read on from the client"
        taken = queue.get_messages_nowait()  # the replica pulls what is queued
        await asyncio.wait_for(sending, 1)
        assert queue.queued_bytes == 0
        late = asyncio.ensure_future(queue(_body(2000)))
        await asyncio.sleep(0.05)
        queue.close()  # the request ended: nobody waits on a closed queue
        await asyncio.wait_for(late, 1)
        return [len(m["body"]) for m in taken]

    assert asyncio.run(scenario()) == [600, 600]


def test_the_proxy_module_builds_its_queues_bounded(bounded):
    assert issubclass(proxy.MessageQueue, MessageQueue) and proxy.MessageQueue is bounded


def test_the_proxy_callback_builds_the_guard_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setattr(proxy, "MessageQueue", MessageQueue)
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    monkeypatch.setenv("KILN_BODY_MAX_JSON", "12345")
    (middleware,) = proxy_middlewares()
    limits = middleware.kwargs["limits"]
    assert limits.for_route("POST", "/v1/generations").max_bytes == 12345
    assert proxy.MessageQueue is not MessageQueue  # the read-ahead was bounded too
