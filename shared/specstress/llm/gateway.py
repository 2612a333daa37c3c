"""The LLM gateway: the only way services reach models.

A call is looked up in the ledger first and paid for only when no completed twin exists; a claim
on the request hash (`specstress.llm.claims`) makes identical calls, in one process or several,
wait for one another instead of paying twice. Concurrent calls share their round trips to
Postgres: lookups, claims and ledger rows each go as one statement for many calls. Around the HTTP exchange the gateway adds a per-model
concurrency cap, full-jitter retries that honour retry-after, error classes, a ledger row and
Prometheus observations for every attempt. Wire formats live in protocol adapters. A paid
answer whose ledger row cannot be written (Postgres away) is held, then spilled to a local
file, never thrown away (`specstress.llm.spill`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import Budget, LedgerSettings, ModelConfig, StageBatches, WatchProvider
from specstress.db.engine import database_unreachable
from specstress.errors import BadModelOutput
from specstress.llm import http
from specstress.llm.batches.coordinator import BatchCoordinator
from specstress.llm.claims import CallClaims
from specstress.llm.errors import LLMDeferred, LLMError
from specstress.llm.ledger import AttemptRecord, Ledger
from specstress.llm.messages import ChatMessage, ModelOutput, Usage, reask
from specstress.llm.protocol import (
    Completion,
    HttpRequest,
    ListedModel,
    MalformedResponseError,
    ModelPage,
    ProtocolAdapter,
)
from specstress.llm.providers import anthropic, gemini, openai
from specstress.llm.providers.anthropic import AnthropicMessages
from specstress.llm.providers.gemini import GeminiGenerate
from specstress.llm.providers.openai import OpenAIChat
from specstress.llm.retry import backoff_seconds, wait_to_retry
from specstress.llm.spill import PaidLedger
from specstress.llm.structured import OutputSchema
from specstress.llm.traffic.accounting import call_cost, observe, stored_answer
from specstress.llm.traffic.admission import Admission
from specstress.llm.traffic.limits import RateLimiter

__all__ = ["Gateway", "request_hash"]

T = TypeVar("T")

# The per-model semaphores are the real limit; this only keeps the shared pool from binding first.
_MAX_CONNECTIONS = 1000
_ADAPTERS: dict[str, ProtocolAdapter] = {
    "openai": OpenAIChat(),
    "anthropic": AnthropicMessages(),
    "gemini": GeminiGenerate(),
}

# each protocol's model listing: the request for a page (after a cursor) and the page it returns
_LISTINGS: dict[
    str,
    tuple[
        Callable[[str, SecretStr | None, str | None], HttpRequest],
        Callable[[Any], ModelPage],
    ],
] = {
    "openai": (openai.list_models_request, openai.parse_model_page),
    "anthropic": (anthropic.list_models_request, anthropic.parse_model_page),
    "gemini": (gemini.list_models_request, gemini.parse_model_page),
}
# states of shared prompt prefixes `request_hash` keeps (a spec per judge endpoint, say)
_SHARED_PREFIXES = 32
# a listing longer than this many pages is taken to be a provider that keeps sending cursors
MAX_LISTING_PAGES = 200
# what a listing's pacing is keyed by, beside the account's base URL and key
LISTING_MODEL_ID = "(model list)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Call:
    """One request that missed the cache, as it travels through retries and the ledger."""

    adapter: ProtocolAdapter
    model: ModelConfig
    messages: Sequence[ChatMessage]
    schema: OutputSchema | None
    stage: str
    digest: str


def request_hash(
    model: ModelConfig,
    messages: Sequence[ChatMessage],
    schema: OutputSchema | None = None,
) -> str:
    """The cache key of a call: everything that shapes the answer, nothing secret.

    The model key and the API key are left out on purpose: two keys naming the same endpoint
    share answers, and rotating a key must not invalidate the cache. So are cache marks, which
    change the price of a call, not its answer. Reasoning settings enter only when set, so the
    keys of calls without them stay what they were.

    The key is the SHA-256 of the fields as sorted, compact JSON. That text is hashed in three
    parts (what precedes the messages, the messages, what follows them), which is the same
    text: the messages' own key sorts between the base URL and every other field. Leading
    messages up to the last one marked for caching (the whole spec, for a judge) are hashed
    once per endpoint and reused (`_shared_prefix`), since escaping and hashing them again for
    every call was most of the key's cost.
    """
    after: dict[str, Any] = {
        "model_id": model.model_id,
        "params": model.params,
        "response_format": None if schema is None else schema.model_dump(),
        "protocol": model.protocol,
    }
    if model.reasoning is not None:
        after["reasoning"] = model.reasoning.model_dump()
    # '{"base_url":...,"messages":[' + the messages + '],"model_id":...}'
    head = '{"base_url":' + _canonical(model.base_url.rstrip("/")) + ',"messages":['
    tail = "]," + _canonical(after)[1:]
    shared = 1 + max((i for i, m in enumerate(messages) if m.cache), default=-1)
    if shared:
        digest = _shared_prefix(head, tuple(messages[:shared])).copy()
        rest = messages[shared:]
        if rest:
            digest.update(("," + _messages_json(rest)).encode())
    else:
        digest = hashlib.sha256(head.encode())
        digest.update(_messages_json(messages).encode())
    digest.update(tail.encode())
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    """The JSON text `request_hash` hashes: sorted keys, no spaces, characters as they are."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _messages_json(messages: Sequence[ChatMessage]) -> str:
    """The messages as `_canonical` writes the items of a list, without its brackets."""
    return ",".join(_canonical(m.model_dump(exclude={"cache"})) for m in messages)


