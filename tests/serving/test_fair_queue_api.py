"""The fair queue through the app, in-process (no Ray, no model load): the admin's tenant
queue settings and their bad input, the queued-images quota's 429 with nothing reserved,
an unknown priority class, and the scheduler admitting in-process calls in turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET

from serving.core.accounts import ensure_admin_key
from serving.core.model_client import LocalModelClient
from serving.core.scheduling.admission import LocalAdmission
from serving.core.scheduling.context import InvalidPriority, check_priority, priority_scope
from serving.core.settings import Settings
from serving.http.app import create_app
from weights.catalog import load_catalog

GEN = "/v1/generations"
BODY = {"model": "ghost", "prompt": "boo", "n": 2}


@pytest.fixture
def app(home: Path):
    # A model that is never built: a request that passes the queue fails at its load (500),
    # one that does not is refused before anything runs.
    (home / "models.toml").write_text(
        '[models.ghost]\nkind = "base"\nfamily = "sd15"\nsource = "models/ghost"\n'
        'aspect_ratios = ["1:1"]\nresolutions = {"64px" = 64}\ncredits = {"64px" = 1}\n'
    )
    catalog = load_catalog(home)
    settings = Settings(home=home, secret=TEST_SECRET, tenant_max_queued_images=3)
    models = LocalModelClient(
        catalog, device="cpu", admission=LocalAdmission.from_settings(settings)
    )
    return create_app(settings, catalog, models)


@pytest.fixture
def admin(app, home: Path) -> TestClient:
    key = ensure_admin_key(app.state.kiln.accounts, home, None)
    return TestClient(app, headers={"authorization": f"Bearer {key}"})


def test_over_the_queued_images_quota_is_429_with_nothing_reserved(app, make_client):
    client = make_client(app, credits=100)
    scheduler = app.state.kiln.models.admission.scheduler("ghost")
    # Two of the tenant's images queued or running already (as another ingress's).
    assert scheduler.hold("elsewhere", client.tenant_id, 2, limit=3)
    r = client.post(GEN, json=BODY)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "tenant_queue_limit"
    assert int(r.headers["retry-after"]) >= 1
    credits = client.get("/v1/credits").json()
    assert credits["held"] == 0 and [e["kind"] for e in credits["entries"]] == ["grant"]
    assert scheduler.held_images(client.tenant_id) == 2  # the refused order held nothing
    scheduler.unhold("elsewhere")
    assert client.post(GEN, json=BODY).status_code == 500  # past the quota: the ghost fails
    assert scheduler.held_images(client.tenant_id) == 0  # released with the order


def test_admin_sets_weight_and_own_quota_and_bad_values_are_400(app, admin, make_client):
    client = make_client(app)
    route = f"/v1/admin/tenants/{client.tenant_id}/queue"
    assert admin.get(route).json() == {
        "object": "tenant_queue", "tenant_id": client.tenant_id, "weight": 1.0,
        "max_queued_images": 3,
    }  # fmt: skip
    r = admin.put(route, json={"weight": 2.5, "max_queued_images": 1})
    assert r.status_code == 200, r.text
    assert (r.json()["weight"], r.json()["max_queued_images"]) == (2.5, 1)
    assert admin.put(route, json={}).json()["max_queued_images"] == 3  # back to the server's
    for body, param in (
        ({"weight": 0}, "weight"),
        ({"weight": 101}, "weight"),
        ({"weight": -1}, "weight"),
        ({"max_queued_images": 0}, "max_queued_images"),
        # Past 64 bits: the write was a 500.
        ({"max_queued_images": 2**63}, "max_queued_images"),
        ({"max_queued_images": 10**30}, "max_queued_images"),
        ({"max_queued_images": 1_000_000_001}, "max_queued_images"),
        # Strict, as every other body: a string or a boolean is no number.
        ({"weight": "5"}, "weight"),
        ({"weight": True}, "weight"),
        ({"max_queued_images": "5"}, "max_queued_images"),
    ):
        r = admin.put(route, json=body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == param
        assert error["code"] in ("invalid_queue_setting", "invalid_value")
        assert r.headers["x-request-id"]
    assert admin.get(route).json()["weight"] == 2.5  # the refusals stored nothing
    assert admin.put("/v1/admin/tenants/ten_nobody/queue", json={"weight": 2}).status_code == 404
    assert client.put(route, json={"weight": 2}).status_code == 403  # admin only


def test_an_unknown_priority_class_is_the_400_error_shape():
    assert check_priority("batch") == "batch"
    with pytest.raises(InvalidPriority) as refused:
        check_priority("urgent")
    body = refused.value.body()["error"]
    assert (refused.value.status, body["param"], body["code"]) == (
        400,
        "priority",
        "invalid_priority",
    )
    with pytest.raises(InvalidPriority), priority_scope("later"):
        pass


def test_in_process_calls_queue_in_turn_batch_behind_interactive():
    """LocalModelClient's scheduler admits one call at a time: a batch-class call queued
    first runs after an interactive one queued behind it."""
    admission = LocalAdmission()
    order: list[str] = []

    class Params:  # what admission reads of GenerationParams
        model, n, batch_key = "m", 1, "k"

    async def call(name: str, priority: str, hold: asyncio.Event | None = None) -> None:
        with priority_scope(priority):
            async with admission.admitted(Params()):
                order.append(name)
                if hold is not None:
                    await hold.wait()

    async def scenario() -> None:
        gate = asyncio.Event()
        first = asyncio.ensure_future(call("running", "batch", gate))
        await asyncio.sleep(0.01)
        later = [
            asyncio.ensure_future(call("batch", "batch")),
            asyncio.ensure_future(call("interactive", "interactive")),
        ]
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(first, *later)

    asyncio.run(scenario())
    assert order == ["running", "interactive", "batch"]


def test_an_unknown_priority_header_is_400_before_anything_is_held(app, make_client):
    client = make_client(app, credits=100)
    r = client.post(GEN, json=BODY, headers={"x-kiln-priority": "urgent"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("x-kiln-priority", "invalid_priority")
    assert r.headers["x-request-id"]
    assert [e["kind"] for e in client.get("/v1/credits").json()["entries"]] == ["grant"]


def test_a_queued_call_tells_its_listener_its_position_and_eta(monkeypatch):
    """What a job's progress hears while its call waits (``queue_listener``)."""
    from serving.core.scheduling import admission as admission_module
    from serving.core.scheduling.context import queue_listener

    monkeypatch.setattr(admission_module, "POSITION_EVERY_S", 0.01)
    admission = LocalAdmission()
    heard: list = []

    class Params:
        model, n, batch_key = "m", 2, "k"

    async def scenario() -> None:
        gate = asyncio.Event()

        async def running() -> None:
            async with admission.admitted(Params()):
                await gate.wait()

        first = asyncio.ensure_future(running())
        await asyncio.sleep(0.01)
        queue_listener.set(heard.append)
        waiting = asyncio.ensure_future(admission.admitted(Params()).__aenter__())
        await asyncio.sleep(0.05)
        assert heard and heard[-1].requests_ahead == 0 and heard[-1].images_ahead == 0
        gate.set()
        await first
        await waiting
        count = len(heard)
        await asyncio.sleep(0.05)
        assert len(heard) == count  # admitted: no more positions

    asyncio.run(scenario())


