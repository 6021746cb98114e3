"""The Batch API over HTTP: create, get, list, cancel and delete batch jobs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from offline_gemini.batches import (
    MAX_INLINE_BATCH_BYTES,
    BatchEntry,
    BatchJob,
    error_result,
    new_batch_id,
    parse_jsonl,
    results_jsonl,
)
from offline_gemini.clock import Clock
from offline_gemini.faults import Fault
from offline_gemini.files import FileStore, not_found
from offline_gemini.models import model_id, resolve_model
from offline_gemini.wire import ApiError, camelize_keys, invalid, load_json

_CREATE = re.compile(r"^/(v1|v1beta)/models/(.+?):batchGenerateContent$")
_BATCHES = re.compile(r"^/(v1|v1beta)/batches$")
_BATCH = re.compile(r"^/(v1|v1beta)/batches/([^/:]+)(:cancel)?$")
_DEFAULT_PAGE = 10
_MAX_PAGE = 100

AnswerOne = Callable[[Any, str, Fault | None], Awaitable[dict[str, Any]]]


class BatchApi:
    """Answers the Batch API's paths; other paths are left to the caller.

    Args:
        files: the Files API's store (JSONL inputs, results files).
        clock: the time batches move on.
        check_key: raises ApiError unless the request carries an accepted API key.
        answer_one: the response body for one request body, model and answer fault;
            raises ApiError.

    Attributes:
        faults_by_key: answer faults (``Fault("block")``, ``Fault("finish", reason=…)``,
            ``Fault("status", code=…)`` for a failed line) for the requests whose key
            (JSONL) or ``metadata.key`` (inline) is given; each is used once.
    """

    def __init__(self, files: FileStore, clock: Clock, check_key: Callable[[web.Request], None],
                 answer_one: AnswerOne) -> None:
        self.files = files
        self.clock = clock
        self.turnaround = timedelta(minutes=10)
        self.jobs: dict[str, BatchJob] = {}
        self.faults_by_key: dict[str, Fault] = {}
        self._check_key = check_key
        self._answer_one = answer_one

    def owns(self, path: str) -> bool:
        """True for the paths this API answers."""
        return any(p.match(path) for p in (_CREATE, _BATCHES, _BATCH))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one Batch API request. Raises ApiError."""
        self._check_key(request)
        path, method = request.path, request.method
        if (match := _CREATE.match(path)) and method == "POST":
            return web.json_response(await self._create(request, match.group(1), match.group(2)))
        if _BATCHES.match(path) and method == "GET":
            return await self._list(request)
        match = _BATCH.match(path)
        if match is None:
            raise ApiError(404, f"Method not found: {method} {path}")
        job, cancel = self._job(match.group(2)), bool(match.group(3))
        if cancel and method == "POST":
            if job.ended(self.clock.now()) is None:
                job.cancelled = self.clock.now()
            return web.json_response({})
        if not cancel and method == "GET":
            return web.json_response(await self._operation(job))
        if not cancel and method == "DELETE":
            del self.jobs[job.batch_id]
            return web.json_response({})
        raise ApiError(404, f"Method not found: {method} {path}")

    async def _create(self, request: web.Request, version: str, model_path: str) -> dict[str, Any]:
        model = model_id(model_path)
        if resolve_model(model) is None:
            raise ApiError(404, f"models/{model} is not found for API version {version}, or is "
                                "not supported for batchGenerateContent.")
        raw = await request.read()
        body = camelize_keys(load_json(raw))
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise invalid("* BatchGenerateContentRequest.batch: batch is required\n")
        entries, input_file = self._inputs(batch.get("inputConfig"), len(raw))
        job = BatchJob(new_batch_id(), model, batch.get("displayName"), entries, input_file,
                       self.clock.now(), self.turnaround)
        self.jobs[job.batch_id] = job
        return await self._operation(job)

    def _inputs(self, config: Any, size: int) -> tuple[list[BatchEntry], str | None]:
        config = config if isinstance(config, dict) else {}
        inline = (config.get("requests") or {}).get("requests") if isinstance(
            config.get("requests"), dict) else None
        file_name = config.get("fileName")
        if (inline is None) == (file_name is None):
            raise invalid("* BatchGenerateContentRequest.batch.input_config: exactly one of "
                          "requests and file_name must be set\n")
        if file_name is not None:
            stored = self.files.get(str(file_name).removeprefix("files/"))
            if stored is None:
                raise not_found(str(file_name).removeprefix("files/"))
            return parse_jsonl(stored.data), stored.name
        if size > MAX_INLINE_BATCH_BYTES:
            raise invalid(f"Request payload size exceeds the limit: {MAX_INLINE_BATCH_BYTES} bytes.")
        if not isinstance(inline, list) or not inline:
            raise invalid("* BatchGenerateContentRequest.batch.input_config.requests: "
                          "requests must not be empty\n")
        return [BatchEntry(item.get("request") if isinstance(item, dict) else None,
                           metadata=item.get("metadata") if isinstance(item, dict) else None)
                for item in inline], None

    def _job(self, batch_id: str) -> BatchJob:
        job = self.jobs.get(batch_id)
        if job is None:
            raise ApiError(404, "Requested entity was not found.")
        return job

    async def _operation(self, job: BatchJob) -> dict[str, Any]:
        """The job's operation, running its requests the first time it is seen done."""
        now = self.clock.now()
        if job.results is None and job.state(now) == "BATCH_STATE_SUCCEEDED":
            job.results = [await self._run(entry, job.model) for entry in job.entries]
            if job.input_file is not None:
                output = self.files.add(results_jsonl(job), "application/jsonl",
                                        display_name=f"{job.name} results", source="GENERATED")
                job.output_file = output.name
        return job.operation(now)

    async def _run(self, entry: BatchEntry, model: str) -> dict[str, Any]:
        if not isinstance(entry.request, dict):
            return error_result(400, "Invalid request: expected {\"key\", \"request\"}.")
        key = entry.key if entry.key is not None else (entry.metadata or {}).get("key")
        fault = self.faults_by_key.pop(str(key), None) if key is not None else None
        if fault is not None and fault.kind == "status":
            return error_result(fault.code, f"Offline fault {fault.code}.")
        try:
            return {"response": await self._answer_one(entry.request, model, fault)}
        except ApiError as error:
            return error_result(error.code, error.message)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        try:
            size = int(request.query.get("pageSize", _DEFAULT_PAGE)) or _DEFAULT_PAGE
            start = int(request.query.get("pageToken") or 0)
        except ValueError:
            raise invalid("Invalid pageSize or pageToken.") from None
        newest = sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)
        page = newest[start:start + min(size, _MAX_PAGE)]
        body: dict[str, Any] = {"operations": [await self._operation(j) for j in page]}
        if start + len(page) < len(newest):
            body["nextPageToken"] = str(start + len(page))
        return web.json_response(body)