@functools.lru_cache(maxsize=_SHARED_PREFIXES)
def _shared_prefix(head: str, messages: tuple[ChatMessage, ...]) -> hashlib._Hash:
    """The SHA-256 state after `head` and these messages; never updated (callers copy it).
    Equal messages (same role and content) make the same key, whichever objects they are."""
    return hashlib.sha256((head + _messages_json(messages)).encode())


class Gateway:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        service: str,
        budget: Budget | None = None,
        defer_seconds: float = 300.0,
        batch: StageBatches | None = None,
        models: Sequence[ModelConfig] = (),
        ledger: LedgerSettings | None = None,
        # HTTP connections open at once (a service derives it from bus.target_in_flight)
        max_connections: int = _MAX_CONNECTIONS,
    ) -> None:
        """`batch` turns on batch mode for the stages it enables (`models` are the configured
        models, whose jobs `batches.run()` sends and polls for the stage named `service`);
        `ledger` says where paid answers wait while Postgres is unreachable."""
        settings = ledger or LedgerSettings()
        self._ledger = Ledger(engine)
        self.paid = PaidLedger(
            engine, Path(settings.spill_dir) / f"{service}.jsonl", settings, ledger=self._ledger
        )
        self._claims = CallClaims(engine)
        self._limiter = RateLimiter(engine)
        self._admission = Admission(engine, budget or Budget(), defer_seconds)
        # httpx's own pool slows sharply under concurrency; aiohttp's transport holds up.
        self._http = httpx.AsyncClient(
            transport=AiohttpTransport(limits=httpx.Limits(max_connections=max_connections)),
            headers={"User-Agent": f"specstress-{service}"},
            event_hooks={"response": [self._limiter.on_response]},
        )
        # model calls skip httpx (`http.post_json`); opened in the loop that makes the first
        self._session: aiohttp.ClientSession | None = None
        self._max_connections = max_connections
        self._user_agent = f"specstress-{service}"
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._rng = random.Random()
        self.batches = (
            None
            if batch is None
            else BatchCoordinator(
                engine, self._http, self._admission, stage=service, settings=batch, models=models
            )
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._session is not None:
            await self._session.close()
        await self._claims.aclose()
        await self._ledger.aclose()
        await self._limiter.aclose()

    async def generate(
        self,
        model: ModelConfig,
        messages: Sequence[ChatMessage],
        *,
        stage: str,
        response_schema: OutputSchema | None = None,
    ) -> ModelOutput:
        """One answer, from the ledger when this exact request was answered before.

        `response_schema` asks for JSON of that shape through the protocol's native structured
        output, unless the model's config turns structured output off.

        Raises LLMError: "retryable" once the model's attempts are spent, "terminal_client"
        at once. Raises RetryLater (not a failure; `delay` says when to come back) when the call
        cannot be made now: LLMDeferred when the provider asks for a wait longer than the
        backoff cap, the rate-limit queue is longer than `limits.max_wait_seconds`, or the
        provider is paused for quota (class "terminal_quota"); BudgetExhausted when the run's
        budget is spent; BatchPending while the answer is coming through a batch job (stages
        in batch mode; once the batch has answered, the same call returns it from the ledger).
        """
        adapter = _ADAPTERS[model.protocol]
        schema = response_schema if model.structured_output else None
        digest = request_hash(model, messages, schema)
        # answers paid for during an outage go into the ledger before anything is bought
        await self.paid.replay()
        stored = await self._ledger.find_completed(digest)
        if stored is not None:
            observe(model.key, stage, "cached")
            return _output(model, digest, stored, from_cache=True, cost_usd=0.0)
        await self._admission.check(model)
        if self.batches is not None and self.batches.takes(model, stage):
            batched = await self.batches.wait_for(
                model,
                stage,
                digest,
                lambda: adapter.build_request(model, messages, schema, None).body,
            )
            if batched is not None:
                observe(model.key, stage, "cached")
                return _output(model, digest, batched, from_cache=True, cost_usd=0.0)
        async with self._slot(model), self._claims.hold(digest):
            # the holder we waited for may have been making this very call
            stored = await self._ledger.find_completed(digest)
            if stored is not None:
                observe(model.key, stage, "cached")
                return _output(model, digest, stored, from_cache=True, cost_usd=0.0)
            return await self._call(_Call(adapter, model, messages, schema, stage, digest))

    async def generate_parsed(
        self,
        model: ModelConfig,
        messages: Sequence[ChatMessage],
        *,
        stage: str,
        parse: Callable[[str], T],
        response_schema: OutputSchema | None = None,
        max_reasks: int = 2,
    ) -> tuple[T, ModelOutput]:
        """`parse(text)` of an answer; on BadModelOutput the model is shown its answer and the
        reason and asked again, up to `max_reasks` times, then LLMError("bad_output")."""
        conversation = list(messages)
        reasks = 0
        while True:
            output = await self.generate(
                model, conversation, stage=stage, response_schema=response_schema
            )
            try:
                return parse(output.text), output
            except BadModelOutput as exc:
                reason = str(exc)
                observe(model.key, stage, "bad_output")
                if reasks >= max_reasks:
                    raise LLMError(
                        "bad_output",
                        f"{model.key} answered out of format {reasks + 1} time(s); "
                        f"last reason: {reason}",
                    ) from exc
            reasks += 1
            conversation += [
                ChatMessage(role="assistant", content=output.text),
                ChatMessage(role="user", content=reask(reason)),
            ]

    async def list_models(self, account: WatchProvider) -> list[ListedModel]:
        """Every model a provider account lists, page after page, with the account's key,
        timeouts and retries, paced by the fleet-wide limits like any call (a listing is its
        own limit row). Raises LLMError when a page cannot be had."""
        build, parse = _LISTINGS[account.protocol]
        # the pacing and retry settings of the account, in the shape the limiter reads
        pacing = ModelConfig(
            key=account.key,
            family="watch",
            protocol=account.protocol,
            base_url=account.base_url,
            model_id=LISTING_MODEL_ID,
            api_key_env=account.api_key_env,
            limits=account.limits,
            timeouts=account.timeouts,
            retry=account.retry,
        )
        api_key = account.api_key()
        listed: list[ListedModel] = []
        cursor: str | None = None
        for _ in range(MAX_LISTING_PAGES):
            page = await self._listing_page(pacing, build(account.base_url, api_key, cursor), parse)
            listed += page.models
            if page.next_cursor is None or page.next_cursor == cursor:
                return listed
            cursor = page.next_cursor
        raise LLMError(
            "retryable", f"{account.key}: model list longer than {MAX_LISTING_PAGES} pages"
        )

    async def _listing_page(
        self, pacing: ModelConfig, request: HttpRequest, parse: Callable[[Any], ModelPage]
    ) -> ModelPage:
        adapter = _ADAPTERS[pacing.protocol]
        api_key = pacing.api_key()
        policy = pacing.retry
        attempt = 0
        while True:
            attempt += 1
            slot = await self._limiter.acquire(pacing, ())
            try:
                with self._limiter.watching(slot):
                    response = await http.send(
                        self._http,
                        "GET",
                        request.url,
                        headers=request.headers,
                        timeout=http.request_timeout(pacing.timeouts),
                        api_key=api_key,
                        what=f"model list of {pacing.key}",
                    )
                payload = http.json_body(response)
                status = response.status_code
                if not 200 <= status < 300:
                    raise http.reply_error(
                        response, adapter.parse_error(payload, response.text), api_key
                    )
                try:
                    page = parse(payload)
                except MalformedResponseError as exc:
                    message = http.scrub(str(exc), api_key)
                    raise LLMError("retryable", message, http_status=status) from None
            except LLMError as error:
                await self._limiter.settle(slot, error=error)
                if error.error_class != "retryable" or attempt >= policy.max_attempts:
                    raise
                if error.retry_after is not None and error.retry_after > policy.cap_seconds:
                    raise
                await asyncio.sleep(
                    backoff_seconds(attempt - 1, policy, self._rng, error.retry_after)
                )
            else:
                await self._limiter.settle(slot)
                return page

    def _slot(self, model: ModelConfig) -> asyncio.Semaphore:
        slot = self._slots.get(model.key)
        if slot is None:
            slot = self._slots[model.key] = asyncio.Semaphore(model.max_concurrency)
        return slot

    async def _call(self, call: _Call) -> ModelOutput:
        model = call.model
        policy = model.retry
        attempt = 0
        while True:
            attempt += 1
            pacing = await self._limiter.acquire(model, call.messages)
            started = time.perf_counter()
            try:
                with self._limiter.watching(pacing):
                    completion = await self._send(call)
            except LLMError as error:
                latency = time.perf_counter() - started
                await self._record_error(call, attempt, error, latency)
                await self._limiter.settle(pacing, error=error)
                if error.error_class == "terminal_quota":
                    raise await self._admission.pause(model, error) from error
                if error.error_class != "retryable":
                    raise
                if error.retry_after is not None and error.retry_after > policy.cap_seconds:
                    # A long wait is the caller's to take (nak with a delay), not ours to sleep
                    # through while holding a concurrency slot and the lock.
                    raise _provider_wait(model, error, error.retry_after) from error
                if attempt >= policy.max_attempts:
                    raise
                await wait_to_retry(f"{model.key}/{call.stage}", attempt, policy, self._rng, error)
            else:
                latency = time.perf_counter() - started
                # the answer is paid for: into the ledger first, whatever happens next
                output = await self._record_ok(call, attempt, completion, latency)
                try:
                    await self._limiter.settle(pacing, usage=completion.usage)
                except Exception as error:
                    if not database_unreachable(error):
                        raise
                    log.warning("%s: rate-limit row not updated: %s", model.key, error)
                return output

    async def _send(self, call: _Call) -> Completion:
        """One HTTP exchange: a Completion, or an LLMError of the right class."""
        model, adapter = call.model, call.adapter
        api_key = model.api_key()
        request = adapter.build_request(model, call.messages, call.schema, api_key)
        if self._session is None:
            self._session = http.open_session(self._max_connections, self._user_agent)
        response = await http.post_json(
            self._session,
            request.url,
            request.body,
            headers=request.headers,
            timeout=model.timeouts,
            api_key=api_key,
        )
        self._limiter.on_headers(response.headers)
        status = response.status_code
        payload = http.json_body(response)
        if 200 <= status < 300:
            if payload is None:
                raise LLMError(
                    "retryable", "success status with a non-JSON body", http_status=status
                )
            try:
                return adapter.parse_response(payload)
            except MalformedResponseError as exc:
                message = http.scrub(str(exc), api_key)
                raise LLMError("retryable", message, http_status=status) from None
        raise http.reply_error(response, adapter.parse_error(payload, response.text), api_key)

    async def _record_error(
        self, call: _Call, attempt: int, error: LLMError, latency: float
    ) -> None:
        await self._ledger.record(
            AttemptRecord(
                request_hash=call.digest,
                stage=call.stage,
                model_key=call.model.key,
                attempt=attempt,
                status="error",
                latency_seconds=latency,
                error_class=error.error_class,
                error=str(error),
                http_status=error.http_status,
            ),
        )
        observe(call.model.key, call.stage, error.error_class, latency=latency)

    async def _record_ok(
        self, call: _Call, attempt: int, completion: Completion, latency: float
    ) -> ModelOutput:
        model, stage, digest = call.model, call.stage, call.digest
        usage = completion.usage
        cost = call_cost(model.prices, usage)
        answer = stored_answer(completion)
        recorded = await self.paid.record(
            AttemptRecord(
                request_hash=digest,
                stage=stage,
                model_key=model.key,
                attempt=attempt,
                status="ok",
                latency_seconds=latency,
                http_status=200,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost_usd=cost,
                response=answer,
            ),
        )
        observe(model.key, stage, "ok", latency=latency, usage=usage, cost_usd=cost)
        if recorded:
            self._admission.paid(cost, usage.input_tokens + usage.output_tokens)
        else:
            # Only possible when a lock was lost mid-call (its connection dropped) and another
            # process finished the same request: serve the ledger's answer so all callers agree.
            log.warning("%s/%s: request %s was paid for twice", model.key, stage, digest)
            stored = await self._ledger.find_completed(digest)
            if stored is not None:
                answer = stored
        return _output(model, digest, answer, from_cache=False, cost_usd=cost)


def _provider_wait(model: ModelConfig, error: LLMError, wait: float) -> LLMDeferred:
    metrics.llm_deferred.labels(model.key, "provider_wait").inc()
    return LLMDeferred(
        error.error_class,
        str(error),
        delay=wait,
        cause="provider_wait",
        http_status=error.http_status,
        retry_after=wait,
    )


def _output(
    model: ModelConfig, digest: str, answer: dict[str, Any], *, from_cache: bool, cost_usd: float
) -> ModelOutput:
    return ModelOutput(
        model_key=model.key,
        text=answer["text"],
        thinking=answer["thinking"],
        usage=Usage.model_validate(answer["usage"]),
        request_hash=digest,
        from_cache=from_cache,
        cost_usd=cost_usd,
        finish_reason=answer["finish_reason"],
        cleaned=tuple(answer.get("cleaned", ())),
    )
