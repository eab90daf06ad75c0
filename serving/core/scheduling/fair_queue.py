"""The fair queue in front of one model: priority classes, deficit round robin, batch groups.

A pure data structure (no asyncio, no clock of its own): ``serving.core.scheduling.scheduler``
drives it in-process and ``serving.ray.scheduler`` inside the model's scheduler actor.

Units are *images*: a 12-image request costs 12. Three decisions, in order:

1. **Class.** Each priority class (``interactive``, ``batch``) keeps a virtual time, the
   images it was admitted divided by its weight; the non-empty class with the smallest
   wins, ties to the earlier class in ``PRIORITIES``. So with weights 4:1 a steady
   interactive stream gets 80% of the images and batch work the rest (never starved),
   while a lone interactive request overtakes a whole batch backlog. A class that was
   empty restarts at the smallest virtual time of the busy ones: idling banks no credit.
2. **Tenant.** Within a class, deficit round robin (Shreedhar & Varghese) across tenants
   by images: each tenant's turn adds ``quantum`` × its weight to its deficit, and its
   oldest request is admitted once the deficit covers its images. A tenant whose queue
   empties leaves the round and its deficit resets.
3. **Batch group.** The admitted request leads a *group*: one pipeline call's worth
   (``group_images``) filled with requests of the same class and ``batch_key``, taken
   from the tenants' heads in round order and charged to their deficits. The leader's
   tenant may borrow for its own further requests; another tenant's request joins only
   if its deficit with its coming turn's quantum covers it (so small requests of many
   tenants share a call, but a big request never swells a small one's call). A deficit
   left negative is a debt paid back in later turns: shares hold in the long run.
   At most ``slots`` groups run at once (one per replica): a request admitted is one the
   replica runs next, so nothing waits inside the replica behind other tenants' work.

A request bigger than a group (n > the batch size) is a group of its own.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

# Priority classes, highest first (ties in virtual time go to the earlier one).
PRIORITIES: tuple[str, ...] = ("interactive", "batch")
DEFAULT_CLASS_WEIGHTS: dict[str, float] = {"interactive": 4.0, "batch": 1.0}
# Tenant and class weights Kiln accepts (the admin API and KILN_SCHEDULER_CLASS_WEIGHTS).
MIN_WEIGHT = 0.01
MAX_WEIGHT = 100.0


@dataclass
class Ticket:
    """One request waiting for (or holding) admission to the model's replicas."""

    id: str
    tenant: str
    priority: str
    images: int
    batch_key: Hashable = None
    weight: float = 1.0  # the tenant's weight when the request arrived
    enqueued: float = 0.0  # a clock reading of the caller's (for wait times)
    group: int | None = None  # set when admitted
    # Other orders for the model already on their way through the caller's process (in
    # its paid path, no call queued yet): a free replica waits a moment for them.
    companions: int = 0


@dataclass
class _Tenant:
    weight: float = 1.0
    deficit: float = 0.0
    turn_started: bool = False
    queue: deque[Ticket] = field(default_factory=deque)


@dataclass
class _Class:
    weight: float
    vtime: float = 0.0
    tenants: dict[str, _Tenant] = field(default_factory=dict)
    active: deque[str] = field(default_factory=deque)  # the round, current tenant first

    def queued_images(self) -> int:
        return sum(t.images for tenant in self.tenants.values() for t in tenant.queue)


