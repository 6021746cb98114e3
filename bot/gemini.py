"""The Gemini side of a turn: build the request, call the real google-genai client, and map
the answer (or the failure) into neutral values and user-facing errors.

The thread's history is owned by the caller (SQLite); this module keeps none, so a
restored thread and an uninterrupted one send identical requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aiohttp
from google import genai
from google.genai import errors, types

from bot.config import Settings
from bot.errors import ConfigError, ErrorKind, GenerationError, ImagebotError, ServiceError
from bot.model import Source, Usage
from bot.options import Options

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUS_CODES = [408, 429, 500, 502, 503, 504]

_FINISH_MESSAGES = {
    "SAFETY": "Gemini stopped this answer for safety reasons. Rephrase the request and try again.",
    "IMAGE_SAFETY": "Gemini generated an image but withheld it under its image-safety policy. "
                    "Try a different wording or subject.",
    "PROHIBITED_CONTENT": "Gemini refused this request as prohibited content. "
                          "It cannot be generated; change the request.",
    "IMAGE_PROHIBITED_CONTENT": "Gemini withheld the image as prohibited content. "
                                "Change the subject of the image.",
    "RECITATION": "Gemini stopped because the answer was too close to existing material "
                  "(recitation). Ask for something more original.",
    "IMAGE_RECITATION": "Gemini withheld the image because it was too close to an existing "
                        "image (recitation). Ask for a more original composition.",
    "NO_IMAGE": "Gemini answered without producing an image. Say explicitly what image you want, "
                "or try again.",
    "IMAGE_OTHER": "Gemini could not produce the image this time (IMAGE_OTHER). "
                   "Try again, or simplify the request.",
    "BLOCKLIST": "Gemini stopped because the request contains blocked terms. Rephrase it.",
    "SPII": "Gemini stopped because the answer would contain sensitive personal information.",
    "MALFORMED_FUNCTION_CALL": "Gemini produced a malformed answer. Try again.",
    "MISSING_THOUGHT_SIGNATURE": "Gemini refused the thread history (a thought signature was "
                                 "missing). Start a new thread.",
    "MAX_TOKENS": "Gemini ran out of output tokens before finishing. Ask for less at once.",
    "OTHER": "Gemini stopped for an unspecified reason. Try again.",
}
_BLOCK_MESSAGES = {
    "SAFETY": "Gemini blocked the prompt for safety reasons. Rephrase it and try again.",
    "BLOCKLIST": "Gemini blocked the prompt because it contains blocked terms. Rephrase it.",
    "PROHIBITED_CONTENT": "Gemini blocked the prompt as prohibited content. "
                          "This request cannot be generated.",
    "IMAGE_SAFETY": "Gemini blocked the request because of an attached image (image safety). "
                    "Try other reference images.",
    "OTHER": "Gemini blocked the prompt (reason: OTHER). Rephrase it and try again.",
}
_VALID_FINISH = {None, "STOP", "FINISH_REASON_UNSPECIFIED"}
#: Marks the end of a stream in the queue that carries its chunks across loops.
_END = object()


@dataclass(frozen=True)
class Answer:
    """A usable model answer: the Content to keep in history plus what the reply shows."""

    content: types.Content
    sources: tuple[Source, ...]
    search_queries: tuple[str, ...]
    search_entry_point: str | None
    usage: Usage
    model_version: str


def build_client(settings: Settings, *, api_key: str | None = None,
                 base_url: str | None = None) -> genai.Client:
    """A google-genai client pinned to ``v1beta`` with the SDK's own retry options."""
    key = api_key or settings.gemini_api_key
    if not key:
        raise ConfigError(
            "No Gemini API key. Set GEMINI_API_KEY (from https://aistudio.google.com/apikey), "
            "or pass --offline to use the built-in offline stand-in.")
    retry = types.HttpRetryOptions(
        attempts=max(1, settings.gemini_retry_attempts),
        initial_delay=settings.gemini_retry_initial_delay,
        max_delay=settings.gemini_retry_max_delay,
        exp_base=2,
        jitter=0.5,
        http_status_codes=RETRY_STATUS_CODES,
    )
    http = types.HttpOptions(
        base_url=base_url or settings.gemini_base_url or None,
        api_version="v1beta",
        timeout=int(settings.gemini_timeout * 1000),
        retry_options=retry,
    )
    return genai.Client(api_key=key, http_options=http)


