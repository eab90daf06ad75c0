"""A request's fair-queue class asked in its body: ``"priority": "batch"``.

Every image route's body takes it (native generations, edits and agentic generations;
OpenAI's generations, edits and variations, as a JSON or form field): ``batch`` puts the
request's model calls behind interactive work in each model's fair queue
(``serving.core.scheduling``), as render jobs submitted with ``Prefer: respond-async``
should; ``interactive`` (the default) is what an artist waiting on the answer gets. It
does what the ``x-kiln-priority`` header does, for clients that cannot set headers, and
wins where both are given. An asynchronous job keeps the class it was submitted with: its
task copies the request's context.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from serving.core.scheduling.context import current_priority

Priority = Literal["interactive", "batch"]


class PriorityField(BaseModel):
    """The ``priority`` field an image request's body may carry."""

    priority: Priority | None = Field(
        None,
        description="the fair queue's class of this request's model calls: interactive "
        "(default) or batch (queued behind interactive work, e.g. async render jobs)",
    )

    def use_priority(self) -> None:
        """Run this request's model calls (and its job's, when asynchronous) in the class
        it asked for; nothing when it asked for none."""
        if self.priority is not None:
            current_priority.set(self.priority)
