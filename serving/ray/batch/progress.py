"""Progress of a batch run: the figures (``Progress``), a stderr bar and the summary text.

The figures go to ``run_batch``'s ``on_progress`` as a dict — ``images_done``,
``images_total``, ``lines_done``, ``lines_total``, ``images_per_s``, ``eta_s`` — after
every finished line; the CLI draws them as one stderr line rewritten in place. They count
this run's work: lines skipped as already done are in neither ``done`` nor ``total``.
A failed line's images count as done (the bar reaches the end), not as written.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """``[#####.....] 120/500 images  3.2 img/s  ETA 01:58`` on one stderr line."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.drawn = False

    def update(self, figures: dict[str, Any]) -> None:
        total = figures["images_total"] or 1
        filled = round(self.WIDTH * figures["images_done"] / total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        text = (
            f"\r[{bar}] {figures['images_done']}/{figures['images_total']} images  "
            f"{figures['images_per_s']:.2f} img/s  ETA {_duration(figures['eta_s'])}"
        )
        print(text, end="", file=self.stream, flush=True)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            print(file=self.stream, flush=True)


def summary_text(summary: Any) -> str:
    """One paragraph on a finished run (a ``BatchSummary``)."""
    rate = summary.images / summary.seconds if summary.seconds > 0 else 0.0
    text = (
        f"{summary.lines} line(s): {summary.ran} ran, {summary.skipped} already done "
        f"(skipped), {summary.failed} failed; {summary.images} image(s) written in "
        f"{summary.seconds:.1f}s ({rate:.2f} images/s). Manifest: {summary.manifest}."
    )
    failed = [e for e in summary.entries if e.get("error")]
    if failed:
        first = failed[0]
        text += (
            f" First failure: line {first['line']}: {first['error'].get('message')}"
            " (every failure is in the manifest; rerun to retry them)."
        )
    return text
