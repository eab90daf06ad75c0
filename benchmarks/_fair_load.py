"""The fair queue's load scenarios over HTTP, shared by benchmarks/fair_queue.py and
tests/e2e/test_fair_queue_live.py. A helper, not a benchmark (the leading underscore
keeps it out of the smoke run's discovery). Only httpx and the standard library.

- ``backlog``: tenant A submits ``images`` images at once (requests of ``per_request``,
  in class ``priority``), then tenant B sends single-image interactive requests one
  after another while A's backlog lasts. B's waits (its requests' latency), A's answers,
  and the median pipeline call of the run (``timings.total`` of A's answers).
- ``share``: two tenants keep ``clients`` requests each in flight for ``seconds``; the
  images each got in the window.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

PRIORITY_HEADER = "x-kiln-priority"


@dataclass
class Backlog:
    """What one ``backlog`` run saw."""

    b_waits: list[float] = field(default_factory=list)
    a_statuses: list[int] = field(default_factory=list)
    a_images: int = 0
    a_seconds: float = 0.0
    calls: list[float] = field(default_factory=list)  # pipeline call seconds (A's answers)
    call_images: list[int] = field(default_factory=list)  # images in each of those calls
    b_calls: list[float] = field(default_factory=list)  # B's own pipeline calls

    @property
    def median_call(self) -> float:
        return statistics.median(self.calls)

    def b_percentile(self, q: float) -> float:
        return percentile(self.b_waits, q)

    def b_queued_percentile(self, q: float) -> float:
        """B's wait before its own call ran: its latency less its own pipeline call (what
        the fair queue decides; the call itself is the model's speed)."""
        return percentile([w - c for w, c in zip(self.b_waits, self.b_calls, strict=True)], q)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def client(url: str, key: str, connections: int = 64) -> httpx.Client:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(
        base_url=url,
        timeout=600,
        limits=limits,
        headers={"authorization": f"Bearer {key}"},
    )


def backlog(
    url: str,
    key_a: str,
    key_b: str,
    body: dict,
    priority: str,
    images: int = 100,
    per_request: int = 4,
    settle_s: float = 0.5,
) -> Backlog:
    """Run the backlog scenario (see the module docstring)."""
    seen = Backlog()
    requests = [
        {**body, "n": min(per_request, images - i), "seed": 1000 + i}
        for i in range(0, images, per_request)
    ]
    with client(url, key_a) as a, client(url, key_b, 4) as b:
        started = time.perf_counter()
        with ThreadPoolExecutor(len(requests)) as pool:
            futures = [
                pool.submit(a.post, "/v1/generations", json=r, headers={PRIORITY_HEADER: priority})
                for r in requests
            ]
            time.sleep(settle_s)  # A's whole backlog has arrived
            seed = 0
            while not all(f.done() for f in futures):
                seed += 1
                t0 = time.perf_counter()
                answer = b.post("/v1/generations", json={**body, "n": 1, "seed": seed})
                waited = time.perf_counter() - t0
                answer.raise_for_status()
                seen.b_waits.append(waited)
                seen.b_calls.append(answer.json()["timings"]["total"])
            for future in futures:
                answer = future.result()
                seen.a_statuses.append(answer.status_code)
                if answer.status_code == 200:
                    payload = answer.json()
                    seen.a_images += len(payload["data"])
                    seen.calls.append(payload["timings"]["total"])
                    seen.call_images.append(int(payload["timings"]["batch_images"]))
        seen.a_seconds = time.perf_counter() - started
    return seen


def share(
    url: str,
    keys: tuple[str, str],
    body: dict,
    seconds: float,
    clients: int = 3,
    per_request: int = 4,
    warmup_s: float = 2.0,
) -> tuple[int, int]:
    """Images each of two saturating tenants got in ``seconds`` after ``warmup_s``
    (answers that completed inside the window)."""
    counts = [0, 0]
    lock = threading.Lock()
    start = time.monotonic() + warmup_s
    end = start + seconds

    def loop(index: int, http: httpx.Client, seed: int) -> None:
        while time.monotonic() < end:
            answer = http.post("/v1/generations", json={**body, "n": per_request, "seed": seed})
            seed += 1
            answer.raise_for_status()
            done = time.monotonic()
            if start <= done <= end:
                with lock:
                    counts[index] += len(answer.json()["data"])

    with (
        client(url, keys[0]) as a,
        client(url, keys[1]) as b,
        ThreadPoolExecutor(2 * clients) as pool,
    ):
        futures = [
            pool.submit(loop, index, http, 10_000 * index + 100 * k)
            for index, http in enumerate((a, b))
            for k in range(clients)
        ]
        for future in futures:
            future.result()
    return counts[0], counts[1]
