"""Finding and killing a ``kiln serve``'s model replica process, as an operator's fault
would (a GPU's Xid error, an OOM kill). A helper, not a benchmark (the leading underscore
keeps it out of the smoke run's discovery); tests/e2e/test_replica_kill_live.py loads it
too.

    replica = model_replica(server.process.pid, "tiny-sd15")   # a psutil.Process
    wait_busy(replica)                                          # a pipeline call is running
    replica.send_signal(signal.SIGKILL)

Ray names a Serve replica's worker process ``ray::ServeReplica:<app>:<deployment>``; only
the descendants of the server's own process are searched, so the replicas of another
Ray on the same machine (a parallel test session) are never touched.
"""

from __future__ import annotations

import time

import psutil


def model_replicas(server_pid: int, deployment: str) -> list[psutil.Process]:
    """The live replica processes of ``deployment`` started under ``server_pid``."""
    suffix = f":{deployment}"
    found = []
    for process in psutil.Process(server_pid).children(recursive=True):
        try:
            title = " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        head = title.split(" ", 1)[0]
        if head.startswith("ray::ServeReplica") and head.endswith(suffix):
            found.append(process)
    return found


def model_replica(server_pid: int, deployment: str, timeout_s: float = 60.0) -> psutil.Process:
    """One replica process of ``deployment`` (waits for one to be up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replicas = model_replicas(server_pid, deployment)
        if replicas:
            return replicas[0]
        time.sleep(0.2)
    raise TimeoutError(f"no replica process of {deployment} under pid {server_pid}")


def wait_busy(process: psutil.Process, timeout_s: float = 60.0, cpu_s: float = 0.3) -> None:
    """Until ``process`` burns ``cpu_s`` of CPU within half a second: its pipeline call
    is running (an idle replica uses next to none)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = process.cpu_times()
        time.sleep(0.5)
        after = process.cpu_times()
        if (after.user + after.system) - (before.user + before.system) >= cpu_s:
            return
    raise TimeoutError(f"replica {process.pid} never got busy")
