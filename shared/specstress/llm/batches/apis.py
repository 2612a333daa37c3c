"""The two batch APIs on the wire: OpenAI Batch and Anthropic Message Batches.

Each item of a job is the request body the protocol's online adapter builds, under the custom
id the coordinator gives it (the gateway's request hash), and each result is read back with
that same adapter, so a batch answer is exactly what the online call would have returned.

- OpenAI: the items are uploaded as a JSONL file (`POST /files`, purpose `batch`), the job is
  `POST /batches` for `/v1/chat/completions` with a 24 h window and the coordinator's job id
  in its metadata (so a job whose creation was cut off can be found again), polled with
  `GET /batches/{id}`; the answers and the per-item errors are the JSONL files
  `output_file_id` and `error_file_id`.
- Anthropic: `POST /v1/messages/batches` with `requests: [{custom_id, params}]`, polled with
  `GET /v1/messages/batches/{id}` until `processing_status` is `ended`; the results are JSONL at
  `results_url`, each `succeeded`, `errored`, `canceled` or `expired`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp
import httpx
from pydantic import SecretStr

from specstress.config import ModelConfig
from specstress.llm import http as provider_http
from specstress.llm.errors import ErrorClass, LLMError
from specstress.llm.protocol import Completion, MalformedResponseError, ProtocolAdapter
from specstress.llm.providers.anthropic import AnthropicMessages, messages_url
from specstress.llm.providers.openai import OpenAIChat
from specstress.llm.retry import classify

__all__ = [
    "BATCH_APIS",
    "OPENAI_ENDPOINT",
    "AnthropicBatches",
    "BatchApi",
    "Item",
    "ItemResult",
    "JobState",
    "OpenAIBatches",
    "Outcome",
    "SubmitInDoubt",
    "Submitted",
]

Outcome = Literal["succeeded", "errored", "expired", "canceled"]
OPENAI_ENDPOINT = "/v1/chat/completions"
# how far back the job list is searched for a job whose creation was cut off
_FIND_WINDOW_SECONDS = 3600.0
_FIND_PAGE = 100
_MAX_ERROR_CHARS = 1000
# Anthropic error types that say the request itself is wrong; the others are worth a retry
_CLIENT_ERROR_TYPES = frozenset(
    {"invalid_request_error", "authentication_error", "permission_error", "not_found_error"}
)


class SubmitInDoubt(Exception):
    """The create call was sent but no answer came back: the job may exist at the provider."""


@dataclass(frozen=True)
class Submitted:
    batch_id: str
    input_file_id: str | None = None


@dataclass(frozen=True)
class JobState:
    provider_status: str
    ended: bool
    # the job as a whole failed (OpenAI's validation): no item was answered
    failure: str | None = None
    # where the results are: OpenAI's output and error files, Anthropic's results_url
    result_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemResult:
    custom_id: str
    outcome: Outcome
    completion: Completion | None = None
    error: str | None = None
    error_class: ErrorClass | None = None
    http_status: int | None = None


@dataclass(frozen=True)
class Item:
    custom_id: str
    body: dict[str, Any]


class BatchApi(Protocol):
    # the most a job may hold, in requests and in bytes, and the bytes an item adds to the
    # size of its request body (custom id and envelope)
    max_requests: int
    max_bytes: int
    item_overhead_bytes: int
    # whether a job can be found again from the id it was created with
    can_find: bool

    async def submit(
        self, http: httpx.AsyncClient, model: ModelConfig, items: Sequence[Item], job_id: str
    ) -> Submitted:
        """Raises LLMError when the provider refused the job (it does not exist),
        SubmitInDoubt when the job may exist but its id is unknown."""
        ...

    async def status(
        self, http: httpx.AsyncClient, model: ModelConfig, batch_id: str
    ) -> JobState: ...

    def results(
        self, http: httpx.AsyncClient, model: ModelConfig, state: JobState
    ) -> AsyncIterator[ItemResult]: ...

    async def find(
        self, http: httpx.AsyncClient, model: ModelConfig, job_id: str, created_at: float
    ) -> Submitted | None:
        """The job created with `job_id` around `created_at` (seconds since the epoch); None
        when the provider has none, or cannot tell (`can_find` false)."""
        ...


def _raise_for_error(
    response: httpx.Response, adapter: ProtocolAdapter, api_key: SecretStr | None, what: str
) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    error = adapter.parse_error(provider_http.json_body(response), response.text)
    raise LLMError(
        classify(status, error),
        provider_http.scrub(f"{what}: {error.message or f'HTTP {status}'}", api_key),
        http_status=status,
    )


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise LLMError("retryable", f"{what}: the answer is not a JSON object", http_status=200)
    return payload


async def _exchange(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    model: ModelConfig,
    adapter: ProtocolAdapter,
    what: str,
    **kwargs: Any,
) -> dict[str, Any]:
    """The JSON object the batch API answers; LLMError when it refuses or says nothing usable."""
    api_key = model.api_key()
    response = await provider_http.send(
        http,
        method,
        url,
        headers=adapter.api_headers(api_key),
        timeout=provider_http.request_timeout(model.timeouts),
        api_key=api_key,
        what=what,
        **kwargs,
    )
    _raise_for_error(response, adapter, api_key, what)
    return _json(response, what)


async def _create(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    model: ModelConfig,
    adapter: ProtocolAdapter,
    what: str,
) -> str:
    """The id of the job the provider created. Sent once, never retried: when the answer is
    lost the job may exist all the same, which SubmitInDoubt tells the caller."""
    api_key = model.api_key()
    try:
        created = await http.post(
            url,
            headers=adapter.api_headers(api_key),
            json=body,
            timeout=provider_http.request_timeout(model.timeouts),
        )
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        raise SubmitInDoubt(f"{what}: {type(exc).__name__}") from None
    _raise_for_error(created, adapter, api_key, what)
    batch_id = _json(created, what).get("id")
    if not isinstance(batch_id, str):
        raise SubmitInDoubt(f"{what}: the answer has no batch id")
    return batch_id


async def _jsonl(
    http: httpx.AsyncClient,
    url: str,
    *,
    model: ModelConfig,
    adapter: ProtocolAdapter,
    what: str,
) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a JSONL download, read line by line (results can be large)."""
    api_key = model.api_key()
    headers = adapter.api_headers(api_key)
    try:
        async with http.stream(
            "GET", url, headers=headers, timeout=provider_http.request_timeout(model.timeouts)
        ) as response:
            if response.status_code >= 300:
                await response.aread()
                _raise_for_error(response, adapter, api_key, what)
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise LLMError("retryable", f"{what}: a line is not JSON") from None
                if isinstance(record, dict):
                    yield record
    except httpx.TimeoutException as exc:
        raise LLMError("retryable", f"{what}: no answer in time ({type(exc).__name__})") from None
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        raise LLMError("retryable", f"{what}: connection failed: {type(exc).__name__}") from None


