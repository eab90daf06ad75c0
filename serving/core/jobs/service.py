"""Jobs in the database: the one source of truth every process reads and writes.

    job = jobs.create(tenant_id, "style_training", {"name": "Orange"}, price=200)
    jobs.start(job.id)                              # the worker: queued -> running
    cancel = jobs.report(job.id, {"step": 3, "total": 500, "loss": 0.12})
    jobs.finish(job.id, "succeeded", result={"style_id": "sty_…"})
    jobs.events(job.id, after=0)                    # what the SSE stream sends

A job is made by one ingress, run by a worker somewhere else (a Ray task on another
node, or a thread of the same process), and polled through any ingress replica: none of
them shares memory with another, so every fact about a job is a row. Rules:

- States move only forward: ``queued -> running -> succeeded | failed | cancelled``, and
  ``queued -> cancelled``. Each move is a conditional UPDATE (``WHERE state = …``), so of
  two processes racing (a cancel and the worker starting) exactly one wins.
- Cancelling a queued job ends it at once; cancelling a running one sets
  ``cancel_requested``, which the worker reads with every progress report and answers by
  stopping (``JobCancelled``). A finished job is left as it is.
- Every state change and progress report appends a ``job_events`` row numbered by the
  job's own counter (``event_seq``), bumped in the same transaction: the row lock on the
  job orders writers, so events of one job commit in number order and a reader that asks
  for "after n" never skips one.
- Another tenant's job is unknown (``UnknownJob``, HTTP 404), never forbidden.
- Reads (status, events, cancel checks) run on ``read_only(engine)``: on SQLite they take
  no lock, so polls and progress streams never queue behind the writers. Every write
  signals the job in this process after it commits (``serving.core.jobs.watch.SIGNALS``).
- A failed job keeps a public ``error`` and ``error_code``: a ``JobFailed``'s own words,
  or a generic message for anything else (whose detail only the log has).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update

from serving.core.errors import KilnError
from serving.core.jobs.watch import SIGNALS
from serving.core.ledger.db import read_only
from serving.core.ledger.ledger import as_utc
from serving.core.ledger.schema import JOB_STATES, job_events, jobs
from serving.core.pagination import newest_first

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
# Longest error message kept on a job (a traceback's last line, not the traceback).
MAX_ERROR_CHARS = 2000


class UnknownJob(KilnError):
    """No job with this id for this tenant (404 ``job_not_found``, also for another
    tenant's job)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(404, f"no job {job_id!r}", code="job_not_found")
        self.job_id = job_id


class JobCancelled(Exception):
    """Raised inside a job's work when cancellation was requested: stop, keep nothing."""


class JobFailed(Exception):
    """A job's own failure, told to its client as it is: the message and ``code`` must be
    fit for the client (no paths, SQL or library messages). Any other exception a job
    raises is answered with a generic message (``serving.core.jobs.runner``)."""

    def __init__(self, message: str, code: str = "job_failed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Job:
    """A job as every layer sees it."""

    id: str
    tenant_id: str
    kind: str
    state: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    error_code: str | None
    cancel_requested: bool
    price: int
    reservation_id: str | None
    event_seq: int
    created: datetime
    updated: datetime
    started: datetime | None = None
    finished: datetime | None = None

    @property
    def done(self) -> bool:
        """Succeeded, failed or cancelled: nothing will change any more."""
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class JobEvent:
    """One event of a job: ``type`` is ``state``, ``progress`` or ``preview`` (an image
    job's step preview: ``step``, ``total``, ``image``, ``webp`` base64); ``seq`` from 1."""

    seq: int
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    created: datetime | None = None


def new_job_id() -> str:
    """A fresh job id (``job_…``), for callers that stage files before the row exists."""
    return f"job_{secrets.token_hex(12)}"


def _now() -> datetime:
    return datetime.now(UTC)


class Jobs:
    """Job rows and their events in the database at ``engine``. Blocking: call off the
    event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = read_only(engine)

    # The ingress: create, read, cancel

    def create(
        self,
        tenant_id: str,
        kind: str,
        params: dict[str, Any],
        *,
        price: int = 0,
        reservation_id: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """A new queued job of ``kind``; ``reservation_id`` holds its credits (``price``)."""
        now = _now()
        job_id = job_id or new_job_id()
        with self.engine.begin() as conn:
            conn.execute(
                insert(jobs).values(
                    id=job_id,
                    tenant_id=tenant_id,
                    kind=kind,
                    state="queued",
                    params=json.dumps(params),
                    progress=json.dumps({}),
                    cancel_requested=False,
                    price=price,
                    reservation_id=reservation_id,
                    event_seq=0,
                    created=now,
                    updated=now,
                )
            )
            _append_event(conn, job_id, "state", {"state": "queued"})
        SIGNALS.changed(job_id)
        return self.load(job_id)

    def get(self, tenant_id: str, job_id: str) -> Job:
        """The tenant's job ``job_id``; ``UnknownJob`` for any other."""
        job = self._find(job_id)
        if job is None or job.tenant_id != tenant_id:
            raise UnknownJob(job_id)
        return job

    def load(self, job_id: str) -> Job:
        """The job ``job_id`` whoever owns it (the worker's view)."""
        job = self._find(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    def list(
        self,
        tenant_id: str,
        limit: int = 20,
        after: str | None = None,
        kind: str | None = None,
        state: str | None = None,
    ) -> tuple[list[Job], bool]:
        """The tenant's jobs (of ``kind``, in ``state`` where given), newest first, and
        whether more follow; ``after``: the last id of the previous page (400 if it is not
        one of the tenant's jobs)."""
        query = select(jobs).where(jobs.c.tenant_id == tenant_id)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        if state is not None:
            query = query.where(jobs.c.state == state)
        with self.reader.begin() as conn:
            rows, more = newest_first(conn, jobs, query, tenant_id, limit, after)
        return [_job(row._mapping) for row in rows], more

    def count(self, tenant_id: str, kind: str, states: tuple[str, ...]) -> int:
        """How many of the tenant's jobs of ``kind`` are in one of ``states``."""
        # On the writer: a price decided from this count queues behind submissions.
        with self.engine.begin() as conn:
            return conn.execute(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.tenant_id == tenant_id, jobs.c.kind == kind, jobs.c.state.in_(states))
            ).scalar_one()

    def request_cancel(self, tenant_id: str, job_id: str) -> tuple[Job, bool]:
        """Cancel the tenant's job: a queued one ends now, a running one is asked to stop.

        Returns the job and whether this call ended it (the caller then settles what the
        job held: its worker never will). A finished job is returned unchanged.
        """
        self.get(tenant_id, job_id)
        now = _now()
        with self.engine.begin() as conn:
            ended = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == "queued")
                .values(state="cancelled", cancel_requested=True, updated=now, finished=now)
            ).rowcount
            if ended:
                _append_event(conn, job_id, "state", {"state": "cancelled"})
            else:
                asked = conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == job_id,
                        jobs.c.state == "running",
                        jobs.c.cancel_requested.is_(False),
                    )
                    .values(cancel_requested=True, updated=now)
                ).rowcount
                if asked:
                    _append_event(conn, job_id, "state", {"state": "running", "cancelling": True})
        SIGNALS.changed(job_id)
        return self.load(job_id), bool(ended)

    def events(self, job_id: str, after: int = 0, limit: int = 500) -> list[JobEvent]:
        """The job's events numbered above ``after``, oldest first."""
        with self.reader.begin() as conn:
            return _events(conn, job_id, after, limit)

    def watch(
        self, tenant_id: str, job_id: str, after: int = 0, limit: int = 500
    ) -> tuple[Job, list[JobEvent]]:
        """The tenant's job and its events above ``after``, in one read (a stream's poll).

        The job is read *before* its events: a job seen finished has written all of its
        events (its last state event commits with the state). Events are asked for only
        when the job's counter says there are new ones, so a quiet job costs one lookup.
        """
        after = max(after, 0)  # events count from 1: a cursor under it reads them all
        with self.reader.begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
            if row is None or row.tenant_id != tenant_id:
                raise UnknownJob(job_id)
            job = _job(row._mapping)
            # A cursor past the job's last event asks the database nothing (it may be past
            # what an integer column holds, too).
            events = _events(conn, job_id, after, limit) if job.event_seq > after else []
        return job, events

    # The worker: start, report, finish

    def start(self, job_id: str) -> bool:
        """queued -> running; False when the job was cancelled (or started) already."""
        now = _now()
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == "queued")
                .values(state="running", updated=now, started=now)
            ).rowcount
            if moved:
                _append_event(conn, job_id, "state", {"state": "running"})
        if moved:
            SIGNALS.changed(job_id)
        return bool(moved)

    def report(self, job_id: str, progress: dict[str, Any]) -> bool:
        """Record progress (and a ``progress`` event); True when cancellation is requested."""
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == "running")
                .values(progress=json.dumps(progress), updated=_now())
            )
            _append_event(conn, job_id, "progress", progress)
            cancel = conn.execute(
                select(jobs.c.cancel_requested).where(jobs.c.id == job_id)
            ).scalar_one()
        SIGNALS.changed(job_id)
        return bool(cancel)

    def preview(self, job_id: str, preview: dict[str, Any]) -> None:
        """Record a step preview as a ``preview`` event (an image: never in the job row)."""
        with self.engine.begin() as conn:
            _append_event(conn, job_id, "preview", preview)
        SIGNALS.changed(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked the job to stop."""
        with self.reader.begin() as conn:
            return bool(
                conn.execute(
                    select(jobs.c.cancel_requested).where(jobs.c.id == job_id)
                ).scalar_one()
            )

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        error_code: str | None = None,
        from_states: tuple[str, ...] = ("running",),
    ) -> bool:
        """running -> ``state`` (succeeded, failed or cancelled); False if not running.

        ``error`` and ``error_code`` are what the client is told (public words only).
        ``from_states=ACTIVE_STATES`` also ends a queued job: for a job whose worker died
        before it could start it."""
        if state not in TERMINAL_STATES:
            raise ValueError(
                f"a job finishes as one of {', '.join(TERMINAL_STATES)}, not {state!r}"
            )
        error = error[:MAX_ERROR_CHARS] if error else error
        now = _now()
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state.in_(from_states))
                .values(
                    state=state,
                    result=None if result is None else json.dumps(result),
                    error=error,
                    error_code=error_code,
                    updated=now,
                    finished=now,
                )
            ).rowcount
            if moved:
                data: dict[str, Any] = {"state": state}
                if result is not None:
                    data["result"] = result
                if error is not None:
                    data["error"] = error
                if error_code is not None:
                    data["error_code"] = error_code
                _append_event(conn, job_id, "state", data)
        if moved:
            SIGNALS.changed(job_id)
        return bool(moved)

    def stale(self, running_before: datetime, queued_before: datetime) -> list[Job]:
        """Jobs nobody is working on any more: running ones whose worker stopped reporting
        before ``running_before``, queued ones never started by ``queued_before``."""
        with self.reader.begin() as conn:
            rows = conn.execute(
                select(jobs).where(
                    or_(
                        and_(jobs.c.state == "running", jobs.c.updated < running_before),
                        and_(jobs.c.state == "queued", jobs.c.updated < queued_before),
                    )
                )
            ).all()
        return [_job(row._mapping) for row in rows]

    def _find(self, job_id: str) -> Job | None:
        with self.reader.begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
        return None if row is None else _job(row._mapping)


def _events(conn: Connection, job_id: str, after: int, limit: int) -> list[JobEvent]:
    rows = conn.execute(
        select(job_events)
        .where(job_events.c.job_id == job_id, job_events.c.seq > after)
        .order_by(job_events.c.seq)
        .limit(limit)
    ).all()
    return [JobEvent(row.seq, row.type, json.loads(row.data), as_utc(row.created)) for row in rows]


def _append_event(conn: Connection, job_id: str, type_: str, data: dict[str, Any]) -> int:
    # Bumping the job's counter locks its row until commit: events of one job are
    # numbered and committed in one order, whichever process writes them.
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(event_seq=jobs.c.event_seq + 1))
    seq = conn.execute(select(jobs.c.event_seq).where(jobs.c.id == job_id)).scalar_one()
    conn.execute(
        insert(job_events).values(
            job_id=job_id, seq=seq, type=type_, data=json.dumps(data), created=_now()
        )
    )
    return seq


def _job(row: Any) -> Job:
    state = row["state"]
    if state not in JOB_STATES:  # the CHECK constraint makes this impossible
        raise ValueError(f"job {row['id']} in unknown state {state!r}")
    return Job(
        id=row["id"],
        tenant_id=row["tenant_id"],
        kind=row["kind"],
        state=state,
        params=json.loads(row["params"]),
        progress=json.loads(row["progress"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        error_code=row["error_code"],
        cancel_requested=bool(row["cancel_requested"]),
        price=row["price"],
        reservation_id=row["reservation_id"],
        event_seq=row["event_seq"],
        created=as_utc(row["created"]),
        updated=as_utc(row["updated"]),
        started=None if row["started"] is None else as_utc(row["started"]),
        finished=None if row["finished"] is None else as_utc(row["finished"]),
    )
