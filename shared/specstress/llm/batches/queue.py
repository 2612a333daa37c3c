"""SQL of batch mode: the queue of requests waiting for a batch, and the jobs sent to providers.

A request is one row keyed by its request hash, so however many messages and replicas ask for
it, it is queued once; a job claims its requests with `FOR UPDATE SKIP LOCKED` and moves them
to `submitted` in the transaction that creates the job, so no request is sent in two jobs.
Whoever works on a job (sends it, polls it, collects its results) holds a session advisory
lock on its id, which dies with the process: a `submitting` job whose lock is free lost its
sender and is settled by whoever sees it, and a job being polled is skipped by the others
(see specstress.llm.batches.coordinator). Results are stored in chunks, each one transaction with its
ledger rows, so a crash mid-collection leaves nothing half-written.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Float, cast, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.schema import llm_batch_jobs, llm_batch_requests, llm_calls
from specstress.ids import advisory_lock_key
from specstress.llm.ledger import AttemptRecord, record_attempts

__all__ = [
    "MAX_ERROR_CHARS",
    "Job",
    "QueuedModel",
    "QueuedRequest",
    "RequestState",
    "Settled",
    "Summary",
    "abandoned",
    "claim",
    "due_polls",
    "enqueue",
    "fail",
    "fail_pending",
    "finish",
    "job_lock",
    "job_status",
    "mark_submitted",
    "queue",
    "record_progress",
    "release",
    "request_state",
    "still_due",
    "store_results",
    "summary",
    "unsettled",
]

MAX_ERROR_CHARS = 2000
Settled = Literal["succeeded", "errored", "expired", "canceled"]
_COUNT_COLUMNS: dict[Settled, str] = {
    "succeeded": "succeeded_count",
    "errored": "errored_count",
    "expired": "expired_count",
    "canceled": "canceled_count",
}


def _seconds_since(column: Any) -> Any:
    return func.extract("epoch", func.now() - column)


def _interval(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


@dataclass(frozen=True)
class RequestState:
    status: str
    job_id: str | None
    age_seconds: float


@dataclass(frozen=True)
class QueuedModel:
    model_key: str
    requests: int
    oldest_seconds: float


@dataclass(frozen=True)
class QueuedRequest:
    request_hash: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Job:
    job_id: str
    stage: str
    model_key: str
    protocol: str
    provider_batch_id: str | None
    created_at: datetime
    # since the provider took the job; 0 while it is being sent
    running_seconds: float


@dataclass(frozen=True)
class Summary:
    """What `specstress status` shows: requests by state and jobs at providers, per stage."""

    stage: str
    pending: int
    submitted: int
    succeeded: int
    failed: int
    jobs_running: int


# a Job's fields, by name
_JOB_COLUMNS = (
    llm_batch_jobs.c.job_id,
    llm_batch_jobs.c.stage,
    llm_batch_jobs.c.model_key,
    llm_batch_jobs.c.protocol,
    llm_batch_jobs.c.provider_batch_id,
    llm_batch_jobs.c.created_at,
    cast(func.coalesce(_seconds_since(llm_batch_jobs.c.submitted_at), 0), Float).label(
        "running_seconds"
    ),
)


async def request_state(engine: AsyncEngine, request_hash: str) -> RequestState | None:
    query = select(
        llm_batch_requests.c.status,
        llm_batch_requests.c.job_id,
        _seconds_since(llm_batch_requests.c.created_at).label("age"),
    ).where(llm_batch_requests.c.request_hash == request_hash)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return RequestState(row.status, row.job_id, float(row.age))


async def enqueue(
    engine: AsyncEngine, *, request_hash: str, stage: str, model_key: str, body: dict[str, Any]
) -> RequestState:
    """Queue a request unless it is queued already; its state either way."""
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    statement = (
        insert(llm_batch_requests)
        .values(
            request_hash=request_hash,
            stage=stage,
            model_key=model_key,
            body=body,
            body_bytes=size,
            status="pending",
        )
        .on_conflict_do_nothing(index_elements=[llm_batch_requests.c.request_hash])
        .returning(llm_batch_requests.c.request_hash)
    )
    async with engine.begin() as conn:
        inserted = (await conn.execute(statement)).first()
    if inserted is not None:
        return RequestState("pending", None, 0.0)
    state = await request_state(engine, request_hash)
    assert state is not None  # queued by someone else just now
    return state


async def queue(engine: AsyncEngine, stage: str) -> list[QueuedModel]:
    """Per model, how many of the stage's requests wait to be sent and for how long the oldest."""
    query = (
        select(
            llm_batch_requests.c.model_key,
            func.count().label("requests"),
            _seconds_since(func.min(llm_batch_requests.c.created_at)).label("oldest"),
        )
        .where(llm_batch_requests.c.stage == stage, llm_batch_requests.c.status == "pending")
        .group_by(llm_batch_requests.c.model_key)
    )
    async with engine.connect() as conn:
        rows = await conn.execute(query)
        return [QueuedModel(r.model_key, int(r.requests), float(r.oldest)) for r in rows]


