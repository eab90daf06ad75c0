"""The optional retention rule (``KILN_ASSET_RETENTION_DAYS``): unlicensed assets older
than N days are deleted; licensed ones are kept whatever their age.

Each ingress process sweeps at most once per ``SWEEP_EVERY_S``, on a background thread
started by a request that finds a sweep due, so no request waits for one. Several
replicas sweeping at once is harmless: a delete that finds the asset gone moves on.
``kiln assets purge`` runs the same sweep from a cron job.
"""

from __future__ import annotations

import logging
import threading
import time

from serving.core.assets.service import Assets

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 3600.0


class RetentionSweeper:
    """Runs ``Assets.purge_expired`` now and then; a no-op without a retention setting."""

    def __init__(self, assets: Assets, days: int | None, every_s: float = SWEEP_EVERY_S):
        self.assets = assets
        self.days = days
        self.every_s = every_s
        self._last = float("-inf")
        self._lock = threading.Lock()

    def maybe_start(self) -> threading.Thread | None:
        """Start a sweep on a daemon thread if one is due and none is running."""
        if self.days is None or time.monotonic() - self._last < self.every_s:
            return None
        if not self._lock.acquire(blocking=False):
            return None
        self._last = time.monotonic()
        thread = threading.Thread(target=self._sweep, name="asset-retention", daemon=True)
        thread.start()
        return thread

    def _sweep(self) -> None:
        try:
            self.assets.purge_expired(self.days)
        except Exception:
            logger.exception("asset retention sweep failed; retrying in %.0f s", self.every_s)
        finally:
            self._lock.release()
