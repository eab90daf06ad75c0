"""What a request's two ledger transactions cost, in one warm process: the reservation
before the model call (``Ledger.reserve``) and the settlement after it
(``Ledger.settle``: the delivered images captured, one entry each, and the reservation
closed, an asset row written in the same transaction as the paid path writes it), on
SQLite (a temp file: WAL, synchronous FULL, as ``kiln serve`` runs it) or in the
database at ``--url`` (a PostgreSQL: migrated there, a tenant and its rows left behind).
Prints the medians of wall time per transaction (the commit's flush included) and the
statements a request sends; then bursts of ``--writers`` requests at once, each on its
own thread (as a burst's deliveries settle side by side), and the median burst's time.

    .venv/bin/python benchmarks/ledger_cost.py [--repeats 400] [--images 1] [--url …]
    .venv/bin/python benchmarks/ledger_cost.py --smoke   # 20 repeats: it runs

Compare two commits by running this script in a worktree of each, alternating
(benchmarks/RESULTS.md). The server's own figures are larger: its caches are cold after
each pipeline call.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, insert  # noqa: E402

from serving.core.ledger.ledger import Ledger, Reservation, now  # noqa: E402
from serving.core.ledger.schema import assets  # noqa: E402


def log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=400)
    parser.add_argument("--images", type=int, default=1, help="units captured per settlement")
    parser.add_argument("--url", help="a database URL (default: a temp SQLite file)")
    parser.add_argument("--writers", type=int, default=8, help="requests in a burst")
    parser.add_argument("--smoke", action="store_true", help="20 repeats")
    args = parser.parse_args(argv)
    repeats = 20 if args.smoke else args.repeats
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='kiln-ledger-')}/ledger.db"
    ledger = Ledger(url)
    tenant = ledger.create_tenant("ledger-cost bench")
    ledger.grant(tenant.id, 10 * repeats * args.images)
    statements: list[str] = []

    def count(*event_args: object) -> None:
        if not str(event_args[2]).startswith("BEGIN"):
            statements.append(str(event_args[2]))

    event.listen(ledger.engine, "before_cursor_execute", count)

    def asset_row(index: int) -> dict[str, object]:
        return {
            "id": f"ast_{secrets.token_hex(12)}", "tenant_id": tenant.id, "kind": "base",
            "model": "tiny-sdxl", "prompt": "a lighthouse at dusk", "seed": index,
            "params": "{}", "width": 128, "height": 128, "media_type": "image/png",
            "bytes": 40000, "sha256": f"{index:064x}", "preview_sha256": f"{index:064x}",
            "generation_id": f"gen_{index}", "created": now(),
        }  # fmt: skip

    def settle(reservation: Reservation, index: int) -> None:
        """Its images captured, with an asset row in the same transaction."""
        ledger.settle(
            reservation, 1, args.images,
            also=lambda conn: conn.execute(insert(assets), [asset_row(index)]),
        )  # fmt: skip

    reserve_s, settle_s, counts = [], [], []
    for index in range(repeats + 20):  # the first 20 warm the pool and the caches
        statements.clear()
        t0 = time.perf_counter()
        reservation = ledger.reserve(tenant.id, args.images, f"req_{index}")
        t1 = time.perf_counter()
        settle(reservation, index)
        t2 = time.perf_counter()
        if index >= 20:
            reserve_s.append(t1 - t0)
            settle_s.append(t2 - t1)
            counts.append(len(statements))
    backend = ledger.engine.dialect.name
    log(f"{backend}, {repeats} requests of {args.images} image(s), every one delivered:")
    both = [a + b for a, b in zip(reserve_s, settle_s, strict=True)]
    log(f"  reserve median {statistics.median(reserve_s) * 1000:.3f} ms, "
        f"settle (with its asset row) median {statistics.median(settle_s) * 1000:.3f} ms, "
        f"both {statistics.median(both) * 1000:.3f} ms")  # fmt: skip
    log(f"  statements a request sends (BEGIN and COMMIT not counted): {max(counts)}")
    event.remove(ledger.engine, "before_cursor_execute", count)

    def request(index: int) -> None:
        settle(ledger.reserve(tenant.id, args.images, f"burst_{index}"), index)

    bursts = max(3, repeats // 20)
    with ThreadPoolExecutor(args.writers) as pool:
        list(pool.map(request, range(args.writers)))  # every thread and connection made
        burst_s = []
        for burst in range(bursts):
            t0 = time.perf_counter()
            list(pool.map(request, range(burst * args.writers, (burst + 1) * args.writers)))
            burst_s.append(time.perf_counter() - t0)
    log(f"  a burst of {args.writers} requests at once ({bursts} bursts): median "
        f"{statistics.median(burst_s) * 1000:.1f} ms, "
        f"{statistics.median(burst_s) / args.writers * 1000:.2f} ms a request")  # fmt: skip
    ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
