"""The request a turn sends, and sending it: the thread's stored history that fits in one
request, its images named as Files API references, real thought signatures only in the
most recent model turns (``history_signatures``), the new message inline, and the
recoveries such a history needs.

- A file believed alive that Gemini does not know (403: expired early, deleted, another
  project) makes the turn ask which files are gone, upload those again and retry once.
- A model that refuses its own images as files (400) gets the turn again once with its
  images inline, leaving out the oldest whole turns if that no longer fits; when that
  works, the model gets its images inline for the rest of the process.
- A model that refuses the dummy signature on older model turns (400 naming a thought
  signature) gets the turn again once with the real signatures everywhere, leaving out the
  oldest whole turns if that no longer fits; when that works, the model gets real
  signatures for the rest of the process. Whether the live API takes the dummy on an
  image model's own turns is uncertain: Google documents the dummy for history the model
  did not produce, and Vertex AI's thought-signature page says "Gemini 3 Pro Image doesn't
  return a 400 error if a thought signature isn't returned", while other projects report
  400 "Image part is missing a thought_signature in content position 2, part position 1"
  from newer image models. So it is handled, not assumed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from google.genai import types

from bot import budget, history, images
from bot.errors import ErrorKind, ServiceError, TooLargeError
from bot.files import HistoryFiles
from bot.gemini import GeminiSession, api_status, build_config, is_file_gone, request_size
from bot.history import StoredContent
from bot.model import ThreadKey
from bot.options import Options
from bot.presentation import format_size
from bot.store_api import Store
from bot.store_files import FileRecord

logger = logging.getLogger(__name__)

#: Makes a turn's call with its contents: ``generate`` by default, or a streamed call, or
#: several candidates; whatever it returns is the turn's result.
Ask = Callable[[str, list[types.Content], types.GenerateContentConfig], Awaitable[Any]]


@dataclass(frozen=True)
class Outgoing:
    """One request's contents and what the turn must know about them.

    Attributes:
        contents: the history that fits, then the new user Content.
        notices: for the user (older turns left out).
        files: the images named as files, by hash.
        model_files: whether any of the model's own images went as a file.
        model: the model it is for.
        dummies: whether older model turns carry the dummy signature.
    """

    contents: list[types.Content]
    notices: list[str]
    files: dict[str, FileRecord]
    model_files: bool
    model: str
    dummies: bool = False


@dataclass(frozen=True)
class Shape:
    """How a request carries the history.

    Attributes:
        model_files: the model's own images may go as files.
        window: real signatures in this many most recent model turns (None: all).
    """

    model_files: bool
    window: int | None


def user_content(prompt: str, refs: Sequence[images.PreparedImage]) -> types.Content:
    """The new message: its text, then its reference images inline."""
    return types.Content(role="user", parts=[types.Part(text=prompt)] + [
        types.Part(inline_data=types.Blob(data=r.data, mime_type=r.mime_type)) for r in refs])


class TurnRequests:
    """Builds and sends turns' requests (one per service).

    Args:
        gate: the service's semaphore bounding CPU and database phases; uploads and the
            call itself run outside it.
    """

    def __init__(self, store: Store, gemini: GeminiSession, files: HistoryFiles,
                 gate: asyncio.Semaphore, *, signatures: int | None = None) -> None:
        self.store = store
        self.gemini = gemini
        self.files = files
        self.gate = gate
        self.signatures = signatures
        self._real_signature_models: set[str] = set()

    def real_signatures(self, model: str) -> bool:
        """Whether every model turn goes back to ``model`` with its real signatures."""
        return self.signatures is None or model in self._real_signature_models

    def need_real_signatures(self, model: str) -> None:
        """Sends ``model`` real signatures everywhere from now on (it refused the dummy)."""
        if model in self._real_signature_models:
            return
        self._real_signature_models.add(model)
        logger.warning("%s refused the documented dummy thought signature on older model "
                       "turns; every model turn goes to %s with its real signatures for the "
                       "rest of this process", model, model)

    async def send(self, key: ThreadKey, prompt: str, refs: Sequence[images.PreparedImage],
                   options: Options, *, limit: int, ask: Ask | None = None
                   ) -> tuple[types.Content, Any, list[str]]:
        """Sends the turn; returns the user Content as sent, the answer and notices.

        Args:
            limit: the request budget in bytes (``max_request_bytes``).
            ask: makes the call with the request's contents (a streamed call, several
                candidates); a plain ``generate`` by default. Its result is returned.

        Raises:
            TooLargeError: the message's own attachments are over the request limit.
            ImagebotError: Gemini's refusal or failure, after the recoveries above.
        """
        user = user_content(prompt, refs)
        config = build_config(options)
        ask = ask or self.gemini.generate
        model = options.model
        shape = Shape(model_files=self.files.model_files(model),
                      window=None if self.real_signatures(model) else self.signatures)
        retried: set[str] = set()
        while True:
            request = await self.build(key, user, model, shape=shape, limit=limit)
            try:
                answer, notices = await self._call(key, user, config, request, shape, limit,
                                                   ask)
                break
            except ServiceError as exc:
                retry = _fallback(exc, request, shape, retried)
                if retry is None:
                    raise
                shape = retry
        if "signatures" in retried:
            self.need_real_signatures(model)
        if "model_files" in retried:
            self.files.refuse_model_files(model)
        return user, answer, notices

    async def _call(self, key: ThreadKey, user: types.Content,
                    config: types.GenerateContentConfig, request: Outgoing, shape: Shape,
                    limit: int, ask: Ask) -> tuple[Any, list[str]]:
        """Sends ``request``; on a 403 for a file believed alive, uploads the files that
        are gone and sends the rebuilt request once more."""
        model = request.model
        try:
            return await ask(model, request.contents, config), request.notices
        except ServiceError as exc:
            if not (request.files and is_file_gone(exc)):
                raise
            if not await self.files.recheck(request.files):
                raise
        request = await self.build(key, user, model, shape=shape, limit=limit)
        return await ask(model, request.contents, config), request.notices

    async def build(self, key: ThreadKey, user: types.Content, model: str, *,
                    shape: Shape, limit: int) -> Outgoing:
        """The stored turns that fit in one request with ``user`` (oldest left out first),
        images as files where they may be, real signatures in the window's model turns
        and the dummy in older ones, and a notice when turns were left out.

        Raises:
            TooLargeError: ``user``'s own attachments are over the request limit.
        """
        new = request_size([user])
        if new > limit:
            raise TooLargeError(
                f"The attached images add up to {format_size(new)} once encoded, over "
                f"Gemini's {format_size(limit)} request limit. Attach fewer or smaller "
                "images.")
        async with self.gate:
            stored = await self.store.load_stored(key)
            stored, dummies = history.signature_window(stored, shape.window)
            sizes = await self.store.blob_sizes({h for c in stored for h in c.blob_hashes()})
        eligible = _file_images(stored, shape.model_files) if self.files.enabled else {}
        fit = budget.fit_history(stored, sizes, limit - new, eligible)
        wanted = {h: m for c in fit.kept for h, m in c.images().items() if h in eligible}
        files, failed = await self.files.ensure(wanted)
        if failed:  # those go inline, which may leave more turns out
            eligible = {h: m for h, m in eligible.items() if h not in failed}
            fit = budget.fit_history(stored, sizes, limit - new, eligible)
        named = {h for c in fit.kept for h in c.images() if h in eligible}
        files = {h: r for h, r in files.items() if h in named}
        async with self.gate:
            sent = await self.store.inflate(fit.kept, {h: r.uri for h, r in files.items()})
        notices = []
        if fit.left_out:
            logger.info("thread %s: %d of %d turns left out of the request to fit %d bytes",
                        key, fit.left_out, fit.turns, limit)
            notices.append(budget.left_out_notice(fit.left_out, fit.turns, limit))
        model_sent = any(h in files for c in fit.kept if c.role == "model" for h in c.images())
        return Outgoing([*sent, user], notices, files, model_sent, model,
                        any(c.turn_id in dummies for c in fit.kept))


def _fallback(exc: ServiceError, request: Outgoing, shape: Shape, retried: set[str]
              ) -> Shape | None:
    """The shape to try the turn again with after Gemini refused ``request`` (None: give
    up); each fallback is tried once per turn and noted in ``retried``."""
    model = request.model
    if is_signature_refusal(exc):
        if not request.dummies or "signatures" in retried:
            return None
        logger.info("%s refused a history with the dummy thought signature on older turns "
                    "(%s); trying this turn again with the real ones", model,
                    exc.user_message)
        retried.add("signatures")
        return replace(shape, window=None)
    if request.model_files and _refused(exc) and "model_files" not in retried:
        logger.info("%s refused a history naming its own images as files (%s); trying this "
                    "turn again with them inline", model, exc.user_message)
        retried.add("model_files")
        return replace(shape, model_files=False)
    return None


def _file_images(stored: Sequence[StoredContent], model_files: bool) -> dict[str, str]:
    """The history images that may go as files: every user image, and the model's own
    images unless the model takes them back only inline."""
    return {h: mime for c in stored if c.role == "user" or model_files
            for h, mime in c.images().items()}


def is_signature_refusal(exc: ServiceError) -> bool:
    """Gemini's 400 for a thought signature it would not take ("Image part is missing a
    thought_signature in content position 2, part position 1", "Corrupted thought
    signature ...")."""
    code, message = api_status(exc)
    lowered = message.lower()
    return code == 400 and ("thought_signature" in lowered or "thought signature" in lowered)


def _refused(exc: ServiceError) -> bool:
    """A plain 400 refusal (not a key, model, size or rate problem)."""
    return exc.kind == ErrorKind.BAD_REQUEST and api_status(exc)[0] == 400
