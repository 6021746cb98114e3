"""A streamed answer: its chunks gathered into one model turn, with progress on the way.

The google-genai chat keeps one Content per chunk and drops a whole turn when one chunk
has no content (python-genai issue 1791). Here every part of every chunk goes, in the
order received and byte for byte (a signature arriving on a trailing empty text part
included), into ONE model Content; a chunk without content adds only its metadata. The
gathered response is then checked exactly as a non-streamed one is (``map_response``), so
a streamed turn and a single call store the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from google.genai import types

from bot import images
from bot.gemini import Answer, GeminiSession, grounding_sources, map_response, usage_of
from bot.model import ReplyImage, Source, Usage
from bot.progress import Kind, Progress, ProgressCallback, Stage

logger = logging.getLogger(__name__)


class ChunkAccumulator:
    """Gathers a stream's chunks into the one response the API would have sent."""

    def __init__(self) -> None:
        self.parts: list[types.Part] = []
        self.chunks = 0
        self._finish: types.FinishReason | None = None
        self._grounding: types.GroundingMetadata | None = None
        self._usage: types.GenerateContentResponseUsageMetadata | None = None
        self._feedback: types.GenerateContentResponsePromptFeedback | None = None
        self._model_version: str | None = None
        self._response_id: str | None = None

    def add(self, chunk: types.GenerateContentResponse) -> list[types.Part]:
        """Takes one chunk; returns the parts it added (maybe none)."""
        self.chunks += 1
        self._feedback = chunk.prompt_feedback or self._feedback
        self._usage = chunk.usage_metadata or self._usage  # counts are cumulative
        self._model_version = chunk.model_version or self._model_version
        self._response_id = chunk.response_id or self._response_id
        if not chunk.candidates:
            return []
        candidate = chunk.candidates[0]
        self._finish = candidate.finish_reason or self._finish
        self._grounding = candidate.grounding_metadata or self._grounding
        added = list(candidate.content.parts or ()) if candidate.content else []
        self.parts.extend(added)
        return added

    def response(self) -> types.GenerateContentResponse:
        """Everything received, as one response: one candidate with one model Content."""
        candidates = None
        if self.parts or self._finish or self._grounding:
            content = types.Content(role="model", parts=self.parts) if self.parts else None
            candidates = [types.Candidate(content=content, finish_reason=self._finish,
                                          grounding_metadata=self._grounding, index=0)]
        return types.GenerateContentResponse(
            candidates=candidates, prompt_feedback=self._feedback,
            usage_metadata=self._usage, model_version=self._model_version,
            response_id=self._response_id)


class ProgressTracker:
    """Turns chunks into :class:`Progress` events and keeps the turn's stage."""

    def __init__(self) -> None:
        self.stage: Stage = "sending"
        self.drafts = 0
        #: The images shown so far (hashed and measured), by the identity of their bytes.
        self.images: dict[int, ReplyImage] = {}

    def events(self, chunk: types.GenerateContentResponse, added: list[types.Part],
               elapsed: float) -> list[Progress]:
        """What one chunk tells (CPU work for images: run it in a worker thread)."""
        events = [e for e in (self._part_event(p, elapsed) for p in added) if e is not None]
        candidate = chunk.candidates[0] if chunk.candidates else None
        if candidate is not None and candidate.grounding_metadata is not None:
            events.append(self._event("grounding", elapsed,
                                      sources=grounding_sources(candidate.grounding_metadata)))
        if chunk.usage_metadata is not None:
            events.append(self._event("usage", elapsed, usage=usage_of(chunk.usage_metadata)))
        return events

    def _part_event(self, part: types.Part, elapsed: float) -> Progress | None:
        image = part.inline_data if part.inline_data and part.inline_data.data else None
        if part.thought:
            if image is not None:
                self.drafts += 1
                self.stage = "drawing"
                return self._event("thought_image", elapsed, image=self._image(image))
            if part.text:
                if self.stage == "sending":
                    self.stage = "thinking"
                return self._event("thought_text", elapsed, text=part.text)
            return None
        if image is not None:
            self.stage = "finishing"
            return self._event("image", elapsed, image=self._image(image))
        if part.text:  # an empty text part only carries a signature
            self.stage = "finishing"
            return self._event("text", elapsed, text=part.text)
        return None

    def _image(self, blob: types.Blob) -> ReplyImage:
        image = reply_image(blob)
        self.images[id(blob.data)] = image
        return image

    def _event(self, kind: Kind, elapsed: float, *, text: str = "",
               image: ReplyImage | None = None, sources: tuple[Source, ...] = (),
               usage: Usage | None = None) -> Progress:
        return Progress(kind=kind, stage=self.stage, elapsed=elapsed, drafts=self.drafts,
                        text=text, image=image, sources=sources, usage=usage)


@dataclass(frozen=True)
class Streamed:
    """A streamed answer, and how long its first chunk took (``None``: no chunk came)."""

    answer: Answer
    first_chunk: float | None
    #: The images already hashed and measured for progress, by the identity of their
    #: bytes (see :func:`bot.turn_values.parts_of`), so a turn does that once per image.
    images: dict[int, ReplyImage] = field(default_factory=dict)


async def stream_answer(gemini: GeminiSession, model: str, contents: list[types.Content],
                        config: types.GenerateContentConfig, *,
                        on_progress: ProgressCallback | None, started: float) -> Streamed:
    """Streams one answer, telling ``on_progress`` what arrives, and gathers it.

    Args:
        started: ``time.monotonic()`` when the turn's request went out (elapsed times).

    Raises:
        GenerationError: the gathered answer is blocked or unusable (as without streaming).
        ServiceError: the stream failed (nothing is kept of what came before).
    """
    accumulator = ChunkAccumulator()
    tracker = ProgressTracker()
    first: float | None = None
    async with contextlib.aclosing(gemini.stream(model, contents, config)) as chunks:
        async for chunk in chunks:
            elapsed = time.monotonic() - started
            first = elapsed if first is None else first
            added = accumulator.add(chunk)
            if on_progress is None:
                continue
            if any(p.inline_data for p in added):
                events = await asyncio.to_thread(tracker.events, chunk, added, elapsed)
            else:
                events = tracker.events(chunk, added, elapsed)
            for event in events:
                await _tell(on_progress, event)
    return Streamed(answer=map_response(accumulator.response()), first_chunk=first,
                    images=tracker.images)


async def _tell(on_progress: ProgressCallback, event: Progress) -> None:
    # A surface failing to show progress must not end the turn.
    try:
        await on_progress(event)
    except Exception:
        logger.exception("showing progress (%s) failed", event.kind)


def reply_image(blob: types.Blob) -> ReplyImage:
    """A generated image with its size and digest (sizes are informative only)."""
    data = blob.data or b""
    try:
        mime, width, height = images.image_info(data)
    except Exception:  # an unreadable image still gets shown
        logger.info("could not read a generated image's size (%d bytes)", len(data))
        mime, width, height = blob.mime_type or "image/png", 0, 0
    return ReplyImage(data=data, mime_type=mime, width=width, height=height,
                      sha256=images.sha256(data))
