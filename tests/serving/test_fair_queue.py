"""The fair queue's algorithm (serving.core.scheduling.fair_queue) and its asyncio driver:
pure units, milliseconds. Live figures are in tests/e2e/test_fair_queue_live.py."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from serving.core.scheduling.fair_queue import FairQueue, Ticket, parse_class_weights
from serving.core.scheduling.scheduler import Scheduler, SchedulerConfig

_ids = itertools.count()


def ticket(tenant: str, images: int = 1, priority: str = "interactive", key="k", weight=1.0):
    return Ticket(f"t{next(_ids)}", tenant, priority, images, key, weight)


def drain(queue: FairQueue, limit: int = 10_000) -> list[Ticket]:
    """Every ticket in admission order, each group released as soon as admitted."""
    order: list[Ticket] = []
    while len(queue) and len(order) < limit:
        group = queue.admit()
        order.extend(group)
        for t in group:
            queue.release(t.id)
    return order


def shares(order: list[Ticket], images: int) -> Counter:
    """Images per tenant among the first ``images`` admitted."""
    counted: Counter = Counter()
    total = 0
    for t in order:
        if total >= images:
            break
        counted[t.tenant] += t.images
        total += t.images
    return counted


def test_two_saturating_tenants_share_images_equally_whatever_their_request_sizes():
    queue = FairQueue(slots=1, group_images=8)
    for _ in range(100):
        queue.push(ticket("a", 4, key="a"))  # big requests
    for _ in range(400):
        queue.push(ticket("b", 1, key="b"))  # one image each
    got = shares(drain(queue), 400)
    assert abs(got["a"] - got["b"]) <= 8, got


def test_tenant_weights_split_images_in_proportion():
    queue = FairQueue(slots=1, group_images=8)
    for _ in range(300):
        queue.push(ticket("a", 2, key="a", weight=3.0))
        queue.push(ticket("b", 2, key="b", weight=1.0))
    got = shares(drain(queue), 400)
    assert got["a"] / got["b"] == pytest.approx(3.0, rel=0.1), got


def test_a_lone_interactive_request_overtakes_a_batch_backlog():
    queue = FairQueue(slots=1, group_images=8)
    for _ in range(25):
        queue.push(ticket("a", 4, priority="batch"))
    first = queue.admit()  # a's group runs
    late = ticket("b", 1, key="other")
    queue.push(late)
    assert queue.position(late.id) == (0, 0)
    for t in first:
        queue.release(t.id)
    assert queue.admit() == [late]


def test_class_weights_keep_batch_work_from_starving():
    queue = FairQueue(slots=1, group_images=4, class_weights={"interactive": 4, "batch": 1})
    for _ in range(500):
        queue.push(ticket("i", 1, key="i"))
        queue.push(ticket("b", 1, priority="batch", key="b"))
    got = shares(drain(queue), 500)
    assert got["b"] / (got["i"] + got["b"]) == pytest.approx(0.2, abs=0.03), got


def test_groups_fill_one_call_with_small_same_key_requests_but_no_big_stranger():
    queue = FairQueue(slots=1, group_images=8)
    a1, a2 = ticket("a", 1, key="x"), ticket("a", 1, key="y")
    b1, c1, d1 = ticket("b", 1, key="x"), ticket("c", 1, key="x"), ticket("d", 4, key="x")
    for t in (a1, a2, b1, c1, d1):
        queue.push(t)
    group = queue.admit()
    # b and c share a's call on their coming turn; d's 4 images would swell it: d waits.
    assert [t.id for t in group] == [a1.id, b1.id, c1.id]
    assert queue.admit() == []  # one group per slot
    for t in group:
        queue.release(t.id)
    assert queue.admit() == [a2]  # key y: a call of its own
    queue.release(a2.id)
    assert queue.admit() == [d1]


def test_a_tenant_alone_fills_calls_with_its_own_requests():
    queue = FairQueue(slots=1, group_images=8)
    mine = [ticket("a", 4) for _ in range(4)]
    for t in mine:
        queue.push(t)
    assert queue.admit() == mine[:2]


def test_a_request_bigger_than_a_call_runs_alone_and_slots_bound_the_groups():
    queue = FairQueue(slots=2, group_images=8)
    big, small, third = ticket("a", 12), ticket("b", 1), ticket("c", 1)
    for t in (big, small, third):
        queue.push(t)
    admitted = queue.admit()  # two slots, two calls: the small ones share one
    assert [t.id for t in admitted] == [small.id, third.id, big.id]
    assert small.group == third.group != big.group
    late = ticket("d", 1)
    queue.push(late)
    assert queue.admit() == []  # both slots busy
    queue.release(big.id)
    assert queue.admit() == [late]


def test_cancel_takes_a_ticket_out_and_position_counts_what_goes_first():
    queue = FairQueue(slots=1, group_images=1)
    running = ticket("a")
    queue.push(running)
    queue.admit()
    waiting = [ticket("a", key=f"a{i}") for i in range(3)]
    bob = ticket("b", key="b")
    for t in (*waiting, bob):
        queue.push(t)
    assert queue.position(bob.id) == (1, 1)  # a's next, then b (round robin)
    queue.cancel(waiting[0].id)
    assert queue.queued_images() == 3 and queue.tenant_images("a") == 3  # 2 queued, 1 running
    for t in waiting[1:]:
        queue.cancel(t.id)
    assert queue.position(bob.id) == (0, 0)
    assert queue.cancel(running.id) is running  # admitted: released
    assert queue.running_images() == 0


def test_class_weight_text_is_checked():
    assert parse_class_weights("interactive=9, batch=1") == {"interactive": 9.0, "batch": 1.0}
    for bad in ("urgent=1", "batch=0", "batch=1000", "batch", "batch=x"):
        with pytest.raises(ValueError):
            parse_class_weights(bad)
    with pytest.raises(ValueError):
        FairQueue(1, 8).push(ticket("a", priority="urgent"))


def test_scheduler_admits_in_turn_waits_counted_and_quota_holds_nothing_past_it():
    async def scenario() -> None:
        scheduler = Scheduler(SchedulerConfig(slots=1, group_images=1))
        first, second = ticket("a"), ticket("b", key="b")
        admitted = await scheduler.admit(first)
        assert admitted.waited_s >= 0 and admitted.group_size == 1  # alone: starts at once
        waiting = asyncio.ensure_future(scheduler.admit(second))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert scheduler.position(second.id).requests_ahead == 0
        scheduler.release(first.id)
        await asyncio.wait_for(waiting, 1)
        assert scheduler.seconds_per_image is not None

        # A waiter whose client left is out of the queue: the next one gets the slot.
        gone, kept = ticket("c", key="c"), ticket("d", key="d")
        leaving = asyncio.ensure_future(scheduler.admit(gone))
        staying = asyncio.ensure_future(scheduler.admit(kept))
        await asyncio.sleep(0.01)
        leaving.cancel()
        scheduler.release(second.id)
        await asyncio.wait_for(staying, 1)
        assert scheduler.queue.running_images() == 1

        assert scheduler.hold("h1", "t", 6, limit=8)
        assert not scheduler.hold("h2", "t", 3, limit=8)  # refused: nothing held
        assert scheduler.held_images("t") == 6
        scheduler.unhold("h1")
        assert scheduler.hold("h3", "t", 12, limit=8)  # alone, a big order may run

    asyncio.run(scenario())


def test_each_admission_says_how_many_calls_its_group_holds():
    """The replica starts a call admitted alone at once and lets a group's members wait
    its batch window to share a call (serving/ray/model_deployment.py)."""

    async def scenario() -> None:
        scheduler = Scheduler(SchedulerConfig(slots=1, group_images=4))
        running = ticket("a", images=4, key="big")
        assert (await scheduler.admit(running)).group_size == 1
        queued = [ticket(t) for t in "bcd"]  # one batch key, 3 images: one group
        waiting = [asyncio.ensure_future(scheduler.admit(t)) for t in queued]
        await asyncio.sleep(0.01)
        scheduler.release(running.id)
        sizes = [(await asyncio.wait_for(w, 1)).group_size for w in waiting]
        assert sizes == [3, 3, 3]

    asyncio.run(scenario())


def test_admissions_and_holds_of_a_caller_that_stopped_renewing_lapse():
    async def scenario() -> None:
        scheduler = Scheduler(SchedulerConfig(slots=1, group_images=1), lease_s=1.0)
        kept, lost, next_ = ticket("a"), ticket("b", key="b"), ticket("c", key="c")
        await scheduler.admit(kept)
        scheduler.release(kept.id)
        await scheduler.admit(lost)  # its caller dies holding the only slot
        waiting = asyncio.ensure_future(scheduler.admit(next_))
        assert scheduler.hold("h", "t", 1, limit=None)
        for _ in range(3):
            await asyncio.sleep(0.2)
            scheduler.renew(["h"])  # the hold's caller is alive
            assert scheduler.sweep() == []
        await asyncio.sleep(0.6)
        assert scheduler.sweep() == [lost.id]
        await asyncio.wait_for(waiting, 1)  # the slot came back
        assert scheduler.held_images("t") == 1
        await asyncio.sleep(1.1)
        assert set(scheduler.sweep()) == {"h", next_.id}

    asyncio.run(scenario())


def test_past_max_queued_waiting_requests_a_ticket_is_refused_at_once():
    """KILN_MAX_QUEUED bounds the requests waiting for admission (Ray's router bound before
    the queue stood in front of it); a running call does not count."""
    import pickle

    from serving.core.scheduling.scheduler import QueueFull

    async def scenario() -> None:
        scheduler = Scheduler(SchedulerConfig(slots=1, group_images=1, max_queued=2))
        running = ticket("a")
        await scheduler.admit(running)
        waiting = [asyncio.ensure_future(scheduler.admit(ticket(t, key=t))) for t in "bc"]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as info:
            await scheduler.admit(ticket("d", key="d"))
        assert info.value.waiting == 2 and len(scheduler.queue) == 2
        # It crosses the scheduler actor's boundary whole.
        assert pickle.loads(pickle.dumps(info.value)).waiting == 2
        scheduler.release(running.id)
        await asyncio.wait_for(waiting[0], 1)
        late = asyncio.ensure_future(scheduler.admit(ticket("e", key="e")))
        await asyncio.sleep(0.01)
        assert not late.done() and len(scheduler.queue) == 2  # room again: b runs, c, e wait
        for task in (waiting[1], late):
            task.cancel()
        await asyncio.sleep(0)

    asyncio.run(scenario())


def test_a_free_replica_gathers_a_burst_whose_first_ticket_announced_companions():
    """A ticket that finds the replica free but says other orders are on their way
    (``companions``) is not admitted at once: the burst is gathered until ``gather_s``
    passes with no new ticket, a group's worth of images waits, or ``GATHER_LIMIT`` x
    ``gather_s`` passed; then it shares one call. A lone ticket is admitted at once."""
    from serving.core.scheduling.scheduler import GATHER_LIMIT

    def with_companions(tenant: str, companions: int) -> Ticket:
        made = ticket(tenant)
        made.companions = companions
        return made

    async def scenario() -> None:
        scheduler = Scheduler(SchedulerConfig(slots=1, group_images=8, gather_s=0.2))
        single = ticket("a")
        lone = await asyncio.wait_for(scheduler.admit(single), 1)
        assert lone.group_size == 1 and lone.waited_s < 0.04  # nothing announced
        scheduler.release(single.id)

        # Three tickets 0.1 s apart: each arrival pushes the end on, one call for all.
        burst = [with_companions(t, n) for t, n in (("a", 2), ("b", 1), ("c", 0))]
        waiting = []
        for t in burst:
            waiting.append(asyncio.ensure_future(scheduler.admit(t)))
            await asyncio.sleep(0.1)
            assert not any(w.done() for w in waiting)  # 0.3 s in: past one gather_s
        admitted = await asyncio.wait_for(asyncio.gather(*waiting), 1)
        assert [a.group_size for a in admitted] == [3, 3, 3]
        assert admitted[0].waited_s >= 0.35  # 0.2 s after the last arrival
        for t in burst:
            scheduler.release(t.id)

        # A group's worth of images ends the gathering at once.
        full = Scheduler(SchedulerConfig(slots=1, group_images=2, gather_s=5.0))
        pair = [with_companions("a", 5), with_companions("b", 4)]
        admitted = await asyncio.wait_for(asyncio.gather(*map(full.admit, pair)), 1)
        assert [a.group_size for a in admitted] == [2, 2]

        # Companions that never come: the ticket starts after gather_s, alone.
        short = Scheduler(SchedulerConfig(slots=1, group_images=8, gather_s=0.05))
        alone = await asyncio.wait_for(short.admit(with_companions("a", 3)), 1)
        assert alone.group_size == 1 and alone.waited_s >= 0.04

        # A stream of arrivals cannot hold the replica for more than GATHER_LIMIT x.
        steady = Scheduler(SchedulerConfig(slots=1, group_images=100, gather_s=0.05))
        first = asyncio.ensure_future(steady.admit(with_companions("a", 50)))
        while not first.done():
            asyncio.ensure_future(steady.admit(with_companions("b", 50)))
            await asyncio.sleep(0.02)
        assert first.result().waited_s < GATHER_LIMIT * 0.05 + 0.05

        # Without gather_s (a scheduler built without settings) nothing ever waits.
        plain = Scheduler(SchedulerConfig(slots=1, group_images=8))
        at_once = await asyncio.wait_for(plain.admit(with_companions("a", 3)), 0.5)
        assert at_once.waited_s < 0.04

    asyncio.run(scenario())


def test_a_request_on_an_image_route_counts_as_a_companion_before_its_order_names_a_model():
    """A burst's first request can reach the queue before any other reached the paid path
    (``held``). Counted from their route on (``Admission.arriving``), the others still make
    the free replica wait for them, and all share one call. The count ends when an order
    names its model or its request ends: nothing is left counted after either."""
    from types import SimpleNamespace

    from serving.core.scheduling.admission import LocalAdmission

    admission = LocalAdmission(SchedulerConfig(slots=1, group_images=8, gather_s=0.2))
    params = SimpleNamespace(model="m", n=1, batch_key="k")

    async def request(name: str, delay: float) -> tuple[int, float]:
        with admission.arriving():
            await asyncio.sleep(delay)  # authenticating, parsing, checking
            async with admission.held("m", 1), admission.admitted(params) as admitted:
                return admitted.group_size, admitted.waited_s

    async def scenario() -> None:
        # The second request is still in front when the first asks for the free replica.
        first = asyncio.ensure_future(request("a", 0.0))
        second = asyncio.ensure_future(request("b", 0.1))
        (size_a, waited_a), (size_b, _) = await asyncio.wait_for(asyncio.gather(first, second), 2)
        assert (size_a, size_b) == (2, 2) and waited_a >= 0.09
        assert admission.in_front == 0 and not admission.on_the_way

        # Alone, nothing in front: admitted at once.
        size, waited = await asyncio.wait_for(request("c", 0.0), 1)
        assert size == 1 and waited < 0.05
        # A request that never names a model (refused before its order) stops counting.
        with admission.arriving():
            assert admission.in_front == 1
        assert admission.in_front == 0
        # Off (KILN_FAIR_QUEUE=0): nothing is counted.
        off = LocalAdmission(enabled=False)
        with off.arriving():
            assert off.in_front == 0

    asyncio.run(scenario())


def test_a_request_read_in_the_same_loop_turn_is_a_lone_calls_companion():
    """A request whose task exists but has not run yet (read off its socket while the first
    request's order ran on without suspending) still counts: a call that would ask alone
    first gives the loop two turns. Without them the first request took the free replica
    alone and the second ran after it."""
    from types import SimpleNamespace

    from serving.core.scheduling.admission import LocalAdmission

    admission = LocalAdmission(SchedulerConfig(slots=1, group_images=8, gather_s=0.2))
    params = SimpleNamespace(model="m", n=1, batch_key="k")

    async def request(parsing_s: float) -> int:
        with admission.arriving():
            await asyncio.sleep(parsing_s)  # authenticating, parsing, reserving
            async with admission.held("m", 1), admission.admitted(params) as admitted:
                return admitted.group_size

    async def first_with_a_second_behind_it() -> tuple[int, int]:
        with admission.arriving():
            async with admission.held("m", 1):
                # Read off its socket in this turn: its task is queued, not yet run.
                second = asyncio.ensure_future(request(0.01))
                async with admission.admitted(params) as admitted:
                    size = admitted.group_size
        return size, await second

    async def scenario() -> None:
        sizes = await asyncio.wait_for(first_with_a_second_behind_it(), 2)
        assert sizes == (2, 2)
        assert admission.in_front == 0 and not admission.on_the_way
        assert await asyncio.wait_for(request(0.0), 1) == 1  # alone: alone, at once

    asyncio.run(scenario())


def test_a_local_admission_gives_back_in_place_even_for_a_cancelled_request(monkeypatch):
    """This process's schedulers release an admission and a quota hold with plain calls:
    no shield's task (two loop iterations on every request), and a request cancelled
    inside its call still gives both back. An actor's admission still shields its round
    trips."""
    from types import SimpleNamespace

    from serving.core.scheduling import admission as module
    from serving.core.scheduling.context import Work, current_work
    from serving.ray.scheduler import RayAdmission

    def no_shield(step):
        step.close()
        raise AssertionError("a local give-back went through asyncio.shield")

    monkeypatch.setattr(module.asyncio, "shield", no_shield)
    assert RayAdmission.gives_back_in_place is False
    local = module.LocalAdmission(
        configs={"m": SchedulerConfig(slots=1, group_images=1)},
        default_max_queued_images=4,
    )
    params = SimpleNamespace(model="m", n=1, batch_key=("k",))

    async def order(inside: asyncio.Event | None = None) -> None:
        current_work.set(Work("t", 1.0, 4))
        async with local.held("m", 1), local.admitted(params):
            if inside is not None:
                inside.set()
                await asyncio.sleep(10)  # cancelled here

    async def scenario() -> None:
        await order()
        inside = asyncio.Event()
        cancelled = asyncio.ensure_future(order(inside))
        await inside.wait()
        scheduler = local.scheduler("m")
        assert scheduler.queue.running_images() == 1 and scheduler.held_images("t") == 1
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert scheduler.queue.running_images() == 0 and scheduler.held_images("t") == 0
        await asyncio.wait_for(order(), 1)  # the slot is free again

    asyncio.run(scenario())
