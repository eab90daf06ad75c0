"""One OS process spending from a tenant, for the two-process no-double-spend test.

Run as ``python spend_worker.py URL TENANT ATTEMPTS THREADS``: it opens the ledger (which
runs the migrations, a no-op on a migrated database), prints ``ready``, waits for a line
on stdin so that both processes start together, then reserves and captures 1 credit
ATTEMPTS times over THREADS threads and prints ``{"spent": n, "refused": m}``.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from serving.core.ledger import InsufficientCredits, Ledger


def main(url: str, tenant_id: str, attempts: int, threads: int) -> None:
    ledger = Ledger(url, pool_size=threads)

    def spend(_: int) -> bool:
        try:
            reservation = ledger.reserve(tenant_id, 1, reference="worker")
        except InsufficientCredits:
            return False
        ledger.capture(reservation, 1)
        ledger.release(reservation)
        return True

    print("ready", flush=True)
    sys.stdin.readline()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(spend, range(attempts)))
    ledger.close()
    print(json.dumps({"spent": sum(results), "refused": results.count(False)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
