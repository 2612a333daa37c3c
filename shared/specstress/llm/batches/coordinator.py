"""Batch mode: a stage's calls answered through the providers' batch APIs, at the batch price.

How an answer travels:
1. A handler asks the gateway as usual. On a ledger miss for a batch-mode stage, the gateway
   queues the request (`llm_batch_requests`, keyed by its request hash) and raises
   BatchPending; the runtime puts the message back with that delay, recorded as a deferral,
   so no worker waits and the wait does not count towards dead-lettering.
2. The stage's services run `BatchCoordinator.run`: once a model has `max_requests_per_batch`
   requests waiting, or the oldest has waited `max_wait_seconds`, one process claims them
   (`FOR UPDATE SKIP LOCKED`) into a job and sends it; the job is polled every `poll_seconds`.
3. When the job ends, each answer is written to `llm_calls` like an online answer (status ok,
   its tokens, its cost at the batch price), so the message, when it comes back, finds it in
   the ledger and the handler goes on exactly as online: same code, same rows, same events.
4. A request the batch could not answer (errored, expired, canceled, or the job was refused)
   is marked failed; its message, when it comes back, makes the call online. A terminal
   error there dead-letters the message with its reason, as online.

Restarts: jobs, their provider ids and their requests are in Postgres, so a restarted service
polls the jobs it had sent and never sends a request twice. The one gap is a crash after the
provider created a job and before its id was stored: whoever holds a job's advisory lock is
working on it, so a `submitting` job with a free lock lost its sender. An OpenAI job is then
found again by the job id in its metadata; an Anthropic message batch carries no metadata, so
its requests are sent again (and may be paid twice: at most one job per such crash).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import BATCH_RECHECK_MAX_SECONDS, BatchMode, ModelConfig, StageBatches
from specstress.errors import InputError
from specstress.llm.batches import queue as db
from specstress.llm.batches.apis import (
    BATCH_APIS,
    BatchApi,
    Item,
    ItemResult,
    JobState,
    SubmitInDoubt,
)
from specstress.llm.errors import BatchPending, LLMError
from specstress.llm.ledger import AttemptRecord, find_completed
from specstress.llm.traffic.accounting import call_cost, observe, stored_answer
from specstress.llm.traffic.admission import Admission

__all__ = ["ABANDONED_AFTER_SECONDS", "IDLE_TICK_SECONDS", "BatchCoordinator"]

log = logging.getLogger(__name__)

# a job still being sent after this long is checked for a lost sender (its free advisory lock
# is the proof; the delay only spares the check on jobs that are being sent right now)
ABANDONED_AFTER_SECONDS = 5.0
# how often a stage without batch mode looks for jobs left from when it had it
IDLE_TICK_SECONDS = 5.0
_POLLS_PER_STEP = 16
_SETTLE_CHUNK = 500
# after a job could not be sent: wait base * 2**n seconds (capped) before the model's next one
_RETRY_BASE_SECONDS = 5.0
_RETRY_CAP_SECONDS = 300.0
# statuses that say the endpoint has no batch API at all
_NO_BATCH_API = frozenset({404, 405})


def _fitting(api: BatchApi, body_sizes: Sequence[int]) -> int:
    """How many requests of these body sizes, in order, fit in one job of the API."""
    size = 0
    for count, body in enumerate(body_sizes):
        size += body + api.item_overhead_bytes
        if size > api.max_bytes:
            return count
    return len(body_sizes)


class BatchCoordinator:
    """Queues a process's batch-mode requests; its `run` loop sends and polls the jobs of its
    own stage (every replica of the stage runs one; they share the work through Postgres)."""

    def __init__(
        self,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        admission: Admission,
        *,
        stage: str,
        settings: StageBatches,
        models: Sequence[ModelConfig],
    ) -> None:
        self._engine = engine
        self._http = http
        self._admission = admission
        self._stage = stage
        self._settings = settings
        self._models = {m.key: m for m in models}
        # per model: when its next job may be sent after failures, and how many in a row
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        # models whose endpoint turned out to have no batch API: called online from then on
        self._no_batch_api: set[str] = set()

    @property
    def _mode(self) -> BatchMode | None:
        return self._settings.for_stage(self._stage)

    def takes(self, model: ModelConfig, stage: str) -> bool:
        """Whether this call goes through a batch."""
        mode = self._settings.for_stage(stage)
        return (
            mode is not None
            and mode.enabled
            and model.batch_api
            and model.protocol in BATCH_APIS
            and model.key not in self._no_batch_api
        )

    async def wait_for(
        self,
        model: ModelConfig,
        stage: str,
        request_hash: str,
        body: Callable[[], dict[str, Any]],
    ) -> dict[str, Any] | None:
        """The stored answer once the batch brought it; None when the call must be made
        online; otherwise queue the request if it is new and raise BatchPending."""
        mode = self._settings.for_stage(stage)
        assert mode is not None, f"stage {stage} has no batch mode"
        state = await db.request_state(self._engine, request_hash)
        if state is None:
            state = await db.enqueue(
                self._engine,
                request_hash=request_hash,
                stage=stage,
                model_key=model.key,
                body=body(),
            )
            metrics.llm_batch_requests.labels(model.key, stage, "queued").inc()
        if state.status == "succeeded":
            return await find_completed(self._engine, request_hash)
        if state.status == "failed":
            return None
        if state.status == "pending":
            # back once the job is likely sent and polled once
            delay = max(mode.max_wait_seconds - state.age_seconds, 0.0) + mode.poll_seconds
            where = "waits to be sent in a batch"
        else:
            # a job takes minutes to hours: look again after half as long as it has waited,
            # so the answer is picked up at most half its waiting time late
            delay = max(mode.poll_seconds, state.age_seconds / 2)
            where = f"is in batch job {state.job_id}"
        raise BatchPending(
            min(delay, BATCH_RECHECK_MAX_SECONDS),
            f"{model.key}: the request {where} (queued {state.age_seconds:.0f} s ago)",
        )

    async def run(self) -> None:
        """Send, poll and collect this stage's jobs until cancelled."""
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("%s: batch step failed", self._stage)
            await asyncio.sleep(self._tick())

    async def step(self) -> None:
        """One round: settle jobs whose sender was lost, send due jobs, poll due jobs."""
        await self._recover_abandoned()
        await self._submit_due()
        await self._poll_due()

    def _tick(self) -> float:
        mode = self._mode
        if mode is None or not mode.enabled:
            return IDLE_TICK_SECONDS
        return min(max(min(mode.poll_seconds, mode.max_wait_seconds) / 2, 0.2), IDLE_TICK_SECONDS)

    # --- sending ----------------------------------------------------------------------------

    async def _submit_due(self) -> None:
        mode = self._mode
        if mode is None or not mode.enabled:
            return
        for queued in await db.queue(self._engine, self._stage):
            model = self._models.get(queued.model_key)
            if model is None or not self.takes(model, self._stage):
                await db.fail_pending(
                    self._engine,
                    self._stage,
                    queued.model_key,
                    "the model is not sent in batches any more; it is called online",
                )
                continue
            if time.monotonic() < self._retry_at.get(model.key, 0.0):
                continue
            full = min(mode.max_requests_per_batch, BATCH_APIS[model.protocol].max_requests)
            if queued.requests < full and queued.oldest_seconds < mode.max_wait_seconds:
                continue
            # full jobs while the queue fills them, then one for the rest
            while await self._submit(model, mode, full) >= full:
                pass

    async def _submit(self, model: ModelConfig, mode: BatchMode, limit: int) -> int:
        """Send one job of the model's oldest waiting requests; how many it took (0 when
        nothing was sent)."""
        api = BATCH_APIS[model.protocol]
        job_id = secrets.token_hex(16)
        async with db.job_lock(self._engine, job_id) as held:
            if not held:
                return 0
            claimed = await db.claim(
                self._engine,
                job_id=job_id,
                stage=self._stage,
                model_key=model.key,
                protocol=model.protocol,
                limit=limit,
                fitting=lambda sizes: _fitting(api, sizes),
            )
            if not claimed:
                return 0
            items = [Item(r.request_hash, r.body) for r in claimed]
            try:
                submitted = await api.submit(self._http, model, items, job_id)
            except SubmitInDoubt as exc:
                # left `submitting`: once this lock is gone, a later step looks the job up,
                # giving the provider a moment to show a job it created after all
                log.warning("%s/%s: job %s: %s", model.key, self._stage, job_id, exc)
                self._back_off(model)
                return 0
            except LLMError as exc:
                await self._refused(model, job_id, exc)
                return 0
            except InputError as exc:
                await db.release(self._engine, job_id, str(exc))
                self._back_off(model)
                log.error("%s/%s: cannot send a batch: %s", model.key, self._stage, exc)
                return 0
            await db.mark_submitted(
                self._engine,
                job_id,
                provider_batch_id=submitted.batch_id,
                input_file_id=submitted.input_file_id,
                poll_seconds=mode.poll_seconds,
            )
        self._failures.pop(model.key, None)
        metrics.llm_batch_jobs.labels(model.key, self._stage, "submitted").inc()
        log.info(
            "%s/%s: sent batch job %s with %d requests (provider id %s)",
            model.key,
            self._stage,
            job_id,
            len(claimed),
            submitted.batch_id,
        )
        return len(claimed)

    async def _refused(self, model: ModelConfig, job_id: str, error: LLMError) -> None:
        """The provider answered the job's creation with an error: the job does not exist."""
        stage = self._stage
        if error.error_class == "terminal_client":
            count = await db.fail(self._engine, job_id, f"the provider refused the batch: {error}")
            metrics.llm_batch_jobs.labels(model.key, stage, "failed").inc()
            if error.http_status in _NO_BATCH_API:
                self._no_batch_api.add(model.key)
            log.error(
                "%s/%s: the provider refused batch job %s (%s); its %d requests are called "
                "online%s",
                model.key,
                stage,
                job_id,
                error,
                count,
                " from now on: set batch_api: false for this model"
                if model.key in self._no_batch_api
                else "",
            )
            return
        await db.release(self._engine, job_id, str(error))
        metrics.llm_batch_jobs.labels(model.key, stage, "released").inc()
        self._back_off(model)
        if error.error_class == "terminal_quota":
            # the same account pays for online calls: pause it for the fleet
            await self._admission.pause(model, error)
        log.warning(
            "%s/%s: batch job %s not sent (%s); its requests wait for the next job",
            model.key,
            stage,
            job_id,
            error,
        )

    def _back_off(self, model: ModelConfig) -> None:
        failures = self._failures.get(model.key, 0) + 1
        self._failures[model.key] = failures
        wait = min(_RETRY_CAP_SECONDS, _RETRY_BASE_SECONDS * 2 ** (failures - 1))
        self._retry_at[model.key] = time.monotonic() + wait

    async def _settle_lost(self, model: ModelConfig, job_id: str, created_at: float) -> None:
        """A job whose creation may or may not have reached the provider (held under its
        lock): adopt it if the provider can find it, else send its requests again."""
        api = BATCH_APIS[model.protocol]
        try:
            found = await api.find(self._http, model, job_id, created_at)
        except (LLMError, InputError) as exc:
            log.warning("%s/%s: cannot look up job %s yet: %s", model.key, self._stage, job_id, exc)
            return
        mode = self._mode
        if found is not None:
            await db.mark_submitted(
                self._engine,
                job_id,
                provider_batch_id=found.batch_id,
                input_file_id=found.input_file_id,
                poll_seconds=mode.poll_seconds if mode else IDLE_TICK_SECONDS,
            )
            metrics.llm_batch_jobs.labels(model.key, self._stage, "recovered").inc()
            log.info("%s/%s: found job %s at the provider", model.key, self._stage, job_id)
            return
        reason = (
            "not created at the provider"
            if api.can_find
            else "its sender stopped before the provider confirmed it; it may exist there"
        )
        await db.release(self._engine, job_id, reason)
        metrics.llm_batch_jobs.labels(model.key, self._stage, "released").inc()
        log.warning(
            "%s/%s: job %s %s; its requests are sent again", model.key, self._stage, job_id, reason
        )

    async def _recover_abandoned(self) -> None:
        for job in await db.abandoned(self._engine, self._stage, ABANDONED_AFTER_SECONDS):
            async with db.job_lock(self._engine, job.job_id) as held:
                if not held or await db.job_status(self._engine, job.job_id) != "submitting":
                    continue  # its sender is still at it, or just finished
                model = self._models.get(job.model_key)
                if model is None:
                    await db.release(self._engine, job.job_id, "the model left the config")
                    continue
                await self._settle_lost(model, job.job_id, job.created_at.timestamp())

    # --- polling and collecting -------------------------------------------------------------

    async def _poll_due(self) -> None:
        mode = self._mode
        poll_seconds = mode.poll_seconds if mode is not None else IDLE_TICK_SECONDS
        for job_id in await db.due_polls(self._engine, self._stage, _POLLS_PER_STEP):
            async with db.job_lock(self._engine, job_id) as held:
                if not held:
                    continue  # another process is polling it
                job = await db.still_due(self._engine, job_id)
                if job is not None:
                    await self._poll(job, poll_seconds)

    async def _poll(self, job: db.Job, poll_seconds: float) -> None:
        model = self._models.get(job.model_key)
        if model is None or job.provider_batch_id is None:
            log.warning(
                "%s: job %s: model %s is not in the config", self._stage, job.job_id, job.model_key
            )
            await db.record_progress(self._engine, job.job_id, None, next_poll_seconds=poll_seconds)
            return
        api = BATCH_APIS[job.protocol]
        try:
            state = await api.status(self._http, model, job.provider_batch_id)
        except (LLMError, InputError) as exc:
            if isinstance(exc, LLMError) and exc.http_status == 404:
                await self._fail(job, model, f"the provider no longer knows the batch: {exc}")
                return
            log.warning("%s/%s: polling job %s failed: %s", model.key, self._stage, job.job_id, exc)
            await db.record_progress(self._engine, job.job_id, None, next_poll_seconds=poll_seconds)
            return
        await db.record_progress(
            self._engine, job.job_id, state.provider_status, next_poll_seconds=poll_seconds
        )
        if not state.ended:
            return
        if state.failure is not None:
            await self._fail(job, model, f"the provider failed the batch: {state.failure}")
            return
        try:
            await self._collect(job, model, api, state)
        except (LLMError, InputError) as exc:
            # what was stored stays; the next poll collects the rest
            log.warning(
                "%s/%s: collecting job %s stopped: %s", model.key, self._stage, job.job_id, exc
            )

    async def _fail(self, job: db.Job, model: ModelConfig, reason: str) -> None:
        count = await db.fail(self._engine, job.job_id, reason)
        metrics.llm_batch_jobs.labels(model.key, self._stage, "failed").inc()
        log.warning(
            "%s/%s: job %s: %s; its %d requests are called online",
            model.key,
            self._stage,
            job.job_id,
            reason,
            count,
        )

    async def _collect(
        self, job: db.Job, model: ModelConfig, api: BatchApi, state: JobState
    ) -> None:
        waiting = await db.unsettled(self._engine, job.job_id)
        chunk: list[ItemResult] = []
        async for item in api.results(self._http, model, state):
            if item.custom_id not in waiting:
                continue  # settled on an earlier pass, or not ours
            waiting.discard(item.custom_id)
            chunk.append(item)
            if len(chunk) >= _SETTLE_CHUNK:
                await self._store(job, model, chunk)
                chunk = []
        chunk += [
            ItemResult(
                request_hash,
                "errored",
                error="the batch's results hold no answer for this request",
                error_class="retryable",
            )
            for request_hash in waiting
        ]
        await self._store(job, model, chunk)
        await db.finish(self._engine, job.job_id, state.provider_status)
        metrics.llm_batch_jobs.labels(model.key, self._stage, "ended").inc()
        log.info("%s/%s: batch job %s ended", model.key, self._stage, job.job_id)

    async def _store(self, job: db.Job, model: ModelConfig, items: Sequence[ItemResult]) -> None:
        """Ledger rows and outcomes of a chunk of results: an answer at the batch price, or
        the batch's error (its message will make the call online)."""
        records = [(item.outcome, self._ledger_row(job, model, item)) for item in items]
        paid = await db.store_results(self._engine, job.job_id, records)
        stage = job.stage
        for item, (_, record) in zip(items, records, strict=True):
            metrics.llm_batch_requests.labels(model.key, stage, item.outcome).inc()
            if item.completion is None:
                observe(model.key, stage, f"batch_{item.outcome}")
            elif record.request_hash in paid:
                usage = item.completion.usage
                self._admission.paid(record.cost_usd, usage.input_tokens + usage.output_tokens)
                observe(model.key, stage, "batch", usage=usage, cost_usd=record.cost_usd)

    def _ledger_row(self, job: db.Job, model: ModelConfig, item: ItemResult) -> AttemptRecord:
        record = partial(
            AttemptRecord,
            request_hash=item.custom_id,
            stage=job.stage,
            model_key=model.key,
            attempt=1,
            latency_seconds=job.running_seconds,
        )
        completion = item.completion
        if item.outcome == "succeeded" and completion is not None:
            usage = completion.usage
            return record(
                status="ok",
                http_status=200,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost_usd=call_cost(model.prices, usage) * (1 - model.prices.batch_discount),
                response=stored_answer(completion),
            )
        return record(
            status="error",
            error_class=item.error_class or "retryable",
            error=f"batch {item.outcome}: {item.error or 'no detail'}",
            http_status=item.http_status,
        )
