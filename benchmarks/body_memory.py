"""Memory a request body costs the server before it is refused (the body guard).

Streams a large body of zeros at ``POST /v1/generations`` three ways — no API key, a key
with a chunked body, a key with a ``Content-Length`` over the limit — and prints, for each,
what the server answered, how many MiB it took before answering, and how much the
private resident memory (RSS less shared pages: ``private_rss``) of Ray Serve's HTTP
proxy and of the ingress replica grew (peak during the stream minus before, read by pid
with psutil).

    python benchmarks/body_memory.py                      # starts its own kiln serve
    python benchmarks/body_memory.py --url http://127.0.0.1:8000 --admin-key KEY
    python benchmarks/body_memory.py --smoke              # the app under uvicorn, 16 MiB

Run it against an older checkout's server (``--url``) for the figures before a change.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
from _peak import peak_growth
from _server import KilnServe, tenant_key

os.environ["HF_HUB_OFFLINE"] = "1"

MiB = 1 << 20
CHUNK = 256 * 1024


def log(message: str) -> None:
    print(message, flush=True)


def serve_processes(server_pid: int | None = None) -> dict[str, psutil.Process]:
    """Ray Serve's proxy and the Kiln ingress replica, by process title: those under
    ``server_pid`` (a ``kiln serve``), else the first found on this machine."""
    found = {}
    candidates = (
        psutil.Process(server_pid).children(recursive=True)
        if server_pid
        else list(psutil.process_iter())
    )
    for process in candidates:
        try:
            cmdline = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "ray::ProxyActor" in cmdline:
            found["proxy"] = process
        elif "ray::ServeReplica:kiln:KilnIngress" in cmdline:
            found["ingress"] = process
    return found


def stream(url: str, headers: dict[str, str], total: int, chunked: bool) -> tuple[str, int]:
    """POST ``total`` zero bytes; the answer (or how the connection ended) and the bytes
    the server accepted before it answered."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"\0" * CHUNK
        while sent < total:
            sent += CHUNK
            yield chunk

    if not chunked:
        headers = {**headers, "content-length": str(total)}
    try:
        response = httpx.post(f"{url}/v1/generations", headers=headers, content=body(), timeout=120)
    except httpx.HTTPError as exc:  # the server closed the connection on the refusal
        return f"connection closed ({type(exc).__name__})", sent
    return f"{response.status_code} {response.json()['error']['code']}", sent


def measure(
    url: str, processes: dict[str, psutil.Process], headers: dict[str, str], total: int,
    chunked: bool,
) -> dict[str, float | str]:  # fmt: skip
    with peak_growth(processes) as growth:
        began = time.perf_counter()
        outcome, sent = stream(url, headers, total, chunked)
        seconds = time.perf_counter() - began
    row: dict[str, float | str] = {"answer": outcome, "taken_mib": sent / MiB, "s": seconds}
    row.update({f"{name}_mib": grown / MiB for name, grown in growth.items()})
    return row


def start_app_in_process(home: Path, admin_key: str) -> str:
    """The FastAPI app under uvicorn in a thread (no Ray): the smoke run's server."""
    import uvicorn

    from serving.core.accounts import prepare_admin
    from serving.core.model_client import LocalModelClient
    from serving.core.settings import Settings
    from serving.http.app import create_app
    from weights.catalog import load_catalog

    settings = Settings(home=home, admin_key=admin_key, body_max_json=4 * MiB)
    prepare_admin(settings.database_url, home, admin_key)
    catalog = load_catalog(home)
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running kiln serve (else one is started)")
    parser.add_argument("--admin-key", help="its admin key (with --url)")
    parser.add_argument("--pid", type=int, help="with --url: the kiln serve's process id")
    parser.add_argument("--mib", type=int, default=300, help="body size to stream")
    parser.add_argument("--smoke", action="store_true", help="in-process app, 16 MiB")
    args = parser.parse_args()

    server = None
    with tempfile.TemporaryDirectory(prefix="kiln-body-") as tmp:
        admin_key = args.admin_key or f"kiln_bench-{secrets.token_urlsafe(32)}"
        total = (16 if args.smoke else args.mib) * MiB
        if args.url:
            url = args.url
            processes = serve_processes(args.pid)
        elif args.smoke:
            url = start_app_in_process(Path(tmp), admin_key)
            processes = {"app": psutil.Process()}
        else:
            log("starting kiln serve (builds the tiny models first) ...")
            server = KilnServe.start(Path(tmp), admin_key)
            url = server.url
            processes = serve_processes(server.process.pid)
        try:
            key = tenant_key(url, admin_key, name="body-memory bench")
            authorized = {"authorization": f"Bearer {key}", "content-type": "application/json"}
            log(f"{total / MiB:.0f} MiB at POST /v1/generations; memory growth by process:")
            cases = [
                ("no key, chunked", {"content-type": "application/json"}, True),
                ("key, chunked", authorized, True),
                ("key, content-length", authorized, False),
            ]
            for name, headers, chunked in cases:
                row = measure(url, processes, headers, total, chunked)
                growth = "  ".join(f"{k[:-4]} +{v:.1f} MiB" for k, v in row.items()
                                   if k.endswith("_mib") and k != "taken_mib")  # fmt: skip
                log(f"  {name:22s} {row['answer']:34s} taken {row['taken_mib']:6.1f} MiB "
                    f"in {row['s']:5.2f} s   {growth}")  # fmt: skip
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
