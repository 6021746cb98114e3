"""Imagen 4: one-shot text-to-image turns through the Gemini API's ``models/{m}:predict``.

google-genai 3.6's ``models.generate_images`` raises ``ValueError`` for an API-key client
before sending anything, so the request goes through the SDK's own HTTP client
(``client.aio._api_client.async_request``): the same base URL, ``x-goog-api-key`` header,
timeout and retry options as every other Gemini call.

Imagen has no chat. An Imagen turn stands alone in its thread (it is recorded as a turn,
but its images never enter the conversation history); the next Gemini turn in the thread
takes the Imagen result in as a reference image, and says so.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import errors, types

from bot import messages
from bot.errors import ErrorKind, GenerationError, ImagebotError, ServiceError
from bot.gemini import Answer, GeminiSession
from bot.model import Attachment, TurnView, Usage
from bot.options import ModelCaps, Options, caps_for
from bot.planning import TurnPlan, check_attachments

logger = logging.getLogger(__name__)

#: Error texts with which the live API says a model is not open to a key.
_UNAVAILABLE_HINTS = ("only accessible to billed users", "not supported for predict",
                      "is not found", "not available", "not enabled")


@dataclass(frozen=True)
class ImagenImage:
    data: bytes
    mime_type: str


def predict_body(prompt: str, options: Options) -> dict[str, Any]:
    """The ``:predict`` request for a prompt and resolved options."""
    parameters: dict[str, Any] = {"sampleCount": options.count, "includeRaiReason": True}
    if options.aspect_ratio:
        parameters["aspectRatio"] = options.aspect_ratio
    if options.size:
        parameters["sampleImageSize"] = options.size
    return {"instances": [{"prompt": prompt}], "parameters": parameters}


async def predict(session: GeminiSession, options: Options,
                  prompt: str) -> tuple[Answer, list[str]]:
    """Runs one Imagen request; the images come back as a model Content (never stored in
    the history) so the rest of the turn treats them like any answer, with notices (some
    samples withheld).

    Raises:
        GenerationError: every image was withheld by Imagen's safety filter.
        ServiceError: the model is unavailable to the key, or the call failed.
    """
    body = predict_body(prompt, options)

    async def call(client: genai.Client) -> str:
        response = await client.aio._api_client.async_request(
            "post", f"models/{options.model}:predict", body)
        return response.body or "{}"

    text = await session.call(call, map_error=lambda exc: unavailable(exc, options))
    images, withheld = parse_predictions(json.loads(text))
    if not images:
        raise GenerationError(_withheld_message(options.caps.label, withheld),
                              kind=ErrorKind.SAFETY)
    content = types.Content(role="model", parts=[
        types.Part(inline_data=types.Blob(data=i.data, mime_type=i.mime_type)) for i in images])
    answer = Answer(content=content, sources=(), search_queries=(), search_entry_point=None,
                    usage=Usage(), model_version=options.model)
    notices = [messages.some_withheld(options.caps.label, len(withheld), options.count)
               ] if withheld else []
    return answer, notices


def parse_predictions(body: Mapping[str, Any]) -> tuple[list[ImagenImage], list[str]]:
    """The images of a ``:predict`` answer, and the reasons given for withheld ones."""
    images: list[ImagenImage] = []
    withheld: list[str] = []
    for prediction in body.get("predictions") or ():
        if not isinstance(prediction, Mapping):
            continue
        encoded = prediction.get("bytesBase64Encoded")
        if isinstance(encoded, str) and encoded:
            try:
                data = base64.b64decode(encoded.replace("-", "+").replace("_", "/"))
            except (binascii.Error, ValueError):
                withheld.append("an unreadable image")
                continue
            images.append(ImagenImage(data, str(prediction.get("mimeType") or "image/png")))
        elif prediction.get("raiFilteredReason"):
            withheld.append(str(prediction["raiFilteredReason"]))
    return images, withheld


def unavailable(exc: errors.APIError, options: Options) -> ImagebotError | None:
    """A plain "not available" for the answers with which the API refuses a model."""
    detail = " ".join((exc.message or "").split())
    lowered = detail.lower()
    if exc.code == 404 or (exc.code in (400, 403)
                           and any(hint in lowered for hint in _UNAVAILABLE_HINTS)):
        return ServiceError(messages.model_unavailable(options.caps.label, options.model,
                                                       detail[:300]), kind=ErrorKind.MODEL)
    return None


def with_thread_context(plan: TurnPlan, turns: Sequence[TurnView],
                        models: Mapping[str, ModelCaps], max_attachment_bytes: int,
                        fetch: Callable[[str], Awaitable[bytes]]) -> TurnPlan:
    """A new message's plan, given the thread's turns so far.

    An Imagen turn says once per thread that it stands alone. A Gemini turn right after an
    Imagen turn takes its result in as reference images (before the attached ones).

    Raises:
        AttachmentError: the carried images and the attached ones are too many together.
    """
    if plan.options.caps.one_shot:
        if any(_caps(t, models).one_shot for t in turns):
            return plan
        return dataclasses.replace(
            plan, notices=(*plan.notices, messages.one_shot_notice(plan.options.caps.label)))
    last = turns[-1] if turns else None
    if last is None or not _caps(last, models).one_shot or not last.reply.images:
        return plan
    chosen = last.reply.images[:1]
    carried = tuple(
        Attachment(name=f"imagen-{image.sha256[:12]}.{_extension(image.mime_type)}",
                   mime_type=image.mime_type, fetch=_fetcher(fetch, image.sha256))
        for image in chosen)
    label = _caps(last, models).label
    plan = dataclasses.replace(
        plan, attachments=carried + plan.attachments,
        notices=(*plan.notices, messages.carried_notice(label, len(carried))))
    check_attachments(plan.attachments, plan.options, max_attachment_bytes)
    return plan


def is_one_shot(turn: TurnView, models: Mapping[str, ModelCaps]) -> bool:
    return _caps(turn, models).one_shot


def _caps(turn: TurnView, models: Mapping[str, ModelCaps]) -> ModelCaps:
    return caps_for(str(turn.options.get("model") or ""), models)


def _fetcher(fetch: Callable[[str], Awaitable[bytes]], sha: str) -> Callable[[], Awaitable[bytes]]:
    async def get() -> bytes:
        return await fetch(sha)

    return get


def _extension(mime_type: str) -> str:
    return {"image/jpeg": "jpg", "image/webp": "webp"}.get(mime_type, "png")


def _withheld_message(label: str, reasons: list[str]) -> str:
    why = f" ({reasons[0][:300]})" if reasons else ""
    return (f"{label} withheld the image under its safety filter{why}. "
            "Try a different wording or subject.")


