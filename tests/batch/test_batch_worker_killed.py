"""``kiln batch``: a worker SIGKILLed mid-line (issue 25). Ray restarts the actor and the
line runs again (a bounded retry, ``WORKER_RETRIES``); it is recorded once, charged once,
and the reservation the dead attempt held is released at once, not a lease later."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from batch_helpers import gen, read_manifest, write_jsonl
from sqlalchemy import select

from serving.core.ledger import Ledger
from serving.core.ledger.schema import reservations
from serving.http.batch.parsing import parse_batch
from serving.ray.batch.runner import WORKER_RETRIES, BatchOptions, pool_resources, run_batch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def batch_worker() -> psutil.Process:
    """The Ray Data actor process of the pool (a descendant of this process)."""
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            title = process.cmdline()[:1]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if title and title[0].startswith("ray::") and "BatchWorker" in title[0]:
            return process
    raise LookupError("no BatchWorker actor process")


def open_reservations(settings) -> list[str]:
    with Ledger.of(settings, run_migrations=False) as ledger, ledger.engine.connect() as conn:
        query = select(reservations.c.reference).where(reservations.c.state == "open")
        return list(conn.execute(query).scalars())


def test_a_line_whose_worker_dies_is_retried_and_recorded_once(own_ray, batch_settings, catalog):
    assert pool_resources(batch_settings, 1, 1)["max_task_retries"] == WORKER_RETRIES
    with Ledger.of(batch_settings) as ledger:
        tenant = ledger.create_tenant("studio")
        ledger.grant(tenant.id, 10)
    path = write_jsonl(batch_settings.home.parent / "lines.jsonl", [gen(steps=200, seed=5)])
    lines, invalid = parse_batch(
        path.read_text(), base_dir=path.parent, catalog=catalog, settings=batch_settings
    )
    assert invalid == []
    out = batch_settings.home / "out"
    killed = []

    def kill_mid_line() -> None:
        deadline = time.monotonic() + 180
        while not open_reservations(batch_settings):  # the line's call has started
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
        worker = batch_worker()
        worker.send_signal(signal.SIGKILL)
        killed.append(worker.pid)

    killer = threading.Thread(target=kill_mid_line)
    killer.start()
    summary = run_batch(
        batch_settings, catalog, lines, BatchOptions(out, tenant_id=tenant.id, workers=1)
    )
    killer.join()
    assert killed
    entries = read_manifest(out)
    assert len(entries) == 1 and entries[0]["error"] is None, entries
    assert summary.ran == 1 and summary.images == 1 and entries[0]["seeds"] == [5]
    with Ledger.of(batch_settings, run_migrations=False) as ledger:
        balance = ledger.balance(tenant.id)
        with ledger.engine.connect() as conn:
            states = sorted(conn.execute(select(reservations.c.state)).scalars())
    assert (balance.available, balance.held) == (9, 0)  # charged once: one image
    assert len(states) == 2 and "open" not in states  # the dead attempt's, released
