"""Failures a user sees: each carries a kind (for metrics) and a message that says what to try."""

from __future__ import annotations


class ImagebotError(Exception):
    """A failure that is reported to the user; the thread's history is left as it was.

    Attributes:
        kind: a short machine-readable category (``option``, ``attachment``, ``safety``...).
        user_message: what the user is told: what happened and what to try.
    """

    kind = "error"

    def __init__(self, user_message: str, *, kind: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        if kind:
            self.kind = kind


class OptionError(ImagebotError):
    """An invalid or unknown option value; no API call is made."""

    kind = "option"


class AttachmentError(ImagebotError):
    """A file that cannot be used as a reference image."""

    kind = "attachment"


class PromptError(ImagebotError):
    """A prompt that cannot be sent (empty)."""

    kind = "prompt"


class TooLargeError(ImagebotError):
    """The request would exceed Gemini's inline request size."""

    kind = "too_large"


class GenerationError(ImagebotError):
    """Gemini answered, but with no usable result (safety block, no image...)."""

    kind = "generation"


class ServiceError(ImagebotError):
    """Gemini could not be reached or refused the request (rate limit, outage, timeout)."""

    kind = "service"


class NotFoundError(ImagebotError):
    """A turn or thread that does not exist (a stale button)."""

    kind = "not_found"


class CancelledTurn(ImagebotError):
    """A turn cancelled because the bot is shutting down."""

    kind = "cancelled"
