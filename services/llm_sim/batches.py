"""The simulator's batch endpoints: OpenAI files and batches, Anthropic message batches.

OpenAI: `POST /v1/files` (multipart, purpose `batch`), `GET /v1/files/{id}` and
`/v1/files/{id}/content`; `POST /v1/batches` (for `/v1/chat/completions`, window `24h`),
`GET /v1/batches/{id}` and `GET /v1/batches` (newest first, `limit` and `after`).
Anthropic: `POST /v1/messages/batches`, `GET /v1/messages/batches/{id}` and its `/results`.

Each item is answered by the same code as the online route of its protocol, so a batch gives
the same content and usage as the calls made one by one. The answers are fixed when the job
is created and shown once it has run for `batches.processing_seconds` (see `conditions`), so
clients have to poll; items error or expire at the configured rates, drawn from the seed and
the item's custom id, so a rerun fails the same items. Batch items skip the online routes'
rate limits, latency and faults, as real batch queues are separate from online traffic.

`GET /sim/batches` counts the jobs created per protocol and the custom ids sent in more than
one job, so a test can prove that a client never sent a request twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import BodyPartReader, web

from services.llm_sim.conditions import BatchConditions

# how a protocol's online route answers one request body
Answer = Callable[[web.Application, Any], web.Response]
OPENAI_ENDPOINT = "/v1/chat/completions"
WINDOW_SECONDS = 24 * 3600
MAX_UPLOAD_BYTES = 256_000_000
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SERVER_ERROR = "The server had an error while processing your request."
_EXPIRED = "This request could not be executed before the completion window expired."
Fate = Literal["answer", "errored", "expired"]


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _Job:
    """One batch of either protocol: its answers are ready at `ends_at`."""

    id: str
    protocol: Literal["openai", "anthropic"]
    created_at: float
    ends_at: float
    # result lines, in item order, and what each item came to
    results: list[dict[str, Any]] = field(default_factory=list)
    fates: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    failure: list[dict[str, Any]] | None = None

    def ended(self) -> bool:
        return time.time() >= self.ends_at


class BatchStore:
    def __init__(self, conditions: BatchConditions, seed: int, answers: dict[str, Answer]):
        self.conditions = conditions
        self.seed = seed
        self.answers = answers
        self.files: dict[str, _File] = {}
        self.jobs: dict[str, _Job] = {}
        self.created: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()

    def fate(self, custom_id: str) -> Fate:
        digest = hashlib.sha256(f"{self.seed}:batch:{custom_id}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw < self.conditions.errored:
            return "errored"
        if draw < self.conditions.errored + self.conditions.expired:
            return "expired"
        return "answer"

    def new_job(
        self,
        job_id: str,
        protocol: Literal["openai", "anthropic"],
        *,
        metadata: dict[str, Any] | None = None,
        input_file_id: str | None = None,
    ) -> _Job:
        """A job created now, whose answers are ready once the processing time has passed."""
        now = time.time()
        return _Job(
            id=job_id,
            protocol=protocol,
            created_at=now,
            ends_at=now + self.conditions.processing_seconds,
            metadata=metadata or {},
            input_file_id=input_file_id,
        )

    def add_job(self, job: _Job, custom_ids: list[str]) -> None:
        self.jobs[job.id] = job
        self.created[job.protocol] += 1
        self.items[job.protocol] += len(custom_ids)
        self.sent.update(custom_ids)

    def stats(self) -> dict[str, Any]:
        return {
            "simulator": True,
            "jobs_created": dict(sorted(self.created.items())),
            "items": dict(sorted(self.items.items())),
            "custom_ids_sent_twice": sum(1 for n in self.sent.values() if n > 1),
        }


BATCHES_KEY = web.AppKey("batches", BatchStore)


def _store(request: web.Request) -> BatchStore:
    return request.app[BATCHES_KEY]


def _openai_error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    }
    return web.json_response(body, status=status)


def _anthropic_error(status: int, kind: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status)


def _json_of(response: web.Response) -> Any:
    return json.loads(response.text or "null")


# --- OpenAI files ------------------------------------------------------------------------


async def _upload(request: web.Request) -> web.Response:
    if request.content_type != "multipart/form-data":
        return _openai_error(400, "Expected a multipart/form-data body.")
    reader = await request.multipart()
    purpose: str | None = None
    filename = "upload.jsonl"
    content: bytes | None = None
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await part.read()).decode()
        elif part.name == "file":
            filename = part.filename or filename
            content = bytes(await part.read())
    if content is None:
        return _openai_error(400, "Missing required parameter: 'file'.", "file")
    if purpose != "batch":
        return _openai_error(400, "This simulator takes files for purpose 'batch' only.", "purpose")
    stored = _File(f"file-sim-{uuid.uuid4().hex}", filename, purpose, content, int(time.time()))
    _store(request).files[stored.id] = stored
    return web.json_response(stored.view())


def _file(request: web.Request) -> _File | web.Response:
    found = _store(request).files.get(request.match_info["file_id"])
    if found is None:
        return _openai_error(404, f"No such File object: {request.match_info['file_id']}", "id")
    return found


async def _file_info(request: web.Request) -> web.Response:
    found = _file(request)
    return found if isinstance(found, web.Response) else web.json_response(found.view())


async def _file_content(request: web.Request) -> web.Response:
    found = _file(request)
    if isinstance(found, web.Response):
        return found
    return web.Response(body=found.content, content_type="application/octet-stream")


# --- OpenAI batches ------------------------------------------------------------------------


def _openai_lines(content: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The file's request lines, and validation errors the way the Batch API lists them."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.decode(errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        problem = None
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            problem = ("invalid_json_line", "This line is not a JSON object with a `body`.")
        elif not isinstance(line.get("custom_id"), str) or line["custom_id"] in seen:
            problem = ("duplicate_custom_id", "The custom_id is missing or used twice.")
        elif line.get("method") != "POST" or line.get("url") != OPENAI_ENDPOINT:
            problem = ("invalid_url", f"Each line must POST to {OPENAI_ENDPOINT}.")
        if problem is not None:
            errors.append(
                {"code": problem[0], "message": problem[1], "param": None, "line": number}
            )
            continue
        assert isinstance(line, dict)
        seen.add(line["custom_id"])
        lines.append(line)
    if not lines and not errors:
        errors.append({"code": "empty_file", "message": "The file has no requests.", "line": None})
    return lines, errors


def _openai_result(
    app: web.Application, store: BatchStore, line: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    custom_id: str = line["custom_id"]
    record: dict[str, Any] = {"id": f"batch_req_sim_{uuid.uuid4().hex}", "custom_id": custom_id}
    fate = store.fate(custom_id)
    if fate == "expired":
        return "expired", {
            **record,
            "response": None,
            "error": {"code": "batch_expired", "message": _EXPIRED},
        }
    if fate == "errored":
        status, body = (
            500,
            {
                "error": {
                    "message": _SERVER_ERROR,
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
        )
    else:
        response = store.answers["openai"](app, line["body"])
        status, body = response.status, _json_of(response)
    request_id = f"req_sim_{uuid.uuid4().hex}"
    record["response"] = {"status_code": status, "request_id": request_id, "body": body}
    record["error"] = None
    return ("completed" if status == 200 else "failed"), record


async def _create_batch(request: web.Request) -> web.Response:
    store = _store(request)
    try:
        body = json.loads(await request.text())
    except ValueError:
        return _openai_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _openai_error(400, "The request body must be a JSON object.")
    if body.get("endpoint") != OPENAI_ENDPOINT:
        return _openai_error(400, f"This simulator batches {OPENAI_ENDPOINT} only.", "endpoint")
    if body.get("completion_window") != "24h":
        return _openai_error(400, "completion_window must be '24h'.", "completion_window")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        return _openai_error(400, "metadata must be an object.", "metadata")
    source = store.files.get(str(body.get("input_file_id")))
    if source is None or source.purpose != "batch":
        return _openai_error(
            400, "input_file_id names no file for purpose 'batch'.", "input_file_id"
        )
    lines, errors = _openai_lines(source.content)
    job = store.new_job(
        f"batch_sim_{uuid.uuid4().hex}", "openai", metadata=metadata, input_file_id=source.id
    )
    if errors:
        job.failure = errors
        job.ends_at = job.created_at
    else:
        for line in lines:
            fate, record = _openai_result(request.app, store, line)
            job.fates.append(fate)
            job.results.append(record)
        _write_openai_files(store, job)
    store.add_job(job, [line["custom_id"] for line in lines])
    return web.json_response(_openai_view(job, fresh=True))


def _write_openai_files(store: BatchStore, job: _Job) -> None:
    """The output and error files, stored now and named in the job once it has ended."""
    for name, fates in (("output", {"completed"}), ("errors", {"failed", "expired"})):
        records = [r for r, f in zip(job.results, job.fates, strict=True) if f in fates]
        if not records:
            continue
        content = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        stored = _File(
            f"file-sim-{uuid.uuid4().hex}",
            f"{job.id}_{name}.jsonl",
            "batch_output",
            content,
            int(job.ends_at),
        )
        store.files[stored.id] = stored
        if name == "output":
            job.output_file_id = stored.id
        else:
            job.error_file_id = stored.id


def _openai_view(job: _Job, *, fresh: bool = False) -> dict[str, Any]:
    ended = job.ended()
    created, ends = int(job.created_at), int(job.ends_at)
    expired = ended and "expired" in job.fates
    if job.failure is not None:
        status = "failed"
    elif fresh:
        status = "validating"
    elif not ended:
        status = "in_progress"
    else:
        status = "expired" if expired else "completed"
    done = ended and job.failure is None
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": OPENAI_ENDPOINT,
        "errors": None if job.failure is None else {"object": "list", "data": job.failure},
        "input_file_id": job.input_file_id,
        "completion_window": "24h",
        "status": status,
        "output_file_id": job.output_file_id if done else None,
        "error_file_id": job.error_file_id if done else None,
        "created_at": created,
        "in_progress_at": created if job.failure is None else None,
        "expires_at": created + WINDOW_SECONDS,
        "finalizing_at": ends if done else None,
        "completed_at": ends if done and not expired else None,
        "failed_at": created if job.failure is not None else None,
        "expired_at": ends if expired else None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {
            "total": len(job.fates),
            "completed": job.fates.count("completed") if done else 0,
            "failed": len(job.fates) - job.fates.count("completed") if done else 0,
        },
        "metadata": job.metadata,
    }


async def _get_batch(request: web.Request) -> web.Response:
    job = _store(request).jobs.get(request.match_info["batch_id"])
    if job is None or job.protocol != "openai":
        return _openai_error(404, f"No batch found with id '{request.match_info['batch_id']}'.")
    return web.json_response(_openai_view(job))


async def _list_batches(request: web.Request) -> web.Response:
    try:
        limit = min(max(int(request.query.get("limit", "20")), 1), 100)
    except ValueError:
        return _openai_error(400, "limit must be an integer.", "limit")
    jobs = sorted(
        (j for j in _store(request).jobs.values() if j.protocol == "openai"),
        key=lambda j: j.created_at,
        reverse=True,
    )
    after = request.query.get("after")
    if after is not None:
        ids = [j.id for j in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    page = jobs[:limit]
    return web.json_response(
        {
            "object": "list",
            "data": [_openai_view(j) for j in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(jobs) > limit,
        }
    )


# --- Anthropic message batches ------------------------------------------------------------


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _anthropic_result(
    app: web.Application, store: BatchStore, custom_id: str, params: Any
) -> tuple[str, dict[str, Any]]:
    fate = store.fate(custom_id)
    if fate == "expired":
        return "expired", {"type": "expired"}
    if fate == "errored":
        error = {
            "type": "error",
            "error": {"type": "api_error", "message": "Internal server error"},
        }
        return "errored", {"type": "errored", "error": error}
    response = store.answers["anthropic"](app, params)
    body = _json_of(response)
    if response.status != 200:
        return "errored", {"type": "errored", "error": body}
    return "succeeded", {"type": "succeeded", "message": body}


async def _create_message_batch(request: web.Request) -> web.Response:
    if not request.headers.get("anthropic-version"):
        return _anthropic_error(
            400, "invalid_request_error", "anthropic-version: header is required"
        )
    store = _store(request)
    try:
        body = json.loads(await request.text())
    except ValueError:
        return _anthropic_error(400, "invalid_request_error", "The request body is not valid JSON.")
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return _anthropic_error(
            400, "invalid_request_error", "requests: at least one request is required"
        )
    seen: set[str] = set()
    for index, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            return _anthropic_error(
                400,
                "invalid_request_error",
                f"requests.{index}.custom_id: must match {_CUSTOM_ID.pattern}",
            )
        if custom_id in seen:
            return _anthropic_error(
                400,
                "invalid_request_error",
                f"requests.{index}.custom_id: {custom_id!r} is used twice",
            )
        if not isinstance(item.get("params"), dict):
            return _anthropic_error(
                400, "invalid_request_error", f"requests.{index}.params: Field required"
            )
        seen.add(custom_id)
    job = store.new_job(f"msgbatch_sim_{uuid.uuid4().hex[:24]}", "anthropic")
    for item in requests:
        fate, result = _anthropic_result(request.app, store, item["custom_id"], item["params"])
        job.fates.append(fate)
        job.results.append({"custom_id": item["custom_id"], "result": result})
    store.add_job(job, [item["custom_id"] for item in requests])
    return web.json_response(_anthropic_view(request, job))


def _anthropic_view(request: web.Request, job: _Job) -> dict[str, Any]:
    ended = job.ended()
    counts = Counter(job.fates) if ended else Counter()
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": "ended" if ended else "in_progress",
        "request_counts": {
            "processing": 0 if ended else len(job.fates),
            "succeeded": counts["succeeded"],
            "errored": counts["errored"],
            "canceled": 0,
            "expired": counts["expired"],
        },
        "ended_at": _iso(job.ends_at) if ended else None,
        "created_at": _iso(job.created_at),
        "expires_at": _iso(job.created_at + WINDOW_SECONDS),
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": f"{request.url.origin()}/v1/messages/batches/{job.id}/results"
        if ended
        else None,
    }


def _message_batch(request: web.Request) -> _Job | web.Response:
    job = _store(request).jobs.get(request.match_info["batch_id"])
    if job is None or job.protocol != "anthropic":
        return _anthropic_error(
            404, "not_found_error", f"message batch {request.match_info['batch_id']} not found"
        )
    return job


async def _get_message_batch(request: web.Request) -> web.Response:
    job = _message_batch(request)
    if isinstance(job, web.Response):
        return job
    return web.json_response(_anthropic_view(request, job))


async def _message_batch_results(request: web.Request) -> web.Response:
    job = _message_batch(request)
    if isinstance(job, web.Response):
        return job
    if not job.ended():
        return _anthropic_error(
            400, "invalid_request_error", f"message batch {job.id} has not ended yet"
        )
    content = b"".join(json.dumps(r).encode() + b"\n" for r in job.results)
    return web.Response(body=content, content_type="application/binary")


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(_store(request).stats())


def add_routes(
    app: web.Application, conditions: BatchConditions, seed: int, answers: dict[str, Answer]
) -> None:
    """Serve the batch endpoints; `answers` maps "openai" and "anthropic" to the functions
    their online routes answer a request body with."""
    app[BATCHES_KEY] = BatchStore(conditions, seed, answers)
    app.router.add_post("/v1/files", _upload)
    app.router.add_get("/v1/files/{file_id}", _file_info)
    app.router.add_get("/v1/files/{file_id}/content", _file_content)
    app.router.add_post("/v1/batches", _create_batch)
    app.router.add_get("/v1/batches", _list_batches)
    app.router.add_get("/v1/batches/{batch_id}", _get_batch)
    app.router.add_post("/v1/messages/batches", _create_message_batch)
    app.router.add_get("/v1/messages/batches/{batch_id}", _get_message_batch)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", _message_batch_results)
    app.router.add_get("/sim/batches", _stats)