async def claim(
    engine: AsyncEngine,
    *,
    job_id: str,
    stage: str,
    model_key: str,
    protocol: str,
    limit: int,
    fitting: Callable[[Sequence[int]], int],
) -> list[QueuedRequest]:
    """Create job `job_id` (status submitting) with the oldest waiting requests of the model:
    at most `limit`, of which the first `fitting(body sizes)` (at least one) are kept.
    Requests whose answer reached the ledger some other way are settled instead of sent.
    [] when nothing was waiting."""
    answered = (
        exists()
        .where(
            llm_calls.c.request_hash == llm_batch_requests.c.request_hash,
            llm_calls.c.status == "ok",
        )
        .label("answered")
    )
    # sizes first: bodies are read only for the requests that fit in the job
    candidates_query = (
        select(llm_batch_requests.c.request_hash, llm_batch_requests.c.body_bytes, answered)
        .where(
            llm_batch_requests.c.stage == stage,
            llm_batch_requests.c.model_key == model_key,
            llm_batch_requests.c.status == "pending",
        )
        .order_by(llm_batch_requests.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with engine.begin() as conn:
        rows = (await conn.execute(candidates_query)).all()
        done = [r.request_hash for r in rows if r.answered]
        if done:
            await conn.execute(
                update(llm_batch_requests)
                .where(llm_batch_requests.c.request_hash.in_(done))
                .values(status="succeeded", body=None, updated_at=func.now())
            )
        waiting = [r for r in rows if not r.answered]
        if not waiting:
            return []
        chosen = [
            r.request_hash for r in waiting[: max(1, fitting([r.body_bytes for r in waiting]))]
        ]
        found = await conn.execute(
            select(llm_batch_requests.c.request_hash, llm_batch_requests.c.body).where(
                llm_batch_requests.c.request_hash.in_(chosen)
            )
        )
        bodies = {r.request_hash: r.body for r in found}
        await conn.execute(
            insert(llm_batch_jobs).values(
                job_id=job_id,
                stage=stage,
                model_key=model_key,
                protocol=protocol,
                status="submitting",
                request_count=len(chosen),
            )
        )
        await conn.execute(
            update(llm_batch_requests)
            .where(llm_batch_requests.c.request_hash.in_(chosen))
            .values(status="submitted", job_id=job_id, updated_at=func.now())
        )
    return [QueuedRequest(h, bodies[h]) for h in chosen]


async def mark_submitted(
    engine: AsyncEngine,
    job_id: str,
    *,
    provider_batch_id: str,
    input_file_id: str | None,
    poll_seconds: float,
) -> None:
    statement = (
        update(llm_batch_jobs)
        .where(llm_batch_jobs.c.job_id == job_id, llm_batch_jobs.c.status == "submitting")
        .values(
            status="submitted",
            provider_batch_id=provider_batch_id,
            input_file_id=input_file_id,
            submitted_at=func.now(),
            next_poll_at=func.now() + _interval(poll_seconds),
        )
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def release(engine: AsyncEngine, job_id: str, reason: str) -> None:
    """A job that never reached the provider: its requests wait to be sent again."""
    async with engine.begin() as conn:
        await conn.execute(
            update(llm_batch_jobs)
            .where(llm_batch_jobs.c.job_id == job_id, llm_batch_jobs.c.status == "submitting")
            .values(status="released", error=reason[:MAX_ERROR_CHARS], ended_at=func.now())
        )
        await conn.execute(
            update(llm_batch_requests)
            .where(
                llm_batch_requests.c.job_id == job_id,
                llm_batch_requests.c.status == "submitted",
            )
            .values(status="pending", job_id=None, updated_at=func.now())
        )


async def fail(engine: AsyncEngine, job_id: str, reason: str) -> int:
    """The provider refused or lost the job: its unsettled requests are answered online.
    Returns how many requests that affects."""
    async with engine.begin() as conn:
        failed = await conn.execute(
            update(llm_batch_requests)
            .where(
                llm_batch_requests.c.job_id == job_id,
                llm_batch_requests.c.status == "submitted",
            )
            .values(status="failed", error=reason[:MAX_ERROR_CHARS], updated_at=func.now())
        )
        await conn.execute(
            update(llm_batch_jobs)
            .where(llm_batch_jobs.c.job_id == job_id)
            .values(
                status="failed",
                error=reason[:MAX_ERROR_CHARS],
                ended_at=func.now(),
                errored_count=llm_batch_jobs.c.errored_count + failed.rowcount,
            )
        )
    return failed.rowcount


async def fail_pending(engine: AsyncEngine, stage: str, model_key: str, reason: str) -> None:
    """Waiting requests of a model that can no longer be sent in a batch go online."""
    statement = (
        update(llm_batch_requests)
        .where(
            llm_batch_requests.c.stage == stage,
            llm_batch_requests.c.model_key == model_key,
            llm_batch_requests.c.status == "pending",
        )
        .values(status="failed", error=reason[:MAX_ERROR_CHARS], updated_at=func.now())
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def abandoned(engine: AsyncEngine, stage: str, older_than_seconds: float) -> list[Job]:
    """Jobs of the stage still `submitting` after a while: candidates for a lost sender."""
    query = select(*_JOB_COLUMNS).where(
        llm_batch_jobs.c.stage == stage,
        llm_batch_jobs.c.status == "submitting",
        llm_batch_jobs.c.created_at < func.now() - _interval(older_than_seconds),
    )
    async with engine.connect() as conn:
        return [Job(**r._mapping) for r in await conn.execute(query)]


async def job_status(engine: AsyncEngine, job_id: str) -> str | None:
    query = select(llm_batch_jobs.c.status).where(llm_batch_jobs.c.job_id == job_id)
    async with engine.connect() as conn:
        status: str | None = await conn.scalar(query)
    return status


async def due_polls(engine: AsyncEngine, stage: str, limit: int) -> list[str]:
    """Ids of the stage's submitted jobs whose next poll is due, most overdue first."""
    query = (
        select(llm_batch_jobs.c.job_id)
        .where(
            llm_batch_jobs.c.stage == stage,
            llm_batch_jobs.c.status == "submitted",
            llm_batch_jobs.c.next_poll_at <= func.now(),
        )
        .order_by(llm_batch_jobs.c.next_poll_at)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return list((await conn.scalars(query)).all())


async def still_due(engine: AsyncEngine, job_id: str) -> Job | None:
    """The job, if it is still submitted and due (read under its lock: another process may
    have polled it since the list was made)."""
    query = select(*_JOB_COLUMNS).where(
        llm_batch_jobs.c.job_id == job_id,
        llm_batch_jobs.c.status == "submitted",
        llm_batch_jobs.c.next_poll_at <= func.now(),
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else Job(**row._mapping)


async def record_progress(
    engine: AsyncEngine, job_id: str, provider_status: str | None, *, next_poll_seconds: float
) -> None:
    """When to poll the job next, and the provider's word for its state (None: unchanged)."""
    values: dict[str, Any] = {"next_poll_at": func.now() + _interval(next_poll_seconds)}
    if provider_status is not None:
        values["provider_status"] = provider_status[:32]
    statement = update(llm_batch_jobs).where(llm_batch_jobs.c.job_id == job_id).values(values)
    async with engine.begin() as conn:
        await conn.execute(statement)


async def unsettled(engine: AsyncEngine, job_id: str) -> set[str]:
    """Request hashes of the job that have no outcome yet."""
    query = select(llm_batch_requests.c.request_hash).where(
        llm_batch_requests.c.job_id == job_id, llm_batch_requests.c.status == "submitted"
    )
    async with engine.connect() as conn:
        return set((await conn.scalars(query)).all())


async def store_results(
    engine: AsyncEngine, job_id: str, results: Sequence[tuple[Settled, AttemptRecord]]
) -> set[str]:
    """In one transaction, a chunk of the job's results: their ledger rows and their requests'
    outcomes, counted on the job. Requests settled before (a second pass over the same
    results) are skipped, ledger rows and all. Returns the hashes newly paid for."""
    if not results:
        return set()
    async with engine.begin() as conn:
        waiting = set(
            (
                await conn.scalars(
                    select(llm_batch_requests.c.request_hash)
                    .where(
                        llm_batch_requests.c.request_hash.in_([r.request_hash for _, r in results]),
                        llm_batch_requests.c.job_id == job_id,
                        llm_batch_requests.c.status == "submitted",
                    )
                    .with_for_update()
                )
            ).all()
        )
        fresh = [(outcome, record) for outcome, record in results if record.request_hash in waiting]
        paid = await record_attempts(conn, [record for _, record in fresh])
        answered = [r.request_hash for outcome, r in fresh if outcome == "succeeded"]
        if answered:
            # the answer is in the ledger now: the body has served its purpose
            await conn.execute(
                update(llm_batch_requests)
                .where(llm_batch_requests.c.request_hash.in_(answered))
                .values(status="succeeded", body=None, updated_at=func.now())
            )
        for outcome, record in fresh:
            if outcome != "succeeded":
                await conn.execute(
                    update(llm_batch_requests)
                    .where(llm_batch_requests.c.request_hash == record.request_hash)
                    .values(
                        status="failed",
                        error=(record.error or outcome)[:MAX_ERROR_CHARS],
                        updated_at=func.now(),
                    )
                )
        counts = Counter(outcome for outcome, _ in fresh)
        await conn.execute(
            update(llm_batch_jobs)
            .where(llm_batch_jobs.c.job_id == job_id)
            .values(
                {
                    llm_batch_jobs.c[column]: llm_batch_jobs.c[column] + counts[outcome]
                    for outcome, column in _COUNT_COLUMNS.items()
                }
            )
        )
    return paid


async def finish(engine: AsyncEngine, job_id: str, provider_status: str) -> None:
    statement = (
        update(llm_batch_jobs)
        .where(llm_batch_jobs.c.job_id == job_id)
        .values(status="ended", provider_status=provider_status[:32], ended_at=func.now())
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def summary(engine: AsyncEngine) -> list[Summary]:
    query = text(
        """
SELECT stage,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'submitted') AS submitted,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       (SELECT count(*) FROM llm_batch_jobs j
        WHERE j.stage = r.stage AND j.status IN ('submitting', 'submitted')) AS jobs_running
FROM llm_batch_requests r
GROUP BY stage
ORDER BY stage
"""
    )
    async with engine.connect() as conn:
        return [
            Summary(r.stage, r.pending, r.submitted, r.succeeded, r.failed, r.jobs_running)
            for r in await conn.execute(query)
        ]


@asynccontextmanager
async def job_lock(engine: AsyncEngine, job_id: str) -> AsyncIterator[bool]:
    """Try to take the job's session advisory lock; yields whether it was taken. Held for the
    block, on a connection of its own, and gone with the session if the process dies."""
    key = advisory_lock_key(job_id)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        released = False
        try:
            held = bool(await conn.scalar(select(func.pg_try_advisory_lock(key))))
            released = not held
            try:
                yield held
            finally:
                if held:
                    await conn.execute(select(func.pg_advisory_unlock(key)))
                    released = True
        finally:
            if not released:
                # interrupted while holding it: end the session rather than pool a held lock
                await conn.invalidate()
