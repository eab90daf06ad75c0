"""A free loopback port for a ``kiln serve`` that tests and benchmarks start.

``bind(0)`` hands out a port of the kernel's ephemeral range, and closing it frees it
for anyone: the Ray processes ``kiln serve`` starts before Serve's proxy binds the port
take ports of that range too (their gRPC servers, agents, outgoing connections), so a
port picked that way may be taken by the time the proxy binds it (CI saw
``Failed to bind to address``). This picks one between Ray's worker ports (10002-19999)
and the ephemeral range, where neither the kernel nor Ray hands ports out.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20_000  # above Ray's default worker ports (min/max_worker_port 10002-19999)
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
EPHEMERAL_LOW_ELSEWHERE = 32_768  # Linux's default; macOS's range starts at 49152


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now, outside the ranges the kernel
    and Ray hand out; ``OSError`` if none is found in 200 tries."""
    highest = _ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(LOWEST, max(LOWEST, highest))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise OSError(f"no free port between {LOWEST} and {highest}")


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_LOW_ELSEWHERE