def build_config(options: Options) -> types.GenerateContentConfig:
    """The per-turn generation config for the resolved options."""
    image_config = types.ImageConfig(aspect_ratio=options.aspect_ratio, image_size=options.size)
    return types.GenerateContentConfig(
        response_modalities=["IMAGE"] if options.image_only else ["TEXT", "IMAGE"],
        image_config=image_config if (options.aspect_ratio or options.size) else None,
        tools=[types.Tool(google_search=types.GoogleSearch())] if options.search else None,
    )


class _WorkerLoop:
    """A private event loop in a daemon thread.

    The SDK builds requests (JSON with base64 images) and parses responses (pydantic,
    base64 decoding) inside its coroutines. Run on the bot's loop, a burst of answers
    arriving together stalls every platform connection; here it runs beside it.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gemini-io",
                                       daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        # Cancelling the awaiting task cancels the call in the worker loop too.
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@dataclass(frozen=True)
class UploadedFile:
    """A file on Gemini's Files API.

    Attributes:
        name: the resource name (``files/abc123``).
        uri: the full URI requests name it by.
        mime_type: its MIME type.
        lifetime: seconds Gemini keeps it from now (by Gemini's own clock: 48 hours).
    """

    name: str
    uri: str
    mime_type: str
    lifetime: float


#: Files are kept 48 hours; used when an upload's answer does not say.
FILE_LIFETIME = 48 * 3600.0


class GeminiSession:
    """Sends one turn's request and turns the response into an :class:`Answer`; keeps
    history images on the Files API.

    Args:
        files_namespace: names the endpoint and key together, since a file uploaded
            with one key cannot be read with another.
    """

    def __init__(self, client: genai.Client, *, timeout: float, attempts: int,
                 offline: bool = False, files_namespace: str = "") -> None:
        self.client = client
        self.timeout = timeout
        self.attempts = attempts
        self.offline = offline
        self.files_namespace = files_namespace
        #: Who answers, as users are told: the offline stand-in is not Gemini.
        self.name = "The offline stand-in" if offline else "Gemini"
        self._worker = _WorkerLoop()

    async def aclose(self) -> None:
        """Closes the client's connections (in the loop that opened them) and the worker."""
        try:
            await self._worker.run(self.client.aio.aclose())
        finally:
            self._worker.close()

    async def generate(self, model: str, contents: list[types.Content],
                       config: types.GenerateContentConfig) -> Answer:
        """Calls ``generate_content``.

        Raises:
            GenerationError: a blocked prompt or an answer without usable content.
            ServiceError: rate limits, outages, timeouts, refusals and connection failures.
        """
        response = await self.call(
            lambda client: client.aio.models.generate_content(
                model=model, contents=contents, config=config),
            timeout_text=lambda: timeout_message(self.name, config, self.timeout))
        return map_response(response)

    async def call(self, make: Callable[[genai.Client], Coroutine[Any, Any, T]], *,
                   timeout_text: Callable[[], str] | None = None,
                   map_error: Callable[[errors.APIError], ImagebotError | None] | None = None,
                   ) -> T:
        """Runs one SDK call (``make(client)``) on the worker loop, with the SDK's retries,
        an overall deadline and failures mapped to user messages.

        Args:
            make: builds the SDK coroutine from the client.
            timeout_text: the message for a timeout (a generic one by default).
            map_error: a caller's own wording for some API errors (``None``: the usual).

        Raises:
            ServiceError: rate limits, outages, timeouts, refusals and connection failures.
        """
        with self._mapped_failures(timeout_text, map_error):
            return await asyncio.wait_for(self._worker.run(make(self.client)),
                                          timeout=self._deadline())

    async def stream(self, model: str, contents: list[types.Content],
                     config: types.GenerateContentConfig
                     ) -> AsyncGenerator[types.GenerateContentResponse, None]:
        """Calls ``generate_content_stream`` and yields each chunk as it arrives, in order.

        The SDK reads the stream on the worker loop; chunks cross over to the caller's loop
        one by one. Closing the iterator or cancelling the caller cancels the request (the
        connection is closed). A failure in mid-stream is raised after the chunks that came
        before it.
        """
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[object] = asyncio.Queue()

        async def pump() -> None:
            stream = await self.client.aio.models.generate_content_stream(
                model=model, contents=contents, config=config)
            async for chunk in stream:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)

        # Chunks are queued from the worker thread before the pump's end is, so the end
        # marker always comes after the last chunk.
        pumping = asyncio.ensure_future(self._worker.run(pump()))
        pumping.add_done_callback(lambda _: chunks.put_nowait(_END))
        deadline = loop.time() + self._deadline()
        try:
            with self._mapped_failures(lambda: timeout_message(self.name, config, self.timeout)):
                # A timeout per wait, not around the yields: the caller's own awaits between
                # chunks must not be cancelled by it.
                while (item := await asyncio.wait_for(
                        chunks.get(), max(0.0, deadline - loop.time()))) is not _END:
                    yield cast(types.GenerateContentResponse, item)
                await pumping
        finally:
            if not pumping.done():
                pumping.cancel()

    def _deadline(self) -> float:
        # The SDK's own timeout covers one attempt; this bounds the whole retried call.
        return self.timeout * self.attempts + 60

    @contextlib.contextmanager
    def _mapped_failures(self, timeout_text: Callable[[], str] | None = None,
                         map_error: Callable[[errors.APIError], ImagebotError | None]
                         | None = None) -> Iterator[None]:
        """Turns the SDK's and the network's failures into errors with a user message."""
        try:
            yield
        except errors.APIError as exc:
            mapped = map_error(exc) if map_error else None
            raise (mapped or map_api_error(exc, self.attempts)) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            text = (timeout_text() if timeout_text else
                    f"{self.name} did not answer within {self.timeout:.0f} seconds. "
                    "Try again in a moment.")
            raise ServiceError(text, kind=ErrorKind.TIMEOUT) from exc
        except (aiohttp.ClientError, OSError) as exc:
            logger.warning("%s connection failed: %s", self.name, type(exc).__name__)
            raise ServiceError(
                f"Could not connect to {self.name}. Check the network (or GEMINI_BASE_URL) "
                "and try again in a moment.", kind=ErrorKind.CONNECTION) from exc

    async def upload_file(self, data: bytes, mime_type: str, display_name: str
                          ) -> UploadedFile:
        """Uploads bytes to the Files API (resumable upload, as the SDK does it).

        Raises:
            ServiceError: the upload failed.
        """
        config = types.UploadFileConfig(mime_type=mime_type, display_name=display_name)
        uploaded = await self._call(self.client.aio.files.upload(file=io.BytesIO(data),
                                                                 config=config))
        if not uploaded.name or not uploaded.uri:
            raise ServiceError(f"{self.name}'s Files API answered an upload without a name "
                               "or URI.", kind=ErrorKind.BAD_REQUEST)
        lifetime = FILE_LIFETIME
        if uploaded.create_time and uploaded.expiration_time:
            lifetime = (uploaded.expiration_time - uploaded.create_time).total_seconds()
        return UploadedFile(name=uploaded.name, uri=uploaded.uri,
                            mime_type=uploaded.mime_type or mime_type, lifetime=lifetime)

    async def file_exists(self, name: str) -> bool:
        """Whether the Files API still has the file (False when it answers 403 or 404).

        Raises:
            ServiceError: any other failure.
        """
        try:
            await self._call(self.client.aio.files.get(name=name))
        except ServiceError as exc:
            if api_status(exc)[0] in (403, 404):
                return False
            raise
        return True

    async def delete_file(self, name: str) -> None:
        """Deletes a file from the Files API.

        Raises:
            ServiceError: the delete failed (403/404 included: it was already gone).
        """
        await self._call(self.client.aio.files.delete(name=name))

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """One Files API call on the worker loop, its failures as :class:`ServiceError`."""
        try:
            return await asyncio.wait_for(self._worker.run(coro),
                                          timeout=self.timeout * self.attempts + 60)
        except errors.APIError as exc:
            raise ServiceError(f"{self.name}'s Files API refused a call ({exc.code} "
                               f"{exc.status or ''}): {(exc.message or '').strip()}",
                               kind=ErrorKind.BAD_REQUEST) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ServiceError(f"Could not reach {self.name}'s Files API "
                               f"({type(exc).__name__}).", kind=ErrorKind.CONNECTION) from exc


