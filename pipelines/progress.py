"""The per-call progress channel between a pipeline call and whoever waits on it.

    engine.generate(requests, listener)     # listener: a CallListener, or None

A ``CallListener`` is told of every denoising step of every request in a call
(``on_step`` with a ``StepEvent``) and is asked, at every step, whether a request was
cancelled (``cancelled``). The engine (``pipelines.engine``) reads the answer:

- every request of a pipeline call cancelled: the call stops at the next step (the
  callback raises ``CallCancelled``, caught by the engine; nothing is decoded) and the
  requests get only the images of their calls that finished before (``GenerationOutput.
  cancelled`` is set);
- only some cancelled: the call runs on for the others, and the cancelled requests'
  images of that call are discarded (their owner has stopped waiting; its credits for
  them are released by the paid path, which charges delivered images only).

A request's index (``request_index``) is its position in the list given to
``Engine.generate``. Both methods are called on the engine's thread, between steps:
they must be quick and thread-safe (a replica's listener hands events to its event loop,
``serving.ray.model_deployment``).

``StepEvent.previews`` is where step previews travel (small encoded images, one per image
of the request, in order); they are ``None`` while the engine makes none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StepEvent:
    """One finished denoising step of one request of a pipeline call.

    ``step`` counts from 1 to ``total`` (the steps the call really runs: an image task
    at strength < 1 runs fewer than asked); ``images_done`` is how many of the request's
    images earlier calls finished (a request split by the out-of-memory retry runs in
    several calls); ``images`` how many the current call makes for it.
    """

    request_index: int
    step: int
    total: int
    images_done: int = 0
    images: int = 1
    previews: list[bytes] | None = None


class CallListener(Protocol):
    """Told of each step of a call's requests; asked whether each is cancelled."""

    def on_step(self, event: StepEvent) -> None:
        """A step of ``event.request_index`` finished (engine thread; keep it quick)."""
        ...

    def cancelled(self, request_index: int) -> bool:
        """Whether nobody waits for ``request_index``'s images any more."""
        ...


class CallCancelled(Exception):
    """Raised from a pipeline's step callback when every request of its call is
    cancelled: the engine catches it and ends the call without decoding."""
