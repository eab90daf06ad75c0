"""Logging inside Ray Serve replicas.

Serve configures only its own ``ray.serve`` logger in a replica (file under the Ray
session's ``logs/serve/`` plus stderr, which reaches the driver's console); other
loggers fall to the root logger at WARNING and their INFO lines vanish. Kiln's package
loggers are routed to Serve's handlers so they land next to Serve's own lines, with the
request id.

``current_request_id`` is the id of the HTTP request the running task serves (set by
``serving.http``'s request middleware; ``None`` outside a request), so a failure far
below the route (a model replica's death, ``serving.ray.replica_failures``) can name the
requests it affected.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

PACKAGES = ("serving", "pipelines", "weights")

current_request_id: ContextVar[str | None] = ContextVar("kiln_request_id", default=None)


def configure_replica_logging(level: int = logging.INFO) -> None:
    """Send Kiln's loggers to Serve's handlers in this replica (idempotent)."""
    serve_handlers = logging.getLogger("ray.serve").handlers
    if not serve_handlers:
        return
    for name in PACKAGES:
        package_logger = logging.getLogger(name)
        package_logger.setLevel(level)
        for handler in serve_handlers:
            if handler not in package_logger.handlers:
                package_logger.addHandler(handler)
        # Serve's handlers already cover stderr: no second copy through the root logger.
        package_logger.propagate = False
