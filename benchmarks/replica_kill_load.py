"""A model replica killed under load: what clients see, and whether every ledger balances.

N clients of M tenants generate on a tiny model for T seconds (n 1-4, random seeds; one
request in ten hung up by its client after a random fraction of a second), and halfway
through the model's replica process is SIGKILLed while a pipeline call runs on it (as a
GPU's Xid error or an OOM kill would end it). Prints:

- status counts (``200``, ``503 model_unavailable``, ``500 internal_error``, hung up, …)
  and p50/p95 latency of the answered requests;
- each tenant's ledger check: nothing held, the entries sum to the balance, and the
  credits charged cover what the 200s reported (a hung-up request may be charged: its
  images may have been delivered as the client left);
- whether the next request after the run is served (the replica replaced).

    python benchmarks/replica_kill_load.py [--clients 12] [--tenants 4] [--seconds 60]
    python benchmarks/replica_kill_load.py --smoke   # 3 clients, 2 tenants, 10 s

Self-contained: builds the tiny models into a temp KILN_HOME (or ``--home``), starts and
stops its own ``kiln serve`` and makes the tenants through the admin API.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _replicas import model_replica, wait_busy
from _server import KilnServe, tenant_key

os.environ["HF_HUB_OFFLINE"] = "1"

CREDITS = 100_000


def log(message: str) -> None:
    print(message, flush=True)


@dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    reported: Counter = field(default_factory=Counter)  # tenant key -> credits in 200s
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, label: str, seconds: float | None, credits: int = 0) -> None:
        with self.lock:
            self.statuses[label] += 1
            if seconds is not None:
                self.latencies.append(seconds)
            self.reported[key] += credits


def label_of(response) -> str:  # noqa: ANN001 (an httpx.Response)
    if response.status_code == 200:
        return "200"
    try:
        code = response.json()["error"]["code"]
    except Exception:
        code = "?"
    retry = " (retry-after)" if "retry-after" in response.headers else ""
    return f"{response.status_code} {code}{retry}"


def client_loop(url: str, key: str, model: str, deadline: float, tally: Tally, seed: int) -> None:
    import httpx

    rng = random.Random(seed)
    headers = {"authorization": f"Bearer {key}"}
    while time.monotonic() < deadline:
        body = {"model": model, "prompt": "a kiln at dusk", "n": rng.randint(1, 4),
                "seed": rng.randrange(1 << 31)}  # fmt: skip
        hang_up = rng.random() < 0.1
        timeout = rng.uniform(0.1, 1.0) if hang_up else 300.0
        started = time.perf_counter()
        try:
            response = httpx.post(f"{url}/v1/generations", json=body, headers=headers,
                                  timeout=timeout)  # fmt: skip
        except httpx.TimeoutException:
            tally.record(key, "hung up", None)
            continue
        except httpx.HTTPError as exc:
            tally.record(key, f"transport error {type(exc).__name__}", None)
            continue
        seconds = time.perf_counter() - started
        credits = response.json().get("credits_charged", 0) if response.status_code == 200 else 0
        tally.record(key, label_of(response), seconds, credits)


def kill_replica(server: KilnServe, model: str, after_s: float, killed: list[str]) -> None:
    """SIGKILL ``model``'s replica ``after_s`` into the run, once a call runs on it."""
    time.sleep(after_s)
    replica = model_replica(server.process.pid, model)
    wait_busy(replica)
    replica.send_signal(signal.SIGKILL)
    killed.append(f"replica pid {replica.pid} SIGKILLed at {time.strftime('%H:%M:%S')}")