def _completion(adapter: ProtocolAdapter, custom_id: str, body: Any) -> ItemResult:
    try:
        completion = adapter.parse_response(body)
    except MalformedResponseError as exc:
        return ItemResult(custom_id, "errored", error=str(exc), error_class="retryable")
    return ItemResult(custom_id, "succeeded", completion=completion, http_status=200)


class OpenAIBatches:
    """OpenAI Batch API (and servers that copy it) for chat completions."""

    max_requests = 50_000
    max_bytes = 200_000_000
    item_overhead_bytes = 200
    can_find = True
    _adapter = OpenAIChat()

    def _line(self, item: Item) -> bytes:
        record = {
            "custom_id": item.custom_id,
            "method": "POST",
            "url": OPENAI_ENDPOINT,
            "body": item.body,
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def _url(self, model: ModelConfig, path: str) -> str:
        return f"{model.base_url.rstrip('/')}/{path}"

    async def submit(
        self, http: httpx.AsyncClient, model: ModelConfig, items: Sequence[Item], job_id: str
    ) -> Submitted:
        content = b"".join(self._line(item) for item in items)
        upload = await _exchange(
            http,
            "POST",
            self._url(model, "files"),
            model=model,
            adapter=self._adapter,
            what="batch input upload",
            data={"purpose": "batch"},
            files={"file": (f"specstress-{job_id}.jsonl", content, "application/jsonl")},
        )
        file_id = upload.get("id")
        if not isinstance(file_id, str):
            raise LLMError("retryable", "batch input upload: the answer has no file id")
        job = {
            "input_file_id": file_id,
            "endpoint": OPENAI_ENDPOINT,
            "completion_window": "24h",
            "metadata": {"specstress_job": job_id},
        }
        batch_id = await _create(
            http,
            self._url(model, "batches"),
            job,
            model=model,
            adapter=self._adapter,
            what="batch creation",
        )
        return Submitted(batch_id, file_id)

    async def status(self, http: httpx.AsyncClient, model: ModelConfig, batch_id: str) -> JobState:
        batch = await _exchange(
            http,
            "GET",
            self._url(model, f"batches/{batch_id}"),
            model=model,
            adapter=self._adapter,
            what="batch status",
        )
        status = str(batch.get("status") or "unknown")
        ended = status in ("completed", "failed", "expired", "cancelled")
        failure = None
        if status == "failed":
            errors = (batch.get("errors") or {}).get("data") or []
            messages = [str(e.get("message")) for e in errors if isinstance(e, dict)]
            failure = "; ".join(messages)[:_MAX_ERROR_CHARS] or "the provider failed the batch"
        sources = tuple(
            str(batch[key]) for key in ("output_file_id", "error_file_id") if batch.get(key)
        )
        return JobState(status, ended, failure, sources)

    async def results(
        self, http: httpx.AsyncClient, model: ModelConfig, state: JobState
    ) -> AsyncIterator[ItemResult]:
        for file_id in state.result_sources:
            url = self._url(model, f"files/{file_id}/content")
            async for record in _jsonl(
                http, url, model=model, adapter=self._adapter, what="batch results"
            ):
                custom_id = record.get("custom_id")
                if isinstance(custom_id, str):
                    yield self._item(custom_id, record)

    def _item(self, custom_id: str, record: dict[str, Any]) -> ItemResult:
        response = record.get("response")
        error = record.get("error")
        if isinstance(response, dict) and response.get("status_code") == 200:
            return _completion(self._adapter, custom_id, response.get("body"))
        if isinstance(response, dict):
            status = response.get("status_code")
            status = status if isinstance(status, int) else 500
            provider_error = self._adapter.parse_error(response.get("body"), "")
            return ItemResult(
                custom_id,
                "errored",
                error=provider_error.message or f"HTTP {status}",
                error_class=classify(status, provider_error),
                http_status=status,
            )
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        message = str(error.get("message") or code) if isinstance(error, dict) else ""
        if code == "batch_expired":
            return ItemResult(custom_id, "expired", error=message, error_class="retryable")
        if code == "batch_cancelled":
            return ItemResult(custom_id, "canceled", error=message, error_class="retryable")
        return ItemResult(
            custom_id, "errored", error=message or "no answer", error_class="retryable"
        )

    async def find(
        self, http: httpx.AsyncClient, model: ModelConfig, job_id: str, created_at: float
    ) -> Submitted | None:
        oldest = created_at - _FIND_WINDOW_SECONDS
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": _FIND_PAGE}
            if after is not None:
                params["after"] = after
            page = await _exchange(
                http,
                "GET",
                self._url(model, "batches"),
                model=model,
                adapter=self._adapter,
                what="batch list",
                params=params,
            )
            batches = [b for b in page.get("data") or [] if isinstance(b, dict)]
            for batch in batches:
                if (batch.get("metadata") or {}).get("specstress_job") == job_id:
                    return Submitted(str(batch["id"]), batch.get("input_file_id"))
            # the list is newest first: stop once it is older than the job
            if not batches or not page.get("has_more"):
                return None
            if float(batches[-1].get("created_at") or 0) < oldest:
                return None
            after = str(batches[-1]["id"])


class AnthropicBatches:
    """Anthropic Message Batches."""

    max_requests = 100_000
    max_bytes = 256_000_000
    item_overhead_bytes = 120
    can_find = False
    _adapter = AnthropicMessages()

    def _url(self, model: ModelConfig, suffix: str = "") -> str:
        return f"{messages_url(model.base_url)}/batches{suffix}"

    async def submit(
        self, http: httpx.AsyncClient, model: ModelConfig, items: Sequence[Item], job_id: str
    ) -> Submitted:
        body = {"requests": [{"custom_id": i.custom_id, "params": i.body} for i in items]}
        batch_id = await _create(
            http,
            self._url(model),
            body,
            model=model,
            adapter=self._adapter,
            what="message batch creation",
        )
        return Submitted(batch_id)

    async def status(self, http: httpx.AsyncClient, model: ModelConfig, batch_id: str) -> JobState:
        batch = await _exchange(
            http,
            "GET",
            self._url(model, f"/{batch_id}"),
            model=model,
            adapter=self._adapter,
            what="message batch status",
        )
        status = str(batch.get("processing_status") or "unknown")
        results_url = batch.get("results_url")
        sources = (str(results_url),) if results_url else ()
        return JobState(status, status == "ended", None, sources)

    async def results(
        self, http: httpx.AsyncClient, model: ModelConfig, state: JobState
    ) -> AsyncIterator[ItemResult]:
        for url in state.result_sources:
            async for record in _jsonl(
                http, url, model=model, adapter=self._adapter, what="message batch results"
            ):
                custom_id = record.get("custom_id")
                result = record.get("result")
                if isinstance(custom_id, str) and isinstance(result, dict):
                    yield self._item(custom_id, result)

    def _item(self, custom_id: str, result: dict[str, Any]) -> ItemResult:
        kind = result.get("type")
        if kind == "succeeded":
            return _completion(self._adapter, custom_id, result.get("message"))
        if kind in ("expired", "canceled"):
            outcome: Outcome = "expired" if kind == "expired" else "canceled"
            return ItemResult(
                custom_id, outcome, error=f"the batch {kind} this request", error_class="retryable"
            )
        provider_error = self._adapter.parse_error(result.get("error"), "")
        error_class = provider_error.error_class or (
            "terminal_client" if set(provider_error.codes) & _CLIENT_ERROR_TYPES else "retryable"
        )
        return ItemResult(
            custom_id,
            "errored",
            error=provider_error.message or "errored without a message",
            error_class=error_class,
        )

    async def find(
        self, http: httpx.AsyncClient, model: ModelConfig, job_id: str, created_at: float
    ) -> Submitted | None:
        # Message batches carry no metadata of ours, so a cut-off creation cannot be told
        # apart from other jobs of the same account.
        return None


BATCH_APIS: dict[str, BatchApi] = {"openai": OpenAIBatches(), "anthropic": AnthropicBatches()}
