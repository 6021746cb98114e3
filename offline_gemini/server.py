"""The `OfflineGemini` aiohttp server: routing, API keys, recording, latency and faults."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from collections import Counter
from datetime import timedelta
from typing import Any

from aiohttp import web

from offline_gemini.answers import AnswerOptions, answer_body, build_answer
from offline_gemini.batch_routes import BatchApi
from offline_gemini.clock import Clock
from offline_gemini.faults import Fault, Faults, status_error
from offline_gemini.file_routes import FilesApi
from offline_gemini.files import FileStore
from offline_gemini.imagen import parse_predict, predict
from offline_gemini.models import (
    IMAGEN_MODELS,
    KNOWN_MODELS,
    model_id,
    model_info,
    resolve_model,
)
from offline_gemini.recording import KEEP_REQUESTS, RecordedRequest, RequestLog, body_breakdown
from offline_gemini.signatures import REAL_SIGNATURE_BYTES, SMALL_SIGNATURE_BYTES
from offline_gemini.streaming import answer_chunks, write_stream
from offline_gemini.validation import (
    MAX_REQUEST_BYTES,
    FileAccess,
    parse_request,
    payload_too_large,
)
from offline_gemini.wire import STATUS_MESSAGES, ApiError, load_json

_log = logging.getLogger(__name__)

_PATH = re.compile(r"^/(v1|v1beta)/models/(.+?):(generateContent|streamGenerateContent)$")
_PREDICT = re.compile(r"^/(v1|v1beta)/models/(.+?):predict$")
_MODELS_PATH = re.compile(r"^/(v1|v1beta)/models(?:/(.+))?$")
_MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_BAD_KEY_DETAILS = [{
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
    "metadata": {"service": "generativelanguage.googleapis.com"},
}]


class _Disconnect(Exception):
    """Raised to drop the connection without an answer."""


class OfflineGemini:
    """An offline Gemini image API on aiohttp, served on loopback by default.

    Args:
        api_key: the key requests must carry; None accepts any non-empty key.
        strict_signatures: refuse histories with missing or wrong thought signatures.
        banner: text drawn at the top of every image.
        real_sizes: answer the live API's formats and byte sizes (Pro: JPEG of about
            1.35/5.6/7.8 MB at 1K/2K/4K; Flash: PNG of about 1.5 MB) instead of small
            palette PNGs.
        signature_bytes: length of each thought signature; by default about 1 MB with
            ``real_sizes`` (as live) and 36 bytes without.
        refuse_model_files: answer 400 to image ``fileData`` parts in model turns.
        refuse_dummy_signatures: answer Google's dummy thought signature on a model turn's
            part as a missing one (400 "Image part is missing a thought_signature in
            content position X, part position Y."); accepted by default.
        trailing_signature: in streams, the last image comes unsigned and its signature
            follows on a trailing ``{"text": ""}`` part.
        stream_gap: seconds between stream chunks.
        batch_turnaround: clock time from creating a batch to its results (it runs
            from a tenth of it on); over 48 hours, batches expire instead.
        clock: the time files expire by; tests advance it (``server.clock.advance(hours=49)``).
        keep_requests: how many recent requests ``requests`` keeps (bodies of 256 MiB at
            most, the newest always).
        admin: serve ``POST /_admin/clock`` (``{"advance_hours": 49}``) and
            ``GET /_admin/stats``, so a test in another process can move the clock and
            read counts. Never on a server others use.
        stock_frames: draw one frame per size, format and kind and reuse it, made unique
            to each request by a comment chunk naming it (byte sizes as without it, real
            sizes included): for benchmarks that must not measure the stand-in's drawing.

    Attributes:
        requests: the most recent requests received, in order (`RecordedRequest`);
            ``requests.total`` counts all of them.
        last_generate: where the bytes of the last generate request went (total,
            signatures, inline data, file parts).
        faults: the fault queue and latency (`Faults`).
        files: the Files API's store (`FileStore`); ``files.add(...)`` plants a file.
        batches: the Batch API (`BatchApi`): ``batches.jobs``, ``batches.turnaround``,
            ``batches.faults_by_key`` (a request's answer fault, by its key).
        clock: the `Clock` of file expiry.
        base_url: ``http://127.0.0.1:PORT`` once started.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "offline-key",
        strict_signatures: bool = True,
        banner: str = "OFFLINE PREVIEW",
        real_sizes: bool = False,
        signature_bytes: int | None = None,
        refuse_model_files: bool = False,
        refuse_dummy_signatures: bool = False,
        trailing_signature: bool = False,
        stream_gap: float = 0.0,
        batch_turnaround: timedelta = timedelta(minutes=10),
        clock: Clock | None = None,
        keep_requests: int = KEEP_REQUESTS,
        admin: bool = False,
        stock_frames: bool = False,
    ) -> None:
        self.api_key = api_key
        self.strict_signatures = strict_signatures
        self.banner = banner
        self.real_sizes = real_sizes
        self.stock_frames = stock_frames
        if signature_bytes is None:
            signature_bytes = REAL_SIGNATURE_BYTES if real_sizes else SMALL_SIGNATURE_BYTES
        if signature_bytes < SMALL_SIGNATURE_BYTES:
            raise ValueError(f"signature_bytes must be at least {SMALL_SIGNATURE_BYTES}")
        self.signature_bytes = signature_bytes
        self.refuse_model_files = refuse_model_files
        self.refuse_dummy_signatures = refuse_dummy_signatures
        self.trailing_signature = trailing_signature
        self.stream_gap = stream_gap
        self.clock = clock or Clock()
        self.files = FileStore(self.clock)
        self._files_api = FilesApi(self.files, self._check_key, lambda: self.base_url)
        self.batches = BatchApi(self.files, self.clock, self._check_key, self._answer_one)
        self.batches.turnaround = batch_turnaround
        self.requests = RequestLog(keep_requests)
        self.last_generate: dict[str, int] = {}
        #: Generate requests answered, by HTTP status (``"0"``: disconnected).
        self.generate_statuses: Counter[str] = Counter()
        self.admin = admin
        self.faults = Faults()
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        # Bodies a little over the limit are read whole so that they get the API's own
        # answer rather than a reset connection.
        self.app = web.Application(client_max_size=2 * MAX_REQUEST_BYTES)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    async def __aenter__(self) -> OfflineGemini:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port); return the base URL."""
        # In-flight requests (an injected latency) are cut short rather than awaited.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def generations(self) -> list[RecordedRequest]:
        """The kept ``generateContent`` and ``streamGenerateContent`` requests, in order
        (``requests`` also has Files API, batch and other calls)."""
        return [r for r in self.requests if r.method in ("generateContent",
                                                           "streamGenerateContent")]

    def reset(self) -> None:
        """Forget recorded requests and queued faults."""
        self.requests.clear()
        self.faults.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = _PATH.match(request.path)
        record = RecordedRequest(
            path=request.path,
            model=model_id(match.group(2)) if match else "",
            method=match.group(3) if match else "",
            headers={k.lower(): v for k, v in request.headers.items()},
            body=None,
            query=dict(request.query),
        )
        self.requests.append(record)
        try:
            response = await self._route(request, record, match)
        except ApiError as error:
            response = error.response()
        except _Disconnect:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        except Exception:  # answer like Google instead of aiohttp's text/plain 500
            _log.exception("offline Gemini failed on %s", request.path)
            response = ApiError(500, STATUS_MESSAGES[500]).response()
        if not response.prepared:
            record.status = response.status
        if record.method in ("generateContent", "streamGenerateContent"):
            self.generate_statuses[str(record.status)] += 1
        return response

    async def _route(
        self, request: web.Request, record: RecordedRequest, match: re.Match[str] | None
    ) -> web.StreamResponse:
        if self.admin and request.path.startswith("/_admin/"):
            return await self._admin(request)
        if match is not None:
            return await self._generate(request, record, match)
        if self._files_api.owns(request.path):
            if "upload_id" not in request.query and request.can_read_body:
                record.body = load_json(await request.read())
            return await self._files_api.handle(request)
        if (predict := _PREDICT.match(request.path)) is not None:
            return await self._predict(request, record, predict)
        if self.batches.owns(request.path):
            if request.can_read_body:
                record.body = load_json(await request.read())
            return await self.batches.handle(request)
        return await self._other(request)

    async def _generate(
        self, request: web.Request, record: RecordedRequest, match: re.Match[str]
    ) -> web.StreamResponse:
        if request.method != "POST":
            raise ApiError(404, f"Method not found: {request.method} {request.path}")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise payload_too_large() from None
        if len(raw) > MAX_REQUEST_BYTES:
            raise payload_too_large()
        record.size = len(raw)
        record.body = await asyncio.to_thread(load_json, raw)
        self.last_generate = {"bytes": len(raw), **body_breakdown(record.body)}
        # Latency is the whole time to answer, as with the real model: rendering happens
        # within it, and only what is left of it is slept.
        deadline = asyncio.get_running_loop().time() + self.faults.latency
        fault = self.faults.take(early=True)
        if fault is not None:
            await _sleep_until(deadline)
        if fault is not None and fault.kind == "disconnect":
            raise _Disconnect
        if fault is not None:
            raise status_error(fault)
        self._check_key(request)
        version, model = match.group(1), record.model
        spec = resolve_model(model)
        if spec is None:
            raise ApiError(404, _not_found(model, version))
        parsed = await asyncio.to_thread(
            parse_request, record.body, len(raw), model, spec, strict=self.strict_signatures,
            files=FileAccess(self._file_bytes, self.refuse_model_files),
            dummy_signatures=not self.refuse_dummy_signatures,
        )
        answer = await build_answer(parsed, self.faults.take(early=False), self._options())
        await _sleep_until(deadline)
        response_id = secrets.token_urlsafe(17)
        if record.method == "generateContent":
            return web.json_response(answer_body(answer, model, response_id))
        chunks = answer_chunks(answer, model, response_id,
                               trailing_signature=self.trailing_signature)
        record.status = 200
        sse = request.query.get("alt") == "sse"
        return await write_stream(request, chunks, sse=sse, gap=self.stream_gap)

    async def _predict(
        self, request: web.Request, record: RecordedRequest, match: re.Match[str]
    ) -> web.StreamResponse:
        """Imagen 4: ``:predict`` with ``instances`` and ``parameters``."""
        if request.method != "POST":
            raise ApiError(404, f"Method not found: {request.method} {request.path}")
        self._check_key(request)
        record.model, record.method = model_id(match.group(2)), "predict"
        spec = IMAGEN_MODELS.get(record.model)
        if spec is None:
            raise ApiError(404, f"models/{record.model} is not found for API version "
                                f"{match.group(1)}, or is not supported for predict.")
        record.body = load_json(await request.read())
        answer = await predict(parse_predict(record.body, spec), spec, self.banner,
                               stock_frames=self.stock_frames)
        return web.json_response(answer)

    async def _answer_one(self, body: Any, model: str, fault: Fault | None = None) -> dict[str, Any]:
        """One batch request's response body (the queued faults and latency do not apply;
        ``fault`` is the batch's own, by request key)."""
        spec = resolve_model(model)
        if spec is None:
            raise ApiError(404, _not_found(model, "v1beta"))
        parsed = await asyncio.to_thread(
            parse_request, body, 0, model, spec, strict=self.strict_signatures,
            files=FileAccess(self._file_bytes, self.refuse_model_files),
            dummy_signatures=not self.refuse_dummy_signatures,
        )
        answer = await build_answer(parsed, fault, self._options())
        return answer_body(answer, model, secrets.token_urlsafe(17))

    async def _admin(self, request: web.Request) -> web.StreamResponse:
        """Test controls for a server in another process (only with ``admin=True``)."""
        if request.path == "/_admin/clock" and request.method == "POST":
            body = load_json(await request.read()) or {}
            hours = body.get("advance_hours", 0) if isinstance(body, dict) else 0
            if not isinstance(hours, int | float) or hours < 0:
                raise ApiError(400, "advance_hours must be a number of hours, not negative")
            now = self.clock.advance(hours=float(hours))
            return web.json_response({"now": now.isoformat()})
        if request.path == "/_admin/stats" and request.method == "GET":
            return web.json_response({
                "requests": self.requests.total, "uploads": self.files.uploaded,
                "live_files": self.files.live_count(), "last_generate": self.last_generate,
                "generate_statuses": dict(self.generate_statuses)})
        raise ApiError(404, f"Method not found: {request.method} {request.path}")

    def _file_bytes(self, uri: str) -> tuple[bytes, bytes]:
        stored = self.files.by_uri(uri, self.base_url)
        return stored.data, stored.sha256

    def _options(self) -> AnswerOptions:
        return AnswerOptions(self.banner, self.real_sizes, self.signature_bytes,
                             stock_frames=self.stock_frames)

    def _check_key(self, request: web.Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key") or ""
        if not key:
            raise ApiError(403, _MISSING_KEY)
        if self.api_key is not None and not hmac.compare_digest(key, self.api_key):
            raise ApiError(400, "API key not valid. Please pass a valid API key.", _BAD_KEY_DETAILS)

    async def _other(self, request: web.Request) -> web.StreamResponse:
        match = _MODELS_PATH.match(request.path)
        if match is None or request.method != "GET":
            raise ApiError(404, f"Method not found: {request.method} {request.path}")
        self._check_key(request)
        if match.group(2) is None:
            names = [*KNOWN_MODELS, *IMAGEN_MODELS]
            return web.json_response({"models": [model_info(name) for name in names]})
        model = model_id(match.group(2))
        if model not in KNOWN_MODELS and model not in IMAGEN_MODELS:
            raise ApiError(404, _not_found(model, match.group(1)))
        return web.json_response(model_info(model))


async def _sleep_until(deadline: float) -> None:
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining > 0:
        await asyncio.sleep(remaining)


def _not_found(model: str, version: str) -> str:
    return (
        f"models/{model} is not found for API version {version}, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods."
    )


