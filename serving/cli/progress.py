"""What long commands draw on stderr while they run: one line rewritten in place (a
style's training steps, a batch's images), and a batch's closing summary."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class TrainingBar:
    """``[####......] 120/500 loss 0.1234``: a training job's steps and loss."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total

    def update(self, progress: dict[str, Any]) -> None:
        step, total = progress.get("step", 0), progress.get("total", self.total) or 1
        filled = round(self.WIDTH * step / total)
        loss = f"  loss {progress['loss']:.4f}" if "loss" in progress else ""
        stage = "" if loss else f"  {progress.get('stage', '')}"
        bar = "#" * filled + "." * (self.WIDTH - filled)
        print(f"\r[{bar}] {step}/{total}{loss}{stage}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        print(file=sys.stderr, flush=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class BatchBar:
    """``[#####.....] 120/500 images  3.2 img/s  ETA 01:58``: a batch run's figures
    (``serving.ray.batch.progress.Progress``)."""

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
