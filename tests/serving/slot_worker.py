"""One OS process taking a tenant's concurrency slots, for the cross-process cap test.

Run as ``python slot_worker.py URL TENANT CAP ATTEMPTS``: it opens the ledger, prints
``ready``, waits for a line on stdin so that the processes start together, then tries to
acquire ATTEMPTS slots at once (one thread each, holding what it gets) and prints the slot
numbers it holds as JSON. On the next line from stdin it releases them all and exits.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from serving.core.ledger import Ledger
from serving.core.limits import ConcurrencyLimiter


def main(url: str, tenant_id: str, cap: int, attempts: int) -> None:
    ledger = Ledger(url, pool_size=attempts)
    limiter = ConcurrencyLimiter(cap, ledger.engine)
    print("ready", flush=True)
    sys.stdin.readline()
    with ThreadPoolExecutor(attempts) as pool:
        held = [slot for slot in pool.map(limiter.acquire, [tenant_id] * attempts) if slot]
    print(json.dumps(sorted(slot.slot for slot in held)), flush=True)
    sys.stdin.readline()
    for slot in held:
        limiter.release(slot)
    ledger.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