def api_status(exc: BaseException) -> tuple[int, str]:
    """The HTTP code and message of the API error behind ``exc`` ((0, "") if none)."""
    cause = exc if isinstance(exc, errors.APIError) else exc.__cause__
    if isinstance(cause, errors.APIError):
        return cause.code, (cause.message or "")
    return 0, ""


def is_file_gone(exc: BaseException) -> bool:
    """A refusal because a file the request names is unknown or expired (403 "You do not
    have permission to access the File … or it may not exist.")."""
    code, message = api_status(exc)
    return code == 403 and "access the File" in message


def timeout_message(name: str, config: types.GenerateContentConfig, timeout: float) -> str:
    """Says what timed out, with a size hint only when a large size was asked for."""
    size = config.image_config.image_size if config.image_config else None
    hint = (f" Images at {size} take longer; try again, or use a smaller size."
            if size in ("2K", "4K") else " Try again in a moment.")
    return f"{name} did not answer within {timeout:.0f} seconds.{hint}"


def map_api_error(exc: errors.APIError, attempts: int) -> ImagebotError:
    """A specific message for each kind of HTTP failure from the API."""
    code, status = exc.code, exc.status or ""
    detail = (exc.message or "").strip()
    if code == 429:
        wait = _retry_delay(exc)
        return ServiceError(
            f"Gemini is rate-limiting this API key (429 {status or 'RESOURCE_EXHAUSTED'}), still "
            f"after {attempts} attempts. Wait {wait or 'a minute'} and try again; if it keeps "
            "happening, the key's quota is used up.", kind=ErrorKind.RATE_LIMIT)
    if code >= 500:
        return ServiceError(
            f"Gemini is having trouble ({code} {status}) and did not recover after {attempts} "
            "attempts. Try again in a few minutes.", kind=ErrorKind.OUTAGE)
    if code == 408:
        return ServiceError("Gemini timed out (408). Try again.", kind=ErrorKind.TIMEOUT)
    if code in (401, 403):
        return ServiceError(
            f"Gemini refused the API key ({code} {status}: {detail}). Check GEMINI_API_KEY.",
            kind=ErrorKind.AUTH)
    if code == 404:
        return ServiceError(
            f"Gemini does not know this model ({detail}). Use `--model flash` or `--model pro`.",
            kind=ErrorKind.MODEL)
    if code == 400 and "API key not valid" in detail:
        return ServiceError("Gemini says the API key is not valid. Check GEMINI_API_KEY.",
                            kind=ErrorKind.AUTH)
    return ServiceError(f"Gemini rejected the request ({code} {status}): {detail}",
                        kind=ErrorKind.BAD_REQUEST)