def _waits(client: TestClient, priority: str) -> float:
    """How many ghost calls the fair queue admitted in ``priority``'s class (``/metrics``)."""
    wanted = f'kiln_queue_wait_seconds_count{{model="ghost",priority="{priority}"}}'
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


def test_a_body_priority_puts_the_call_in_that_class_and_a_bad_one_is_400(app, make_client):
    """``"priority": "batch"`` in the body (what an async render job asks) queues the
    request's model calls in the batch class, as the header does; an unknown class is the
    400 error shape naming ``priority`` with nothing held."""
    client = make_client(app, credits=100)
    before = {p: _waits(client, p) for p in ("interactive", "batch")}
    assert client.post(GEN, json={**BODY, "priority": "batch"}).status_code == 500  # ghost
    assert _waits(client, "batch") == before["batch"] + 1
    assert client.post(GEN, json=BODY).status_code == 500
    assert _waits(client, "interactive") == before["interactive"] + 1
    r = client.post(GEN, json={**BODY, "priority": "urgent"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "priority"
    credits = client.get("/v1/credits").json()
    assert credits["held"] == 0 and credits["balance"] == 100


def test_the_body_priority_names_the_fair_queues_classes():
    from typing import get_args

    from serving.core.scheduling.fair_queue import PRIORITIES
    from serving.http.priority import Priority

    assert get_args(Priority) == PRIORITIES


def test_orders_on_their_way_are_announced_to_the_first_call_and_counted_once():
    """``held`` counts an order as on its way to its model until its first call is
    queued; the call's ticket carries the other orders still on their way, so three
    concurrent orders make one group of three, and a lone order's call starts at once."""
    from serving.core.scheduling.scheduler import SchedulerConfig

    admission = LocalAdmission(SchedulerConfig(slots=1, group_images=8, gather_s=0.2))
    sizes: dict[str, int] = {}

    class Params:
        model, n, batch_key = "m", 1, "k"

    async def order(name: str, entered: asyncio.Event, go: asyncio.Event) -> None:
        async with admission.held("m", 1):
            entered.set()
            await go.wait()  # its reservation, say
            async with admission.admitted(Params()) as admitted:
                sizes[name] = admitted.group_size
            # A later call of the same order (an agent's next round) announces nothing.
            async with admission.admitted(Params()) as again:
                sizes[f"{name} again"] = again.group_size

    async def scenario() -> None:
        entered = [asyncio.Event() for _ in range(3)]
        gates = [asyncio.Event() for _ in range(3)]
        tasks = [
            asyncio.ensure_future(order(name, e, g))
            for name, e, g in zip("abc", entered, gates, strict=True)
        ]
        for event in entered:
            await event.wait()
        assert admission.on_the_way["m"] == 3
        for gate in gates:  # one after another, as their reservations end
            gate.set()
            await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        assert admission.on_the_way["m"] == 0
        alone = asyncio.Event()
        alone.set()
        await asyncio.wait_for(order("lone", asyncio.Event(), alone), 0.5)

    asyncio.run(scenario())
    assert [sizes[n] for n in "abc"] == [3, 3, 3]
    assert sizes["lone"] == 1
