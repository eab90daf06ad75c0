"""Progress of a batch run: the figures (``Progress``).

The figures go to ``run_batch``'s ``on_progress`` as a dict — ``images_done``,
``images_total``, ``lines_done``, ``lines_total``, ``images_per_s``, ``eta_s`` — after
every finished line; the CLI draws them as one stderr line rewritten in place
(``serving.cli.progress``). They count this run's work: lines skipped as already done
are in neither ``done`` nor ``total``. A failed line's images count as done (the bar
reaches the end), not as written.
"""

from __future__ import annotations

import time
from typing import Any


class Progress:
    """Images and lines done out of this run's total; rate since the run started."""

    def __init__(self, images_total: int, lines_total: int) -> None:
        self.images_total = images_total
        self.lines_total = lines_total
        self.images_done = 0
        self.lines_done = 0
        self.started = time.monotonic()

    def advance(self, images: int) -> dict[str, Any]:
        """One more line finished with ``images`` images; the figures now."""
        self.images_done += images
        self.lines_done += 1
        return self.figures()

    def figures(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.images_done / elapsed
        left = max(self.images_total - self.images_done, 0)
        return {
            "images_done": self.images_done,
            "images_total": self.images_total,
            "lines_done": self.lines_done,
            "lines_total": self.lines_total,
            "images_per_s": round(rate, 3),
            "eta_s": round(left / rate, 1) if rate > 0 else None,
        }
