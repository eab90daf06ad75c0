"""``kiln batch FILE.jsonl --out DIR``: render a JSONL of requests on Ray Data, resumable
(``serving.ray.batch``); the first Ctrl-C stops after the lines in flight, a second aborts."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from serving.cli.base import Command, CommandFailed, build_tiny, load_catalog
from serving.cli.progress import BatchBar, summary_text
from serving.core.settings import Settings


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    """Render a JSONL batch into ``--out`` on Ray Data (serving/ray/batch): invalid lines
    are listed and nothing runs (exit 2) unless ``--skip-invalid``; exit 1 if a line
    failed."""
    from serving.http.batch.parsing import parse_batch
    from serving.ray.batch.runner import BatchOptions, UnknownBatchTenant, resolve_tenant, run_batch

    path = Path(args.file)
    if not path.is_file():
        raise CommandFailed(f"no file {path}")
    catalog = load_catalog(settings)
    text = path.read_text(encoding="utf-8")
    lines, invalid = parse_batch(
        text, base_dir=path.parent.resolve(), catalog=catalog, settings=settings
    )
    for bad in invalid:
        print(f"kiln: {bad.message}", file=sys.stderr)
    if invalid and not args.skip_invalid:
        print(
            f"kiln: {len(invalid)} invalid line(s), nothing ran (--skip-invalid runs the rest)",
            file=sys.stderr,
        )
        return 2
    try:
        tenant_id = resolve_tenant(settings, args.tenant) if args.tenant else None
    except UnknownBatchTenant as exc:
        raise CommandFailed(str(exc)) from None
    for built in build_tiny(catalog):
        print(f"built tiny model {built}")
    options = BatchOptions(Path(args.out), tenant_id, args.address, args.workers)
    # Ray Data's per-dataset INFO lines would break the progress bar's line.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    bar = BatchBar()
    try:
        with GracefulInterrupt() as interrupt:
            summary = run_batch(
                settings,
                catalog,
                lines,
                options,
                on_progress=bar.update,
                should_stop=interrupt.requested.is_set,
            )
    except KeyboardInterrupt:
        bar.close()
        print("kiln: aborted; finished lines are kept, a rerun resumes", file=sys.stderr)
        return 130
    except ConnectionError as exc:  # ray.init found no cluster at --address
        raise CommandFailed(f"cannot reach the Ray cluster: {exc}") from None
    bar.close()
    print(summary_text(summary))
    if summary.stopped:
        print("kiln: stopped by Ctrl-C after the lines in flight; a rerun resumes", file=sys.stderr)
        return 130
    return 1 if summary.failed else 0


class GracefulInterrupt:
    """The first Ctrl-C asks a batch to stop after the lines in flight (they were charged:
    they are finished and recorded); a second one aborts at once (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> GracefulInterrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        print("\nkiln: stopping after the lines in flight (Ctrl-C again aborts)", file=sys.stderr)


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="one request a line, with kind: generation|edit|agentic")
    parser.add_argument("--out", required=True, help="folder for the images and manifest.jsonl")
    parser.add_argument("--address", help="Ray cluster: auto or HOST:PORT (default: local Ray)")
    parser.add_argument("--tenant", help="run as this tenant (id or name), charging its credits")
    parser.add_argument("--skip-invalid", action="store_true", help="run the valid lines anyway")
    parser.add_argument("--workers", type=int, help="actors per model (default: by cluster)")


BATCH = Command(
    "batch", "render a JSONL file of requests on Ray Data (resumable)", cmd_batch, _batch_arguments
)
