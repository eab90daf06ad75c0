"""A ``kiln serve`` of a benchmark's own, and a tenant on it made through the admin API.
A helper, not a benchmark: the leading underscore keeps it out of the smoke run's
discovery (tests/benchmarks/test_benchmark_scripts_smoke.py).

    server = KilnServe.start(home, admin_key)        # returns once /healthz answers 200
    server = KilnServe.start(home, admin_key, until="listening")  # once it answers HTTP
    key = tenant_key(server.url, admin_key, credits=100)
    server.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving.cli.ports import free_port

STARTUP_TIMEOUT_S = 300


@dataclass
class KilnServe:
    """A running ``kiln serve`` subprocess over its own ``KILN_HOME``."""

    process: subprocess.Popen
    url: str
    log: Path

    @classmethod
    def start(
        cls,
        home: Path,
        admin_key: str,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        until: str = "healthy",
    ) -> KilnServe:
        """Start ``kiln serve`` on a free port with ``admin_key`` (and ``env`` on top of
        this process's environment); wait until it is ``healthy`` (``/healthz`` 200: every
        model up) or ``listening`` (any answer: models may still be loading)."""
        if until not in ("healthy", "listening"):
            raise ValueError(f"until must be 'healthy' or 'listening', got {until!r}")
        port = free_port()
        log = log or home / "bench-server.log"
        script = Path(sys.executable).with_name("kiln")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "serving.cli"]
        env = {**os.environ, **(env or {}), "KILN_HOME": str(home), "KILN_ADMIN_KEY": admin_key}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        server = cls(process, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"kiln serve exited early; see {log}")
            try:
                status = httpx.get(f"{server.url}/healthz", timeout=2).status_code
            except httpx.HTTPError:
                status = None
            if status == 200 or (status is not None and until == "listening"):
                return server
            time.sleep(0.1 if until == "listening" else 0.5)
        process.kill()
        raise SystemExit(f"kiln serve not ready after {STARTUP_TIMEOUT_S}s; see {log}")

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Until ``/healthz`` answers 200 (every model up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                return
            time.sleep(0.2)
        raise SystemExit(f"kiln serve not healthy after {timeout_s}s; see {self.log}")

    def stop(self) -> None:
        """Ctrl-C it; kill it if it does not stop within a minute."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def tenant_key(url: str, admin_key: str, credits: int = 0, name: str = "bench") -> str:
    """A new tenant's API key, the tenant granted ``credits``, all through the admin API."""
    with httpx.Client(
        base_url=url, timeout=60, headers={"authorization": f"Bearer {admin_key}"}
    ) as admin:
        tenant = admin.post("/v1/admin/tenants", json={"name": name})
        tenant.raise_for_status()
        tenant_id = tenant.json()["id"]
        key = admin.post(f"/v1/admin/tenants/{tenant_id}/keys")
        key.raise_for_status()
        if credits:
            grant = admin.post(f"/v1/admin/tenants/{tenant_id}/credits", json={"amount": credits})
            grant.raise_for_status()
    return key.json()["key"]