def _retry_delay(exc: errors.APIError) -> str | None:
    details = exc.details if isinstance(exc.details, dict) else {}
    for item in (details.get("error") or {}).get("details") or []:
        if isinstance(item, dict) and item.get("retryDelay"):
            return str(item["retryDelay"])
    return None


def map_response(response: types.GenerateContentResponse) -> Answer:
    """Validates a response the way the SDK's curated history does, and maps it.

    Raises:
        GenerationError: with a message per ``blockReason`` / ``finishReason``.
    """
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        reason = _enum_name(feedback.block_reason)
        raise GenerationError(_BLOCK_MESSAGES.get(reason, _BLOCK_MESSAGES["OTHER"]),
                              kind=ErrorKind.BLOCKED)
    if not response.candidates:
        raise GenerationError("Gemini returned no answer. Try again.", kind=ErrorKind.EMPTY)
    candidate = response.candidates[0]
    finish = _enum_name(candidate.finish_reason) if candidate.finish_reason else None
    content = candidate.content
    valid = bool(content and content.parts and all(_part_has_data(p) for p in content.parts))
    if finish not in _VALID_FINISH or not valid:
        message = _FINISH_MESSAGES.get(finish or "", "Gemini returned an empty answer. Try again.")
        raise GenerationError(message, kind=_finish_kind(finish))
    assert content is not None
    content = types.Content(role="model", parts=content.parts)
    return Answer(
        content=content,
        sources=grounding_sources(candidate.grounding_metadata),
        search_queries=tuple((candidate.grounding_metadata.web_search_queries or [])
                             if candidate.grounding_metadata else ()),
        search_entry_point=_entry_point(candidate.grounding_metadata),
        usage=usage_of(response.usage_metadata),
        model_version=response.model_version or "",
    )


