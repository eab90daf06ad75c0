"""Kiln inside Ray Serve's HTTP proxy: the body guard, and a bounded read-ahead.

Under ``kiln serve`` and ``serve deploy`` the first reader of a request body is Ray
Serve's HTTP proxy (one per node), not the ingress replica. Serve takes proxy-level ASGI
middlewares from the function named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``:
``kiln serve`` sets it to ``PROXY_CALLBACK`` for its local Ray (whose processes inherit
its environment); a cluster sets it on every node before ``ray start`` (deploy/). The
proxy then runs ``serving.http.body_guard.BodyGuard`` with the limits and the ledger of the
node's ``KILN_*`` environment: a request without a live key is answered 401 with its
body unread, and a body past its route's limit is cut with 413.

The proxy forwards a body to the ingress replica through a queue that the replica
drains by calling back into the proxy; Serve's queue takes whatever the client sends as
fast as it comes, so a body the replica is slow to read piles up in the proxy, and each
drain pickles a copy of the pile. ``bound_read_ahead`` makes the proxy's receive queues
hold at most ``READ_AHEAD_BYTES`` of body: past that, the proxy stops reading from the
client until the replica has taken what is queued (the socket's flow control then holds
the client back). A proxy's memory per upload is then a few MiB, whatever the route's
limit. The queue class is Serve's own (``MessageQueue``, ray 2.60 as pinned); if a Ray
release moves it, the proxy logs that the read-ahead is unbounded and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware

from serving.http.body_guard import BodyGuard, BodyLimits

if TYPE_CHECKING:
    from serving.core.accounts.service import Principal

logger = logging.getLogger(__name__)

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serving.ray.serve_proxy:proxy_middlewares"

# How much of a body the proxy may hold before the replica takes it: a few of uvicorn's
# reads, enough to keep a fast upload moving between the replica's pulls.
READ_AHEAD_BYTES = 8 << 20


class LedgerKeys:
    """``authenticate`` for the Serve proxy: the ledger's API keys, opened on first use
    (a proxy starts before anyone calls it, and must not fail if the database is late)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._accounts: Any = None
        self._lock = threading.Lock()

    def __call__(self, key: str) -> Principal | None:
        with self._lock:
            if self._accounts is None:
                from serving.core.accounts.service import Accounts
                from serving.core.ledger import Ledger

                # The ingress migrates the database; the proxy only reads keys.
                ledger = Ledger(self.database_url, pool_size=2, run_migrations=False)
                self._accounts = Accounts(ledger)
        return self._accounts.authenticate(key)


def bound_read_ahead(limit: int = READ_AHEAD_BYTES) -> bool:
    """Make the Serve proxy of this process queue at most ``limit`` bytes of a request
    body ahead of its replica (module docstring); ``False`` where Serve's queue is not
    where this Ray keeps it."""
    try:
        from ray.serve._private import proxy
        from ray.serve._private.http_util import MessageQueue
    except ImportError:
        proxy = MessageQueue = None
    if proxy is None or getattr(proxy, "MessageQueue", None) is not MessageQueue:
        logger.warning("Serve proxy: its receive queue is not Ray 2.60's; read-ahead unbounded")
        return False

    class ReadAheadQueue(MessageQueue):  # type: ignore[misc, valid-type]
        """Serve's receive queue, whose sender waits while ``limit`` bytes are queued."""

        def __init__(self) -> None:
            super().__init__()
            self.queued_bytes = 0
            self._drained = asyncio.Event()
            self._drained.set()

        async def __call__(self, message: dict[str, Any]) -> None:
            await super().__call__(message)
            self.queued_bytes += len(message.get("body", b""))
            while self.queued_bytes > limit and not self._closed:
                self._drained.clear()
                await self._drained.wait()

        def get_messages_nowait(self) -> list[dict[str, Any]]:
            messages = super().get_messages_nowait()
            self.queued_bytes = 0
            self._drained.set()
            return messages

        def close(self) -> None:
            super().close()
            self._drained.set()

    proxy.MessageQueue = ReadAheadQueue
    return True


def proxy_middlewares() -> list[Middleware]:
    """Ray Serve's HTTP proxy callback (``PROXY_CALLBACK``): bounds the proxy's read-ahead
    and returns the body guard, with the limits and ledger of the node's ``KILN_*``
    environment."""
    from serving.core.settings import Settings

    settings = Settings.from_env()
    bounded = bound_read_ahead()
    logger.info(
        "Serve proxy: body guard on (%s ledger), read-ahead %s",
        settings.database_url.split(":", 1)[0],
        f"{READ_AHEAD_BYTES >> 20} MiB" if bounded else "unbounded",
    )
    return [
        Middleware(
            BodyGuard,
            limits=BodyLimits.of(settings),
            authenticate=LedgerKeys(settings.database_url),
        )
    ]