class FairQueue:
    """Queued and admitted requests of one model (see the module docstring)."""

    def __init__(
        self,
        slots: int,
        group_images: int,
        class_weights: Mapping[str, float] | None = None,
        quantum: float = 1.0,
    ) -> None:
        if slots < 1 or group_images < 1 or quantum <= 0:
            raise ValueError("slots and group_images must be >= 1 and quantum > 0")
        weights = {**DEFAULT_CLASS_WEIGHTS, **(class_weights or {})}
        check_class_weights(weights)
        self.slots = slots
        self.group_images = group_images
        self.quantum = quantum
        self._classes = {name: _Class(weights[name]) for name in PRIORITIES}
        self._where: dict[str, Ticket] = {}  # queued ticket id -> ticket
        self._running: dict[str, Ticket] = {}  # admitted ticket id -> ticket
        self._groups: dict[int, set[str]] = {}  # running group -> its unreleased tickets
        self._group_ids = itertools.count()

    # What callers ask.

    def push(self, ticket: Ticket) -> None:
        """Queue ``ticket`` behind its tenant's earlier requests of its class."""
        if ticket.priority not in self._classes:
            raise ValueError(f"unknown priority class {ticket.priority!r}")
        if ticket.id in self._where or ticket.id in self._running:
            raise ValueError(f"ticket {ticket.id!r} is already queued")
        klass = self._classes[ticket.priority]
        if not klass.active:
            busy = [c.vtime for c in self._classes.values() if c.active]
            if busy:
                klass.vtime = max(klass.vtime, min(busy))
        tenant = klass.tenants.setdefault(ticket.tenant, _Tenant())
        tenant.weight = ticket.weight
        if not tenant.queue:
            klass.active.append(ticket.tenant)
        tenant.queue.append(ticket)
        self._where[ticket.id] = ticket

    def admit(self) -> list[Ticket]:
        """The tickets admitted now (groups formed while a slot is free), in order."""
        admitted: list[Ticket] = []
        while len(self._groups) < self.slots:
            group = self._next_group()
            if not group:
                break
            admitted.extend(group)
        return admitted

    def release(self, ticket_id: str) -> Ticket | None:
        """An admitted ticket's call is over; its group's slot frees with its last one."""
        ticket = self._running.pop(ticket_id, None)
        if ticket is None:
            return None
        members = self._groups.get(ticket.group)  # type: ignore[arg-type]
        if members is not None:
            members.discard(ticket_id)
            if not members:
                del self._groups[ticket.group]  # type: ignore[arg-type]
        return ticket

    def cancel(self, ticket_id: str) -> Ticket | None:
        """Take a ticket out wherever it is: queued (removed) or admitted (released)."""
        ticket = self._where.pop(ticket_id, None)
        if ticket is None:
            return self.release(ticket_id)
        klass = self._classes[ticket.priority]
        tenant = klass.tenants[ticket.tenant]
        tenant.queue.remove(ticket)
        if not tenant.queue:
            self._leave(klass, ticket.tenant)
        return ticket

    def position(self, ticket_id: str) -> tuple[int, int] | None:
        """``(requests, images)`` admitted before this queued ticket if nothing else
        arrived (0, 0 for the next one); ``None`` if it is not queued."""
        if ticket_id not in self._where:
            return None
        ahead = copy.deepcopy(self)
        ahead.slots = len(ahead._groups) + len(ahead._where)  # unbounded: just the order
        requests = images = 0
        while True:
            group = ahead._next_group()
            for ticket in group:
                if ticket.id == ticket_id:
                    return requests, images
                requests += 1
                images += ticket.images

    def queued_images(self, priority: str | None = None) -> int:
        """Images waiting for admission (of one class, or all)."""
        classes = [self._classes[priority]] if priority else self._classes.values()
        return sum(c.queued_images() for c in classes)

    def running_images(self) -> int:
        """Images of admitted tickets not yet released."""
        return sum(t.images for t in self._running.values())

    def tenant_images(self, tenant: str) -> int:
        """Images of ``tenant`` queued or running (every class)."""
        queued = sum(t.images for t in self._where.values() if t.tenant == tenant)
        return queued + sum(t.images for t in self._running.values() if t.tenant == tenant)

    def has_free_slot(self) -> bool:
        """Whether a group admitted now would run at once (fewer than ``slots`` run)."""
        return len(self._groups) < self.slots

    def group_running(self, group: int) -> bool:
        """Whether some ticket of ``group`` is still admitted and unreleased."""
        return group in self._groups

    def is_queued(self, ticket_id: str) -> bool:
        return ticket_id in self._where

    def is_running(self, ticket_id: str) -> bool:
        return ticket_id in self._running

    def __len__(self) -> int:
        return len(self._where)

    # The three decisions.

    def _next_group(self) -> list[Ticket]:
        klass = self._pick_class()
        if klass is None:
            return []
        leader = self._pick_tenant_head(klass)
        group = [leader]
        size = self._cost(leader)
        # Fill the call with requests that can share it, in round order.
        while size < self.group_images:
            room = self.group_images - size
            joiner = self._same_key_head(klass, leader, room)
            if joiner is None:
                break
            group.append(joiner)
            size += self._cost(joiner)
        group_id = next(self._group_ids)
        self._groups[group_id] = {t.id for t in group}
        for ticket in group:
            ticket.group = group_id
            self._running[ticket.id] = ticket
        klass.vtime += size / klass.weight
        return group

    def _pick_class(self) -> _Class | None:
        busy = [c for c in self._classes.values() if c.active]
        if not busy:
            return None
        return min(busy, key=lambda c: c.vtime)  # min() keeps the first of equals

    def _pick_tenant_head(self, klass: _Class) -> Ticket:
        """Deficit round robin: the round's current tenant takes its turn's quantum and
        sends its oldest request if its deficit covers it, else passes the turn on."""
        self._skip_idle_rounds(klass)
        while True:
            name = klass.active[0]
            tenant = klass.tenants[name]
            if not tenant.turn_started:
                tenant.deficit += self.quantum * tenant.weight
                tenant.turn_started = True
            cost = self._cost(tenant.queue[0])
            if cost <= tenant.deficit:
                return self._take(klass, name, cost)
            # Not enough for its oldest request: the turn passes, the deficit stays.
            tenant.turn_started = False
            klass.active.rotate(-1)

    def _skip_idle_rounds(self, klass: _Class) -> None:
        """Add at once the whole rounds in which no tenant could send (requests many
        quanta big, small weights): the same outcome as turning them one by one."""

        def turns_short(tenant: _Tenant) -> int:
            gain = self.quantum * tenant.weight
            next_turn = 0.0 if tenant.turn_started else gain
            short = self._cost(tenant.queue[0]) - tenant.deficit - next_turn
            return max(0, math.ceil(short / gain))

        rounds = min(turns_short(klass.tenants[name]) for name in klass.active)
        if rounds > 0:
            for name in klass.active:
                tenant = klass.tenants[name]
                tenant.deficit += rounds * self.quantum * tenant.weight

    def _same_key_head(self, klass: _Class, leader: Ticket, room: int) -> Ticket | None:
        for name in list(klass.active):
            tenant = klass.tenants[name]
            head = tenant.queue[0]
            cost = self._cost(head)
            if head.batch_key != leader.batch_key or cost > room:
                continue
            if name == leader.tenant or tenant.deficit + self.quantum * tenant.weight >= cost:
                return self._take(klass, name, cost)
        return None

    def _take(self, klass: _Class, name: str, cost: int) -> Ticket:
        tenant = klass.tenants[name]
        ticket = tenant.queue.popleft()
        del self._where[ticket.id]
        tenant.deficit -= cost
        if not tenant.queue:
            self._leave(klass, name)
        return ticket

    def _leave(self, klass: _Class, name: str) -> None:
        """A tenant whose queue emptied leaves the round; its credit is forgotten, a debt
        (from riding in another's call) is kept for when it comes back."""
        klass.active.remove(name)
        tenant = klass.tenants[name]
        tenant.turn_started = False
        if tenant.deficit >= 0:
            del klass.tenants[name]

    def _cost(self, ticket: Ticket) -> int:
        # A request bigger than a call runs alone; it counts as a full call.
        return min(max(1, ticket.images), self.group_images)


def check_class_weights(weights: Mapping[str, float]) -> None:
    """Refuse a class weight outside ``[MIN_WEIGHT, MAX_WEIGHT]`` or an unknown class."""
    for name, weight in weights.items():
        if name not in PRIORITIES:
            raise ValueError(f"unknown priority class {name!r}; one of {', '.join(PRIORITIES)}")
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise ValueError(
                f"weight of class {name!r} is {weight}; it must be {MIN_WEIGHT}-{MAX_WEIGHT}"
            )


def parse_class_weights(text: str) -> dict[str, float]:
    """``"interactive=4,batch=1"`` → ``{"interactive": 4.0, "batch": 1.0}`` (checked)."""
    weights: dict[str, float] = {}
    for part in _parts(text):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"expected class=weight, got {part!r}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"weight of {name.strip()!r} is not a number: {value!r}") from None
    check_class_weights(weights)
    return weights


def _parts(text: str) -> Iterable[str]:
    return (p.strip() for p in text.split(",") if p.strip())