def _finish_kind(finish: str | None) -> ErrorKind:
    if finish and ("SAFETY" in finish or "PROHIBITED" in finish or finish in ("BLOCKLIST", "SPII")):
        return ErrorKind.SAFETY
    if finish and "RECITATION" in finish:
        return ErrorKind.RECITATION
    return ErrorKind.NO_IMAGE if finish else ErrorKind.EMPTY


def _part_has_data(part: types.Part) -> bool:
    return any(getattr(part, name, None) is not None for name in (
        "text", "inline_data", "file_data", "function_call", "function_response",
        "executable_code", "code_execution_result"))


def _enum_name(value: object) -> str:
    return str(getattr(value, "value", value) or "")


def grounding_sources(meta: types.GroundingMetadata | None) -> tuple[Source, ...]:
    if not meta or not meta.grounding_chunks:
        return ()
    seen: dict[str, Source] = {}
    for chunk in meta.grounding_chunks:
        web = chunk.web
        if web and web.uri and web.uri not in seen:
            seen[web.uri] = Source(title=web.title or web.domain or web.uri, url=web.uri)
    return tuple(seen.values())


def _entry_point(meta: types.GroundingMetadata | None) -> str | None:
    if meta and meta.search_entry_point and meta.search_entry_point.rendered_content:
        return meta.search_entry_point.rendered_content
    return None


def usage_of(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if meta is None:
        return Usage()
    return Usage(
        prompt_tokens=meta.prompt_token_count or 0,
        output_tokens=meta.candidates_token_count or 0,
        thought_tokens=meta.thoughts_token_count or 0,
        total_tokens=meta.total_token_count or 0,
    )


def request_size(contents: list[types.Content]) -> int:
    """Approximate JSON size of the contents on the wire (base64 inflates bytes by 4/3)."""
    total = 0
    for content in contents:
        for part in content.parts or ():
            total += 64
            if part.text:
                total += len(part.text.encode())
            if part.inline_data and part.inline_data.data:
                total += (len(part.inline_data.data) + 2) // 3 * 4
            if part.thought_signature:
                total += (len(part.thought_signature) + 2) // 3 * 4
    return total
