"""How the playground's failures become answers: refusals, HTTP statuses, and messages
reworded for the selectors the page shows instead of the inline flags chat users type."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from bot import messages
from bot.errors import ErrorKind, ImagebotError
from bot.options import OptionInput

#: The HTTP status of each kind of failure (4xx the user's to fix, 5xx ours or Gemini's).
STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.OPTION: 400, ErrorKind.ATTACHMENT: 400, ErrorKind.PROMPT: 400,
    ErrorKind.TOO_LARGE: 413, ErrorKind.NOT_FOUND: 404, ErrorKind.FORBIDDEN: 403,
    ErrorKind.POLICY: 403, ErrorKind.QUOTA: 429,
    ErrorKind.CANCELLED: 503, ErrorKind.CONFIG: 503, ErrorKind.STARTUP: 503,
    ErrorKind.BLOCKED: 422, ErrorKind.SAFETY: 422, ErrorKind.RECITATION: 422,
    ErrorKind.NO_IMAGE: 422, ErrorKind.EMPTY: 422, ErrorKind.GENERATION: 422,
    ErrorKind.RATE_LIMIT: 429, ErrorKind.TIMEOUT: 504, ErrorKind.SERVICE: 502,
    ErrorKind.OUTAGE: 502, ErrorKind.CONNECTION: 502, ErrorKind.AUTH: 502,
    ErrorKind.MODEL: 502, ErrorKind.BAD_REQUEST: 502,
}
INTERNAL = messages.INTERNAL_ERROR


class Refusal(Exception):
    """A request the playground turns down before reaching the core (bad input, no access)."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def no_thread() -> Refusal:
    return Refusal(404, "That thread does not exist (it may have been made on another "
                        "imagebot database). Start a new thread.", "not_found")


def error_status(exc: ImagebotError) -> int:
    """The HTTP status for a failure the user is told about (4xx theirs, 5xx ours or Gemini's)."""
    return STATUS_BY_KIND.get(exc.kind, 500)


def error_response(message: str, kind: str, status: int) -> web.Response:
    return web.json_response({"error": message, "kind": kind}, status=status)


def http_message(exc: web.HTTPException) -> str:
    if exc.status == 413:
        return "The upload is too large for one request. Attach fewer or smaller images."
    return exc.reason or "The request could not be handled."


@dataclass(frozen=True)
class _Rewording:
    """A flag-worded advice in a core message, and its selector wording.

    ``typed`` names the options whose inline flag in the prompt keeps the flag wording:
    then the flag is what the user used, and what they should change.
    """

    pattern: re.Pattern[str]
    replacement: str
    typed: tuple[str, ...]


_PRO = "choose Nano Banana Pro in the Model selector"
_REWORDINGS = (
    _Rewording(re.compile(r"Use `--model pro` for search\."),
               f"To use Google Search, {_PRO}.", ("search", "model")),
    _Rewording(re.compile(r"Drop `--size`, or use `--model pro` for ([^.]+)\."),
               rf"Leave the size out, or {_PRO} for \1.", ("size", "model")),
    _Rewording(re.compile(r"`--model pro` takes up to (\d+)"),
               r"Nano Banana Pro (in the Model selector) takes up to \1", ("model",)),
    _Rewording(re.compile(r"Nano Banana Pro takes up to (\d+)\."),
               rf"To attach up to \1, {_PRO}.", ("model",)),
    _Rewording(re.compile(r"Use `--model flash` or `--model pro`\."),
               "Choose Nano Banana or Nano Banana Pro in the Model selector.", ("model",)),
)


def for_selectors(message: str, typed: OptionInput | None = None) -> str:
    """A core message as the page should say it: advice about a selector value names the
    selector, not the chat flag, unless the user typed that flag in the prompt."""
    given = typed.given() if typed is not None else {}
    for rewording in _REWORDINGS:
        if not any(name in given for name in rewording.typed):
            message = rewording.pattern.sub(rewording.replacement, message)
    return message
