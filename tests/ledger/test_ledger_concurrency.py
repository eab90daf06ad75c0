"""No double spend: many threads, and two OS processes, spending from one tenant at once.

The guard is the database's conditional UPDATE, so these run on SQLite (BEGIN IMMEDIATE,
busy timeout) and on PostgreSQL (row re-check under READ COMMITTED) alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from invariants import assert_consistent

from serving.core.ledger import Balance, InsufficientCredits, Ledger

WORKER = Path(__file__).with_name("spend_worker.py")
REPO = Path(__file__).resolve().parents[2]


def test_forty_concurrent_reservations_for_ten_credits(ledger: Ledger):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    start = threading.Barrier(40)
    outcomes: list[str] = []
    lock = threading.Lock()  # guards the test's list only; the ledger has no Python lock

    def request() -> None:
        start.wait()
        try:
            reservation = ledger.reserve(tenant.id, 1, reference="n=1")
            ledger.capture(reservation, 1)
            ledger.release(reservation)
            outcome = "ok"
        except InsufficientCredits:
            outcome = "402"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=request) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert (outcomes.count("ok"), outcomes.count("402")) == (10, 30)
    assert assert_consistent(ledger, tenant.id) == Balance(available=0, held=0)
    kinds = [entry.kind for entry in ledger.entries(tenant.id, limit=100)]
    assert (kinds.count("reserve"), kinds.count("capture"), kinds.count("grant")) == (10, 10, 1)


def test_two_processes_never_double_spend(ledger: Ledger, db_url: str):
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    command = [sys.executable, str(WORKER), db_url, tenant.id, "20", "4"]
    workers = [
        subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:  # both start spending together
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(worker.communicate(timeout=60)[0]) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0]
    assert sum(r["spent"] for r in results) == 10
    assert sum(r["refused"] for r in results) == 30
    assert assert_consistent(ledger, tenant.id) == Balance(available=0, held=0)
