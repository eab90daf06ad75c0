"""What a request's two ledger transactions cost: the reservation before the model call
(``Ledger.reserve``) and the settlement after it (``Ledger.settle``: the delivered images
captured, one entry each, and the reservation closed, an asset row written in the same
transaction as the paid path writes it), on SQLite (a temp file: WAL, as ``kiln serve``
runs it: the settlement's commit flushed to the disk, the reservation's not, a hold
being ``serving.core.ledger.db.transient``) or in the database at ``--url`` (a
PostgreSQL: migrated there, a tenant and its rows left behind).

Prints the medians of wall time per transaction (the commit's flush included), twice:
requests back to back in a warm loop, and each request after a ``--wait-ms`` sleep, as
the ingress waits on the model between its reservation of one request and the next (its
caches cold). Each time on the driver's cursor (``serving.core.ledger.driver``, what the
ledger runs) and with the same statements through SQLAlchemy's ``Connection.execute``,
alternating request by request, and the ratio. Then the statements a request sends
(SQLite: its trace), and bursts of ``--writers`` requests at once, each on its own thread
(as a burst's deliveries settle side by side), and the median burst's time.

    .venv/bin/python benchmarks/ledger_cost.py [--repeats 400] [--images 1] [--url …]
    .venv/bin/python benchmarks/ledger_cost.py --smoke   # 20 repeats: it runs
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Connection, event  # noqa: E402

from pipelines.finishing import FinishedImage  # noqa: E402
from serving.core.assets.service import Assets, PreparedAsset  # noqa: E402
from serving.core.ledger.driver import DriverStatement  # noqa: E402
from serving.core.ledger.ledger import Ledger, Reservation, now  # noqa: E402


def log(message: str) -> None:
    print(message, flush=True)


@contextmanager
def through_sqlalchemy() -> Iterator[None]:
    """The ledger's ``DriverStatement``s run through ``Connection.execute`` instead (its
    ``CursorResult`` answers ``rowcount`` and ``fetchone`` as the driver's cursor does):
    what the paid path cost before."""
    execute, execute_many = DriverStatement.execute, DriverStatement.execute_many

    def via_execute(self: DriverStatement, conn: Connection, params: Mapping[str, Any]) -> Any:
        return conn.execute(self.statement, dict(params))

    def via_execute_many(
        self: DriverStatement, conn: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if rows:
            conn.execute(self.statement, [dict(row) for row in rows])

    DriverStatement.execute = via_execute  # type: ignore[method-assign]
    DriverStatement.execute_many = via_execute_many  # type: ignore[method-assign]
    try:
        yield
    finally:
        DriverStatement.execute = execute  # type: ignore[method-assign]
        DriverStatement.execute_many = execute_many  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=400, help="requests back to back")
    parser.add_argument("--waited", type=int, default=100, help="requests after a wait")
    parser.add_argument("--wait-ms", type=float, default=100.0, help="the wait before each")
    parser.add_argument("--images", type=int, default=1, help="units captured per settlement")
    parser.add_argument("--url", help="a database URL (default: a temp SQLite file)")
    parser.add_argument("--writers", type=int, default=8, help="requests in a burst")
    parser.add_argument("--smoke", action="store_true", help="20 repeats, 4 after a wait")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats, args.waited = 20, 4
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='kiln-ledger-')}/ledger.db"
    ledger = Ledger(url)
    tenant = ledger.create_tenant("ledger-cost bench")
    ledger.grant(tenant.id, 10 * (args.repeats + args.waited + 100) * args.images)

    def asset(index: int) -> PreparedAsset:
        row = {
            "id": f"ast_{secrets.token_hex(12)}", "tenant_id": tenant.id, "kind": "base",
            "model": "tiny-sdxl", "prompt": "a lighthouse at dusk", "seed": index,
            "params": "{}", "width": 128, "height": 128, "media_type": "image/png",
            "bytes": 40000, "sha256": f"{index:064x}", "preview_sha256": f"{index:064x}",
            "generation_id": f"gen_{index}", "created": now(),
        }  # fmt: skip
        return PreparedAsset(row, FinishedImage(b"", None, None))  # the row is what it writes

    def settle(reservation: Reservation, index: int) -> None:
        """Its images captured, with an asset row in the same transaction."""
        prepared = [asset(index)]
        ledger.settle(reservation, 1, args.images, also=lambda conn: Assets.insert(conn, prepared))

    def timed(index: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        reservation = ledger.reserve(tenant.id, args.images, f"req_{index}")
        t1 = time.perf_counter()
        settle(reservation, index)
        return t1 - t0, time.perf_counter() - t1

    def compare(label: str, requests: int, wait_s: float) -> None:
        """Driver and SQLAlchemy, alternating request by request; medians and ratio."""
        sides: dict[str, list[tuple[float, float]]] = {"driver": [], "sqlalchemy": []}
        for index in range(2 * requests):
            time.sleep(wait_s)
            if index % 2:
                with through_sqlalchemy():
                    sides["sqlalchemy"].append(timed(index))
            else:
                sides["driver"].append(timed(index))
        both = {}
        for side, times in sides.items():
            reserve = statistics.median(t[0] for t in times) * 1000
            settled = statistics.median(t[1] for t in times) * 1000
            both[side] = statistics.median(t[0] + t[1] for t in times) * 1000
            log(f"  {label}, {side}: reserve median {reserve:.3f} ms, "
                f"settle (with its asset row) median {settled:.3f} ms, "
                f"both {both[side]:.3f} ms")  # fmt: skip
        log(f"  {label}: through SQLAlchemy / on the driver = "
            f"{both['sqlalchemy'] / both['driver']:.2f}x")  # fmt: skip

    for index in range(40):  # the pool, the compiled statements, the caches
        with through_sqlalchemy() if index % 2 else nullcontext():
            timed(index)
    backend = ledger.engine.dialect.name
    log(f"{backend}, {args.repeats} requests of {args.images} image(s), every one delivered:")
    compare("back to back", args.repeats, 0.0)
    log(f"{backend}, {args.waited} requests, each after a {args.wait_ms:.0f} ms wait:")
    compare(f"after {args.wait_ms:.0f} ms", args.waited, args.wait_ms / 1000)
    log_statements(ledger, lambda: timed(10**6))

    def request(index: int) -> None:
        settle(ledger.reserve(tenant.id, args.images, f"burst_{index}"), index)

    bursts = max(3, args.repeats // 20)
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


def log_statements(ledger: Ledger, request: Callable[[], object]) -> None:
    """The statements one request sends, BEGIN and COMMIT not counted: SQLite's trace of
    every connection the request checks out (other drivers have none to read), and apart
    the ``PRAGMA synchronous`` that switch a connection between a hold's commit and a
    durable one."""
    if ledger.engine.dialect.name != "sqlite":
        log("  statements a request sends: counted on SQLite only")
        return
    sent: list[str] = []
    traced: list[Any] = []

    def trace(dbapi_connection: Any, *_: object) -> None:
        dbapi_connection.set_trace_callback(sent.append)
        traced.append(dbapi_connection)

    event.listen(ledger.engine, "checkout", trace)
    try:
        request()
    finally:
        event.remove(ledger.engine, "checkout", trace)
        for dbapi_connection in traced:
            dbapi_connection.set_trace_callback(None)
    counted = [s for s in sent if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    pragmas = [s for s in counted if s.lstrip().upper().startswith("PRAGMA")]
    log(
        f"  statements a request sends (BEGIN and COMMIT not counted): "
        f"{len(counted) - len(pragmas)}, and {len(pragmas)} PRAGMA synchronous"
    )


if __name__ == "__main__":
    sys.exit(main())