def ledger_check(url: str, key: str, reported: int) -> tuple[bool, str]:
    """Held 0, the entries sum to the balance, the charges cover the 200s' credits."""
    import httpx

    headers = {"authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 60
    while True:  # hung-up requests settle as their server side unwinds
        credits = httpx.get(f"{url}/v1/credits", params={"limit": 1000}, headers=headers,
                            timeout=30).json()  # fmt: skip
        if credits["held"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    entries = credits["entries"]
    summed = sum(entry["amount"] for entry in entries)
    held = sum(entry["held"] for entry in entries)
    charged = CREDITS - credits["balance"]
    ok = (credits["held"] == 0 and held == 0 and summed == credits["balance"]
          and charged >= reported and len(entries) < 1000)  # fmt: skip
    text = (f"balance {credits['balance']}, held {credits['held']}, entries sum {summed}, "
            f"charged {charged} (200s reported {reported})")  # fmt: skip
    return ok, text


def next_request_served(url: str, key: str, model: str, timeout_s: float = 120.0) -> str:
    """The answer to one more request, waiting out 503s (a replacement replica loading)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    started = time.perf_counter()
    while True:
        response = httpx.post(f"{url}/v1/generations", json={"model": model, "prompt": "after",
                              "seed": 1}, headers={"authorization": f"Bearer {key}"},
                              timeout=300)  # fmt: skip
        if response.status_code != 503 or time.monotonic() > deadline:
            return f"{label_of(response)} after {time.perf_counter() - started:.1f}s"
        time.sleep(float(response.headers.get("retry-after", "1")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-sd15")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--home", type=Path, help="KILN_HOME (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true", help="3 clients, 2 tenants, 10 s")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.tenants, args.seconds = 3, 2, 10.0

    from serving.core.settings import Settings
    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_components, ensure_tiny_models

    home = args.home or Path(tempfile.mkdtemp(prefix="kiln-kill-"))
    settings = Settings.from_env(home=str(home))
    catalog = load_catalog(settings.home, settings.catalog_path)
    ensure_tiny_models(catalog)
    ensure_tiny_components(catalog.components.values())
    admin_key = secrets.token_urlsafe(32)
    started = time.perf_counter()
    server = KilnServe.start(home, admin_key)
    log(f"server healthy in {time.perf_counter() - started:.1f}s ({server.url})")
    ok = True
    try:
        keys = [tenant_key(server.url, admin_key, CREDITS, name=f"load-{i}")
                for i in range(args.tenants)]  # fmt: skip
        tally, killed = Tally(), []
        deadline = time.monotonic() + args.seconds
        threads = [
            threading.Thread(
                target=client_loop,
                args=(server.url, keys[i % len(keys)], args.model, deadline, tally, i),
            )  # fmt: skip
            for i in range(args.clients)
        ]
        killer = threading.Thread(
            target=kill_replica, args=(server, args.model, args.seconds / 2, killed)
        )
        for thread in [*threads, killer]:
            thread.start()
        for thread in [*threads, killer]:
            thread.join()
        log(f"{args.clients} clients of {args.tenants} tenants on {args.model} for "
            f"{args.seconds:.0f}s; {killed[0] if killed else 'NO REPLICA KILLED'}")  # fmt: skip
        ok = ok and bool(killed)
        for label, count in sorted(tally.statuses.items()):
            log(f"  {label}: {count}")
        failures = sum(c for label, c in tally.statuses.items() if label.startswith("500"))
        log(f"500 answers: {failures}")
        if tally.latencies:
            cuts = statistics.quantiles(tally.latencies, n=20) if len(tally.latencies) > 1 else []
            p50 = statistics.median(tally.latencies)
            p95 = cuts[18] if cuts else p50
            log(f"latency of answered requests: p50 {p50:.2f}s, p95 {p95:.2f}s")
        for i, key in enumerate(keys):
            balanced, text = ledger_check(server.url, key, tally.reported[key])
            ok = ok and balanced
            log(f"ledger load-{i}: {'balanced' if balanced else 'NOT BALANCED'}: {text}")
        log(f"next request: {next_request_served(server.url, keys[0], args.model)}")
    finally:
        server.stop()
    log("server stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
